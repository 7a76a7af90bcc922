"""Which resolution gives the better pictures for a CPU budget? Score runs of different resolutions on one scale.

    atelier train --data $ATELIER_DATA/emoji --run-dir runs/r32 --set train.clock=cpu            # 30 min: 32 px
    atelier train --data $ATELIER_DATA/emoji --run-dir runs/r64 --set train.clock=cpu --set data.resolution=64
    python benchmarks/recipe_resolution.py runs/r32 runs/r64 --evaluator emoji --floor 32 64

A run's own ``atelier evaluate`` reads the reference folder at the run's resolution, so a 32-px run is scored
against 32-px versions of the images: an easier target than 64 px, and not comparable with a 64-px run's score.
This script scores every run on common scales (``--at``, default 32 and 64 px), against the run's training folder
read at that size (with the run's channels, alpha and background):

- **at 32 px** a 64-px run's samples are first reduced to 32 px the way training images are read (Lanczos, with
  premultiplied alpha): the shapes and colours of the pictures, their fine detail left out;
- **at 64 px** a 32-px run's samples are enlarged by the evaluator (bilinear) and pay for the detail they lack.

``--floor 32 64`` adds rows of the folder's own images read at 32 and at 64 px: the best a model of that size
can score on each scale (at 64 px, a 32-px model can do no better than its floor). Samples: ``--n`` EMA samples,
seed 0, in the training data's class mix for a conditional run (as ``atelier evaluate`` draws them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _reduce(images: Any, size: int) -> Any:
    """uint8 (N, C, H, W) images reduced to ``size`` px as training images are read (atelier.images.fit_to_square)."""
    import numpy as np
    import torch
    from PIL import Image

    from atelier.images import fit_to_square

    mode = {1: "L", 3: "RGB", 4: "RGBA"}[images.shape[1]]
    out = []
    for a in images.permute(0, 2, 3, 1).numpy():
        img = Image.fromarray(a[..., 0] if mode == "L" else a, mode)
        out.append(np.asarray(fit_to_square(img, size)).reshape(size, size, -1))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def _scores(images: Any, own: int, data: Any, scales: list[int], evaluator: Any, what: str) -> dict[int, dict]:
    from atelier.metrics.evaluate import evaluate_images

    out = {}
    for res in scales:
        shown = _reduce(images, res) if res < own else images
        like = data.model_copy(update={"resolution": res})
        got = {r["metric"]: r["value"] for r in evaluate_images(shown, ref=data.source, evaluator=evaluator,
                                                                like=like, metrics=("fid", "kid", "pr"), what=what)}
        out[res] = {"fid": got["fid"], "kid": got["kid"], "precision": got["precision"], "recall": got["recall"]}
    return out


def score(run: Path, scales: list[int], n: int, evaluator_name: str) -> dict:
    import torch

    import atelier
    from atelier.api.evaluate import training_labels
    from atelier.metrics.evaluators import load_evaluator

    torch.set_num_threads(1)
    g = atelier.load(run)
    labels, _ = training_labels(g, n)
    images = g.sample(n, seed=0, labels=labels)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = [r for r in recs if "train_seconds" in r][-1]
    res = g.cfg.data.resolution
    return {"run": run.name, "resolution": res, "kimg": last["kimg"],
            "cpu_minutes": round(last["train_seconds"] / 60, 1),
            "at": _scores(images, res, g.cfg.data, scales, load_evaluator(evaluator_name), run.name)}


def floor(like_run: Path, resolution: int, scales: list[int], n: int, evaluator_name: str) -> dict:
    """``n`` of the run's training images read at ``resolution`` px, scored as a run of that resolution."""
    import torch

    from atelier.metrics.evaluators import load_evaluator
    from atelier.metrics.reference import read_images
    from atelier.runs import load_config

    data = load_config(like_run / "config.yaml").data
    ev = load_evaluator(evaluator_name)
    real = read_images(data.source, ev, like=data.model_copy(update={"resolution": resolution})).images
    images = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(1))[:n]]
    return {"run": f"real images at {resolution} px (floor)", "resolution": resolution, "kimg": 0, "cpu_minutes": 0,
            "at": _scores(images, resolution, data, scales, ev, "real")}


def table(rows: list[dict], scales: list[int]) -> str:
    head = "| run | px | CPU-min | kimg |" + "".join(
        f" FID at {s} | KID ×1000 at {s} | precision at {s} | recall at {s} |" for s in scales)
    lines = [head, "|---|---:|---:|---:|" + "---:|" * (4 * len(scales))]
    for r in rows:
        cells = "".join(f" {a['fid']:.1f} | {1000 * a['kid']:.0f} | {a['precision']:.2f} | {a['recall']:.3f} |"
                        for a in (r["at"][s] for s in scales))
        lines.append(f"| {r['run']} | {r['resolution']} | {r['cpu_minutes']} | {r['kimg']:.0f} |{cells}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders of generators trained on the same folder")
    ap.add_argument("--at", type=int, nargs="+", default=[32, 64], help="the common scales, in px")
    ap.add_argument("--n", type=int, default=1000, help="samples per run")
    ap.add_argument("--evaluator", default="emoji", help="emoji, or random-cnn (the fallback for any folder)")
    ap.add_argument("--floor", type=int, nargs="*", default=[], metavar="PX",
                    help="add a row of the first run's training images read at PX (the best a PX model can score)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = [score(run, args.at, args.n, args.evaluator) for run in args.runs]
    rows += [floor(args.runs[0], px, args.at, args.n, args.evaluator) for px in args.floor]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows, args.at))


if __name__ == "__main__":
    main()
