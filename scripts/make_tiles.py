"""Build a second colour folder from the shared data: photos or paintings cut into square tiles.

The training recipe (:func:`atelier.data.recommend_recipe`) is chosen by measured quality per CPU-minute
on more than one kind of folder, so that it is not tuned to the emoji: these folders are the other kinds.

    # CMP facade photos (the left, photo half of each pix2pix pair): 400 photos -> 6,370 tiles of 64 px
    python scripts/make_tiles.py facades --out data/facade-tiles
    # the same photos halved first (128 px), so a tile holds a few windows: 1,600 tiles
    python scripts/make_tiles.py facades --scale 0.5 --out data/facade-tiles-wide
    # the seven style paintings, short side 512 px, one class sub-folder per painting: 608 tiles
    python scripts/make_tiles.py style --out data/painting-tiles

Tiles are a non-overlapping grid (``--stride`` for overlap), read in sorted file order, so the same
command gives the same folder. Flat tiles (pixel standard deviation below ``--min-std``, e.g. the
black or grey padding around the rectified facade photos) are left out: they are not the picture.
A LICENSE.txt beside the tiles carries the source's licence note (``atelier data info`` and
``atelier data prepare`` read it). Data comes from ``$ATELIER_DATA``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from atelier.imageio import save_image
from atelier.images import open_image
from atelier.provenance import COMPOSITE_SOURCE_TYPE

LICENSES = {
    "facades": "CMP Facade Database (R. Tylecek, R. Sara, GCPR 2013), as shipped for pix2pix/CycleGAN; licence: "
               "none stated by the source, its own terms not checked (see SOURCES.md of the shared data)",
    "style": "Reproductions of paintings (van Gogh, Munch, Turner, Hokusai, Kandinsky, Picabia; one of unknown "
             "origin): public domain as identified in SOURCES.md of the shared data; check before redistributing",
}


def tiles(img: Image.Image, size: int, stride: int) -> list[tuple[tuple[int, int, int, int], Image.Image]]:
    """Every ``size`` x ``size`` tile on a grid of step ``stride`` that fits inside ``img``."""
    out = []
    for top in range(0, img.height - size + 1, stride):
        for left in range(0, img.width - size + 1, stride):
            box = (left, top, left + size, top + size)
            out.append((box, img.crop(box)))
    return out


def sources(kind: str, data: Path, side: int, scale: float) -> list[tuple[str, str, Image.Image]]:
    """(class folder, source name, image to cut) for each source picture."""
    out = []
    if kind == "facades":
        for p in sorted((data / "facades" / "train").glob("*.jpg"), key=lambda p: int(p.stem)):
            img = open_image(p).convert("RGB")
            photo = img.crop((0, 0, img.width // 2, img.height))  # A | B: the photo is the left half
            if scale != 1:
                size = (round(photo.width * scale), round(photo.height * scale))
                photo = photo.resize(size, Image.Resampling.LANCZOS)
            out.append(("", f"facades/train/{p.name}", photo))
    else:
        for p in sorted((data / "style").glob("*.jpg")):
            img = open_image(p).convert("RGB")
            k = side / min(img.size)
            img = img.resize((round(img.width * k), round(img.height * k)), Image.Resampling.LANCZOS)
            out.append((p.stem, f"style/{p.name}", img))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("facades", "style"))
    p.add_argument("--out", type=Path, required=True, help="folder to write (must be empty or absent)")
    p.add_argument("--size", type=int, default=64, help="tile side in pixels")
    p.add_argument("--stride", type=int, help="grid step (default: --size, no overlap)")
    p.add_argument("--scale", type=float, default=1.0, help="facades: resize the 256-px photos by this first")
    p.add_argument("--side", type=int, default=512, help="style: resize each painting's short side to this first")
    p.add_argument("--min-std", type=float, default=4.0, help="leave out tiles flatter than this (0-255 scale)")
    args = p.parse_args(argv)
    data = Path(os.environ.get("ATELIER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (data / args.kind).is_dir():
        p.error(f"{data / args.kind} not found: set ATELIER_DATA to the shared data folder")
    if args.out.exists() and any(args.out.iterdir()):
        p.error(f"{args.out} is not empty")
    stride = args.stride or args.size
    n = flat = 0
    for folder, name, img in sources(args.kind, data, args.side, args.scale):
        target = args.out / folder
        for box, tile in tiles(img, args.size, stride):
            if float(np.asarray(tile, np.float32).std()) < args.min_std:
                flat += 1
                continue
            meta = {"workflow": "make-tiles", "source": name, "box": ",".join(map(str, box)),
                    "DigitalSourceType": COMPOSITE_SOURCE_TYPE}  # real pixels, cropped: not generated
            save_image(tile, target / f"{Path(name).stem}-{box[1]:04d}-{box[0]:04d}.png", meta, watermark=False)
            n += 1
    (args.out / "LICENSE.txt").write_text(LICENSES[args.kind] + "\n", encoding="utf-8")
    print(f"wrote {n:,} tiles of {args.size}x{args.size} px to {args.out} ({flat} flat tiles left out) "
          f"(command: python scripts/make_tiles.py {' '.join(sys.argv[1:] if argv is None else argv)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
