"""Inpainting and editing of MNIST test digits with a trained diffusion run, by measurement.

For ``--n`` test digits and each mask (``centre``: a 12x12 hole in the middle; ``half``: the bottom 14 rows;
``strokes``: three random 3-px-wide strokes per image), the table gives the mean absolute error inside the
hole (0-255 levels), the share of repaired digits the domain classifier (atelier's digits evaluator) reads as
the original digit, and denoiser calls per image; "hole left black" is the same classifier on the damaged input
(the floor inpainting must beat), "original" on the untouched digits (the ceiling). For a class-conditional run
inpainting is given the digit's class (guidance at the run's scale) only with ``--with-class``.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diffusion_inpaint.py runs/mnist-diffusion --n 200

It also writes ``--figure``: for the first 8 digits and each mask, rows of input-with-hole and repaired digit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import atelier
from atelier.data import open_source
from atelier.diffusion import repaint_schedule
from atelier.imageio import save_image
from atelier.images import make_grid
from atelier.metrics import load_evaluator


def masks(kind: str, n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 1, size, size) bool holes."""
    m = torch.zeros(n, 1, size, size, dtype=torch.bool)
    if kind == "centre":
        lo = (size - 12) // 2
        m[..., lo:lo + 12, lo:lo + 12] = True
    elif kind == "half":
        m[..., size // 2:, :] = True
    else:   # strokes: 3 random straight strokes, 3 px wide
        g = torch.Generator().manual_seed(seed)
        ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        for i in range(n):
            for _ in range(3):
                (x0, y0, x1, y1) = (torch.rand(4, generator=g) * size).tolist()
                dx, dy = x1 - x0, y1 - y0
                length = max((dx * dx + dy * dy) ** 0.5, 1e-6)
                t = (((xs - x0) * dx + (ys - y0) * dy) / (length * length)).clamp(0, 1)
                dist = ((xs - (x0 + t * dx)) ** 2 + (ys - (y0 + t * dy)) ** 2).sqrt()
                m[i, 0] |= dist <= 1.5
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--jump", type=int, default=5)
    ap.add_argument("--resample", type=int, default=4)
    ap.add_argument("--with-class", action="store_true")
    ap.add_argument("--figure", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    m = atelier.load(args.run)
    ev = load_evaluator("digits")
    test = open_source("mnist:test", channels=1, resolution=28, limit=args.n)
    real, labels = test.images, test.labels                                     # uint8 (n, 1, 28, 28), (n,)

    def agree(images: torch.Tensor) -> float:
        return float((ev(images).logits.argmax(1) == labels).float().mean())

    calls = sum(1 for a, b in zip(repaint_schedule(args.steps, args.jump, args.resample)[:-1],
                                  repaint_schedule(args.steps, args.jump, args.resample)[1:], strict=True) if b < a)
    print(f"{args.run.name}: {args.n} mnist:test digits, RePaint {args.steps} levels, jump {args.jump}, "
          f"resample {args.resample}, class given: {args.with_class}; original digits read right: "
          f"{agree(real):.3f}")
    print("| mask | hole px | MAE in hole | read as the original digit | hole left black | calls/image | s/image |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for kind in ("centre", "half", "strokes"):
        hole = masks(kind, args.n, 28, seed=1)
        damaged = real.masked_fill(hole, 0)
        started = time.process_time()
        out = torch.cat([m.inpaint(real[i:i + 100], hole[i:i + 100], seed=i, steps=args.steps,
                                   jump_length=args.jump, jump_n_sample=args.resample,
                                   labels=labels[i:i + 100] if args.with_class else None)
                         for i in range(0, args.n, 100)])
        seconds = time.process_time() - started
        assert torch.equal(out[~hole.expand_as(out)], real[~hole.expand_as(real)])   # known pixels kept
        mae = float((out.float() - real.float()).abs()[hole.expand_as(out)].mean())
        rec = {"mask": kind, "hole_px": float(hole.float().sum((1, 2, 3)).mean()), "mae": round(mae, 1),
               "agree": round(agree(out), 3), "agree_black": round(agree(damaged), 3), "calls": calls,
               "s_per_image": round(seconds / args.n, 3)}
        print(f"| {kind} | {rec['hole_px']:.0f} | {rec['mae']} | {rec['agree']} | {rec['agree_black']} | {calls} | "
              f"{rec['s_per_image']} |", flush=True)
        rows.append((damaged[:8], out[:8]))
    print(json.dumps({"threads": args.threads, "clock": "process CPU time"}))
    if args.figure:
        images = torch.cat([t for pair in rows for t in pair])
        save_image(make_grid(images, nrow=8, scale=3), args.figure,
                   m.metadata(workflow="inpaint", layout="rows: damaged|repaired, centre, half, strokes"))


if __name__ == "__main__":
    main()
