"""What images meet on the web, as functions of a PIL image (issues 7 and 20).

Shared by ``tests/test_watermark.py`` and ``benchmarks/watermark_robustness.py`` so both measure the same thing;
nothing here is used to embed or detect. Issue 20's attacks keep the size they produce (a thumbnail stays a
thumbnail): the detector has to find the scale by itself. ``resize 0.5x + back`` is issue 7's older case.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

from PIL import Image, ImageEnhance, ImageFilter

__all__ = ["ATTACKS", "CLASSIC", "WEB", "encode", "rescale"]

Attack = Callable[[Image.Image], Image.Image]


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 75) -> Image.Image:
    """Encode and decode in memory (JPEG / WebP / PNG); the decoded image has no metadata."""
    buf = io.BytesIO()
    img.save(buf, fmt, **({} if fmt == "PNG" else {"quality": quality}))
    with Image.open(io.BytesIO(buf.getvalue())) as out:
        return out.convert(img.mode)


def rescale(img: Image.Image, factor: float, resample: int = Image.Resampling.BICUBIC) -> Image.Image:
    """Resize by ``factor`` (Pillow's antialiased resampling, as a CMS or a browser does) and keep that size."""
    return img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))), resample)


def crop(img: Image.Image, share: float, edge: str) -> Image.Image:
    """Remove ``share`` of the width (left/right) or height (top/bottom) from one edge."""
    w, h = img.size
    cx, cy = round(share * w), round(share * h)
    return img.crop({"left": (cx, 0, w, h), "top": (0, cy, w, h), "right": (0, 0, w - cx, h),
                     "bottom": (0, 0, w, h - cy)}[edge])


def resize_back(img: Image.Image) -> Image.Image:
    """Issue 7's case: 0.5x and back to the original size (the grid lines up again)."""
    return rescale(img, 0.5).resize(img.size, Image.Resampling.BICUBIC)


def social(img: Image.Image) -> Image.Image:
    """A social network's upload: long side at most 1080 px (Lanczos), JPEG q80, metadata stripped."""
    scale = min(1.0, 1080 / max(img.size))
    small = rescale(img, scale, Image.Resampling.LANCZOS) if scale < 1 else img
    return encode(small, "JPEG", 80)


def screenshot(img: Image.Image) -> Image.Image:
    """A screenshot of a scaled page: 0.8x bilinear, a 1-pixel Gaussian blur, then PNG."""
    return encode(rescale(img, 0.8, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(1)), "PNG")


def rotate(img: Image.Image, degrees: float) -> Image.Image:
    """Rotate (bicubic) and crop to the largest centred rectangle of the same aspect without empty corners."""
    w, h = img.size
    a = math.radians(abs(degrees))
    # The largest w' x h' box with w'/h' = w/h inside the rotated w x h rectangle.
    k = min(w / (w * math.cos(a) + h * math.sin(a)), h / (w * math.sin(a) + h * math.cos(a)))
    out = img.rotate(degrees, Image.Resampling.BICUBIC)
    cw, ch = math.floor(w * k), math.floor(h * k)
    left, top = (w - cw) // 2, (h - ch) // 2
    return out.crop((left, top, left + cw, top + ch))


def contrast(img: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(factor)


def brightness(img: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(factor)


def _shrink(factor: float, codec: str | None = None) -> Attack:
    """Rescale by ``factor`` (kept at that size), then optionally re-encode at quality 75."""
    def attack(im: Image.Image) -> Image.Image:
        small = rescale(im, factor)
        return small if codec is None else encode(small, codec, 75)
    return attack


def _crop(share: float, edge: str) -> Attack:
    return lambda im: crop(im, share, edge)


def _web() -> dict[str, Attack]:
    out: dict[str, Attack] = {}
    for f in (0.9, 0.75, 0.5, 0.33):
        out[f"{f}x"] = _shrink(f)
        out[f"{f}x + jpeg q75"] = _shrink(f, "JPEG")
        out[f"{f}x + webp q75"] = _shrink(f, "WEBP")
    out["1.5x"] = _shrink(1.5)
    for share in (0.1, 0.25, 0.5):
        for edge in ("left", "top", "right", "bottom"):
            out[f"crop {round(100 * share)}% {edge}"] = _crop(share, edge)
    out["social (1080 px, jpeg q80)"] = social
    out["screenshot (0.8x bilinear, blur, png)"] = screenshot
    out["rotate +2 + crop"] = lambda im: rotate(im, 2.0)
    out["rotate -2 + crop"] = lambda im: rotate(im, -2.0)
    out["grayscale"] = lambda im: im.convert("L")
    out["brightness +10%"] = lambda im: brightness(im, 1.1)
    out["brightness -10%"] = lambda im: brightness(im, 0.9)
    out["contrast +10%"] = lambda im: contrast(im, 1.1)
    out["contrast -10%"] = lambda im: contrast(im, 0.9)
    return out


# name -> function of a PIL image returning the attacked PIL image
CLASSIC: dict[str, Attack] = {
    "none": lambda im: im,
    "jpeg q75": lambda im: encode(im, "JPEG", 75),
    "resize 0.5x + back": resize_back,
}
WEB: dict[str, Attack] = _web()
ATTACKS: dict[str, Attack] = {**CLASSIC, **WEB}
