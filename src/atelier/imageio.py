"""The one door out for images: every image atelier writes goes through this module.

Writing is atomic and carries atelier's provenance (metadata, invisible watermark, optional C2PA
signature), so it lives in one place. Reading (size limits, mode conversion) and grids are in
:mod:`atelier.images`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from atelier.errors import ImageError
from atelier.images import composite, has_alpha, image_format, to_pil, to_uint8_array
from atelier.provenance import (
    COMPOSITE_SOURCE_TYPE,
    C2paCredentials,
    build_metadata,
    c2pa_credentials_from_env,
    model_id,
    sign_c2pa,
    xmp_packet,
)
from atelier.provenance.watermark import MIN_SIZE, embed, model_id_hash
from atelier.utils import atomic_write_bytes

__all__ = ["encode_animation", "encode_image", "save_image", "save_images"]

_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


def _watermarked(image: Image.Image, fields: Mapping[str, object]) -> tuple[Image.Image, str]:
    """The image with atelier's invisible watermark, and what to record about it in the metadata."""
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


def _flatten(image: Image.Image) -> Image.Image:
    """An RGB / L image for a format without alpha (JPEG): transparency composited over white, as a viewer
    shows it (plain ``convert("RGB")`` would drop alpha and show whatever colour lies under it)."""
    if has_alpha(image):
        return Image.fromarray(composite(np.asarray(image.convert("RGBA"))))
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


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
      field of ``metadata``) into generated images of at least :data:`atelier.provenance.watermark.MIN_SIZE` (64) pixels
      a side; images whose ``DigitalSourceType`` says they are not generated (dataset previews) are not marked.
    * metadata: PNG iTXt chunks + XMP, or XMP for JPEG/WebP; ``strip_metadata=True`` writes none (the
      watermark stays).
    * transparency: an RGBA image (a PIL image, an ``(H, W, 4)`` array or a ``(4, H, W)`` / ``(1, 4, H, W)``
      tensor) is written as RGBA to PNG and WebP (alpha kept exactly; the watermark goes into the colour);
      JPEG has no alpha, so it is composited over white.
    * ``c2pa``: sign a C2PA manifest as the very last step; ``None`` signs when ``ATELIER_C2PA_CERT`` and
      ``ATELIER_C2PA_KEY`` are set, ``False`` never signs, or pass :class:`~atelier.provenance.C2paCredentials`.
    """

    if fmt.lower() not in _FORMATS:
        raise ImageError(f"cannot encode as {fmt!r}: use png, jpeg or webp")
    fmt = _FORMATS[fmt.lower()]
    image = to_pil(image)
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
        extra = {} if strip_metadata else {"xmp": xmp_packet(meta).encode("utf-8")}
        if fmt == "WEBP" and has_alpha(image):
            # WebP keeps alpha (losslessly by default: alpha_quality 100); only the colour is lossy.
            image.convert("RGBA").save(buf, format=fmt, quality=quality, **extra)
        else:
            _flatten(image).save(buf, format=fmt, quality=quality, **extra)
    data = buf.getvalue()
    creds = c2pa_credentials_from_env() if c2pa is None or c2pa is True else (c2pa or None)
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
    if isinstance(frames, torch.Tensor):
        frames = list(to_uint8_array(frames))
    pils = [to_pil(f) for f in frames]
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
    data = encode_image(image, image_format(path), metadata, quality, watermark=watermark,
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
