"""Projection (GAN inversion) and latent directions, measured on trained runs.

For each run: real images of its domain (MNIST's test split, which the run never saw; for a folder, its first
images) are projected at each step count; the table gives PSNR / SSIM of the reconstruction, how often the domain
classifier gives the reconstruction the original's class, and seconds per image. Then generated targets (whose
latent is known) measure latent recovery, and the top SeFa / PCA directions are scored by how far they move the
classifier's output towards one class against how much the image changes.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/projection.py --run runs/mnist-dcgan
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/projection.py --run runs/emoji-stylegan --classifier emoji

Each image is projected on its own (batch 1, one thread), as ``atelier project`` does; ``--batch B`` projects B at
a time (``atelier.inversion.project_batch``: the same search per image, many times faster per image on a CPU):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/projection.py --run runs/mnist-dcgan --n 500 --batch 100

``--images FOLDER`` projects another set (a group the run never saw), ``--pick random`` draws the ``n`` images at
random instead of taking a folder's first ones.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import atelier
from atelier.data import open_source
from atelier.inversion import ProjectionDistance, choose_features, find_directions, move, psnr, render, ssim
from atelier.inversion.project import dim, has_mapping, latent_stats, mapping, project_batch, project_latent
from atelier.latent import to_uint8
from atelier.metrics.evaluators import EVALUATORS, auto_evaluator, load_evaluator


def real_images(g: atelier.Generator, n: int, source: str | None = None,
                pick: str = "first") -> tuple[torch.Tensor, str]:
    """``n`` real images at the run's size: its test split (MNIST family), or ``source``/its folder, the first ``n``
    or (``pick="random"``) ``n`` at random (seed 0), so that a folder sorted by group is not read group by group."""
    source = source or g.cfg.data.source
    spec = f"{source}:test" if source in ("mnist", "fashion-mnist") else source
    ds = open_source(spec, channels=g.channels, resolution=g.resolution, limit=None if pick == "random" else n)
    if pick == "random":
        keep = torch.randperm(len(ds.images), generator=torch.Generator().manual_seed(0))[:n]
        return ds.images[keep.sort().values], f"{spec} ({len(keep)} at random, seed 0)"
    return ds.images[:n], spec


def classify(evaluator, images: torch.Tensor) -> torch.Tensor:
    return evaluator(images).logits.softmax(1)


def projection_rows(g, images, classifier, steps_list, features, spaces, batch):
    dist = ProjectionDistance(features, g.channels, g.resolution)
    rows = []
    orig_cls = classify(classifier, images).argmax(1) if classifier is not None else None
    for space, steps in [(sp, st) for sp in spaces for st in steps_list]:
        recons, secs = [], []
        cpu0 = time.process_time()
        for i in range(0, len(images), batch):
            targets = images[i:i + batch].float() / 127.5 - 1.0
            for p in project_batch(g.network, targets, dist, space, steps, seed=0, optimize_noise=True):
                recons.append(p.image)
                secs.append(p.seconds)
        rec = torch.stack(recons)
        agree = (classify(classifier, rec).argmax(1) == orig_cls).float().mean().item() if classifier else None
        rows.append({"space": space, "steps": steps, "psnr": sum(psnr(a, b) for a, b in zip(rec, images, strict=True))
                     / len(images), "ssim": ssim(rec, images), "agree": agree, "sec": sum(secs) / len(secs),
                     "cpu": (time.process_time() - cpu0) / len(images)})
    return rows, dist


def recovery(g, dist, n: int, steps: int) -> dict[str, float]:
    """Project generated images whose latent is known; the error is relative to the start's distance."""
    net = g.network
    z = torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(123))
    errs, ps = [], []
    if has_mapping(net):
        with torch.no_grad():
            w_true = mapping(net, z)[:, 0]
        w_avg, _ = latent_stats(net)
        for w in w_true:
            with torch.no_grad():
                target = render(net, w[None], "w").clamp(-1, 1)
            p = project_latent(net, target, dist, "w", steps, optimize_noise=False)
            errs.append(float((p.latent - w).norm() / (w - w_avg).norm()))
            ps.append(psnr(p.image, p.target))
        what = "|w - w*| / |w* - w_avg|"
    else:
        for zt in z:
            with torch.no_grad():
                target = render(net, zt[None], "z")
            p = project_latent(net, target, dist, "z", steps)
            errs.append(float((p.latent - zt).norm() / zt.norm()))
            ps.append(psnr(p.image, p.target))
        what = "|z - z*| / |z*|"
    return {"what": what, "err": sum(errs) / n, "psnr": sum(ps) / n}


@torch.no_grad()
def direction_rows(g, classifier, method: str, k: int, n: int, amount: float) -> list[dict]:
    """Per direction: the class whose probability rises most on average (its "attribute"), that rise, the share of
    images whose class changes, and the mean absolute pixel change (in [0, 1])."""
    net = g.network
    dirs = find_directions(net, method, k)
    z = torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(7))
    lat, space = (mapping(net, z)[:, 0], "w") if has_mapping(net) else (z, "z")
    base = to_uint8(render(net, lat, space))
    p0 = classify(classifier, base)
    rows = []
    for i in range(min(k, len(dirs))):
        moved = torch.stack([move(v, dirs, i, torch.tensor([amount]))[0] for v in lat])
        img = to_uint8(render(net, moved, space))
        p1 = classify(classifier, img)
        rise = (p1 - p0).mean(0)
        c = int(rise.argmax())
        rows.append({"dir": i, "class": c, "rise": float(rise[c]),
                     "flips": float((p1.argmax(1) != p0.argmax(1)).float().mean()),
                     "pixels": float((img.float() - base.float()).abs().mean() / 255)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, action="append", required=True)
    ap.add_argument("--n", type=int, default=5, help="real images per run")
    ap.add_argument("--images", default=None, help="real images from this source (default: the run's domain)")
    ap.add_argument("--pick", choices=("first", "random"), default="first", help="which n images of a folder")
    ap.add_argument("--batch", type=int, default=1, help="images projected together (1: as `atelier project` does)")
    ap.add_argument("--steps", default="200,500")
    ap.add_argument("--spaces", default="auto", help="auto (w with a mapping network, else z) or a list: w,w+")
    ap.add_argument("--targets", type=int, default=4, help="generated targets for latent recovery")
    ap.add_argument("--recovery-steps", type=int, default=200)
    ap.add_argument("--classifier", default="auto", help="auto (the data set's domain classifier) or a name")
    ap.add_argument("--features", default="auto")
    ap.add_argument("--directions", type=int, default=5)
    ap.add_argument("--amount", type=float, default=2.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    steps_list = [int(s) for s in args.steps.split(",")]
    for run in args.run:
        g = atelier.load(run)
        images, spec = real_images(g, args.n, args.images, args.pick)
        name = auto_evaluator(g.cfg.data.source) if args.classifier == "auto" else args.classifier
        classifier = load_evaluator(name) if EVALUATORS[name].logits else None
        features = choose_features(args.features, g.cfg.data.source, g.channels, g.resolution)
        print(f"\n## {run} ({g.cfg.model['name']}, step {g.step}, {g.channels} ch, {g.resolution} px): {len(images)} "
              f"images of {spec}; classifier {name if classifier else 'none'}; distance features {features}")
        print(f"{'space':<6}{'steps':>6}{'PSNR dB':>9}{'SSIM':>8}{'same class':>12}{'s/image':>9}{'CPU s/image':>13}")
        t0 = time.perf_counter()
        spaces = (["w"] if has_mapping(g.network) else ["z"]) if args.spaces == "auto" else args.spaces.split(",")
        rows, dist = projection_rows(g, images, classifier, steps_list, features, spaces, args.batch)
        for r in rows:
            agree = f"{r['agree']:.0%}" if r["agree"] is not None else "n/a"
            print(f"{r['space']:<6}{r['steps']:>6}{r['psnr']:>9.2f}{r['ssim']:>8.3f}{agree:>12}{r['sec']:>9.1f}"
                  f"{r['cpu']:>13.2f}")
        rec = recovery(g, dist, args.targets, args.recovery_steps) if args.targets else None
        if rec:
            print(f"latent recovery on {args.targets} generated targets ({args.recovery_steps} steps): "
                  f"{rec['what']} = {rec['err']:.3f}, PSNR {rec['psnr']:.1f} dB")
        if classifier is not None and args.directions:
            for method in ("sefa", "pca"):
                print(f"{method} directions, amount +{args.amount:g} on 64 samples: the class whose probability rises "
                      f"most, its rise, class flips, mean |pixel change|")
                for d in direction_rows(g, classifier, method, args.directions, 64, args.amount):
                    print(f"  dir {d['dir']}: class {d['class']}  +{d['rise']:.3f}  flips {d['flips']:.0%}  "
                          f"pixels {d['pixels']:.3f}")
        print(f"({time.perf_counter() - t0:.0f} s for this run; dims: z {g.z_dim}"
              + (f", w {dim(g.network, 'w_dim')} x {dim(g.network, 'num_ws')} layers" if has_mapping(g.network)
                 else "") + ")")


if __name__ == "__main__":
    main()
