"""Training and sampling speed of the StyleGAN2-type family (atelier.models.stylegan2) on this CPU.

Compared in one process, interleaved round by round, at 64 px:

- **plain**: the same architecture and parameters written here the textbook way: every sample convolved
  with its own modulated and demodulated weight (a grouped convolution), explicit activation gains and
  residual scaling, fp32, default memory format, separate D(real) and D(fake) calls;
- **plain-shared**: the same, but each modulated conv as StyleGAN2-ADA's non-fused path (scale the input,
  one shared-weight conv, scale the output), step by step;
- **atelier** networks: one shared-weight convolution per layer with the demodulation and gains deferred
  to the next layer (see the model file), D over real and fake in one call, in fp32 / bf16 autocast and
  NCHW / channels_last;
- **trainer** (``--trainer``): atelier's StyleGAN2 task through the one training loop (bf16 + channels_last, lazy
  R1 and path length at the same intervals; path length on half the batch, as the task does).

Every loop runs the full StyleGAN2 step: D (non-saturating loss) with lazy R1 every ``--r1-every`` steps,
then G with style mixing and lazy path length every ``--pl-every`` steps on half the batch; the timed steps
are a multiple of both intervals, so the regularisers are amortised exactly. GFLOP/s use the FLOPs counted
(torch.utils.flop_counter) for that amortised step; the GEMM ceiling is measured in the same run.

    python benchmarks/stylegan_speed.py                       # 64 px, batch 32, the CPU default widths
    python benchmarks/stylegan_speed.py --width 32 --width-max 256 --rounds 3
    python benchmarks/stylegan_speed.py --profile             # + torch.profiler's top entries of the best step
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from train_speed import gemm_ceiling

from atelier.losses import path_length_penalty, r1_penalty
from atelier.models import build
from atelier.models.stylegan2 import minibatch_std, random_mix

SQRT2 = math.sqrt(2.0)


# ---------------------------------------------------------------- the textbook networks (plain reference)
def grouped_modconv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                    up: str | None = None) -> torch.Tensor:
    """Per-sample weight modulation (StyleGAN2 eq. 1-3) as one grouped (transposed) convolution."""
    B, C, H, W = x.shape
    w = weight[None] * styles[:, None, :, None, None]                       # (B, O, C, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt() * (2 if up == "transpose" else 1)
    if up == "transpose":
        out = F.conv_transpose2d(x.reshape(1, B * C, H, W), w.transpose(1, 2).reshape(B * C, -1, *w.shape[3:]),
                                 stride=2, padding=1, groups=B)
        return out.reshape(B, -1, 2 * H, 2 * W)
    if up == "bilinear":
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        B, C, H, W = x.shape
    out = F.conv2d(x.reshape(1, B * C, H, W), w.reshape(-1, C, *w.shape[3:]), padding=weight.shape[-1] // 2,
                   groups=B)
    return out.reshape(B, -1, H, W)


def shared_modconv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                   up: str | None = None) -> torch.Tensor:
    """The same maths with one shared weight, step by step: scale the input, convolve, scale the output
    (StyleGAN2-ADA's non-fused path), with no deferral of scales and no in-place ops."""
    x = x * styles[:, :, None, None]
    if up == "transpose":
        out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=1)
    else:
        if up == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if not demodulate:
        return out
    d = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt() * (2 if up == "transpose" else 1)
    return out * d[:, :, None, None]


def plain_synthesis(G, ws: torch.Tensor, modconv=grouped_modconv) -> torch.Tensor:
    def layer(conv, h, w):
        h = modconv(h, conv.weight * conv.w_gain, conv.affine(w), True, conv.up)
        h = h + torch.randn(h.shape[0], 1, *h.shape[2:]) * conv.noise_strength
        return F.leaky_relu(h + conv.bias[:, None, None], 0.2) * SQRT2

    def to_rgb(rgb, h, w):
        return modconv(h, rgb.weight * rgb.w_gain, rgb.affine(w), False) + rgb.bias[:, None, None]

    h = layer(G.convs[0], G.const.expand(ws.shape[0], -1, -1, -1), ws[:, 0])
    img = to_rgb(G.torgbs[0], h, ws[:, 1])
    for i in range(1, len(G.torgbs)):
        h = layer(G.convs[2 * i], layer(G.convs[2 * i - 1], h, ws[:, 2 * i - 1]), ws[:, 2 * i])
        img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(G.torgbs[i], h,
                                                                                               ws[:, 2 * i + 1])
    return img


def plain_mapping(G, z: torch.Tensor) -> torch.Tensor:
    B = z.shape[0]
    ws = G.mapping(torch.cat([z, torch.randn_like(z)]), update_w_avg=True)
    return random_mix(ws[:B], ws[B:], G.mixing_prob)


def plain_D(D, x: torch.Tensor) -> torch.Tensor:
    def conv(layer, h, act=True):
        if layer.down:
            h = F.avg_pool2d(h, 2)
        out = F.conv2d(h, layer.weight / math.sqrt(layer.weight[0].numel()), layer.bias,
                       padding=layer.weight.shape[-1] // 2)
        return F.leaky_relu(out, 0.2) * SQRT2 if act else out

    h = conv(D.from_rgb, x)
    for block in D.blocks:
        h = (conv(block.skip, h, act=False) + conv(block.conv1, conv(block.conv0, h))) / SQRT2
    h = conv(D.conv, minibatch_std(h, D.mbstd_group)).flatten(1)
    h = F.leaky_relu(F.linear(h, D.fc.weight / math.sqrt(h.shape[1]), D.fc.bias), 0.2) * SQRT2
    return F.linear(h, D.out.weight / math.sqrt(h.shape[1]), D.out.bias)


class PlainG(torch.nn.Module):
    """The textbook generator over atelier's parameters (so both loops train the identical architecture)."""

    def __init__(self, G, modconv) -> None:
        super().__init__()
        self.G, self.modconv = G, modconv

    def mapping(self, z, y=None):
        return self.G.mapping(z, y)

    def synthesis(self, ws, noise_mode="random"):
        return plain_synthesis(self.G, ws, self.modconv)


# ---------------------------------------------------------------- the loops
def nets(args, upsample: str | None = None):
    torch.manual_seed(0)
    n = build({"name": "stylegan2", "width": args.width, "width_max": args.width_max,
               "upsample": upsample or args.upsample}, 64, 3)
    return n["G"].train(), n["D"].train()


def adam(module):
    return torch.optim.Adam(module.parameters(), lr=2e-3, betas=(0.0, 0.99))


def make_step(args, variant: str) -> Callable[[torch.Tensor, int], None]:
    """One full training step; ``variant`` is "plain", "plain-shared" or "<fp32|bf16>[+cl][+noreg][+transpose]"
    (atelier's networks; noreg: without the lazy regularisers, to show their share; transpose: G upsamples
    with a 4x4 transposed conv instead of --upsample)."""
    plain = variant.startswith("plain")
    modconv = shared_modconv if variant == "plain-shared" else grouped_modconv
    prec, _, rest = ("fp32", "", "") if plain else variant.partition("+")
    cl, noreg = "cl" in rest.split("+"), "noreg" in rest.split("+")
    G, D = nets(args, "transpose" if "transpose" in rest.split("+") else None)
    opt_g, opt_d = adam(G), adam(D)
    if cl:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16")
    pl_mean = torch.zeros(())
    gamma = 0.0002 * 64**2 / args.batch   # StyleGAN2-ADA's heuristic R1 weight

    def g_fwd(z):
        return plain_synthesis(G, plain_mapping(G, z), modconv) if plain else G(z)

    def d_fwd(x):
        return plain_D(D, x) if plain else D(x)

    def step(real: torch.Tensor, i: int) -> None:
        nonlocal pl_mean
        B = real.shape[0]
        if cl:
            real = real.contiguous(memory_format=torch.channels_last)
        z = torch.randn(B, 128)
        with amp:
            fake = g_fwd(z)
            if plain:
                logits_r, logits_f = d_fwd(real), d_fwd(fake.detach())
            else:
                logits = d_fwd(torch.cat([real, fake.detach()]))
                logits_r, logits_f = logits[:B], logits[B:]
        loss_d = F.softplus(-logits_r.float()).mean() + F.softplus(logits_f.float()).mean()
        if i % args.r1_every == 0 and not noreg:
            loss_d = loss_d + r1_penalty(d_fwd, real) * (gamma / 2 * args.r1_every)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        D.requires_grad_(False)
        with amp:
            loss_g = F.softplus(-d_fwd(fake).float()).mean()
        if i % args.pl_every == 0 and not noreg:
            pen, pl_mean = path_length_penalty(PlainG(G, modconv) if plain else G, z, None, pl_mean,
                                               batch_shrink=args.pl_shrink)
            loss_g = loss_g + pen * (2.0 * args.pl_every)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)

    return step


def trainer_step(args, batches: list[torch.Tensor]) -> Callable[[torch.Tensor, int], None]:
    from atelier import families
    from atelier.api import prepare
    from atelier.data import ImageDataset
    from atelier.training import Trainer

    dataset = ImageDataset(((torch.cat(batches) + 1) * 127.5).round().to(torch.uint8), None, "bench")
    overrides = {"model.name": "stylegan2", "model.width": args.width, "model.width_max": args.width_max,
                 "model.upsample": args.upsample, "model.pl_weight": 2.0, "model.pl_every": args.pl_every,
                 "data.source": "bench", "data.resolution": 64, "data.channels": 3, "train.batch_size": args.batch,
                 "train.device": "cpu", "loss.r1_gamma": 0.0002 * 64**2 / args.batch, "loss.r1_every": args.r1_every,
                 "optim.betas": [0.0, 0.99]}
    cfg, _ = prepare(None, "/tmp/atelier-bench-unused", overrides)
    trainer = Trainer(cfg, "/tmp/atelier-bench-unused", families.get("stylegan2").task, progress=False,
                      dataset=dataset)

    def step(real: torch.Tensor, i: int) -> None:
        trainer.ctx.step = i + 1  # the task's lazy regularisers run at (step - 1) % every == 0, as in the loop
        trainer.task.step(real, None)

    return step


def timed(step, batches: list[torch.Tensor], steps: int) -> float:
    step(batches[0], 1)                   # warm-up (oneDNN primitives, allocator), no regulariser
    step(batches[1 % len(batches)], 0)    # and once with both regularisers
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)], i)
    return steps * batches[0].shape[0] / (time.perf_counter() - t0)


class CountFlops(TorchDispatchMode):
    """torch.utils.flop_counter's formulas without FlopCounterMode's module hooks, which reject the
    ``autograd.grad(create_graph=True)`` calls of the regularisers."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(args, real: torch.Tensor) -> dict[str, float]:
    """FLOPs per image (matmuls and convolutions, forward and backward) of the fp32 step: without regularisers,
    and amortised over one cycle of both intervals."""
    step = make_step(args, "fp32")
    with CountFlops() as fc:
        step(real, 1)
    out = {"step without regularisers": fc.total / real.shape[0]}
    cycle = math.lcm(args.r1_every, args.pl_every)
    with CountFlops() as fc:
        for i in range(cycle):
            step(real, i)
    out["amortised step"] = fc.total / real.shape[0] / cycle
    return out


# ---------------------------------------------------------------- sampling
@torch.no_grad()
def sampling(args, batch: int, reps: int, how: str) -> float:
    G, _ = nets(args)
    G.eval()
    z = torch.randn(batch, 128)
    if how == "onnx":
        from atelier.export import onnx_session

        sess = onnx_session(G, {"z": torch.randn(2, 128)}, threads=torch.get_num_threads())
        fn = lambda: sess.run(None, {"z": z.numpy()})  # noqa: E731
    elif how == "bf16+cl":
        G.to(memory_format=torch.channels_last)

        def fn():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return G(z)
    else:
        fn = lambda: G(z)  # noqa: E731
    for _ in range(2):
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return reps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--width-max", type=int, default=128)
    ap.add_argument("--upsample", choices=["transpose", "bilinear"], default="bilinear")
    ap.add_argument("--steps", type=int, default=16, help="timed steps per measurement (a multiple of the intervals)")
    ap.add_argument("--rounds", type=int, default=3)
    # CPU-sized lazy intervals (StyleGAN2: R1 every 16, path length every 4 on half the batch); see the report.
    ap.add_argument("--r1-every", type=int, default=16)
    ap.add_argument("--pl-every", type=int, default=8)
    ap.add_argument("--pl-shrink", type=int, default=4, help="path length on batch / pl-shrink latents")
    ap.add_argument("--variants", nargs="*", default=["plain", "plain-shared", "fp32", "fp32+cl", "bf16", "bf16+cl"],
                    help="training variants to time (none: sampling only)")
    ap.add_argument("--trainer", action="store_true", help="also time atelier's StyleGAN2 task through its trainer")
    ap.add_argument("--no-sampling", action="store_true")
    ap.add_argument("--gemm", type=int, default=2048)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batches = [torch.rand(args.batch, 3, 64, 64) * 2 - 1 for _ in range(2)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 64 px, batch {args.batch}, widths "
          f"{args.width}..{args.width_max}, {args.upsample} upsampling; R1 every {args.r1_every}, "
          f"path length every {args.pl_every} on 1/{args.pl_shrink} of the batch\n")
    flops = count_flops(args, batches[0])
    print("| training step (fp32, counted) | GFLOP per image |\n|---|---:|")
    for k, v in flops.items():
        print(f"| {k} | {v / 1e9:.2f} |")
    per_image = flops["amortised step"]

    runs: dict[str, Callable[[], float]] = {v: (lambda v=v: timed(make_step(args, v), batches, args.steps))
                                            for v in args.variants}
    if args.trainer:
        runs["atelier trainer (bf16+cl)"] = lambda: timed(trainer_step(args, batches), batches, args.steps)
    results: dict[str, list[float]] = {k: [] for k in runs}
    ceilings: dict[str, list[float]] = {}
    for _ in range(args.rounds if runs else 0):
        for name, fn in runs.items():
            results[name].append(fn())
        for k, v in gemm_ceiling(args.gemm, 3).items():
            ceilings.setdefault(k, []).append(v)
    ceil = {k: statistics.median(v) for k, v in ceilings.items()}
    if runs:
        print(f"\nGEMM ceiling, {args.gemm}^3, this run (GFLOP/s): "
              + ", ".join(f"{k} {v:,.0f}" for k, v in ceil.items()))
        print(f"\nmedian of {args.rounds} interleaved rounds of {args.steps} steps; GFLOP/s at "
              f"{per_image / 1e9:.2f} GFLOP per image\n")
        print("| implementation | images/s | GFLOP/s | % of GEMM ceiling | vs plain |\n|---|---:|---:|---:|---:|")
    base = statistics.median(results["plain"]) if "plain" in results else float("nan")
    for name, vals in results.items():
        med = statistics.median(vals)
        ceiling = ceil["bf16 mm"] if "bf16" in name else max(ceil["fp32 mm"], ceil["fp32 oneDNN"])
        g = med * (flops["step without regularisers"] if "noreg" in name else per_image) / 1e9
        print(f"| {name} | {med:.1f} | {g:.0f} | {100 * g / ceiling:.0f}% | {med / base:.2f}x |")

    if not args.no_sampling:
        print("\n| sampling (eval, const noise) | batch 1 images/s | batch 64 images/s |\n|---|---:|---:|")
        for name, how in (("PyTorch eager fp32", "fp32"), ("PyTorch eager bf16 + channels_last", "bf16+cl"),
                          ("ONNX Runtime fp32", "onnx")):
            r1 = statistics.median(sampling(args, 1, 30, how) for _ in range(args.rounds))
            r64 = statistics.median(sampling(args, 64, 3, how) for _ in range(args.rounds))
            print(f"| {name} | {r1:.1f} | {r64:.1f} |")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        best = max((k for k in results if k in args.variants and not k.startswith("plain")),
                   key=lambda k: statistics.median(results[k]))
        step = make_step(args, best)
        step(batches[0], 1)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(batches[0], 1)
        print(f"\ntorch.profiler, one {best} step without regularisers, top 15 by self CPU time:\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))


if __name__ == "__main__":
    main()
