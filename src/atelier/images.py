"""Pixels in: decoding any image file with size limits, mode conversion, uint8 conversion and grids.

Reading converts any mode Pillow opens (L, LA, P, RGB, RGBA, CMYK, I;16, I, F) to the configured
channel count, bounds the pixel count before decoding (decompression bombs) and turns every
failure into an :class:`~atelier.errors.ImageError` naming the file. Nothing here writes a file:
:mod:`atelier.imageio` is the one door out, with provenance.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from atelier.errors import ImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "fit_to_square",
    "image_format",
    "load_image",
    "make_grid",
    "open_image",
    "to_pil",
    "to_uint8_array",
]

# 64 megapixels: generous for photographs, far below what would exhaust memory when decoded.
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}


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


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit grayscale: scale the actual range to 8 bits rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F":
            hi = max(float(arr.max()), 1e-12) if arr.max() > 1.0 else 1.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
        mode = "L"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Composite transparency onto white, as a viewer would show it.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba).convert("RGB")
    if channels == 1:
        return img.convert("L")
    return img.convert("RGB")


def fit_to_square(img: Image.Image, resolution: int) -> Image.Image:
    """Resize the short side to ``resolution`` (Lanczos, antialiased) and centre-crop a square."""
    return ImageOps.fit(img, (resolution, resolution), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def load_image(
    source: str | Path | bytes,
    channels: int = 3,
    resolution: int | None = None,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read an image as uint8 ``(H, W, C)``; optionally resized and centre-cropped to a square."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    img = _to_mode(open_image(source, name=name, max_pixels=max_pixels), channels)
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


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 2, scale: int = 1) -> Image.Image:
    """Tile a batch into one image; ``images`` is (N, C, H, W) in [-1, 1] / uint8, or uint8 (N, H, W, C)."""
    arr = to_uint8_array(images) if isinstance(images, torch.Tensor) else np.asarray(images, dtype=np.uint8)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, H, W, C) batch, got shape {arr.shape}")
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
    return image


