"""Personalisation: fine-tune a trained StyleGAN2-type run on a few dozen new images, against the alternatives.

    python benchmarks/finetune_study.py --parent runs/emoji-sg --folder new-pictures/ --sizes 25,50,100 --minutes 5

For each size N, the first N images of ``--folder`` (sorted paths: the same subset every time) train three runs for
the same CPU-minutes of one thread (``train.clock=cpu``):

* ``finetune``: ``atelier finetune`` as shipped: the parent's G, D and EMA, D's first 2 blocks frozen (FreezeD),
  DiffAugment under ADA;
* ``plain``: the parent's weights, nothing frozen, no augmentation (the naive fine-tune);
* ``scratch``: the parent's recipe from a fresh initialisation, with ADA (what a user without a parent does).

Scores, from ``--n`` EMA samples: FID and KID against the **whole** folder (the N images and the rest of its kind,
so copying the N images is not rewarded), in ``--evaluator``'s features, and the memorisation share
(:mod:`atelier.metrics.memorisation`: samples nearer one of the N images than those are to each other; about
50% is novel, near 100% copies). Grids go to ``<runs>/<size>-<variant>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("finetune", "plain", "scratch")


def subset(folder: Path, n: int, out: Path) -> Path:
    """The first ``n`` images of ``folder`` (sorted relative paths) copied to ``out``, sub-folders kept."""
    from atelier.images import IMAGE_SUFFIXES

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if len(files) < n:
        sys.exit(f"error: {folder} has {len(files)} images, fewer than {n}")
    for f in files:
        dest = out / f.relative_to(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    return out


def train(variant: str, parent: Path, data: Path, run: Path, minutes: float, batch: int) -> None:
    budget = ["--minutes", str(minutes), "--set", "train.clock=cpu", "--set", "train.threads=1",
              "--set", "log.tensorboard=false"]
    if variant == "scratch":
        cmd = ["train", "--config", str(parent / "config.yaml"), "--data", str(data), "--run-dir", str(run),
               "--set", "train.steps=null", "--set", "model.init_from=null", "--set", "model.freeze_d=0",
               "--set", "augment.policy=color,translation,cutout", "--set", "augment.p=0",
               "--set", "augment.ada_target=0.6", "--batch-size", str(batch), *budget]  # fine-tuning's batch
    else:
        cmd = ["finetune", str(parent), "--data", str(data), "--run-dir", str(run), *budget]
        if variant == "plain":
            cmd += ["--freeze-d", "0", "--set", "augment.policy=", "--set", "augment.ada_target=null"]
    env = {**os.environ, "ATELIER_THREADS": "1"}
    with open(run.parent / f"{run.name}.log", "a") as log:
        subprocess.run([sys.executable, "-m", "atelier", *cmd], check=True, stdout=log, stderr=subprocess.STDOUT,
                       env=env)


def score(run: Path, folder: Path, n: int, evaluator: str) -> dict:
    import atelier
    from atelier.api.evaluate import memorisation_run
    from atelier.images import make_grid
    from atelier.metrics.evaluate import evaluate_images
    from atelier.metrics.evaluators import load_evaluator

    g = atelier.load(run)
    images = g.sample(n, seed=0)
    make_grid(images[:32], nrow=8).save(run.parent / f"{run.name}.png")
    recs = {r["metric"]: r["value"] for r in evaluate_images(images, ref=str(folder), evaluator=load_evaluator(
        evaluator), metrics=("fid", "kid"), like=g.cfg.data, what=run.name)}
    mem = memorisation_run(g, n=n)
    return {"fid": recs["fid"], "kid": recs["kid"], "memorisation": mem["value"], "step": g.step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parent", type=Path, required=True, help="a trained StyleGAN2-type run")
    ap.add_argument("--folder", type=Path, required=True, help="the new pictures (the whole set is the reference)")
    ap.add_argument("--sizes", default="25,50,100")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--minutes", type=float, default=5.0, help="CPU-minutes per run")
    ap.add_argument("--n", type=int, default=500, help="samples per score")
    ap.add_argument("--evaluator", default="random-cnn")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "finetune-study")
    args = ap.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    import atelier

    parent_batch = atelier.load(args.parent).cfg.train.batch_size
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        data = args.runs / f"data-{size}"
        if not data.exists():
            subset(args.folder, size, data)
        for variant in args.variants.split(","):
            run = args.runs / f"{size}-{variant}"
            batch = min(parent_batch, 1 << (size.bit_length() - 1))    # what atelier finetune picks
            train(variant, args.parent, data, run, args.minutes, batch)
            row = {"images": size, "variant": variant, **score(run, args.folder, args.n, args.evaluator)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.minutes:g} CPU-minutes per run; FID/KID ({args.evaluator}) of {args.n} samples against all "
          f"of {args.folder.name}; memorisation: share of samples nearer one of the N images than they are to each "
          "other (50% novel, 100% copies)\n")
    print("| images | variant | steps | FID | KID x1000 | memorisation |\n|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['images']} | {r['variant']} | {r['step']} | {r['fid']:.1f} | {1000 * r['kid']:.1f} | "
              f"{r['memorisation']:.0%} |")


if __name__ == "__main__":
    main()
