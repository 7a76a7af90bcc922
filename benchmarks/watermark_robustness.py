"""Robustness, imperceptibility, speed and false positives of atelier's invisible watermark (issues 7 and 20).

Prints:

1. per image size, after each attack of ``atelier.provenance.watermark.attacks`` (issue 20's are kept at the size
   they make: nothing is scaled back), the share of images whose 48-bit payload is recovered exactly and the mean
   bit accuracy; the PSNR of the marked images; embed / detect times;
2. issue 20's first table again: the 512 px photo written by ``save_image`` (what ``atelier watermark embed``
   does), shrunk and re-encoded, detected as ``atelier watermark detect`` does;
3. the 12 shared photos and paintings at their own size, after every kept-small rescale (+ JPEG q75);
4. MNIST digit grids at native size (black backgrounds, the hardest case);
5. false positives on unmarked images from every shared folder (and the photos attacked);
6. detection time on 1080 px images against a plain reference (Pillow decoding the same image as JPEG);
7. the cost inside ``save_image``.

    ATELIER_DATA=../shared/data python benchmarks/watermark_robustness.py
    python benchmarks/watermark_robustness.py --sizes 128,256 --only attacks,issue
    OMP_NUM_THREADS=1 python benchmarks/watermark_robustness.py --only timing

The default run takes about an hour on a shared 2-core CPU (set OMP_NUM_THREADS=1 there).
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import atelier.provenance.watermark as W
from atelier.imageio import save_image
from atelier.images import load_image
from atelier.provenance.watermark import attacks as A

FIT = Image.Resampling.LANCZOS


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


def _attack_table(columns: dict[str, list[np.ndarray]], id_prefix: str, attacks: dict[str, A.Attack]) -> None:
    """Mark every image of every column (its own payload each), run every attack, detect; one row per attack:
    exact payload (% of images) / mean bit accuracy (%); then PSNR and the embed / detect times."""
    rows: dict[str, list[str]] = {name: [] for name in attacks}
    extra: dict[str, list[str]] = {"images": [], "PSNR dB (min / mean)": [], "embed ms (median)": [],
                                   "detect ms (median / max)": []}
    for images in columns.values():
        acc: dict[str, list[float]] = {name: [] for name in attacks}
        exact: dict[str, list[bool]] = {name: [] for name in attacks}
        ps, te, td = [], [], []
        for k, arr in enumerate(images):
            id32 = W.model_id_hash(f"{id_prefix}-{k}")
            t0 = time.perf_counter()
            marked = W.embed(arr, id32)
            te.append(time.perf_counter() - t0)
            ps.append(W.psnr(arr, marked))
            truth = W.encode_payload(id32)
            for name, attack in attacks.items():
                attacked = np.asarray(attack(Image.fromarray(marked)))
                t0 = time.perf_counter()
                found = W.detect(attacked)
                td.append(time.perf_counter() - t0)
                acc[name].append(float(np.mean(found.bits == truth)))
                exact[name].append(found.id32 == id32)
        for name in attacks:
            rows[name].append(f"{100 * np.mean(exact[name]):.0f}% / {100 * np.mean(acc[name]):.1f}")
        extra["images"].append(str(len(images)))
        extra["PSNR dB (min / mean)"].append(f"{min(ps):.1f} / {np.mean(ps):.1f}")
        extra["embed ms (median)"].append(f"{1000 * statistics.median(te):.0f}")
        extra["detect ms (median / max)"].append(f"{1000 * statistics.median(td):.0f} / {1000 * max(td):.0f}")
    print("| attack | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, cells in {**rows, **extra}.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def robustness(sources, sizes: list[int], max_images_large: int) -> None:
    print("\n## Exact payload (% of images) / mean bit accuracy (%) after each attack, kept at the size it makes\n")
    print(f"(from {W.MIN_SIZE} px atelier marks images by the QIM frame; from {W.TILE_MIN_SIZE} px by the tile "
          "and the QIM frame; sizes are before the attack)\n")
    _attack_table({f"{size}x{size}": [np.asarray(ImageOps.fit(src, (size, size), FIT))
                                      for _, src in (sources if size <= 512 else sources[:max_images_large])]
                   for size in sizes}, "benchmark-run", A.ATTACKS)


def _via_save_image(pixels: np.ndarray, model_id: str, tmp: Path) -> Image.Image:
    """What ``atelier watermark embed`` writes (PNG through save_image), read back."""
    out = save_image(pixels, tmp / "marked.png", {"workflow": "watermark-embed", "model_id": model_id})
    with Image.open(out) as im:
        return im.convert("RGB")


ISSUE_TABLE: dict[str, A.Attack] = {
    "none": A.CLASSIC["none"], "JPEG q75": A.CLASSIC["jpeg q75"], "0.5x and back to 512 px": A.resize_back,
    "0.9x (kept)": A.WEB["0.9x"], "0.75x (kept)": A.WEB["0.75x"], "0.5x (kept)": A.WEB["0.5x"],
    "0.5x (kept) + JPEG q75": A.WEB["0.5x + jpeg q75"], "0.33x (kept) + JPEG q75": A.WEB["0.33x + jpeg q75"],
    "0.5x (kept) + WebP q75": A.WEB["0.5x + webp q75"], "rotate 2 deg + crop": A.WEB["rotate +2 + crop"],
}


def issue_table(data: Path, tmp: Path) -> None:
    print("\n## Issue 20's first table: the 512 px photo (content/astronaut.png) through save_image, then detect\n")
    marked = _via_save_image(load_image(data / "content" / "astronaut.png"), "issue-20", tmp)
    print("| attack on the marked 512 px photo | size | detected? | method | z-score | scale / rotation found |")
    print("|---|---|---|---|---:|---|")
    for name, attack in ISSUE_TABLE.items():
        img = attack(marked)
        f = W.detect(np.asarray(img))
        ok = "yes" if f.id32 == W.model_id_hash("issue-20") else ("**wrong payload**" if f.detected else "**no**")
        geo = "not measured" if f.scale is None else f"{f.scale:.4f} / {f.rotation:+.2f} deg"
        print(f"| {name} | {img.width}x{img.height} | {ok} | {f.method} | {f.confidence:.1f} | {geo} |")


def native_photos(data: Path, tmp: Path) -> None:
    print("\n## The 12 shared photos and paintings at their own size, marked through save_image: found after "
          "each kept-small rescale\n")
    paths = sorted((data / "content").glob("*")) + sorted((data / "style").glob("*"))
    marked = [_via_save_image(load_image(p), f"native-{k}", tmp) for k, p in enumerate(paths)]
    print("| attack | found (of 12) | mean bit accuracy | scale found within 2% |")
    print("|---|---:|---:|---:|")
    for f in (0.9, 0.75, 0.5, 0.33):
        for suffix in ("", " + jpeg q75", " + webp q75"):
            name = f"{f}x{suffix}"
            found = [W.detect(np.asarray(A.WEB[name](img))) for img in marked]
            hits = sum(d.id32 == W.model_id_hash(f"native-{k}") for k, d in enumerate(found))
            acc = np.mean([np.mean(d.bits == W.encode_payload(W.model_id_hash(f"native-{k}")))
                           for k, d in enumerate(found)])
            scaled = sum(d.scale is not None and abs(d.scale / f - 1) < 0.02 for d in found)
            print(f"| {name} | {hits} | {100 * acc:.1f}% | {scaled} |")


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
    print("\n## MNIST digit grids at native size (black background, hard edges): exact / mean bit accuracy, "
          f"{count} grids each\n")
    attacks = {**A.CLASSIC, **{k: A.WEB[k] for k in ("0.5x", "crop 10% left", "grayscale", "brightness +10%")}}
    _attack_table({f"{n}x{n} digits ({30 * n + 2} px)": [_digit_grid(digits, n, k * n * n) for k in range(count)]
                   for n in grid_sizes}, "mnist-grid", attacks)


def _emoji(data: Path, n_icons: int, n_sheets: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    paths = sorted(glob.glob(str(data / "emoji" / "*" / "*.png")))
    icons = [load_image(p, channels=3) for p in paths[:: max(1, len(paths) // n_icons)][:n_icons]]
    sheets = [np.vstack([np.hstack([icons[(i + 4 * r + c) % len(icons)] for c in range(4)]) for r in range(4)])
              for i in range(0, 16 * n_sheets, 16)] if icons else []
    return icons, sheets


def false_positives(data: Path, samples: str, args) -> None:
    print("\n## False positives on images that were never watermarked (a payload whose CRC-16 matches)\n")
    groups: dict[str, Callable[[], list[np.ndarray]]] = {}
    photos = sorted((data / "content").glob("*")) + sorted((data / "style").glob("*"))
    groups["photos + paintings, own size"] = lambda: [load_image(p) for p in photos]
    sizes = (64, 96, 128, 192, 256, 384, 512, 1024)
    groups[f"photos + paintings at {', '.join(map(str, sizes))} px"] = lambda: [
        np.asarray(ImageOps.fit(Image.fromarray(load_image(p)), (s, s), FIT)) for p in photos for s in sizes]
    web = ("0.5x + jpeg q75", "0.33x", "rotate +2 + crop", "crop 25% left", "screenshot (0.8x bilinear, blur, png)")
    groups["photos + paintings (512 px) after 5 web attacks"] = lambda: [
        np.asarray(A.WEB[a](ImageOps.fit(Image.fromarray(load_image(p)), (512, 512), FIT))) for p in photos
        for a in web]
    groups["facades A|B pairs (512x256)"] = lambda: [load_image(p) for p in
                                                    sorted((data / "facades").glob("*/*.jpg"))]
    for name in ("mnist", "fashion-mnist"):
        if (data / name).is_dir():
            from atelier.data.mnist import load_named

            d, _ = load_named(name, "test")
            groups[f"{name} 8x8 grids (224 px)"] = lambda d=d: [
                d[i * 64:(i + 1) * 64].reshape(8, 8, 28, 28).transpose(0, 2, 1, 3).reshape(224, 224)
                for i in range(args.grids_fp)]
            groups[f"{name} 3x3 grids (92 px)"] = lambda d=d: [_digit_grid(d, 3, 9 * i) for i in range(args.grids_fp)]
            groups[f"{name} digits enlarged to 96 px"] = lambda d=d: [
                np.asarray(Image.fromarray(x).resize((96, 96), Image.Resampling.BICUBIC)) for x in d[:100]]
    if (data / "emoji").is_dir():
        icons, sheets = _emoji(data, args.emoji, args.emoji // 10)
        groups[f"emoji icons (128 px, {len(icons)} of the folder)"] = lambda: icons
        groups["emoji 4x4 sticker sheets (512 px)"] = lambda: sheets
    gen = sorted(glob.glob(samples))
    if gen:
        groups[f"generated samples ({samples})"] = lambda: [load_image(p) for p in gen]
    print(f"Highest z-score of any attempt, per stage (decoded, i.e. CRC-tested, only from tile "
          f"{W.tile.MIN_Z} / QIM {W.qim_detect.MIN_Z} / searched tile {W.tile.MIN_Z}):\n")
    print("| images | n | detected | false-positive rate | z max: tile / QIM / searched tile | detect ms (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    total = hits = 0
    for name, make in groups.items():
        images = make()
        times, found, zmax = [], [], {"tile": 0.0, "qim": 0.0, "sync": 0.0}
        for img in images:
            trace: list[W.Detection] = []
            t0 = time.perf_counter()
            found.append(W.detect(img, trace))
            times.append(time.perf_counter() - t0)
            for i, t in enumerate(trace):
                stage = "tile" if i == 0 else ("qim" if t.method == "qim" else "sync")
                zmax[stage] = max(zmax[stage], t.confidence)
        det = sum(f.detected for f in found)
        total, hits = total + len(images), hits + det
        print(f"| {name} | {len(images)} | {det} | {100 * det / len(images):.2f}% | {zmax['tile']:.1f} / "
              f"{zmax['qim']:.1f} / {zmax['sync']:.1f} | {1000 * statistics.median(times):.0f} |", flush=True)
    print(f"| **all** | {total} | {hits} | {100 * hits / max(total, 1):.2f}% | | |")


def _median_time(fn: Callable[[], object], repeat: int = 5) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` (one warm-up call)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def timing(data: Path) -> None:
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"\n## Detection time (OMP_NUM_THREADS={threads}; median of 5, wall / CPU; machine shared)\n")
    print("| image | decode as JPEG (reference) ms | detect ms | detect / reference |")
    print("|---|---:|---:|---:|")
    with Image.open(data / "style" / "the_scream.jpg") as im:
        src = im.convert("RGB")
    for w, h in ((1080, 1080), (1920, 1080)):
        plain = np.asarray(ImageOps.fit(src, (w, h), FIT))
        marked = W.embed(plain, 1)
        buf = io.BytesIO()
        Image.fromarray(plain).save(buf, "JPEG", quality=90)
        ref = _median_time(lambda b=buf: np.asarray(Image.open(io.BytesIO(b.getvalue())).convert("RGB")))
        small = np.asarray(A.WEB["0.5x + jpeg q75"](Image.fromarray(marked)))
        for label, arr in ((f"{w}x{h} unmarked (every stage runs)", plain), (f"{w}x{h} marked", marked),
                           (f"{w}x{h} marked, 0.5x + JPEG q75 ({small.shape[1]}x{small.shape[0]})", small)):
            t = _median_time(lambda a=arr: W.detect(a))
            print(f"| {label} | {1000 * ref[0]:.0f} / {1000 * ref[1]:.0f} | {1000 * t[0]:.0f} / {1000 * t[1]:.0f} | "
                  f"{t[1] / ref[1]:.1f}x |", flush=True)


def save_cost(data: Path, tmp: Path) -> None:
    print("\n## Cost inside save_image (PNG, median of 5)\n")
    print("| size | embed only ms | save_image without watermark ms | save_image with watermark ms | PNG KB without / "
          "with |")
    print("|---|---:|---:|---:|---:|")
    with Image.open(data / "content" / "astronaut.png") as im:
        src = im.convert("RGB")
    for size in (224, 1024):
        arr = np.asarray(src.resize((size, size), FIT))
        times, kb = {}, {}
        for label, fn in (("embed", lambda a=arr: W.embed(a, 1)),
                          ("plain", lambda a=arr: save_image(a, tmp / "a.png", {"run": "r"}, watermark=False)),
                          ("marked", lambda a=arr: save_image(a, tmp / "a.png", {"run": "r"}))):
            times[label] = 1000 * _median_time(fn)[0]
            kb[label] = (tmp / "a.png").stat().st_size / 1024 if label != "embed" else 0.0
        print(f"| {size}x{size} | {times['embed']:.1f} | {times['plain']:.1f} | {times['marked']:.1f} | "
              f"{kb['plain']:.0f} / {kb['marked']:.0f} |")


SECTIONS = ("attacks", "issue", "native", "mnist", "fp", "timing", "save")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("ATELIER_DATA", "../shared/data"))
    ap.add_argument("--sizes", default="128,192,256,512,1024")
    ap.add_argument("--samples", default="runs/*/samples/*.png", help="Glob of generated (unmarked) images.")
    ap.add_argument("--max-large", type=int, default=4, help="Images used at sizes above 512.")
    ap.add_argument("--grids", default="3,4,5", help="MNIST grids of n x n digits (30 n + 2 px) to measure.")
    ap.add_argument("--grid-count", type=int, default=10, help="Grids of each size.")
    ap.add_argument("--grids-fp", type=int, default=150, help="MNIST / Fashion-MNIST grids of each kind (FP test).")
    ap.add_argument("--emoji", type=int, default=1000, help="Emoji icons in the false-positive test.")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"Sections to run, of {', '.join(SECTIONS)}.")
    args = ap.parse_args()
    data, only = Path(args.data), set(args.only.split(","))
    start = time.perf_counter()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "attacks" in only:
            robustness(_sources(data, args.samples), [int(s) for s in args.sizes.split(",")], args.max_large)
        if "issue" in only:
            issue_table(data, tmp)
        if "native" in only:
            native_photos(data, tmp)
        if "mnist" in only:
            mnist_grids(data, [int(n) for n in args.grids.split(",")], args.grid_count)
        if "fp" in only:
            false_positives(data, args.samples, args)
        if "timing" in only:
            timing(data)
        if "save" in only:
            save_cost(data, tmp)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
