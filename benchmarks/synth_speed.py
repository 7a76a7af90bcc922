"""Where the time of `atelier synth` goes: generating, labelling with the domain classifier, writing.

    PYTHONPATH=src python benchmarks/synth_speed.py runs/mnist-vae --n 5000

Prints one table (seconds and images per second of each stage, measured in this one process, and each
stage's share), so the figures compare within one run even on a shared, loaded machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import atelier
from atelier.api.synth import synthesize, write_folder, write_npz
from atelier.metrics import load_evaluator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--folder-n", type=int, default=500, help="images written as a PNG folder (slower per image)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    g = atelier.load(args.run)
    rows: list[tuple[str, int, float]] = []
    t = time.perf_counter()
    images = g.sample(args.n, seed=0)
    rows.append(("generate (decoder / G)", args.n, time.perf_counter() - t))
    ev = load_evaluator("digits")
    t = time.perf_counter()
    ev(images)
    rows.append(("label (digits classifier)", args.n, time.perf_counter() - t))
    s = synthesize(g, args.n, seed=0, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_npz(s, Path(tmp) / "s.npz")
        rows.append(("write .npz (compressed)", args.n, time.perf_counter() - t))
        s.images, s.labels = s.images[: args.folder_n], s.labels[: args.folder_n]
        t = time.perf_counter()
        write_folder(s, Path(tmp) / "folder", progress=False)
        rows.append(("write PNG folder (save_image)", args.folder_n, time.perf_counter() - t))

    per_image = {name: sec / n for name, n, sec in rows}
    total = sum(per_image[name] for name, _, _ in rows[:3])
    print(f"{args.run.name}: {args.n:,} images, 1 thread")
    print(f"{'stage':<32} {'images':>7} {'seconds':>8} {'img/s':>8} {'share of npz path':>18}")
    for name, n, sec in rows:
        share = f"{per_image[name] / total:.0%}" if name != rows[3][0] else "-"
        print(f"{name:<32} {n:>7,} {sec:>8.2f} {n / sec:>8,.0f} {share:>18}")


if __name__ == "__main__":
    main()
