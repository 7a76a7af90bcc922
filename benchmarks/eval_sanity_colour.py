"""Do the colour evaluators rank damage the way a person would? Real images of a folder, degraded by blur,
Gaussian noise and a hue rotation of growing strength, scored by FID against a disjoint half of the same
folder. A sound feature space gives an FID that rises monotonically with the damage (Spearman's rank
correlation 1.0 between strength and FID) and already separates the mildest damage from the real-vs-real floor.

Evaluators compared (the same images, the same halves):
* ``emoji``        atelier's trained emoji-group classifier (shipped weights), a domain evaluator;
* ``random-cnn``   the fallback: fixed random CNN, channel mean + std at four scales (atelier.metrics.colour);
* ``random-last``  a plain reference: the same random CNN's last stage, channel means only (the usual
                   "random embedding", e.g. Naeem et al. 2020), to show what the multi-scale statistics add.

    python benchmarks/eval_sanity_colour.py --folder $ATELIER_DATA/emoji
    python scripts/make_tiles.py facades --out /tmp/facade-tiles
    python benchmarks/eval_sanity_colour.py --folder /tmp/facade-tiles
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).expand(x.shape[1], 1, 1, -1)
    y = F.conv2d(F.pad(x.float(), (r, r, 0, 0), mode="replicate"), k, groups=x.shape[1])
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.transpose(2, 3), groups=x.shape[1])
    return y.round().clamp(0, 255).to(torch.uint8)


def noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def hue(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate colours about the gray axis (Rodrigues' formula): same brightness, other hues."""
    a = math.radians(degrees)
    u = torch.full((3,), 1 / math.sqrt(3))
    cross = torch.tensor([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    rot = math.cos(a) * torch.eye(3) + math.sin(a) * cross + (1 - math.cos(a)) * torch.outer(u, u)
    return torch.einsum("ij,bjhw->bihw", rot, x.float()).round().clamp(0, 255).to(torch.uint8)


DAMAGE = {"blur": (blur, (0, 0.5, 1, 1.5, 2, 3), "sigma px"), "noise": (noise, (0, 4, 8, 16, 32, 64), "sigma /255"),
          "hue": (hue, (0, 5, 10, 20, 40, 80), "degrees")}


class LastStageMean(torch.nn.Module):
    """The plain random embedding: the random CNN's last stage, spatial means only (256-d)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    @torch.no_grad()
    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.net.preprocess(x)
        for i, w in enumerate(self.net.convs):
            x = F.relu(F.conv2d(x, w, padding=1))
            if i < len(self.net.convs) - 1:
                x = F.avg_pool2d(x, 2)
        f = x.mean((2, 3))
        return f, f.new_zeros(len(f), 0)


@functools.cache
def _evaluator(name: str):
    from atelier.metrics import load_evaluator

    return load_evaluator(name)


def features(name: str, images: torch.Tensor) -> torch.Tensor:
    if name == "random-last":
        net = LastStageMean(_evaluator("random-cnn").network)
        return torch.cat([net.forward_features(c)[0] for c in images.split(500)])
    return _evaluator(name)(images).features


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", required=True)
    p.add_argument("--n", type=int, default=1500, help="images per half")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--evaluators", default="emoji,random-cnn,random-last")
    args = p.parse_args()

    from atelier.data import open_source
    from atelier.metrics.maths import fid

    ds = open_source(args.folder, channels=3, resolution=args.resolution)
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    n = min(args.n, len(ds) // 2)
    a, b = ds.images[perm[:n]], ds.images[perm[n : 2 * n]]
    names = [e.strip() for e in args.evaluators.split(",") if e.strip()]
    print(f"{args.folder}: {n:,} degraded images vs {n:,} others of the folder, {args.resolution} px, RGB over white\n")
    head = f"{'evaluator':<12} {'damage':<6} " + " ".join(f"{'level ' + str(i):>9}" for i in range(6))
    print(head + f" {'spearman':>9} {'mild/floor':>10}")
    summary = {}
    for name in names:
        t0 = time.perf_counter()
        ref = features(name, b)
        rhos, ratios = [], []
        for kind, (fn, levels, _) in DAMAGE.items():
            scores = [fid(ref, features(name, fn(a, level))) for level in levels]
            rho = float(spearmanr(levels, scores).statistic)
            ratio = scores[1] / max(scores[0], 1e-9)
            rhos.append(rho)
            ratios.append(ratio)
            row = " ".join(f"{s:>9.3g}" for s in scores)
            print(f"{name:<12} {kind:<6} {row} {rho:>9.3f} {ratio:>10.2f}")
        summary[name] = (sum(rhos) / len(rhos), min(ratios), time.perf_counter() - t0)
    print("\nlevels: " + "; ".join(f"{k} {unit} {list(levels)}" for k, (_, levels, unit) in DAMAGE.items()))
    print("\nevaluator     mean spearman  min mild/floor  seconds")
    for name, (rho, ratio, sec) in summary.items():
        print(f"{name:<12} {rho:>14.3f} {ratio:>15.2f} {sec:>8.0f}")


if __name__ == "__main__":
    main()
