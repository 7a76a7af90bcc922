"""Image folders, ``.zip`` archives and ``.npz`` arrays as data sources.

Unreadable files inside a folder or archive (truncated, zero-byte, not an image) are skipped; the
caller gets their names so that it can warn once with a summary. Images are converted to the
configured channel count and resized + centre-cropped to the configured square resolution.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atelier.errors import DataError, ImageError
from atelier.images import load_image

__all__ = ["load_folder", "load_npz", "load_zip"]

# Files that are never images and never worth a warning.
_IGNORED = {".ds_store", "thumbs.db", "desktop.ini"}


def _labels_from_parents(names: list[str]) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """A folder tree per class (``0/…``, ``1/…``) gives labels; a flat folder gives none."""
    parents = [Path(n).parent.as_posix() for n in names]
    classes = sorted(set(parents))
    if len(classes) < 2 or any(p in ("", ".") for p in parents):
        return None, ()
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[p] for p in parents], dtype=np.int64), tuple(classes)


def _decode_all(
    items: Iterable[tuple[str, Callable[[], bytes]]], channels: int, resolution: int, total: int, desc: str,
    limit: int | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    images, names, skipped = [], [], []
    for name, read in tqdm(items, total=total, desc=desc, unit="img", leave=False, disable=total < 500):
        if limit is not None and len(images) >= limit:
            break
        try:
            data = read()
            if not data:
                raise ImageError(f"{name} is empty (0 bytes)")
            images.append(load_image(data, channels=channels, resolution=resolution, name=name))
            names.append(name)
        except ImageError:
            skipped.append(name)
    if not images:
        return np.zeros((0, resolution, resolution, channels), np.uint8), names, skipped
    return np.stack(images), names, skipped


def load_folder(root: Path, channels: int, resolution: int, limit: int | None = None):
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.name.lower() not in _IGNORED and not any(part.startswith(".") for part in
                                                                       p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"{root} contains no files; put images (PNG, JPEG, ...) in it")
    rels = [p.relative_to(root).as_posix() for p in files]
    items = ((rel, (lambda p=p: p.read_bytes())) for rel, p in zip(rels, files, strict=True))
    images, names, skipped = _decode_all(items, channels, resolution, len(files), f"reading {root.name}", limit)
    labels, classes = _labels_from_parents(names)
    return images, labels, classes, skipped


def load_zip(path: Path, channels: int, resolution: int, limit: int | None = None):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path} is not a readable zip file ({exc})") from None
    with zf:
        infos = sorted(
            (i for i in zf.infolist() if not i.is_dir() and Path(i.filename).name.lower() not in _IGNORED
             and not Path(i.filename).name.startswith(".") and "__MACOSX" not in i.filename),
            key=lambda i: i.filename,
        )
        if not infos:
            raise DataError(f"{path} contains no files")

        def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
            def read() -> bytes:
                try:
                    return zf.read(info)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:  # corrupt member
                    raise ImageError(f"{info.filename}: {exc}") from None
            return read

        images, names, skipped = _decode_all(((i.filename, reader(i)) for i in infos), channels, resolution,
                                             len(infos), f"reading {path.name}", limit)
    labels, classes = _labels_from_parents(names)
    return images, labels, classes, skipped


def load_npz(path: Path, channels: int, resolution: int, limit: int | None = None):
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz.files:
                raise DataError(f"{path} has arrays {npz.files}; atelier expects one named 'images' "
                                "(uint8, N x H x W or N x H x W x C) and optionally 'labels'")
            images = npz["images"]
            labels = npz["labels"] if "labels" in npz.files else None
            # Class names, as `atelier synth` writes them (a 1-d array of strings).
            classes = tuple(str(c) for c in npz["classes"]) if "classes" in npz.files else ()
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(f"{path}: 'images' must be N x H x W or N x H x W x C with C in (1, 3, 4); "
                        f"got shape {images.shape}")
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) and images.size and images.min() >= 0 and images.max() <= 1:
            images = (images * 255 + 0.5).astype(np.uint8)
        else:
            raise DataError(f"{path}: 'images' must be uint8 (or float in [0, 1]); got {images.dtype}")
    if labels is not None and labels.shape[0] != images.shape[0]:
        raise DataError(f"{path}: {images.shape[0]} images but {labels.shape[0]} labels")
    if limit is not None:
        images = images[:limit]
        labels = labels[:limit] if labels is not None else None
    c = images.shape[-1]
    if c == 4:
        images, c = images[..., :3], 3
    if channels == 3 and c == 1:
        raise DataError(f"{path} holds 1-channel images; the config asks for 3 channels "
                        "(set data.channels: 1, or give RGB images)")
    if channels == 1 and c == 3:
        # ITU-R 601-2 luma, as Pillow's convert("L").
        images = (images @ np.array([0.299, 0.587, 0.114]) + 0.5).clip(0, 255).astype(np.uint8)[..., None]
    if images.shape[1:3] != (resolution, resolution):
        from PIL import Image

        from atelier.images import fit_to_square

        out = []
        for a in images:
            img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
            a2 = np.asarray(fit_to_square(img, resolution))
            out.append(a2[..., None] if a2.ndim == 2 else a2)
        images = np.stack(out)
    return images, (labels.astype(np.int64) if labels is not None else None), classes, []
