"""Does D overfit, and does G copy? Diagnostics for GANs trained on few images (``data.limit``).

    python benchmarks/little_data.py runs/gan-family/mnist-1k-noaug runs/gan-family/mnist-1k-diffaugment ...

For each run folder (trained on the first ``data.limit`` images of its source, e.g. with
``benchmarks/gan_family.py``):

* **D's overfitting**: D's mean P(real) on the images it trained on against held-out images of the same
  kind (the test split), and ADA's overfitting signal r_t = E[sign D(real)] on the training images. A D that
  memorised its data rates its own images far above held-out ones.
* **Copying**: the share of generated samples that lie closer (pixel L2) to a training image than the median
  held-out test image does. About 50% means samples are as novel as unseen real digits; far above means G
  reproduces its training set.
* **The copying baseline**: FID and KID of the training images themselves (tiled to ``--n``) against the
  test split, with the same evaluator as the runs. A generator that only copies scores this.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import atelier
from atelier.checkpoint import CheckpointManager
from atelier.data import open_source
from atelier.metrics.evaluate import evaluate_images
from atelier.metrics.evaluators import auto_evaluator, load_evaluator
from atelier.models import build
from atelier.runs import load_config


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


@torch.no_grad()
def diagnose(run: Path, n_samples: int, n_held_out: int) -> dict[str, float]:
    cfg = load_config(run / "config.yaml")
    source, limit = cfg.data.source, cfg.data.limit
    train = open_source(source, channels=cfg.data.channels, resolution=cfg.data.resolution, limit=limit).images
    test = open_source(f"{source}:test", channels=cfg.data.channels, resolution=cfg.data.resolution,
                       limit=n_held_out).images
    nets = build(cfg.model, cfg.data.resolution, cfg.data.channels)
    ck = CheckpointManager(run / "checkpoints")
    nets["D"].load_state_dict(ck.read(ck.latest_path(), tensors_only="s.D"))
    D = nets["D"].eval()
    a, b = D(to_unit(train)).squeeze(1), D(to_unit(test)).squeeze(1)
    flat = train.flatten(1).float() / 255
    test_gap = torch.cdist(test.flatten(1).float() / 255, flat).min(1).values.median()
    fake = atelier.load(run).sample(n_samples, seed=1)
    fake_gap = torch.cdist(fake.flatten(1).float() / 255, flat).min(1).values
    return {"images": len(train), "p_train": torch.sigmoid(a).mean().item(), "p_held": torch.sigmoid(b).mean().item(),
            "r_t": a.sign().mean().item(), "closer": (fake_gap < test_gap).float().mean().item()}


def copying_baseline(source: str, limit: int, n: int) -> tuple[float, float]:
    ev = load_evaluator(auto_evaluator(source))
    train = open_source(source, limit=limit).images
    tiled = train.repeat((n + limit - 1) // limit, 1, 1, 1)[:n]
    by = {r["metric"]: r["value"] for r in evaluate_images(tiled, ref=f"{source}:test", evaluator=ev,
                                                            metrics=("fid", "kid"))}
    return by["fid"], by["kid"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--samples", type=int, default=2000, help="generated samples for the copying share")
    ap.add_argument("--held-out", type=int, default=2000, help="test images for D and the copying reference")
    ap.add_argument("--n", type=int, default=5000, help="images in the copying baseline's FID")
    args = ap.parse_args()

    print("| run | training images | D: P(real) train / held-out | r_t | samples closer than held-out |")
    print("|---|---:|---|---:|---:|")
    limits: set[tuple[str, int]] = set()
    for run in args.runs:
        d = diagnose(run, args.samples, args.held_out)
        limits.add((load_config(run / "config.yaml").data.source, int(d["images"])))
        print(f"| {run.name} | {d['images']:,} | {d['p_train']:.3f} / {d['p_held']:.3f} | {d['r_t']:.2f} | "
              f"{d['closer']:.1%} |")
    print("\n| copying baseline | FID | KID |\n|---|---:|---:|")
    for source, limit in sorted(limits):
        fid, kid = copying_baseline(source, limit, args.n)
        print(f"| the first {limit:,} {source} training images, tiled to {args.n:,} | {fid:.2f} | {kid:.3f} |")


if __name__ == "__main__":
    main()
