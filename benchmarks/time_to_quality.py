"""Time to quality: minutes of training until the MNIST DCGAN reaches a domain FID of 10 and of 5.

    python benchmarks/time_to_quality.py                          # mnist-dcgan, FID every 250 steps, 4000 steps
    python benchmarks/time_to_quality.py --steps 8000 --every 500 --set train.precision=fp32
    python benchmarks/time_to_quality.py --steps 10000 --every 500 --set train.ema_half_life_kimg=50  # FID 5 (README)

Trains ``configs/mnist-dcgan.yaml`` (or ``--config``) with training-time evaluation switched on (FID of
the EMA generator on ``--n`` fixed-latent samples against mnist:test, digits evaluator), then prints one row per
evaluation: step, images seen, the trainer's own clock (the training loop only: evaluation time is not counted)
and the scores, followed by the first evaluation at or under each FID target. An existing run folder is
resumed, so a run can be extended with a larger ``--steps``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from atelier.config import parse_set
from atelier.runs import load_config

REPO = Path(__file__).resolve().parents[1]


def rows(run: Path) -> list[dict]:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    clock = {r["step"]: r["train_seconds"] for r in recs if "train_seconds" in r}
    evals: dict[int, dict] = {}
    for r in recs:
        if r.get("event") == "eval" and r.get("metric") == "fid":
            evals.setdefault(r["step"], {})[r["metric"]] = r["value"]
    return [{"step": s, "seconds": clock.get(s, float("nan")), **m} for s, m in sorted(evals.items()) if "fid" in m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "mnist-dcgan.yaml")
    ap.add_argument("--run", type=Path, default=Path("runs/time-to-quality"))
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--every", type=int, default=250, help="evaluate every N steps")
    ap.add_argument("--n", type=int, default=5000, help="samples per evaluation")
    ap.add_argument("--targets", type=float, nargs="+", default=[10.0, 5.0])
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-train", action="store_true", help="only report an existing run folder")
    args = ap.parse_args()

    if not args.no_train:
        import atelier

        overrides = {"train.steps": args.steps, "eval.every": args.every, "eval.n": args.n,
                     "log.every": min(50, args.every)}
        overrides.update(parse_set(args.sets))
        atelier.train(args.config, args.run, overrides)
    table = rows(args.run)
    batch = load_config(args.run / "config.yaml").train.batch_size
    print(f"\n{args.run}: FID of the EMA generator, {args.n} samples vs mnist:test, digits evaluator\n")
    print("| step | images seen | train minutes | FID |\n|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['step']} | {r['step'] * batch / 1000:,.1f}k | {r['seconds'] / 60:.1f} | {r['fid']:.2f} |")
    print()
    for t in args.targets:
        hit = next((r for r in table if r["fid"] <= t), None)
        print(f"FID <= {t:g}: " + (f"step {hit['step']}, {hit['step'] * batch / 1000:,.0f}k images, "
                                  f"{hit['seconds'] / 60:.1f} train minutes" if hit else
                                  f"not reached in {table[-1]['step'] if table else 0} steps"))


if __name__ == "__main__":
    main()
