"""Which recipe makes recognisable, varied digits of every class fastest? Quality per kimg, and images/s.

    python benchmarks/demo_quality.py --recipes demo,before --kimg 160 --every-kimg 20     # quality vs kimg
    python benchmarks/demo_quality.py --speed --recipes demo,before --rounds 3            # images/s, 2 threads
    python benchmarks/demo_quality.py --recipes demo --kimg 100 --grids out/              # + a grid per evaluation

Quality (``--kimg``): each recipe trains from scratch (seeded), and every ``--every-kimg`` thousand images its
EMA generator draws ``--n`` images (fixed seed) that the digits evaluator (atelier's own MNIST classifier)
scores: FID and KID against mnist:test, and the class balance: the share of each digit among the samples
(min / max share; 10% each for balanced data) and the entropy of that histogram over log 10 (1.0:
perfectly balanced). Images seen are machine-independent; the training seconds printed are the trainer's
own clock on whatever load the machine had (the runs use ``ATELIER_THREADS``, 1 by default here).

Speed (``--speed``): each recipe's training step in fresh processes, interleaved round by round with the
same threads (``--threads``, default 2): images/s of ``--seconds`` of steps after a warm-up. Minutes for a
recipe = its kimg / its images/s (see the table's note on the load while measuring).

Recipes are named override sets on the built-in config (``RECIPES``); ``before`` is the demo as shipped
before issue 16 (DCGAN, batch 256, 600 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# name -> overrides of the built-in config (the MNIST DCGAN). "demo" is atelier.api.train.DEMO_OVERRIDES.
RECIPES: dict[str, dict] = {
    "before": {},
    "b64": {"train.batch_size": 64},
    "b128": {"train.batch_size": 128},
    "b64-lr4": {"train.batch_size": 64, "optim.lr_g": 4e-4, "optim.lr_d": 4e-4},
    "b64-lr5": {"train.batch_size": 64, "optim.lr_g": 5e-4, "optim.lr_d": 5e-4},
    "b128-lr5": {"train.batch_size": 128, "optim.lr_g": 5e-4, "optim.lr_d": 5e-4},
    "b64-ema3": {"train.batch_size": 64, "train.ema_half_life_kimg": 3.0},
    "b64-w32": {"train.batch_size": 64, "model.width": 32},
}


def recipe(name: str) -> dict:
    if name == "demo":
        from atelier.api.train import DEMO_OVERRIDES

        return dict(DEMO_OVERRIDES)
    if name not in RECIPES:
        raise SystemExit(f"unknown recipe {name!r}; choose from demo, {', '.join(RECIPES)}")
    return dict(RECIPES[name])


def quality(name: str, args: argparse.Namespace) -> list[dict]:

    import atelier
    from atelier.images import make_grid
    from atelier.metrics import evaluate_images, load_evaluator
    from atelier.metrics.classes import class_balance
    from atelier.runs import load_config

    over = recipe(name)
    cfg = load_config(None, over)
    batch = cfg.train.batch_size
    steps = round(args.kimg * 1000 / batch)
    every = max(1, round(args.every_kimg * 1000 / batch))
    ev = load_evaluator("digits")
    rows: list[dict] = []
    print(f"\n== {name}: {over}  batch {batch}, {steps} steps ({args.kimg:g} kimg)", flush=True)
    print(f"{'step':>6} {'kimg':>6} {'train s':>7} {'FID':>7} {'KID':>8} {'entropy':>7} {'min':>6} {'max':>6}",
          flush=True)

    def evaluate(trainer) -> None:
        if trainer.step % every and trainer.step != steps:
            return
        g = atelier.Generator(trainer.task.ema.model, cfg, trainer.run.path, trainer.step, "ema")
        images = g.sample(args.n, seed=0)
        recs = {r["metric"]: r["value"] for r in evaluate_images(images, ref="mnist:test", evaluator=ev,
                                                                  metrics=("fid", "kid"), seed=0)}
        bal = class_balance(images, ev)
        row = {"recipe": name, "step": trainer.step, "kimg": trainer.images_seen / 1000,
               "seconds": trainer.train_seconds, "fid": recs["fid"], "kid": recs["kid"], "entropy": bal.entropy,
               "min_share": bal.min_share, "max_share": bal.max_share, "shares": bal.shares}
        rows.append(row)
        print(f"{row['step']:>6} {row['kimg']:>6.1f} {row['seconds']:>7.0f} {row['fid']:>7.2f} {row['kid']:>8.4f} "
              f"{row['entropy']:>7.3f} {row['min_share']:>6.1%} {row['max_share']:>6.1%}", flush=True)
        if args.grids is not None:
            args.grids.mkdir(parents=True, exist_ok=True)
            make_grid(images[:64], nrow=8, scale=3).save(args.grids / f"{name}-{row['kimg']:05.0f}kimg.png")

    with tempfile.TemporaryDirectory() as tmp:
        atelier.train(None, Path(tmp) / name, {**over, "train.steps": steps, "log.tensorboard": False,
                                               "log.every": every, "log.sample_every": every,
                                               "log.checkpoint_every": steps},
                      progress=False, callback=evaluate)
    return rows


def speed_child(name: str, seconds: float, warmup: int = 3) -> None:
    import atelier

    marks: dict[str, float] = {}

    def callback(trainer) -> None:
        if trainer.step == warmup:
            marks.update(t=trainer.train_seconds, n=trainer.images_seen)
        elif "t" in marks and trainer.train_seconds - marks["t"] >= seconds:
            trainer.request_stop()

    with tempfile.TemporaryDirectory() as tmp:
        r = atelier.train(None, Path(tmp) / "run", {**recipe(name), "train.steps": 100_000, "data.limit": 8192,
                                                    "log.every": 10**6, "log.sample_every": 10**6,
                                                    "log.checkpoint_every": 10**6, "log.tensorboard": False},
                          progress=False, callback=callback)
    print(json.dumps({"img_s": (r.images_seen - marks["n"]) / (r.seconds - marks["t"])}), flush=True)


def speed(names: list[str], args: argparse.Namespace) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    env.update(ATELIER_THREADS=str(args.threads), PYTHONPATH=str(REPO / "src"))
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            out = subprocess.run([sys.executable, __file__, "--speed-child", name, "--seconds", str(args.seconds)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            rates[name].append(json.loads(out.strip().splitlines()[-1])["img_s"])
            print(f"round {r + 1} {name:10} {rates[name][-1]:7.0f} img/s  (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n| recipe | img/s median ({args.threads} threads) | min-max |\n|---|---|---|")
    for name in names:
        print(f"| {name} | {statistics.median(rates[name]):.0f} | {min(rates[name]):.0f}-{max(rates[name]):.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="demo,before")
    ap.add_argument("--kimg", type=float, default=160.0)
    ap.add_argument("--every-kimg", type=float, default=20.0)
    ap.add_argument("--n", type=int, default=10_000, help="samples per evaluation")
    ap.add_argument("--grids", type=Path, default=None, help="write an 8x8 grid per evaluation into this folder")
    ap.add_argument("--json", type=Path, default=None, help="append the rows as JSON lines")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--speed-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    names = [n for n in args.recipes.split(",") if n]
    if args.speed_child:
        speed_child(args.speed_child, args.seconds)
        return
    if args.speed:
        speed(names, args)
        return
    os.environ.setdefault("ATELIER_THREADS", "1")
    t0 = time.perf_counter()
    for name in names:
        rows = quality(name, args)
        if args.json is not None:
            with open(args.json, "a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"\n{time.perf_counter() - t0:.0f} s wall in all")


if __name__ == "__main__":
    main()
