"""Quality at equal CPU budget on a colour folder: StyleGAN2-type vs SNGAN-ResNet vs DCGAN vs diffusion.

    python benchmarks/equal_budget.py --folder $ATELIER_DATA/emoji --minutes 30 --only stylegan2,resnet
    python benchmarks/equal_budget.py --folder $ATELIER_DATA/emoji --minutes 30 --only dcgan,diffusion
    python benchmarks/equal_budget.py --folder $ATELIER_DATA/emoji --minutes 30 --table      # gather, print
    # another kind of folder (scripts/make_tiles.py), with the fallback evaluator and the recipe's next size up
    python benchmarks/equal_budget.py --folder data/facade-tiles-wide --minutes 15 --evaluator random-cnn \
        --only stylegan2,stylegan2-medium,resnet,dcgan,floor --runs runs/facades-15

Every row trains from scratch on the same folder at 64 px RGB (transparency composited over white, so that
every family reads the same images) for the same number of **CPU-minutes** of one thread
(``train.clock=cpu``, ``ATELIER_THREADS=1``): the budget counts the CPU time this process got, so two rows
trained side by side on a shared machine, or beside other work, still get equal budgets. Run the rows in
two processes at a time on a 2-core machine.

Scores: FID, KID, precision and recall (k=3) of ``--n`` EMA samples against the folder itself (the usual
training-set FID of GAN papers), in the feature space of ``--evaluator`` (``emoji``: atelier's trained
emoji-group classifier; ``random-cnn``: the documented fallback for any folder). The first row is the floor:
``--n`` real images of the folder against the folder. StyleGAN2 rows add a truncation sweep (psi 1.0, 0.7,
0.5); diffusion rows DPM-Solver++ at 10 and 20 steps (NFE). Each row writes ``<runs>/<row>/scores.json`` and a
grid ``<runs>/<row>.png``; ``--table`` prints the Markdown table of whatever rows are done.

A longer budget can start from a shorter one's runs: ``--minutes 120 --extend runs/equal-budget-30`` copies each
row's run folder and resumes it. Resume is exact (bit-identical to one uninterrupted run) and no recipe has a
schedule tied to the budget, so this gives the same model as training 120 minutes from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMON = ["--set", "data.resolution=64", "--set", "data.channels=3", "--set", "data.alpha=composite",
          "--set", "data.hflip=false", "--set", "train.clock=cpu", "--set", "train.threads=1",
          "--set", "train.steps=null", "--set", "log.tensorboard=false", "--set", "log.sample_every=500",
          "--set", "log.checkpoint_every=500"]

# row -> (config, overrides): each family's own shipped recipe, pointed at the folder at 64 px RGB.
ROWS: dict[str, tuple[str, list[str]]] = {
    "stylegan2": ("emoji-stylegan", []),
    # the recipe's next size up (what a CPU budget declines): is the small one's choice right on this folder?
    "stylegan2-medium": ("emoji-stylegan", ["--set", "model.width=32", "--set", "model.width_max=256"]),
    "resnet": ("fashion-sngan-hinge", ["--batch-size", "64", "--set", "model.attention=null"]),
    "dcgan": ("mnist-dcgan", ["--batch-size", "64"]),
    "diffusion": ("emoji-diffusion", []),
}
PSI = (1.0, 0.7, 0.5)
NFE = ((10, "dpm++"), (20, "dpm++"))


def train(row: str, folder: str, minutes: float, runs: Path, extend: Path | None = None) -> Path:
    config, extra = ROWS[row]
    run = runs / row
    if extend is not None and not run.exists():
        if not (extend / row / "checkpoints").is_dir():
            sys.exit(f"error: --extend {extend}: no trained {row} run there to continue")
        shutil.copytree(extend / row, run)
    cmd = [sys.executable, "-m", "atelier", "train", "--config", str(REPO / "configs" / f"{config}.yaml"),
           "--data", folder, "--run-dir", str(run), "--minutes", str(minutes), *COMMON, *extra]
    env = {**os.environ, "ATELIER_THREADS": "1"}
    with open(runs / f"{row}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    return run


def score(row: str, run: Path, folder: str, n: int, evaluator_name: str, runs: Path) -> list[dict]:
    import torch

    import atelier
    from atelier.images import make_grid
    from atelier.metrics.evaluate import evaluate_images
    from atelier.metrics.evaluators import load_evaluator
    from atelier.runs import load_config

    torch.set_num_threads(1)
    cfg = load_config(run / "config.yaml")
    ev = load_evaluator(evaluator_name)
    metrics = ("fid", "kid", "pr")
    g = atelier.load(run)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = [r for r in recs if "train_seconds" in r][-1]
    variants: list[tuple[str, dict]] = [("", {})]
    if row.startswith("stylegan2"):
        variants = [(f"psi {p:g}", {"psi": p}) for p in PSI]
    elif row == "diffusion":
        variants = [(f"{s} steps {k}", {"steps": s, "sampler": k}) for s, k in NFE]
    out = []
    for label, kw in variants:
        t0 = time.perf_counter()
        images = g.sample(n, seed=0, **kw)
        gen_s = time.perf_counter() - t0
        scores = {r["metric"]: r for r in evaluate_images(images, ref=folder, evaluator=ev, metrics=metrics,
                                                           like=cfg.data, what=f"{row} {label}")}
        out.append({"row": row, "variant": label, "step": g.step, "kimg": last["kimg"],
                    "cpu_minutes": round(last["train_seconds"] / 60, 1),
                    "fid": scores["fid"]["value"], "kid": scores["kid"]["value"],
                    "precision": scores["precision"]["value"], "recall": scores["recall"]["value"],
                    "ms_per_image": round(1000 * gen_s / n, 2)})
        if kw in ({}, {"psi": 1.0}, {"steps": 20, "sampler": "dpm++"}):
            make_grid(images[:64], nrow=8).save(runs / f"{row}.png")
    return out


def floor(folder: str, n: int, evaluator_name: str) -> list[dict]:
    """Real images of the folder against the folder: the best any row can score with ``n`` samples."""
    import torch

    from atelier.config import DataConfig
    from atelier.metrics.evaluate import evaluate_images
    from atelier.metrics.evaluators import load_evaluator
    from atelier.metrics.reference import read_images

    like = DataConfig(source=folder, resolution=64, channels=3, alpha="composite")
    ev = load_evaluator(evaluator_name)
    real = read_images(folder, ev, like=like).images
    pick = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(1))[:n]]
    scores = {r["metric"]: r for r in evaluate_images(pick, ref=folder, evaluator=ev,
                                                       metrics=("fid", "kid", "pr"), like=like, what="real")}
    return [{"row": "real images (floor)", "variant": "", "step": 0, "kimg": 0, "cpu_minutes": 0,
             "fid": scores["fid"]["value"], "kid": scores["kid"]["value"],
             "precision": scores["precision"]["value"], "recall": scores["recall"]["value"], "ms_per_image": 0}]


def table(runs: Path) -> str:
    lines = ["| row | variant | CPU-min | steps | kimg | FID | KID ×1000 | precision | recall | ms/image |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in sorted(runs.glob("*/scores.json")) + sorted(runs.glob("floor.json")):
        for r in json.loads(f.read_text()):
            lines.append(f"| {r['row']} | {r['variant']} | {r['cpu_minutes']} | {r['step']} | {r['kimg']:.1f} | "
                         f"{r['fid']:.1f} | {1000 * r['kid']:.1f} | {r['precision']:.2f} | {r['recall']:.2f} | "
                         f"{r['ms_per_image']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", required=True)
    ap.add_argument("--minutes", type=float, default=30.0, help="CPU-minutes of training per row")
    ap.add_argument("--only", default=",".join(ROWS), help=f"rows, comma-separated: {', '.join(ROWS)}, floor")
    ap.add_argument("--runs", default=None, help="folder for the runs (default: runs/equal-budget-<minutes>)")
    ap.add_argument("--n", type=int, default=1000, help="samples per score")
    ap.add_argument("--evaluator", default="emoji")
    ap.add_argument("--extend", type=Path, default=None,
                    help="runs folder of a shorter budget: copy each row's run from there and train it further")
    ap.add_argument("--table", action="store_true", help="print the table of the rows done and exit")
    args = ap.parse_args()
    runs = Path(args.runs or REPO / "runs" / f"equal-budget-{args.minutes:g}")
    runs.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for row in args.only.split(","):
            if row == "floor":
                (runs / "floor.json").write_text(json.dumps(floor(args.folder, args.n, args.evaluator), indent=1))
                continue
            if row not in ROWS:
                sys.exit(f"error: unknown row {row!r}; rows: {', '.join(ROWS)}, floor")
            run = train(row, args.folder, args.minutes, runs, args.extend)
            rows = score(row, run, args.folder, args.n, args.evaluator, runs)
            (run / "scores.json").write_text(json.dumps(rows, indent=1))
            print(table(runs), flush=True)
    print(table(runs))


if __name__ == "__main__":
    main()
