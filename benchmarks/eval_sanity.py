"""What the digits evaluator's numbers look like: real MNIST digits degraded by Gaussian noise or blur
of growing strength, scored against mnist:test (FID, KID, precision, recall). A sound metric rises
(FID, KID) or falls (precision) monotonically with the damage; the first row of each block is the
real-vs-real floor.

    python benchmarks/eval_sanity.py                        # 5,000 mnist:train digits, a printed table
    python benchmarks/eval_sanity.py --plot docs/images/evaluate/degradation.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return x
    t = torch.arange(-4, 5, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum())[None, None]
    y = F.conv2d(F.pad(x.float(), (4, 4, 0, 0), mode="replicate"), k[..., None, :])
    y = F.conv2d(F.pad(y, (0, 0, 4, 4), mode="replicate"), k[..., :, None])
    return y.round().clamp(0, 255).to(torch.uint8)


def noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--plot", type=Path, help="also draw the curves into this PNG")
    args = p.parse_args()

    from atelier.metrics import evaluate_images, load_evaluator, read_images

    ev = load_evaluator("digits")
    real = read_images("mnist:train", ev, n=args.n, seed=0).images
    rows: dict[str, list[tuple[float, dict[str, float]]]] = {"noise": [], "blur": []}
    for kind, fn, levels in (("noise", noise, (0, 8, 16, 32, 64, 96)), ("blur", blur, (0, 0.5, 0.8, 1.2, 1.6, 2.0))):
        for level in levels:
            recs = evaluate_images(fn(real, level), ref="mnist:test", evaluator=ev, metrics=["fid", "kid", "pr"])
            rows[kind].append((level, {r["metric"]: r["value"] for r in recs}))
    print(f"{args.n:,} mnist:train digits vs mnist:test, digits evaluator (sha256 {ev.sha256[:12]}...)\n")
    print(f"{'damage':<16} {'FID':>9} {'KID':>9} {'precision':>10} {'recall':>8}")
    for kind, unit in (("noise", "sigma (0-255)"), ("blur", "sigma (px)")):
        for level, m in rows[kind]:
            label = f"{kind} {level:g}"
            print(f"{label:<16} {m['fid']:>9.3f} {m['kid']:>9.4f} {m['precision']:>10.3f} {m['recall']:>8.3f}")
        print(f"  ({kind}: {unit})")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        from atelier.imageio import save_image
        from atelier.provenance import COMPOSITE_SOURCE_TYPE

        fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
        panels = ((axes[0], "noise", "Gaussian noise sigma (of 255)"), (axes[1], "blur", "blur sigma (px)"))
        for ax, kind, unit in panels:
            xs = [lv for lv, _ in rows[kind]]
            ax.plot(xs, [m["fid"] for _, m in rows[kind]], "o-", color="#c0392b", label="FID")
            ax.set_xlabel(unit)
            ax.set_ylabel("FID (digits evaluator)")
            ax.grid(alpha=0.3)
            ax2 = ax.twinx()
            ax2.plot(xs, [m["precision"] for _, m in rows[kind]], "s--", color="#2471a3", label="precision")
            ax2.plot(xs, [m["recall"] for _, m in rows[kind]], "^--", color="#1e8449", label="recall")
            ax2.set_ylim(0, 1)
            if kind == "blur":
                ax2.set_ylabel("precision / recall (k=3)")
            lines = ax.get_lines() + ax2.get_lines()
            ax.legend(lines, [ln.get_label() for ln in lines], frameon=False, fontsize=8, loc="center right")
        fig.suptitle(f"{args.n:,} real MNIST digits, degraded, vs mnist:test", fontsize=10)
        fig.tight_layout()
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        # A chart of measurements on real data: not generated, so no watermark and no AI-generated label.
        save_image(image, args.plot, {"workflow": "benchmark", "script": "benchmarks/eval_sanity.py",
                                      "DigitalSourceType": COMPOSITE_SOURCE_TYPE}, watermark=False)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
