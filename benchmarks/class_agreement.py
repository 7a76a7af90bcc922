"""Does a conditional model give the class it is asked for? Class agreement and intra-class diversity vs kimg.

    python benchmarks/class_agreement.py                                   # configs/mnist-cgan.yaml, 100 kimg
    python benchmarks/class_agreement.py --kimg 200 --every-kimg 10 --set model.width=64
    python benchmarks/class_agreement.py --config configs/mnist-dcgan.yaml --set model.num_classes=10

Trains the config from scratch (seeded) and, every ``--every-kimg`` thousand images, samples the EMA
generator on ``--n`` fixed latents with balanced labels (class k for every K-th latent) and reads them with
the digits evaluator (atelier's own MNIST classifier, not the model's D):

* agreement: share of images the classifier calls the requested class (chance 10%), and the worst class's;
* diversity: mean pairwise feature distance within a class over the same for real test images of that
  class, averaged over classes (1.0: as varied as the data), and its worst class;
* intra-FID: the Frechet distance per class against the real test images of that class, averaged.

Wall-clock time is the trainer's own (training steps only), on whatever load the machine had: compare
kimg, not seconds. Single-threaded unless OMP_NUM_THREADS says otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "mnist-cgan.yaml")
    ap.add_argument("--run", type=Path, default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--kimg", type=float, default=100.0, help="thousands of training images")
    ap.add_argument("--every-kimg", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=2000, help="samples per evaluation (balanced over classes)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import tempfile

    import torch

    import atelier
    from atelier.config import parse_set
    from atelier.data import open_source
    from atelier.metrics import fid, load_evaluator
    from atelier.metrics.classes import intra_class_diversity, per_class_agreement
    from atelier.runs import load_config

    overrides = parse_set(args.sets)
    cfg = load_config(args.config, overrides)
    K = int(cfg.model.get("num_classes", 0) or 0)
    if not K:
        raise SystemExit("this benchmark measures class-conditional configs (model.num_classes > 0)")
    batch = cfg.train.batch_size
    steps = round(args.kimg * 1000 / batch)
    every = max(1, round(args.every_kimg * 1000 / batch))
    ev = load_evaluator("digits")
    real = open_source("mnist:test")
    assert real.labels is not None
    real_feats = ev(real.images).features
    z = torch.randn(args.n, int(cfg.model["z_dim"]), generator=torch.Generator().manual_seed(123))
    y = torch.arange(args.n) % K
    rows = []
    print(f"{args.config.name} {' '.join(args.sets)}: batch {batch}, {steps} steps ({args.kimg:g} kimg), "
          f"evaluated every {every} steps on {args.n} samples; threads {torch.get_num_threads()}", flush=True)
    print(f"{'step':>6} {'kimg':>7} {'train s':>8} {'agree':>6} {'worst':>6} {'divers':>6} {'worst':>6} "
          f"{'intraFID':>8}  per-class agreement", flush=True)

    def evaluate(trainer) -> None:
        if trainer.step % every and trainer.step != steps:
            return
        G = trainer.task.ema.model
        with torch.no_grad():
            x = torch.cat([G(zc, yc) for zc, yc in zip(z.split(500), y.split(500), strict=True)])
        images = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        per = per_class_agreement(images, y, ev, K)
        feats = ev(images).features
        div = intra_class_diversity(feats, y, real_feats, real.labels, K)
        ifid = [fid(real_feats[real.labels == k], feats[y == k]) for k in range(K)]
        row = {"step": trainer.step, "kimg": trainer.images_seen / 1000, "seconds": trainer.train_seconds,
               "agree": statistics.fmean(per), "agree_min": min(per), "div": statistics.fmean(div),
               "div_min": min(div), "ifid": statistics.fmean(ifid)}
        rows.append(row)
        print(f"{row['step']:>6} {row['kimg']:>7.1f} {row['seconds']:>8.0f} {row['agree']:>6.1%} "
              f"{row['agree_min']:>6.1%} {row['div']:>6.2f} {row['div_min']:>6.2f} {row['ifid']:>8.2f}  "
              + " ".join(f"{a:.0%}" for a in per), flush=True)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or Path(tmp) / "run"
        atelier.train(args.config, run, {**overrides, "train.steps": steps, "log.tensorboard": False,
                                         "log.sample_every": every, "log.every": every,
                                         "log.checkpoint_every": steps},
                      progress=False, callback=evaluate)
    first90 = next((r for r in rows if r["agree"] >= 0.9), None)
    print("\nfirst evaluation with agreement >= 90%: "
          + (f"{first90['kimg']:.1f} kimg (step {first90['step']})" if first90 else "none")
          + f"; {time.perf_counter() - t0:.0f} s wall in all")


if __name__ == "__main__":
    main()
