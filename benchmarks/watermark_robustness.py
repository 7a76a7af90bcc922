"""Robustness, imperceptibility, speed and false positives of atelier's invisible watermark.

Prints, per image size: bit accuracy of the 48-bit payload (mean and worst over the images) after each
attack of issue 7, the rate at which the payload is recovered exactly (CRC match), the PSNR of the
watermarked image, embed/detect times; the same on MNIST digit grids at their native size (black
backgrounds, the hardest case); then the false-positive rate of the detector on images that were never watermarked (real
photos, facades, MNIST digits and grids, generated samples, the benchmark images at 64-120 px).

    ATELIER_DATA=../shared/data python benchmarks/watermark_robustness.py
    python benchmarks/watermark_robustness.py --sizes 64,128,256 --samples 'runs/*/samples/*.png'

The default run takes about 3 minutes on a 2-core CPU (set OMP_NUM_THREADS=1 on a shared machine).
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from atelier import watermark as W
from atelier.imageio import save_image
from atelier.images import load_image

ATTACKS = W.ATTACKS


def _sources(data: Path, samples: str) -> list[tuple[str, Image.Image]]:
    out = []
    paths = sorted((data / "content").glob("*")) + sorted((data / "style").glob("*"))
    paths += [data / "facades" / "test" / f"{i}.jpg" for i in (1, 17, 33, 49)]
    for p in paths + sorted(Path(p) for p in glob.glob(samples))[:4]:
        img = Image.fromarray(load_image(p))
        if "facades" in p.parts:
            img = img.crop((0, 0, img.width // 2, img.height))  # the photo half of the A|B pair
        out.append((p.name, img))
    return out


def _attack_table(columns: dict[str, list[np.ndarray]], id_prefix: str) -> None:
    """Mark every image of every column (its own payload each), run every attack, detect; print one row per
    attack (bit accuracy mean / worst, exact %), then PSNR and the embed / detect times."""
    rows: dict[str, list[str]] = {name: [] for name in ATTACKS}
    extra: dict[str, list[str]] = {"images": [], "PSNR dB (min / mean)": [], "embed ms (median)": [],
                                   "detect ms (median)": []}
    for images in columns.values():
        acc: dict[str, list[float]] = {name: [] for name in ATTACKS}
        exact: dict[str, list[bool]] = {name: [] for name in ATTACKS}
        ps, te, td = [], [], []
        for k, arr in enumerate(images):
            id32 = W.model_id_hash(f"{id_prefix}-{k}")
            t0 = time.perf_counter()
            marked = W.embed(arr, id32)
            te.append(time.perf_counter() - t0)
            ps.append(W.psnr(arr, marked))
            truth = W.encode_payload(id32)
            for name, attack in ATTACKS.items():
                attacked = np.asarray(attack(Image.fromarray(marked)))
                t0 = time.perf_counter()
                found = W.detect(attacked)
                td.append(time.perf_counter() - t0)
                acc[name].append(float(np.mean(found.bits == truth)))
                exact[name].append(found.id32 == id32)
        for name in ATTACKS:
            rows[name].append(f"{100 * np.mean(acc[name]):.1f} / {100 * np.min(acc[name]):.1f} "
                              f"({100 * np.mean(exact[name]):.0f}%)")
        extra["images"].append(str(len(images)))
        extra["PSNR dB (min / mean)"].append(f"{min(ps):.1f} / {np.mean(ps):.1f}")
        extra["embed ms (median)"].append(f"{1000 * statistics.median(te):.1f}")
        extra["detect ms (median)"].append(f"{1000 * statistics.median(td):.1f}")
    print("| attack | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, cells in {**rows, **extra}.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def robustness(sources, sizes, max_images_large: int) -> None:
    print("\n## Bit accuracy of the 48-bit payload after each attack: mean / worst over the images "
          "(exact payload recovered: % of images)")
    print(f"(atelier marks images from {W.MIN_SIZE} px a side: by QIM under {W.TILE_MIN_SIZE} px, with the tiled "
          "pattern from there)\n")
    _attack_table({f"{size}x{size}": [np.asarray(ImageOps.fit(src, (size, size), Image.Resampling.LANCZOS))
                                      for _, src in (sources if size <= 512 else sources[:max_images_large])]
                   for size in sizes}, "benchmark-run")


def _digit_grid(digits: np.ndarray, n: int, first: int) -> np.ndarray:
    """n x n MNIST digits with 2 px black gaps, as atelier's sample grids lay them out: (30 n + 2) px."""
    side = 30 * n + 2
    grid = np.zeros((side, side), np.uint8)
    for j in range(n * n):
        r, c = divmod(j, n)
        grid[2 + 30 * r:30 + 30 * r, 2 + 30 * c:30 + 30 * c] = digits[first + j]
    return grid


def mnist_grids(data: Path, grid_sizes: list[int], count: int) -> None:
    if not (data / "mnist").is_dir():
        return
    from atelier.data.mnist import load_named

    digits, _ = load_named("mnist", "test")
    print("\n## MNIST digit grids at native size (black background, hard edges): bit accuracy mean / worst "
          f"(exact), {count} grids each\n")
    _attack_table({f"{n}x{n} digits ({30 * n + 2} px)": [_digit_grid(digits, n, k * n * n) for k in range(count)]
                   for n in grid_sizes}, "mnist-grid")


def false_positives(data: Path, samples: str, n_digits: int, sources) -> None:
    print("\n## False positives on images that were never watermarked (a payload whose CRC-16 matches; under "
          f"{W.TILE_MIN_SIZE} px the detector also searches for QIM)\n")
    groups: dict[str, list[np.ndarray]] = {}
    photos = sorted((data / "content").glob("*")) + sorted((data / "style").glob("*"))
    groups["content + style photos (native size)"] = [load_image(p) for p in photos]
    groups["facades A|B pairs (512x256)"] = [load_image(p) for p in sorted((data / "facades").glob("*/*.jpg"))]
    if (data / "mnist").is_dir():
        from atelier.data.mnist import load_named

        digits, _ = load_named("mnist", "test")
        groups["MNIST test digits (28x28)"] = list(digits[:n_digits])
        groups["MNIST grids 8x8 (224x224)"] = [
            digits[i * 64:(i + 1) * 64].reshape(8, 8, 28, 28).transpose(0, 2, 1, 3).reshape(224, 224)
            for i in range(100)]
        groups["MNIST grids 3x3 (92x92)"] = [_digit_grid(digits, 3, 9 * i) for i in range(100)]
    gen = sorted(glob.glob(samples))
    if gen:
        groups[f"generated samples ({samples})"] = [load_image(p) for p in gen]
    # Under TILE_MIN_SIZE the detector also searches for QIM: the benchmark images at 64-120 px.
    groups["benchmark images at 64, 80, 96, 112, 120 px"] = [
        np.asarray(ImageOps.fit(src, (s, s), Image.Resampling.LANCZOS)) for _, src in sources
        for s in (64, 80, 96, 112, 120)]
    print("| images | n | detected | false-positive rate | z-score p99 / max |")
    print("|---|---:|---:|---:|---:|")
    total = hits = 0
    for name, images in groups.items():
        found = [W.detect(img) for img in images]
        det = sum(f.detected for f in found)
        z = [f.confidence for f in found]
        total, hits = total + len(images), hits + det
        print(f"| {name} | {len(images)} | {det} | {100 * det / len(images):.2f}% | "
              f"{np.percentile(z, 99):.1f} / {max(z):.1f} |")
    print(f"| **all** | {total} | {hits} | {100 * hits / max(total, 1):.2f}% | |")


def save_cost(data: Path, tmp: Path) -> None:
    print("\n## Cost inside save_image (PNG, median of 5)\n")
    print("| size | embed only ms | save_image without watermark ms | save_image with watermark ms | PNG KB without / "
          "with |")
    print("|---|---:|---:|---:|---:|")
    with Image.open(data / "content" / "astronaut.png") as im:
        src = im.convert("RGB")
    for size in (224, 1024):
        arr = np.asarray(src.resize((size, size), Image.Resampling.LANCZOS))
        times, kb = {}, {}
        for label, fn in (("embed", lambda a=arr: W.embed(a, 1)),
                          ("plain", lambda a=arr: save_image(a, tmp / "a.png", {"run": "r"}, watermark=False)),
                          ("marked", lambda a=arr: save_image(a, tmp / "a.png", {"run": "r"}))):
            fn()
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - t0)
            times[label] = 1000 * statistics.median(runs)
            kb[label] = (tmp / "a.png").stat().st_size / 1024 if label != "embed" else 0.0
        print(f"| {size}x{size} | {times['embed']:.1f} | {times['plain']:.1f} | {times['marked']:.1f} | "
              f"{kb['plain']:.0f} / {kb['marked']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("ATELIER_DATA", "../shared/data"))
    ap.add_argument("--sizes", default="64,80,96,112,127,128,192,256,512,1024,2048")
    ap.add_argument("--samples", default="runs/*/samples/*.png", help="Glob of generated (unmarked) images.")
    ap.add_argument("--max-large", type=int, default=4, help="Images used at sizes above 512.")
    ap.add_argument("--grids", default="3,4,5", help="MNIST grids of n x n digits (30 n + 2 px) to measure.")
    ap.add_argument("--grid-count", type=int, default=10, help="Grids of each size.")
    ap.add_argument("--digits", type=int, default=2000, help="MNIST digits in the false-positive test.")
    args = ap.parse_args()
    data = Path(args.data)
    start = time.perf_counter()
    sources = _sources(data, args.samples)
    robustness(sources, [int(s) for s in args.sizes.split(",")], args.max_large)
    mnist_grids(data, [int(n) for n in args.grids.split(",")], args.grid_count)
    false_positives(data, args.samples, args.digits, sources)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_cost(data, Path(tmp))
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
