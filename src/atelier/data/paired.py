"""Paired images for image-to-image translation (pix2pix).

Two layouts:
- ``side_by_side``: one folder of images, each holding A on the left half and B on the right half
  (the pix2pix datasets' format; the CMP facades have the photo as A and the label map as B);
- ``folders``: ``A/`` and ``B/`` sub-folders whose files are matched by name (stem).

A pair is stored as one uint8 image with input and target stacked on the channel axis
``(2C, L, L)``, so every augmentation the loader applies (random crop, flip) hits both halves alike.

With a ``palette`` the target is a colour-coded label map (segmentation): it is quantised to class indices at
its own size (:meth:`atelier.labelmaps.Palette.quantize`) and resized by nearest neighbour, never blended,
and the pair is ``(C + 1, L, L)``: the photo, then one channel of class indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atelier.data.dataset import ImageDataset
from atelier.data.spec import expand_source, skipped_warning, source_license
from atelier.errors import DataError, ImageError
from atelier.images import IMAGE_SUFFIXES, load_image
from atelier.labelmaps import Palette

__all__ = ["load_paired", "split_pair"]


def _resize(arr: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    out = np.asarray(img.resize((size, size), Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC))
    return out[..., None] if out.ndim == 2 else out


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """An (H, W, 3) half as ``channels`` channels (luma for 1, as Pillow's "L" conversion)."""
    if arr.shape[-1] == channels:
        return arr
    return np.asarray(Image.fromarray(arr).convert("L"))[..., None]


def split_pair(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, 2W, C) side-by-side image -> left (A) and right (B) halves."""
    w = arr.shape[1]
    if w % 2:
        raise ImageError(f"a side-by-side pair needs an even width, got {w}")
    return arr[:, : w // 2], arr[:, w // 2 :]


def load_paired(source: str, layout: str, direction: str, channels: int, size: int,
                limit: int | None = None, palette: Palette | None = None) -> ImageDataset:
    """Read pairs as ``(N, 2C, size, size)`` uint8: channels [0, C) the input, [C, 2C) the target; with a
    ``palette``, ``(N, C + 1, size, size)``: the input, then the target's class indices."""
    root = Path(expand_source(source))
    if not root.is_dir():
        raise DataError(f"paired data not found: {source} (give a folder of side-by-side A|B images, "
                        "or a folder with A/ and B/ sub-folders)")
    if direction not in ("AtoB", "BtoA"):
        raise DataError(f"direction must be AtoB or BtoA, got {direction!r}")
    if layout == "side_by_side":
        files = _images_in(root)
        if not files:
            raise DataError(f"{root} holds no images; expected side-by-side A|B pairs")
        items: list[tuple[str, Path, Path | None]] = [(p.name, p, None) for p in files]
    elif layout == "folders":
        a_dir, b_dir = root / "A", root / "B"
        if not a_dir.is_dir() or not b_dir.is_dir():
            raise DataError(f"{root} needs sub-folders A/ and B/ for data.paired: folders")
        a = {p.stem: p for p in _images_in(a_dir)}
        b = {p.stem: p for p in _images_in(b_dir)}
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        if only_a or only_b:
            parts = []
            if only_a:
                parts.append(f"in A/ only: {', '.join(only_a[:5])}{' ...' if len(only_a) > 5 else ''}")
            if only_b:
                parts.append(f"in B/ only: {', '.join(only_b[:5])}{' ...' if len(only_b) > 5 else ''}")
            raise DataError(f"{root}: unmatched pairs ({'; '.join(parts)}); every file needs a partner of the "
                            "same name")
        items = [(stem, a[stem], b[stem]) for stem in sorted(a)]
    else:
        raise DataError(f"data.paired must be side_by_side or folders, got {layout!r}")

    pairs: list[np.ndarray] = []
    names: list[str] = []
    skipped: list[str] = []
    for name, p_a, p_b in items:
        if limit is not None and len(pairs) >= limit:
            break
        # A label map is read as RGB whatever the photo's channels (its colours are its classes).
        ch_a, ch_b = (channels, 3 if palette is not None else channels)
        if direction == "BtoA":
            ch_a, ch_b = ch_b, ch_a
        try:
            if p_b is None:
                whole = load_image(p_a, channels=max(ch_a, ch_b), name=name)
                img_a, img_b = split_pair(whole)
                img_a, img_b = _channels(img_a, ch_a), _channels(img_b, ch_b)
            else:
                img_a = load_image(p_a, channels=ch_a, name=f"A/{p_a.name}")
                img_b = load_image(p_b, channels=ch_b, name=f"B/{p_b.name}")
        except ImageError:
            skipped.append(name)
            continue
        src, dst = (img_a, img_b) if direction == "AtoB" else (img_b, img_a)
        if palette is not None:
            dst = palette.quantize(dst)[..., None]
        pairs.append(np.concatenate([_resize(src, size), _resize(dst, size, nearest=palette is not None)], axis=-1))
        names.append(name)
    if not pairs:
        raise DataError(f"{source} holds no readable pairs")
    if skipped:
        skipped_warning(source, skipped, what="pair")
    images = torch.from_numpy(np.ascontiguousarray(np.stack(pairs).transpose(0, 3, 1, 2)))
    return ImageDataset(images=images, labels=None, name=str(root), skipped=skipped, names=names,
                        license=source_license(root))
