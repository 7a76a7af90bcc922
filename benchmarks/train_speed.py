"""Training and sampling speed of the MNIST DCGAN: atelier's trainer vs a plain eager fp32 loop.

The reference loop is written here from scratch with the identical architecture (atelier's
Generator/Discriminator classes with PyTorch's own ``nn.Dropout``, default PyTorch memory format,
fp32, separate D(real)/D(fake) calls), so the ratio isolates what atelier's trainer adds or saves.
Everything runs in this one process, interleaved round by round, on the same MNIST images, so ratios
hold on a busy machine even where absolute figures do not.

    python benchmarks/train_speed.py                    # batch 64 and 256, fp32 and bf16
    python benchmarks/train_speed.py --batch 256 --steps 30 --rounds 3
    python benchmarks/train_speed.py --compare          # atelier vs plain vs best, GFLOP/s, % of GEMM ceiling,
                                                        # and the default without its CPU levers
    python benchmarks/train_speed.py --compare --profile  # + torch.profiler's top entries of one step

``--compare`` also counts the training FLOPs per image with ``torch.utils.flop_counter`` (the
TensorFlow tutorial's step, whose one D(fake) forward serves both losses: 452 MFLOP; atelier's step
runs D on the fake batch again after D's update, 472 MFLOP) and measures the GEMM ceiling (fp32 and
bf16 ``torch.mm``, and a 1x1 convolution through oneDNN) in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from atelier.data import open_source
from atelier.models import dcgan
from atelier.models.dcgan import DCGANConfig, Discriminator, Generator
from atelier.models.layers import Dropout
from atelier.runs import Run, load_config
from atelier.tasks.gan import GANTask
from atelier.training import Trainer

FLOP_PER_IMAGE = 452e6  # the TF-tutorial DCGAN's training FLOPs per image; --compare recounts it


def torch_dropout(D: torch.nn.Module) -> torch.nn.Module:
    """Swap atelier's fast CPU dropout for PyTorch's own (the plain reference, and the "before" of that lever)."""
    for name, m in list(D.named_modules()):
        if isinstance(m, Dropout):
            parent = D.get_submodule(name.rpartition(".")[0])
            setattr(parent, name.rpartition(".")[2], torch.nn.Dropout(m.p))
    return D


class _NCHWMaskDropout(Dropout):
    """The fast masks as they were drawn until the layout levers: in NCHW order whatever x's layout, and
    converted from bool (the "before" of those levers; same maths)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n = x.numel()
        lanes = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None).view(torch.int16)
        keep = lanes[:n].view(x.shape) >= -32768 + round(self.p * 65536)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


@contextlib.contextmanager
def nchw_handoffs(D: torch.nn.Module):
    """Undo the layout levers inside this block: D's masks in NCHW order, and D's fc over an NCHW copy of
    its channels_last features (``h.flatten(1)``) instead of ``layers.flat_linear``."""
    for m in D.modules():
        if type(m) is Dropout:
            m.__class__ = _NCHWMaskDropout
    saved = dcgan.flat_linear
    dcgan.flat_linear = lambda fc, h: fc(h.flatten(1))
    try:
        yield
    finally:
        dcgan.flat_linear = saved


def _nets() -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer, torch.optim.Optimizer]:
    torch.manual_seed(0)
    G = Generator(DCGANConfig(), resolution=28, channels=1)
    D = torch_dropout(Discriminator(DCGANConfig(), resolution=28, channels=1))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return G, D, opt_g, opt_d


def plain_step(G, D, opt_g, opt_d, batch: int) -> Callable[[torch.Tensor], None]:
    """The textbook PyTorch DCGAN step, fp32, default memory format."""
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def step(real: torch.Tensor) -> None:
        z = torch.randn(batch, 100)
        fake = G(z)
        opt_d.zero_grad()
        loss_d = F.binary_cross_entropy_with_logits(D(real), ones) + \
            F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        loss_g.backward()
        opt_g.step()

    return step


def tutorial_step(G, D, opt_g, opt_d, batch: int) -> Callable[[torch.Tensor], None]:
    """The TensorFlow tutorial's step: one D(fake) forward feeds both losses (for counting its FLOPs)."""
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def step(real: torch.Tensor) -> None:
        fake = G(torch.randn(batch, 100))
        real_out, fake_out = D(real), D(fake)
        loss_g = F.binary_cross_entropy_with_logits(fake_out, ones)
        loss_d = F.binary_cross_entropy_with_logits(real_out, ones) + F.binary_cross_entropy_with_logits(fake_out,
                                                                                                          zeros)
        g_grads = torch.autograd.grad(loss_g, list(G.parameters()), retain_graph=True)
        d_grads = torch.autograd.grad(loss_d, list(D.parameters()))
        for p, g in zip(G.parameters(), g_grads, strict=True):
            p.grad = g
        for p, g in zip(D.parameters(), d_grads, strict=True):
            p.grad = g
        opt_g.step()
        opt_d.step()

    return step


def timed(step: Callable[[torch.Tensor], None], batches: list[torch.Tensor], steps: int, batch: int) -> float:
    for real in batches[:2]:  # warm-up (oneDNN primitive creation, allocator)
        step(real)
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return steps * batch / (time.perf_counter() - t0)


def plain_loop(real_batches: list[torch.Tensor], steps: int, batch: int) -> float:
    """Images/s of the plain eager fp32 loop."""
    return timed(plain_step(*_nets(), batch), real_batches, steps, batch)


def make_trainer(batch: int, precision: str, channels_last: bool, dataset, plain_dropout: bool = False) -> Trainer:
    cfg = load_config(None, {"train.batch_size": batch, "train.precision": precision,
                             "train.channels_last": channels_last, "train.device": "cpu"})
    trainer = Trainer(cfg, Run("/tmp/atelier-bench-unused"), GANTask, progress=False, dataset=dataset)
    if plain_dropout:
        torch_dropout(trainer.task.D)
    return trainer


def atelier_loop(batch: int, steps: int, precision: str, channels_last: bool, dataset,
                 plain_dropout: bool = False, nchw: bool = False) -> float:
    trainer = make_trainer(batch, precision, channels_last, dataset, plain_dropout)
    with nchw_handoffs(trainer.task.D) if nchw else contextlib.nullcontext():
        return timed(lambda _: trainer.train_step(), [None], steps,  # type: ignore[list-item]
                     batch)


# ---- ceilings and FLOP counts
def gemm_ceiling(n: int, reps: int) -> dict[str, float]:
    """GFLOP/s of an n^3 matrix product: torch.mm fp32 (MKL) and bf16, and fp32 through oneDNN (1x1 conv)."""
    def rate(fn: Callable[[], torch.Tensor]) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9

    a, b = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    x = torch.randn(1, n, n, 1).contiguous(memory_format=torch.channels_last)   # (1, K, M, 1)
    w = torch.randn(n, n, 1, 1).contiguous(memory_format=torch.channels_last)   # (N, K, 1, 1)
    return {"fp32 mm": rate(lambda: torch.mm(a, b)), "bf16 mm": rate(lambda: torch.mm(a16, b16)),
            "fp32 oneDNN": rate(lambda: F.conv2d(x, w))}


def count_flops(dataset, batch: int = 64) -> dict[str, float]:
    """Training FLOPs per image (matmuls and convolutions, forward + backward), counted, not assumed."""
    real = dataset.images[:batch].float() / 127.5 - 1
    out = {}
    for name, make in (("TF tutorial step", tutorial_step), ("plain PyTorch step", plain_step)):
        step = make(*_nets(), batch)
        with FlopCounterMode(display=False) as fc:
            step(real)
        out[name] = fc.get_total_flops() / batch
    trainer = make_trainer(batch, "fp32", False, dataset)
    with FlopCounterMode(display=False) as fc:
        trainer.train_step()
    out["atelier step"] = fc.get_total_flops() / batch
    return out


def profile_step(dataset, batch: int, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    trainer = make_trainer(batch, "bf16", True, dataset)
    for _ in range(3):
        trainer.train_step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_step()
    print(f"\ntorch.profiler, one atelier step (bf16 + channels_last, batch {batch}), top {rows} by self CPU time:\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=44))


def compare(args, dataset) -> None:
    batch = args.batch[0]
    real = [dataset.images[i * batch:(i + 1) * batch].float() / 127.5 - 1 for i in range(len(dataset) // batch)]
    flops = count_flops(dataset)
    print("| training step | MFLOP per image (counted) |\n|---|---:|")
    for name, f in flops.items():
        print(f"| {name} | {f / 1e6:,.1f} |")
    per_image = flops["TF tutorial step"]

    variants: dict[str, tuple[Callable[[], float], str]] = {
        "plain eager fp32": (lambda: plain_loop(real, args.steps, batch), "fp32"),
        "atelier fp32": (lambda: atelier_loop(batch, args.steps, "fp32", False, dataset), "fp32"),
        "atelier bf16 + channels_last + malloc thresholds, PyTorch's dropout, NCHW flatten": (
            lambda: atelier_loop(batch, args.steps, "bf16", True, dataset, plain_dropout=True, nchw=True), "bf16"),
        "the above + fast CPU dropout masks (NCHW order)": (
            lambda: atelier_loop(batch, args.steps, "bf16", True, dataset, nchw=True), "bf16"),
        "atelier default (the above + channels_last masks and flatten)": (
            lambda: atelier_loop(batch, args.steps, "bf16", True, dataset), "bf16"),
    }
    results: dict[str, list[float]] = {k: [] for k in variants}
    ceilings: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        # The ceiling is measured before and after the round's variants: on a shared machine the load moves.
        for name, (fn, _) in [("", (lambda: 0.0, "")), *variants.items()]:
            if name:
                results[name].append(fn())
            for k, v in gemm_ceiling(args.gemm, 3).items():
                ceilings.setdefault(k, []).append(v)
    ceil = {k: statistics.median(v) for k, v in ceilings.items()}
    fp32_ceiling = max(ceil["fp32 mm"], ceil["fp32 oneDNN"])
    print(f"\nGEMM ceiling, {args.gemm}^3, this run (GFLOP/s): " + ", ".join(f"{k} {v:,.0f}" for k, v in ceil.items()))
    print(f"\nbatch {batch}, {torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds of "
          f"{args.steps} steps; GFLOP/s at {per_image / 1e6:.0f} MFLOP per image; % of the GEMM ceiling of the "
          "variant's precision (fp32: the faster fp32 GEMM)\n")
    print("| implementation | images/s | GFLOP/s | % of GEMM ceiling | vs plain |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(results["plain eager fp32"])
    best = max(results, key=lambda k: statistics.median(results[k]))
    for name, vals in results.items():
        med = statistics.median(vals)
        ceiling = ceil["bf16 mm"] if variants[name][1] == "bf16" else fp32_ceiling
        gflops = med * per_image / 1e9
        label = f"**{name}** (best)" if name == best else name
        print(f"| {label} | {med:,.0f} | {gflops:,.0f} | {100 * gflops / ceiling:.0f}% | {med / base:.2f}x |")
    if args.allocator_pairs:
        allocator_ab(batch, args.steps, args.allocator_pairs)
    if args.profile:
        profile_step(dataset, batch, args.profile_rows)


def allocator_ab(batch: int, steps: int, pairs: int) -> None:
    """The malloc-threshold lever against glibc's real default, which adapts its mmap threshold at run time and
    cannot be restored once mallopt has been called: so each measurement is a fresh process, alternating."""
    import subprocess
    import sys

    ratios = []
    for _ in range(pairs):
        rate = {}
        for mode in ("off", "on"):
            out = subprocess.run([sys.executable, __file__, "--allocator-child", mode, "--batch", str(batch),
                                  "--steps", str(steps), "--threads", str(torch.get_num_threads())],
                                 capture_output=True, text=True, check=True).stdout
            rate[mode] = float(out.split()[-1])
        ratios.append(rate["on"] / rate["off"])
    print(f"\nglibc malloc thresholds (engine.tune_allocator) vs glibc's default, {pairs} alternating pairs of fresh "
          f"processes: median {statistics.median(ratios):.2f}x (" + ", ".join(f"{r:.2f}" for r in ratios) + ")")


def allocator_child(mode: str, batch: int, steps: int) -> None:
    import atelier.training.loop as loop

    if mode == "off":
        loop.tune_allocator = lambda on=True: False  # type: ignore[assignment]
    dataset = open_source("mnist", channels=1, resolution=28, limit=4096)
    print(atelier_loop(batch, steps, "bf16", True, dataset))


@torch.no_grad()
def sampling(batch: int, reps: int) -> float:
    G = Generator(DCGANConfig(), resolution=28, channels=1).eval()
    z = torch.randn(batch, 100)
    for _ in range(3):
        G(z)
    t0 = time.perf_counter()
    for _ in range(reps):
        G(z)
    return reps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--variants", nargs="+", default=["fp32", "fp32+cl", "bf16", "bf16+cl"])
    ap.add_argument("--compare", action="store_true",
                    help="atelier vs plain eager fp32 vs the best variant, with GFLOP/s and %% of the GEMM ceiling "
                         "(first --batch only)")
    ap.add_argument("--gemm", type=int, default=2048, help="matrix size of the GEMM ceiling (--compare)")
    ap.add_argument("--profile", action="store_true", help="with --compare: profile one training step")
    ap.add_argument("--profile-rows", type=int, default=12)
    ap.add_argument("--allocator-pairs", type=int, default=0,
                    help="with --compare: fresh-process A/B pairs of the malloc-threshold lever")
    ap.add_argument("--allocator-child", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator_child:
        allocator_child(args.allocator_child, args.batch[0], args.steps)
        return

    dataset = open_source("mnist", channels=1, resolution=28, limit=8192)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    if args.compare:
        compare(args, dataset)
        return
    print("| batch | implementation | images/s | GFLOP/s | ratio vs plain |")
    print("|---:|---|---:|---:|---:|")
    for batch in args.batch:
        real = [dataset.images[i * batch:(i + 1) * batch].float() / 127.5 - 1
                for i in range(len(dataset) // batch)]
        results: dict[str, list[float]] = {"plain eager fp32": []}
        for v in args.variants:
            results[f"atelier {v}"] = []
        for _ in range(args.rounds):
            results["plain eager fp32"].append(plain_loop(real, args.steps, batch))
            for v in args.variants:
                prec, _, cl = v.partition("+")
                results[f"atelier {v}"].append(atelier_loop(batch, args.steps, prec, bool(cl), dataset))
        base = statistics.median(results["plain eager fp32"])
        for name, vals in results.items():
            med = statistics.median(vals)
            print(f"| {batch} | {name} | {med:,.0f} | {med * FLOP_PER_IMAGE / 1e9:,.0f} | {med / base:.2f}x |")
    print("\n| sampling batch | images/s | latency per batch (ms) |")
    print("|---:|---:|---:|")
    for batch, reps in ((1, 200), (256, 20)):
        rate = statistics.median(sampling(batch, reps) for _ in range(args.rounds))
        print(f"| {batch} | {rate:,.0f} | {batch / rate * 1000:.2f} |")


if __name__ == "__main__":
    main()
