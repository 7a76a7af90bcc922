"""Train atelier's domain evaluators (the MNIST, Fashion-MNIST and emoji feature networks), reproducibly.

    python scripts/train_evaluator.py digits     # -> src/atelier/metrics/weights/digits.safetensors + .json
    python scripts/train_evaluator.py fashion    # -> .../fashion.safetensors + .json
    python scripts/train_evaluator.py emoji      # -> .../emoji.safetensors + .json (from $ATELIER_DATA/emoji)
    python scripts/train_evaluator.py digits --out /tmp/digits.safetensors --epochs 1   # a quick try

The weights that ship with atelier were made by exactly these commands (see the .json beside each
file: seed, epochs, test accuracy, torch version, seconds). Data comes from ATELIER_DATA / the cache.

The emoji evaluator is a :class:`~atelier.metrics.colour.ColourClassifier` of the nine group folders,
trained on the images at 64 px composited over white (the evaluator composites RGBA inputs over white
too, so RGBA and RGB runs are scored alike). Its held-out split keeps every variant of one emoji
(skin tones, genders: file names sharing their first code point) on one side, 20% of each group's
images in test, so the test accuracy is not inflated by near-copies of training images.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from atelier.metrics.classifier import TrainReport, accuracy, fit_classifier, save_classifier, train_classifier

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "atelier" / "metrics" / "weights"
# evaluator name -> (dataset, epochs, horizontal flips)
# No flips for emoji: mirrored text, flags and arrows are not emoji, and the features should see that.
PLANS = {"digits": ("mnist", 6, False), "fashion": ("fashion-mnist", 10, True),
         "emoji": ("${ATELIER_DATA}/emoji", 30, False)}
HELD_OUT = 0.2


def group_split(names: list[str], labels: torch.Tensor, held_out: float, seed: int) -> torch.Tensor:
    """A boolean test mask: per class, whole groups (the first code point of the file name) until at least
    ``held_out`` of the class's images are in test."""
    groups = [Path(n).name.split("_")[0].split("-")[0] for n in names]
    test = torch.zeros(len(names), dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    for k in labels.unique().tolist():
        idx = (labels == k).nonzero().flatten().tolist()
        keys = sorted({groups[i] for i in idx})
        order = [keys[j] for j in torch.randperm(len(keys), generator=g).tolist()]
        chosen: set[str] = set()
        for key in order:
            if sum(groups[i] in chosen for i in idx) >= held_out * len(idx):
                break
            chosen.add(key)
        for i in idx:
            test[i] = groups[i] in chosen
    return test


def train_emoji(source: str, *, seed: int, epochs: int, hflip: bool) -> tuple[torch.nn.Module, TrainReport]:
    from atelier.data import open_source
    from atelier.metrics.colour import INPUT_SIZE, ColourClassifier

    ds = open_source(source, channels=3, resolution=INPUT_SIZE, background="white")
    assert ds.labels is not None, f"{source} has no class sub-folders"
    test = group_split(ds.names, ds.labels, HELD_OUT, seed)
    x_train, y_train = ds.images[~test], ds.labels[~test]
    x_test, y_test = ds.images[test], ds.labels[test]
    k = len(ds.classes)
    counts = torch.bincount(y_train, minlength=k).float()
    # Balanced classes (people-body is 59% of the folder): each group shapes the feature space alike.
    weights = counts.sum() / (k * counts)
    t0 = time.perf_counter()

    def on_epoch(model: torch.nn.Module, epoch: int, mean_loss: float) -> None:
        if (epoch + 1) % 5 == 0 or epoch + 1 == epochs:
            print(f"emoji epoch {epoch + 1}/{epochs}  loss {mean_loss:.4f}  test acc "
                  f"{accuracy(model, x_test, y_test, 500):.2%}  {time.perf_counter() - t0:.0f} s", flush=True)

    model = fit_classifier(x_train, y_train, num_classes=k, seed=seed, epochs=epochs, batch_size=64, lr=3e-3,
                           hflip=hflip, build=lambda n: ColourClassifier(num_classes=n), shift=4, fill=255,
                           class_weights=weights, on_epoch=on_epoch)
    acc = accuracy(model, x_test, y_test, 500)
    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in x_test.split(500)])
    per_class = [float((pred[y_test == c] == c).float().mean()) for c in range(k)]
    report = TrainReport(dataset=source, seed=seed, epochs=epochs, batch_size=64, lr=3e-3, precision="bf16",
                         augment="shift+-4 (white)" + ("+hflip" if hflip else "") + ", balanced class weights",
                         train_images=len(y_train), test_images=len(y_test), test_accuracy=round(acc, 6),
                         train_seconds=round(time.perf_counter() - t0, 1), torch_version=torch.__version__,
                         classes=list(ds.classes),
                         split=f"{HELD_OUT:.0%} of each group's images held out by whole emoji (first code point); "
                               f"balanced test accuracy {sum(per_class) / k:.4f}; per class "
                               + ", ".join(f"{c} {a:.3f}" for c, a in zip(ds.classes, per_class, strict=True)),
                         input=f"{INPUT_SIZE}x{INPUT_SIZE} RGB, RGBA composited over white")
    return model, report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(PLANS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="default: 6 for digits, 10 for fashion, 30 for emoji")
    # One thread: reproducible, and on a shared 2-core machine faster than two (no waiting on a busy core).
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed, for reproducibility)")
    p.add_argument("--out", type=Path, help="default: src/atelier/metrics/weights/<name>.safetensors")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset, epochs, hflip = PLANS[args.name]
    if args.name == "emoji":
        if not os.environ.get("ATELIER_DATA"):
            p.error("set ATELIER_DATA to the folder holding emoji/")
        model, report = train_emoji(dataset, seed=args.seed, epochs=args.epochs or epochs, hflip=hflip)
    else:
        model, report = train_classifier(dataset, seed=args.seed, epochs=args.epochs or epochs, hflip=hflip)
    report.command = "python scripts/train_evaluator.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = args.out or WEIGHTS / f"{args.name}.safetensors"
    digest = save_classifier(model, report, out)
    held_out = "the held-out split" if args.name == "emoji" else f"{dataset}:test"
    print(f"{args.name}: test accuracy {report.test_accuracy:.2%} on {held_out}, "
          f"{report.train_seconds:.0f} s; wrote {out} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
