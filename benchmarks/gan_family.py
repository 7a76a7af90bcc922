"""The GAN family under one budget: train every shipped config on the same number of images, then score.

    python benchmarks/gan_family.py                              # 64k images each, batch 64, 5k samples
    python benchmarks/gan_family.py --images 128000 --only mnist-1k-diffaugment,mnist-1k-noaug

Each row is one config trained from scratch (or resumed, when its run folder already holds that
many steps) with ``train.batch_size`` and ``train.steps`` overridden so that every row sees the same
number of real images. Scores: FID and KID with the domain evaluator (MNIST digits or Fashion-MNIST
classifier features, see atelier.metrics), against the test split; CAS (classification accuracy
score) for conditional models (with the real-data ceiling). Train time is the trainer's own clock (loop only).
The table is printed as Markdown and written next to the runs as table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (config file, extra overrides). "mnist-1k-noaug" is the ablation of the DiffAugment config;
# the 100-image pair asks whether augmentation wins once D can memorise its data, and the -d0 pair
# whether it wins once D loses its own regulariser (the DCGAN's dropout 0.3); the last three split the policy.
ROWS = {
    "mnist-dcgan": ("mnist-dcgan", {}),
    "mnist-cgan": ("mnist-cgan", {}),
    "mnist-wgan-gp": ("mnist-wgan-gp", {}),
    "fashion-sngan-hinge": ("fashion-sngan-hinge", {}),
    "mnist-vae": ("mnist-vae", {}),
    "mnist-1k-diffaugment": ("mnist-1k-diffaugment", {}),
    "mnist-1k-noaug": ("mnist-1k-diffaugment", {"augment.policy": ""}),
    "mnist-1k-ada": ("mnist-1k-diffaugment", {"augment.p": 0.0, "augment.ada_target": 0.6}),
    "mnist-100-diffaugment": ("mnist-1k-diffaugment", {"data.limit": 100}),
    "mnist-100-noaug": ("mnist-1k-diffaugment", {"data.limit": 100, "augment.policy": ""}),
    "mnist-1k-diffaugment-d0": ("mnist-1k-diffaugment", {"model.dropout": 0.0}),
    "mnist-1k-noaug-d0": ("mnist-1k-diffaugment", {"model.dropout": 0.0, "augment.policy": ""}),
    "mnist-1k-color": ("mnist-1k-diffaugment", {"augment.policy": "color"}),
    "mnist-1k-translation": ("mnist-1k-diffaugment", {"augment.policy": "translation"}),
    "mnist-1k-cutout": ("mnist-1k-diffaugment", {"augment.policy": "cutout"}),
}


def train_seconds(run: Path) -> float:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return max((r["train_seconds"] for r in rows if "train_seconds" in r), default=float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64_000, help="real images seen per row (the shared budget)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=5_000, help="samples scored per row")
    ap.add_argument("--runs", type=Path, default=Path("runs/gan-family"))
    ap.add_argument("--only", help="comma-separated row names (default: all)")
    ap.add_argument("--no-train", action="store_true", help="score existing run folders only")
    args = ap.parse_args()
    os.environ.setdefault("ATELIER_DATA", str(REPO.parent / "shared" / "data"))

    import atelier
    from atelier.metrics.evaluate import evaluate_run

    names = args.only.split(",") if args.only else list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; choose from {list(ROWS)}")
    steps = args.images // args.batch
    table = ["| config | loss / model | images seen | FID ↓ | KID ↓ | CAS (ceiling) | train time |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        config, extra = ROWS[name]
        path = REPO / "configs" / f"{config}.yaml"
        if not path.is_file():
            print(f"skip {name}: {path} not found", file=sys.stderr)
            continue
        run = args.runs / name
        if not args.no_train:
            atelier.train(path, run, {"train.steps": steps, "train.batch_size": args.batch, "log.every": 100,
                                      "log.sample_every": max(steps // 4, 1), **extra})
        g = atelier.load(run)
        metrics = ["fid", "kid"] + (["cas"] if g.num_classes else [])
        records = evaluate_run(run, metrics=metrics, n=args.n)
        by = {r["metric"]: r for r in records}
        cas = by.get("cas")
        cas_text = f"{cas['value']:.1%} ({cas.get('ceiling', float('nan')):.1%})" if cas else "—"
        cfg = g.cfg
        what = f"{cfg.loss.name}{' + GP' if cfg.loss.gp_weight else ''} / {cfg.model['name']}"
        if cfg.model["name"] == "vae":
            what = f"ELBO, beta {cfg.model['beta']:g} / vae"
        if cfg.augment.policy:
            what += f", DiffAugment{' + ADA' if cfg.augment.ada_target else ''}"
        if cfg.data.limit:
            what += f", {cfg.data.limit:,} images"
        table.append(f"| {name} | {what} | {g.step * cfg.train.batch_size / 1000:.0f}k | {by['fid']['value']:.2f} | "
                     f"{by['kid']['value']:.3f} | {cas_text} | {train_seconds(run) / 60:.1f} min |")
        print(table[-1], flush=True)
    evaluator = records[0].get("evaluator", "?") if names else "?"
    text = "\n".join(table) + f"\n\nEvaluator of the last row: {evaluator}; {args.n} samples per row.\n"
    print(text)
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / f"table-{'-'.join(names) if args.only else 'all'}.md").write_text(text)


if __name__ == "__main__":
    main()
