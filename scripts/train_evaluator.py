"""Train atelier's domain evaluators (the MNIST and Fashion-MNIST feature networks), reproducibly.

    python scripts/train_evaluator.py digits     # -> src/atelier/metrics/weights/digits.safetensors + .json
    python scripts/train_evaluator.py fashion    # -> .../fashion.safetensors + .json
    python scripts/train_evaluator.py digits --out /tmp/digits.safetensors --epochs 1   # a quick try

The weights that ship with atelier were made by exactly these commands (see the .json beside each
file: seed, epochs, test accuracy, torch version, seconds). Data comes from ATELIER_DATA / the cache.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from atelier.metrics.classifier import save_classifier, train_classifier

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "atelier" / "metrics" / "weights"
# evaluator name -> (dataset, epochs, horizontal flips)
PLANS = {"digits": ("mnist", 6, False), "fashion": ("fashion-mnist", 10, True)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(PLANS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="default: 6 for digits, 10 for fashion")
    # One thread: reproducible, and on a shared 2-core machine faster than two (no waiting on a busy core).
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed, for reproducibility)")
    p.add_argument("--out", type=Path, help="default: src/atelier/metrics/weights/<name>.safetensors")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset, epochs, hflip = PLANS[args.name]
    model, report = train_classifier(dataset, seed=args.seed, epochs=args.epochs or epochs, hflip=hflip)
    report.command = "python scripts/train_evaluator.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = args.out or WEIGHTS / f"{args.name}.safetensors"
    digest = save_classifier(model, report, out)
    print(f"{args.name}: test accuracy {report.test_accuracy:.2%} on {dataset}:test, "
          f"{report.train_seconds:.0f} s; wrote {out} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
