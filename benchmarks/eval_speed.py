"""Time to evaluate FID with 10,000 generated MNIST images: generation + features + statistics,
with the reference features (mnist:test, 10,000 images) computed afresh vs found in the cache.

Both cases run in this one process, alternating, against a fresh cache folder, so the ratio holds
even on a busy machine (absolute seconds on a shared CPU do not).

    python benchmarks/eval_speed.py                             # a freshly built DCGAN (1 training step)
    python benchmarks/eval_speed.py --run runs/mnist-dcgan --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _fresh_run(root: Path) -> Path:
    """A full-size MNIST DCGAN after one step: sampling cost does not depend on training."""
    import atelier

    run_dir = root / "run"
    atelier.train(None, run_dir, {"train.steps": 1, "train.device": "cpu", "log.tensorboard": False}, progress=False)
    return run_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="run folder to sample from (default: a fresh 1-step DCGAN)")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from atelier.api.evaluate import evaluate_run
    from atelier.metrics import load_evaluator

    with tempfile.TemporaryDirectory(prefix="atelier-eval-bench-") as tmp:
        run_dir = args.run or _fresh_run(Path(tmp))
        evaluator = load_evaluator("digits")
        results: dict[str, list[dict[str, float]]] = {"uncached": [], "cached": []}
        for r in range(args.rounds):
            for case in ("uncached", "cached"):
                cache = Path(tmp) / f"cache-{r}"  # new per round: the first evaluation of a round computes
                os.environ["ATELIER_CACHE"] = str(cache)
                timings: dict[str, float] = {}
                t0 = time.perf_counter()
                records = evaluate_run(run_dir, metrics=["fid"], n=args.n, evaluator=evaluator, record=False,
                                       timings=timings)
                timings["total"] = time.perf_counter() - t0
                assert bool(timings["reference_cached"]) == (case == "cached")
                results[case].append(timings)
                print(f"round {r + 1} {case:9} total {timings['total']:.1f} s  FID {records[0]['value']:.3f}",
                      flush=True)

    def med(case: str, key: str) -> float:
        return statistics.median(t[key] for t in results[case])

    print(f"\nFID of {args.n:,} generated MNIST images vs mnist:test (digits evaluator), torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.rounds} round(s)\n")
    print(f"{'phase':<34} {'uncached ref (s)':>17} {'cached ref (s)':>15}")
    rows = [("generation (DCGAN, 10k samples)", "generation"), ("features of the samples", "features"),
            ("reference features (10k / cache)", "reference"), ("statistics (mean, cov, FID)", "statistics"),
            ("total", "total")]
    for label, key in rows:
        print(f"{label:<34} {med('uncached', key):>17.2f} {med('cached', key):>15.2f}")
    print(f"\ncached / uncached total: {med('cached', 'total') / med('uncached', 'total'):.2f}x the time")


if __name__ == "__main__":
    main()
