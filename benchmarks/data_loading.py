"""Does data loading show in a training profile? ``cProfile`` around a short ``atelier train`` on a folder.

    python benchmarks/data_loading.py --config configs/emoji-stylegan.yaml --data $ATELIER_DATA/emoji --steps 40

Prints the top functions by their own time and the cumulative time of the batch loader
(``BatchLoader.next``), of reading the folder (``open_source``: decoded once, then served from the dataset
cache) and of the training steps.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile

import torch

import atelier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as run:
        prof.enable()
        atelier.train(args.config, run, {"data.source": args.data, "train.steps": args.steps, "train.minutes": None,
                                         "log.sample_every": 10**6, "log.checkpoint_every": 10**6,
                                         "log.tensorboard": False, "train.threads": 1}, progress=False)
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("tottime")
    stats.print_stats(10)
    print(out.getvalue())
    wanted = {("loader.py", "next"): "batch loader (BatchLoader.next)", ("sources.py", "open_source"):
              "reading the folder (open_source)", ("loop.py", "train_step"): "training steps (Trainer.train_step)"}
    for (path, _, name), entry in stats.stats.items():  # type: ignore[attr-defined]
        for (file, fn), what in wanted.items():
            if path.endswith(file) and name == fn:
                print(f"{what:40s} {entry[3]:8.2f} s cumulative of {stats.total_tt:.2f} s")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
