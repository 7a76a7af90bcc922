"""Rebuild the README's style-transfer gallery with the weights-free feature network.

    PYTHONPATH=src python docs/images/style/make_gallery.py [--size 256] [--steps 150] [--only tubingen]
    PYTHONPATH=src python docs/images/style/make_gallery.py --fast runs/starry   # the fast network's row only

Each content photo in $ATELIER_DATA/content x each style in STYLES, Gatys optimisation (Adam) with the
seeded random multi-scale network and the default weights; one small JPEG per pair, plus the inputs as
thumbnails. ``--fast RUN`` restyles every content photo with a trained fast network instead
(``fast-<photo>.jpg``, one forward pass each), at the same size.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from atelier.imageio import save_image
from atelier.style import stylize
from atelier.style.gatys import image_to_tensor, tensor_to_image

STYLES = ("starry_night", "great_wave", "composition_vii")
OUT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--only", nargs="*", default=None, help="content stems to (re)make")
    ap.add_argument("--styles", nargs="*", default=list(STYLES))
    ap.add_argument("--fast", type=Path, help="a train-style run folder: make the fast network's row")
    args = ap.parse_args()
    data = Path(os.environ.get("ATELIER_DATA", "../shared/data"))
    contents = [c for c in sorted((data / "content").iterdir()) if not args.only or c.stem in args.only]
    if args.fast:
        import atelier

        model = atelier.load(args.fast)
        for content in contents:
            t0 = time.perf_counter()
            image = model(content, size=args.size)
            save_image(image, OUT / f"fast-{content.stem}.jpg", model.metadata(content=content.name), quality=85)
            print(f"{content.stem:10} fast {1000 * (time.perf_counter() - t0):5.0f} ms", flush=True)
        return
    for style in args.styles:
        thumb = tensor_to_image(image_to_tensor(data / "style" / f"{style}.jpg", args.size))
        save_image(thumb, OUT / f"style-{style}.jpg", {"workflow": "thumbnail"}, quality=85)
    for content in contents:
        save_image(tensor_to_image(image_to_tensor(content, args.size)), OUT / f"content-{content.stem}.jpg",
                   {"workflow": "thumbnail"}, quality=85)
        for style in args.styles:
            t0 = time.perf_counter()
            r = stylize(content, data / "style" / f"{style}.jpg", size=args.size, steps=args.steps,
                        features="random", progress=False)
            r.save(OUT / f"{content.stem}-{style}.jpg", {"content": content.name, "style": style})
            print(f"{content.stem:10} x {style:16} {time.perf_counter() - t0:5.1f} s  "
                  f"style {r.initial_losses['style']:.3f} -> {r.losses['style']:.3f}", flush=True)


if __name__ == "__main__":
    main()
