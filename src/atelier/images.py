"""Pixels in: decoding any image file with size limits, mode conversion, uint8 conversion and grids.

Reading converts any mode Pillow opens (L, LA, P, RGB, RGBA, CMYK, I;16, I, F) to the configured
channel count (1, 3, or 4 = RGBA), bounds the pixel count before decoding (decompression bombs) and
turns every failure into an :class:`~atelier.errors.ImageError` naming the file. Transparency read
as 1 or 3 channels is composited over a background colour (the "over" operator of Porter & Duff
1984), never dropped; read as 4 channels it is kept, and an image without alpha gets alpha 255.
Grids show RGBA images over a checkerboard so that transparency stays visible. Nothing here writes
a file: :mod:`atelier.imageio` is the one door out, with provenance.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageColor, ImageOps

from atelier.errors import ImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "WHITE",
    "checkerboard",
    "composite",
    "fit_to_square",
    "has_alpha",
    "image_format",
    "load_image",
    "make_grid",
    "open_image",
    "parse_color",
    "to_channels",
    "to_pil",
    "to_uint8_array",
]

# 64 megapixels: generous for photographs, far below what would exhaust memory when decoded.
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
WHITE = (255, 255, 255)
# The checkerboard image editors draw behind transparent pixels (white and light grey squares).
CHECKER_COLOURS = (255, 204)

Color = tuple[int, int, int]


def parse_color(value: str | Sequence[int]) -> Color:
    """``"white"``, ``"#rrggbb"``, ``"#rgb"`` or ``(r, g, b)`` -> an opaque ``(r, g, b)``; anything else is an
    ImageError naming the value."""
    if isinstance(value, str):
        try:
            rgb: tuple[int, ...] = ImageColor.getrgb(value.strip())
        except ValueError:
            raise ImageError(f"unknown colour {value!r}: give a colour name (white, black, gray, ...) or "
                             "#rrggbb") from None
    else:
        rgb = tuple(int(v) for v in value)
        if len(rgb) not in (3, 4) or not all(0 <= v <= 255 for v in rgb):
            raise ImageError(f"a colour is (r, g, b) with values in 0..255, got {tuple(value)!r}")
    if len(rgb) == 4 and rgb[3] != 255:
        raise ImageError(f"the background colour {value!r} must be opaque (it is what transparency is shown over)")
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def open_image(source: str | Path | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image, checking its size before decoding it."""
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise ImageError(f"image not found: {label}") from None
    except OSError as exc:
        raise ImageError(f"cannot open {label}: {exc.strerror or exc}") from None
    with fp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(fp)
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageError(f"{label} is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}")
                if w < 1 or h < 1:
                    raise ImageError(f"{label} has an empty size {w}x{h}")
                img.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{label} is too large to decode safely (decompression bomb check)") from None
        except Image.UnidentifiedImageError:
            raise ImageError(f"{label} is not a readable image (unknown format, or not an image file)") from None
        except Exception as exc:  # Pillow raises many types for corrupt files
            raise ImageError(f"{label} is not a readable image ({type(exc).__name__}: {exc})") from None
    # Honour the EXIF orientation so photos are the right way up.
    return ImageOps.exif_transpose(img) or img


def has_alpha(img: Image.Image) -> bool:
    """Whether ``img`` can hold transparency (an alpha band, or a transparent palette / colour key)."""
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def to_channels(img: Image.Image, channels: int, background: Color = WHITE) -> Image.Image:
    """``img`` as L (1), RGB (3) or RGBA (4); transparency composited over ``background`` for 1 and 3."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit grayscale: scale the actual range to 8 bits rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F":
            hi = max(float(arr.max()), 1e-12) if arr.max() > 1.0 else 1.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
        mode = "L"
    if channels == 4:
        # Keep transparency (a palette's transparent index and a colour key become alpha); no alpha -> 255.
        if not has_alpha(img) and img.mode not in ("L", "RGB"):
            img = img.convert("RGB")  # CMYK, YCbCr, 1, ...: Pillow has no direct route to RGBA for all of them
        return img.convert("RGBA")
    if has_alpha(img):
        # Composite over the background, as a viewer shows it: straight alpha "over" an opaque colour.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (*background, 255))
        img = Image.alpha_composite(bg, rgba).convert("RGB")
    if channels == 1:
        return img.convert("L")
    return img.convert("RGB")


def fit_to_square(img: Image.Image, resolution: int) -> Image.Image:
    """Resize the short side to ``resolution`` (Lanczos, antialiased) and centre-crop a square.

    Pillow resizes RGBA / LA with premultiplied alpha, so the colour of fully transparent pixels does not
    bleed into the edges of a sprite."""
    return ImageOps.fit(img, (resolution, resolution), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def load_image(
    source: str | Path | bytes,
    channels: int = 3,
    resolution: int | None = None,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    background: str | Sequence[int] = WHITE,
) -> np.ndarray:
    """Read an image as uint8 ``(H, W, C)``; optionally resized and centre-cropped to a square.

    ``channels`` 1 (luma) or 3 (RGB) composite any transparency over ``background``; 4 (RGBA) keeps it."""
    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1, 3 or 4, got {channels}")
    img = to_channels(open_image(source, name=name, max_pixels=max_pixels), channels, parse_color(background))
    if resolution is not None:
        img = fit_to_square(img, resolution)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def to_uint8_array(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] or uint8 -> uint8 (N, H, W, C)."""
    if images.ndim != 4:
        raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.cpu().permute(0, 2, 3, 1).contiguous().numpy()


def composite(rgba: np.ndarray, background: str | Sequence[int] | np.ndarray = WHITE) -> np.ndarray:
    """uint8 ``(..., H, W, 4)`` over an opaque background -> uint8 ``(..., H, W, 3)``.

    ``background`` is a colour, or a uint8 ``(H, W, 3)`` image (e.g. :func:`checkerboard`).
    ``out = c * a + bg * (1 - a)``: straight alpha over an opaque layer (Porter & Duff 1984)."""
    if rgba.shape[-1] != 4:
        raise ValueError(f"expected RGBA (..., 4) pixels, got shape {rgba.shape}")
    bg = (np.asarray(background, np.float32) if isinstance(background, np.ndarray)
          else np.array(parse_color(background), np.float32))
    a = rgba[..., 3:].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def checkerboard(height: int, width: int, square: int | None = None) -> np.ndarray:
    """uint8 ``(H, W, 3)`` white / light-grey checkerboard (squares of ``square`` px, default 1/8 of the side)."""
    square = square or max(2, min(height, width) // 8)
    yy, xx = np.indices((height, width))
    cells = ((yy // square + xx // square) % 2).astype(np.uint8)
    light, dark = CHECKER_COLOURS
    return np.repeat(np.where(cells == 0, light, dark).astype(np.uint8)[..., None], 3, axis=2)


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 2, scale: int = 1) -> Image.Image:
    """Tile a batch into one image; ``images`` is (N, C, H, W) in [-1, 1] / uint8, or uint8 (N, H, W, C).

    RGBA images (C = 4) are drawn over a checkerboard, so that transparent pixels show as such; the grid
    itself is RGB (or L for grayscale)."""
    arr = to_uint8_array(images) if isinstance(images, torch.Tensor) else np.asarray(images, dtype=np.uint8)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, H, W, C) batch, got shape {arr.shape}")
    if arr.shape[3] == 4:
        arr = composite(arr, checkerboard(arr.shape[1], arr.shape[2]))
    n, h, w, c = arr.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol_rows = math.ceil(n / nrow)
    grid = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 32, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = arr[i]
    img = Image.fromarray(grid[:, :, 0] if c == 1 else grid, mode="L" if c == 1 else "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return img


def image_format(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    if suffix not in formats:
        raise ImageError(f"cannot write {path.name}: use a .png, .jpg or .webp file name")
    return formats[suffix]


def to_pil(image: Image.Image | np.ndarray | torch.Tensor) -> Image.Image:
    if isinstance(image, torch.Tensor):
        image = to_uint8_array(image[None] if image.ndim == 3 else image)[0]
    if isinstance(image, np.ndarray):
        arr = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        image = Image.fromarray(arr.astype(np.uint8))
    assert isinstance(image, Image.Image)
    return image


