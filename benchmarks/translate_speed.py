"""pix2pix speed on this machine: training images/s and translate latency per image.

Both the CPU config (128 px, ngf 32, batch 4) and the paper's (256 px, ngf 64, batch 1) are timed in
one process, plus a plain eager loop of the paper's step written here (same networks, no atelier
trainer) as the reference for the trainer's overhead.

    ATELIER_DATA=../shared/data python benchmarks/translate_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from atelier.models.pix2pix import PatchDiscriminator, Pix2PixConfig, UNetGenerator
from atelier.runs import Run, load_config
from atelier.tasks.pix2pix import Pix2PixTask
from atelier.training import Trainer

REPO = Path(__file__).resolve().parents[1]


def trainer_rate(config: str, steps: int) -> tuple[float, int]:
    cfg = load_config(REPO / "configs" / config, {"train.device": "cpu", "data.limit": 32})
    tr = Trainer(cfg, Run("/tmp/atelier-bench-unused"), Pix2PixTask, progress=False)
    for _ in range(2):
        tr.train_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    return steps * cfg.train.batch_size / (time.perf_counter() - t0), cfg.data.resolution


def plain_rate(resolution: int, ngf: int, batch: int, steps: int) -> float:
    cfg = Pix2PixConfig(ngf=ngf, ndf=ngf)
    G = UNetGenerator(cfg, resolution=resolution, channels=3)
    D = PatchDiscriminator(cfg, resolution=resolution, channels=3)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randn(batch, 3, resolution, resolution)

    def step() -> None:
        fake = G(x)
        real_l, fake_l = D(torch.cat([x, y], 1)), D(torch.cat([x, fake.detach()], 1))
        loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_l, torch.ones_like(real_l))
                        + F.binary_cross_entropy_with_logits(fake_l, torch.zeros_like(fake_l)))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        g_l = D(torch.cat([x, fake], 1))
        loss_g = F.binary_cross_entropy_with_logits(g_l, torch.ones_like(g_l)) + 100 * (fake - y).abs().mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


@torch.no_grad()
def latency_ms(resolution: int, ngf: int, reps: int) -> float:
    G = UNetGenerator(Pix2PixConfig(ngf=ngf), resolution=resolution, channels=3).eval()
    x = torch.randn(1, 3, resolution, resolution)
    for _ in range(3):
        G(x)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        G(x)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| what | resolution | images/s |")
    print("|---|---:|---:|")
    for config in ("facades-pix2pix.yaml", "facades-pix2pix-paper.yaml"):
        rate, res = trainer_rate(config, args.steps)
        print(f"| atelier trainer, {config} | {res} | {rate:.1f} |")
    print(f"| plain eager loop, paper model, batch 1 | 256 | {plain_rate(256, 64, 1, args.steps):.1f} |")
    print("\n| translate one image | ms (median) |")
    print("|---|---:|")
    print(f"| 256x256, paper U-Net (ngf 64) | {latency_ms(256, 64, 20):.1f} |")
    print(f"| 128x128, CPU U-Net (ngf 32) | {latency_ms(128, 32, 20):.1f} |")


if __name__ == "__main__":
    main()
