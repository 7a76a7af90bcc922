"""Training and sampling speed of the MNIST DCGAN: atelier's trainer vs a plain eager fp32 loop.

The reference loop is written here from scratch with the identical architecture (atelier's
Generator/Discriminator classes, default PyTorch memory format, fp32, separate D(real)/D(fake)
calls), so the ratio isolates what atelier's trainer adds or saves. Both run in this one process,
interleaved, on the same synthetic-free data (MNIST from ATELIER_DATA / the cache).

    python benchmarks/train_speed.py                    # batch 64 and 256, fp32 and bf16
    python benchmarks/train_speed.py --batch 256 --steps 30 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from atelier.config import load_config
from atelier.data import open_source
from atelier.models.dcgan import Discriminator, Generator
from atelier.training import GANTrainer

FLOP_PER_IMAGE = 452e6  # the TF-tutorial DCGAN's training FLOPs per image (PERF.md)


def plain_loop(real_batches: list[torch.Tensor], steps: int, batch: int) -> float:
    """The textbook PyTorch DCGAN step, fp32, default memory format. Returns images/s."""
    torch.manual_seed(0)
    G, D = Generator(), Discriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
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

    for real in real_batches[:3]:  # warm-up
        step(real)
    t0 = time.perf_counter()
    for i in range(steps):
        step(real_batches[i % len(real_batches)])
    return steps * batch / (time.perf_counter() - t0)


def atelier_loop(batch: int, steps: int, precision: str, channels_last: bool, dataset) -> float:
    cfg = load_config(None, {"train.batch_size": batch, "train.precision": precision,
                             "train.channels_last": channels_last, "train.device": "cpu"})
    trainer = GANTrainer(cfg, "/tmp/atelier-bench-unused", dataset=dataset, progress=False)
    for _ in range(3):
        trainer.train_step(trainer.loader.next()[0])
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(trainer.loader.next()[0])
    return steps * batch / (time.perf_counter() - t0)


@torch.no_grad()
def sampling(batch: int, reps: int) -> float:
    G = Generator().eval()
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
    args = ap.parse_args()

    dataset = open_source("mnist", channels=1, resolution=28, limit=8192)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
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
