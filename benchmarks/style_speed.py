"""Style transfer speed on this machine, in one process run, printed as a table.

    PYTHONPATH=src python benchmarks/style_speed.py [--gatys-steps 10] [--train-steps 20] [--full]

* Gatys: seconds per optimisation step (Adam, one forward + backward) at 256 and 512 px with the
  weights-free network and with VGG-19 (randomly initialised: the timing is the same as with ImageNet
  weights), extrapolated to 300 steps from ``--gatys-steps`` measured steps (``--full`` runs all 300).
* Feed-forward: milliseconds per image for the default TransformerNet (width 16, 3 residual blocks) and
  Johnson's original size (width 32, 5 blocks), fp32, at 256 / 512 / 1024 px (median of 5 after warm-up).
* Training: seconds per train-style step (batch 2, 128 px crops, weights-free losses).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from atelier.style.fast import TransformerNet
from atelier.style.features import RandomFeatures, VGG19Features
from atelier.style.gatys import stylize


def _image(size: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, size // 16, size // 16, generator=g), size=(size, size),
                                        mode="bilinear")
    return Image.fromarray((x[0].permute(1, 2, 0) * 255).byte().numpy())


def gatys_seconds(net, size: int, steps: int) -> float:
    content, style = _image(size, 0), _image(size, 1)
    stylize(content, style, size=size, steps=1, features=net, progress=False)  # warm-up
    r = stylize(content, style, size=size, steps=steps, features=net, progress=False)
    return r.seconds / steps


@torch.no_grad()
def forward_ms(net: TransformerNet, size: int, repeats: int = 5) -> float:
    x = torch.rand(1, 3, size, size)
    net(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def train_seconds_per_step(steps: int) -> float:
    from atelier.training.style import train_style

    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for i in range(3):
            _image(192, 10 + i).save(photos / f"{i}.png")
        _image(128, 99).save(Path(tmp) / "style.png")
        r = train_style(Path(tmp) / "run", style=[str(Path(tmp) / "style.png")], content_dir=str(photos), size=128,
                        steps=steps, batch_size=2, features="random", progress=False,
                        log={"sample_every": 10_000, "checkpoint_every": 10_000, "tensorboard": False})
        return r.seconds / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gatys-steps", type=int, default=10)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--full", action="store_true", help="time all 300 Gatys steps instead of extrapolating")
    args = ap.parse_args()
    steps = 300 if args.full else args.gatys_steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"Gatys optimisation (Adam; seconds for 300 steps, from {steps} timed steps)")
    print("| features | 256 px | 512 px |\n|---|---:|---:|")
    torch.manual_seed(0)
    for name, net in (("weights-free random", RandomFeatures()), ("VGG-19", VGG19Features())):
        row = [gatys_seconds(net, s, steps) * 300 for s in (256, 512)]
        print(f"| {name} | {row[0]:.0f} s | {row[1]:.0f} s |", flush=True)
    print("\nFeed-forward network (fp32, one image, median ms)")
    print("| network | parameters | 256 px | 512 px | 1024 px |\n|---|---:|---:|---:|---:|")
    for label, cfg in (("atelier default (width 16, 3 res blocks)", dict(width=16, res_blocks=3)),
                       ("Johnson et al. (width 32, 5 res blocks)", dict(width=32, res_blocks=5))):
        net = TransformerNet(**cfg).eval()
        params = sum(p.numel() for p in net.parameters())
        ms = [forward_ms(net, s) for s in (256, 512, 1024)]
        print(f"| {label} | {params:,} | {ms[0]:.0f} | {ms[1]:.0f} | {ms[2]:.0f} |", flush=True)
    sec = train_seconds_per_step(args.train_steps)
    print(f"\ntrain-style: {sec:.2f} s per step (batch 2, 128 px, weights-free losses) -> "
          f"{sec * 300 / 60:.1f} min for 300 steps")


if __name__ == "__main__":
    main()
