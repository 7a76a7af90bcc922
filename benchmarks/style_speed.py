"""Style transfer speed on this machine, in one process run, printed as tables.

    PYTHONPATH=src python benchmarks/style_speed.py [--gatys-steps 10] [--full] [--train-steps 20]
                                                    [--model runs/starry] [--only forward]

* Gatys: seconds per optimisation step (Adam, one forward + backward) at 256 and 512 px with the
  weights-free network and with VGG-19 (randomly initialised: the timing is the same as with ImageNet
  weights), extrapolated to 300 steps from ``--gatys-steps`` measured steps (``--full`` runs all 300).
* Feed-forward: milliseconds per image at 256 / 512 / 1024 px (median of 5 after a warm-up) for the lean
  default network, Johnson's layout at the old default size (width 16, 3 blocks) and at the paper's
  (width 32, 5 blocks), in fp32, bf16 autocast and bf16 + channels-last, with GFLOP per 512 px image.
  Every row is measured in the same process, so compare ratios: absolute numbers move with the load.
* Quality of bf16 (``--model RUN``): the trained network's output under bf16 autocast against fp32 on the
  shared content photos at 512 px — largest and mean difference in 8-bit grey levels, and PSNR.
* Training: seconds per train-style step (lean network, weights-free losses) for the README's CPU recipe
  (128 px crops, batch 2) and the defaults (256 px, batch 4).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from atelier.models.fast_style import FastStyleConfig, TransformerNet
from atelier.style.features import RandomFeatures, VGG19Features
from atelier.style.gatys import image_to_tensor, stylize

NETWORKS = {  # the first is the reference of the ratio column
    "johnson layout, width 16, 3 res blocks (before)": dict(arch="johnson", width=16, res_blocks=3),
    "lean (default: width 16, 3 res blocks)": dict(arch="lean", width=16, res_blocks=3),
    "johnson layout, width 32, 5 res blocks (paper)": dict(arch="johnson", width=32, res_blocks=5),
}
MODES = {"fp32": (False, False), "bf16": (True, False), "bf16 + channels-last": (True, True)}


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


def gflop(net: TransformerNet, size: int) -> float:
    """Multiply-adds x 2 of every convolution for one size x size image."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += 2 * output.numel() * k

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(1, 3, size, size))
    for h in hooks:
        h.remove()
    return total / 1e9


@torch.no_grad()
def forward_ms(net: TransformerNet, size: int, bf16: bool, channels_last: bool, repeats: int = 5) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    x = torch.rand(1, 3, size, size).contiguous(memory_format=fmt)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(x)
        if i:  # the first call is a warm-up (oneDNN picks its kernels)
            times.append(time.perf_counter() - t0)
    net.to(memory_format=torch.contiguous_format)
    return statistics.median(times) * 1000


def bf16_quality(run_dir: str, size: int = 512) -> None:
    import atelier

    model = atelier.load(run_dir)
    data = Path(os.environ.get("ATELIER_DATA", "../shared/data")) / "content"
    print(f"\nbf16 autocast vs fp32, {run_dir} at {size} px (8-bit outputs)")
    print("| photo | max difference | mean difference | PSNR |\n|---|---:|---:|---:|")
    for photo in sorted(data.iterdir()):
        x = image_to_tensor(photo, size)
        outs = []
        for precision in ("fp32", "bf16"):
            outs.append((model.set_precision(precision).stylize_tensor(x) * 255).round())
        d = (outs[0] - outs[1]).abs()
        mse = float(d.pow(2).mean())
        psnr = 10 * torch.log10(torch.tensor(255.0**2 / max(mse, 1e-12)))
        print(f"| {photo.stem} | {int(d.max())} | {float(d.mean()):.2f} | {float(psnr):.1f} dB |", flush=True)


def train_seconds_per_step(steps: int, size: int, batch_size: int) -> float:
    from atelier.api import train_style

    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for i in range(3):
            _image(384, 10 + i).save(photos / f"{i}.png")
        _image(256, 99).save(Path(tmp) / "style.png")
        r = train_style(Path(tmp) / "run", style=[str(Path(tmp) / "style.png")], content_dir=str(photos),
                        features="random", progress=False,
                        overrides={"data.resolution": size, "train.batch_size": batch_size, "train.steps": steps,
                                   "log.sample_every": 10_000, "log.checkpoint_every": 10_000,
                                   "log.tensorboard": False})
        return r.seconds / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gatys-steps", type=int, default=10)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--full", action="store_true", help="time all 300 Gatys steps instead of extrapolating")
    ap.add_argument("--model", help="a train-style run folder: compare its bf16 and fp32 outputs")
    ap.add_argument("--only", nargs="*", choices=["gatys", "forward", "quality", "train"],
                    default=["gatys", "forward", "quality", "train"])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "gatys" in args.only:
        steps = 300 if args.full else args.gatys_steps
        print(f"\nGatys optimisation (Adam; seconds for 300 steps, from {steps} timed steps)")
        print("| features | 256 px | 512 px |\n|---|---:|---:|")
        torch.manual_seed(0)
        for name, feats in (("weights-free random", RandomFeatures()), ("VGG-19", VGG19Features())):
            row = [gatys_seconds(feats, s, steps) * 300 for s in (256, 512)]
            print(f"| {name} | {row[0]:.0f} s | {row[1]:.0f} s |", flush=True)
    if "forward" in args.only:
        print("\nFeed-forward network (one image, median ms; ratio at 512 px = time / the first row's)")
        print("| network | parameters | GFLOP at 512 px | precision | 256 px | 512 px | 1024 px | ratio at 512 |")
        print("|---|---:|---:|---|---:|---:|---:|---:|")
        base = None
        for label, cfg in NETWORKS.items():
            torch.manual_seed(0)
            net = TransformerNet(FastStyleConfig(**cfg), resolution=256).eval()
            params, gf = sum(p.numel() for p in net.parameters()), gflop(net, 512)
            for mode, (bf16, cl) in MODES.items():
                ms = [forward_ms(net, s, bf16, cl) for s in (256, 512, 1024)]
                base = base or ms[1]
                print(f"| {label} | {params:,} | {gf:.1f} | {mode} | {ms[0]:.0f} | {ms[1]:.0f} | {ms[2]:.0f} | "
                      f"{ms[1] / base:.2f} |", flush=True)
    if "quality" in args.only and args.model:
        bf16_quality(args.model)
    if "train" in args.only:
        print("\ntrain-style, lean network, weights-free losses (seconds per step; minutes per 1000 steps)")
        print("| crops | batch | s/step | min per 1000 steps |\n|---|---:|---:|---:|")
        for size, batch in ((128, 2), (256, 4)):  # the README's CPU recipe, then the defaults
            sec = train_seconds_per_step(args.train_steps, size, batch)
            print(f"| {size} px | {batch} | {sec:.2f} | {sec * 1000 / 60:.0f} |", flush=True)


if __name__ == "__main__":
    main()
