"""The one door for images: every image atelier reads or writes goes through this module.

Reading converts any mode Pillow opens (L, LA, P, RGB, RGBA, CMYK, I;16, I, F) to the configured
channel count, bounds the pixel count before decoding (decompression bombs) and turns every
failure into an :class:`~atelier.errors.ImageError` naming the file. Writing is atomic and carries
atelier's provenance (metadata, invisible watermark, optional C2PA signature), so it lives in one place.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin

from atelier.errors import ImageError
from atelier.utils import atomic_write_bytes

if TYPE_CHECKING:
    from atelier.provenance import C2paCredentials

__all__ = [
    "MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "encode_animation",
    "encode_image",
    "fit_to_square",
    "load_image",
    "make_grid",
    "open_image",
    "save_image",
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


def _format_for(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    if suffix not in formats:
        raise ImageError(f"cannot write {path.name}: use a .png, .jpg or .webp file name")
    return formats[suffix]


_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


def _watermarked(image: Image.Image, fields: Mapping[str, object]) -> tuple[Image.Image, str]:
    """The image with atelier's invisible watermark, and what to record about it in the metadata."""
    from atelier.provenance import model_id
    from atelier.watermark import MIN_SIZE, embed, model_id_hash

    if min(image.size) < MIN_SIZE:
        return image, f"none (smaller than {MIN_SIZE} px: metadata only)"
    id32 = model_id_hash(model_id(fields))
    claim = f"{id32:08x}"
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    arr = np.asarray(image)
    if image.mode == "RGBA":  # the watermark goes into the colour, the alpha channel is kept as it is
        marked = np.concatenate([embed(arr[:, :, :3], id32), arr[:, :, 3:]], axis=2)
    else:
        marked = embed(arr, id32)
    return Image.fromarray(marked, mode=image.mode), claim


def _to_pil(image: Image.Image | np.ndarray | torch.Tensor) -> Image.Image:
    if isinstance(image, torch.Tensor):
        image = to_uint8_array(image[None] if image.ndim == 3 else image)[0]
    if isinstance(image, np.ndarray):
        arr = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        image = Image.fromarray(arr.astype(np.uint8))
    return image


def encode_image(
    image: Image.Image | np.ndarray | torch.Tensor,
    fmt: str = "png",
    metadata: Mapping[str, object] | None = None,
    quality: int = 95,
    *,
    watermark: bool = True,
    strip_metadata: bool = False,
    c2pa: C2paCredentials | None | bool = None,
    title: str = "image",
) -> bytes:
    """Encode one image in memory with atelier's provenance; :func:`save_image` writes these bytes and the
    studio's server returns them, so every image leaves atelier through this one function.

    * ``watermark``: embed the invisible watermark (payload: a hash of the ``model_id`` / ``run`` / ``model``
      field of ``metadata``) into generated images of at least :data:`atelier.watermark.MIN_SIZE` (64) pixels
      a side; images whose ``DigitalSourceType`` says they are not generated (dataset previews) are not marked.
    * metadata: PNG iTXt chunks + XMP, or XMP for JPEG/WebP; ``strip_metadata=True`` writes none (the
      watermark stays).
    * ``c2pa``: sign a C2PA manifest as the very last step; ``None`` signs when ``ATELIER_C2PA_CERT`` and
      ``ATELIER_C2PA_KEY`` are set, ``False`` never signs, or pass :class:`~atelier.provenance.C2paCredentials`.
    """
    from atelier.provenance import (
        COMPOSITE_SOURCE_TYPE,
        build_metadata,
        c2pa_credentials_from_env,
        model_id,
        sign_c2pa,
        xmp_packet,
    )

    if fmt.lower() not in _FORMATS:
        raise ImageError(f"cannot encode as {fmt!r}: use png, jpeg or webp")
    fmt = _FORMATS[fmt.lower()]
    image = _to_pil(image)
    fields = dict(metadata or {})
    if watermark and fields.get("DigitalSourceType") != COMPOSITE_SOURCE_TYPE:
        image, fields["watermark"] = _watermarked(image, fields)
        fields.setdefault("model_id", model_id(fields))
    meta = build_metadata(fields)
    buf = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if not strip_metadata:
            for key, value in meta.items():
                info.add_itxt(key, value)
            info.add_itxt("XML:com.adobe.xmp", xmp_packet(meta))
        image.save(buf, format="PNG", pnginfo=info, optimize=False)
    else:
        rgb = image.convert("RGB") if image.mode not in ("RGB", "L") else image
        extra = {} if strip_metadata else {"xmp": xmp_packet(meta).encode("utf-8")}
        rgb.save(buf, format=fmt, quality=quality, **extra)
    data = buf.getvalue()
    creds = c2pa_credentials_from_env() if c2pa is None else (c2pa or None)
    if creds is not None and not strip_metadata:
        data = sign_c2pa(data, fmt, meta, creds, title=title)
    return data


def encode_animation(
    frames: Sequence[Image.Image | np.ndarray] | torch.Tensor,
    metadata: Mapping[str, object] | None = None,
    duration_ms: int = 80,
    loop: bool = True,
    strip_metadata: bool = False,
) -> bytes:
    """Encode frames as an animated GIF carrying atelier's XMP packet in its comment block (none with
    ``strip_metadata``).

    No invisible watermark: GIF's 256-colour palette quantisation would erase it; the metadata says so.
    """
    from atelier.provenance import build_metadata, xmp_packet

    if isinstance(frames, torch.Tensor):
        frames = list(to_uint8_array(frames))
    pils = [_to_pil(f) for f in frames]
    if not pils:
        raise ValueError("an animation needs at least one frame")
    meta = build_metadata({**(metadata or {}), "watermark": "none (GIF palette: metadata only)"})
    buf = io.BytesIO()
    extra = {} if strip_metadata else {"comment": xmp_packet(meta).encode("utf-8")}
    pils[0].save(buf, format="GIF", save_all=True, append_images=pils[1:], duration=duration_ms,
                 loop=0 if loop else 1, **extra)
    return buf.getvalue()


def save_image(
    image: Image.Image | np.ndarray | torch.Tensor,
    path: str | Path,
    metadata: Mapping[str, object] | None = None,
    quality: int = 95,
    *,
    watermark: bool = True,
    strip_metadata: bool = False,
    c2pa: C2paCredentials | None | bool = None,
) -> Path:
    """Write one image atomically with atelier's provenance (see :func:`encode_image` for the options)."""
    path = Path(path)
    data = encode_image(image, _format_for(path), metadata, quality, watermark=watermark,
                        strip_metadata=strip_metadata, c2pa=c2pa, title=path.name)
    atomic_write_bytes(path, data)
    return path


def save_images(images: Sequence[Image.Image] | torch.Tensor, out_dir: str | Path, stem: str = "image",
                metadata: Mapping[str, object] | None = None, names: Sequence[str] | None = None,
                **options: object) -> list[Path]:
    """Write a batch as one PNG per image into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(images, torch.Tensor):
        images = [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in to_uint8_array(images)]
    paths = []
    for i, img in enumerate(images):
        name = names[i] if names else f"{stem}-{i:05d}.png"
        paths.append(save_image(img, out_dir / name, metadata, **options))  # type: ignore[arg-type]
    return paths
