"""Image folders, ``.zip`` archives and ``.npz`` arrays as data sources.

Unreadable files inside a folder or archive (truncated, zero-byte, not an image) are skipped; the
caller gets their names so that it can warn once with a summary. Images are converted to the
configured channel count (1, 3, or 4 = RGBA; transparency read as 1 or 3 channels is composited over
``background``) and resized + centre-cropped to the configured square resolution. A licence or
readme text file beside the images is not an image and not worth a warning: :func:`folder_license`
reads the licence note from it.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atelier.errors import DataError, ImageError
from atelier.images import WHITE, composite, fit_to_square, load_image

__all__ = ["Decoded", "folder_license", "list_folder", "load_folder", "load_npz", "load_zip", "zip_members"]

# Files that are never images and never worth a warning.
_IGNORED = {".ds_store", "thumbs.db", "desktop.ini"}
# Text files that travel with a dataset (its licence, a readme): their stem, before any suffix.
_NOTES = ("license", "licence", "copying", "readme", "notice", "attribution", "sources")
_NOTE_SUFFIXES = {"", ".txt", ".md", ".rst"}
_LICENSES = ("license", "licence", "copying")


def _is_note(name: str) -> bool:
    p = Path(name)
    return p.suffix.lower() in _NOTE_SUFFIXES and p.stem.lower().startswith(_NOTES)


def _skip(name: str) -> bool:
    base = Path(name).name
    return base.lower() in _IGNORED or _is_note(base)


@dataclass
class Decoded:
    """What a folder or archive gave: uint8 ``(N, H, W, C)`` images, labels, class names, the names of the
    images read and of the files skipped, and a sha256 over the names and bytes of every file read."""

    images: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...]
    skipped: list[str]
    names: list[str] = field(default_factory=list)
    content_sha256: str = ""

    def __iter__(self):  # (images, labels, classes, skipped), as the loaders returned before
        return iter((self.images, self.labels, self.classes, self.skipped))


def folder_license(root: Path) -> str | None:
    """The licence note of a folder: the first non-empty line of a LICENSE / LICENCE / COPYING file at its top
    (with the file's name), or None."""
    if not root.is_dir():
        return None
    for p in sorted(root.iterdir()):
        if p.is_file() and _is_note(p.name) and p.stem.lower().startswith(_LICENSES):
            try:
                text = p.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            if first:
                return f"{first[:200]} (from {p.name})"
    return None


def _labels_from_parents(names: list[str],
                         every: list[str] | None = None) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """A folder tree per class (``0/…``, ``1/…``) gives labels; a flat folder gives none. The classes are those
    of ``every`` file of the source when given (a limited read, e.g. ``data.limit``, keeps the whole folder's
    class numbering even when its first files are all of one class)."""
    parents = [Path(n).parent.as_posix() for n in names]
    universe = [Path(n).parent.as_posix() for n in every] if every is not None else parents
    classes = sorted(set(universe))
    if len(classes) < 2 or any(p in ("", ".") for p in universe):
        return None, ()
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[p] for p in parents], dtype=np.int64), tuple(classes)


def _decode_all(
    items: Iterable[tuple[str, Callable[[], bytes]]], channels: int, resolution: int, total: int, desc: str,
    limit: int | None = None, background: Sequence[int] | str = WHITE, every: list[str] | None = None,
) -> Decoded:
    images: list[np.ndarray] = []
    names: list[str] = []
    skipped: list[str] = []
    digest = hashlib.sha256()
    for name, read in tqdm(items, total=total, desc=desc, unit="img", leave=False, disable=total < 500):
        if limit is not None and len(images) >= limit:
            break
        try:
            data = read()
            digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
            if not data:
                raise ImageError(f"{name} is empty (0 bytes)")
            images.append(load_image(data, channels=channels, resolution=resolution, name=name,
                                     background=background))
            names.append(name)
        except ImageError:
            skipped.append(name)
    arr = np.stack(images) if images else np.zeros((0, resolution, resolution, channels), np.uint8)
    labels, classes = _labels_from_parents(names, every if limit is not None else None)
    return Decoded(arr, labels, classes, skipped, names, digest.hexdigest())


def list_folder(root: Path) -> list[Path]:
    """The files of a folder tree that a dataset reads, sorted: hidden files and folders, system files and
    licence / readme notes left out."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not _skip(p.name) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load_folder(root: Path, channels: int, resolution: int, limit: int | None = None,
                background: Sequence[int] | str = WHITE) -> Decoded:
    files = list_folder(root)
    if not files:
        raise DataError(f"{root} contains no files; put images (PNG, JPEG, ...) in it")
    rels = [p.relative_to(root).as_posix() for p in files]
    items = ((rel, (lambda p=p: p.read_bytes())) for rel, p in zip(rels, files, strict=True))
    return _decode_all(items, channels, resolution, len(files), f"reading {root.name}", limit, background, rels)


def zip_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The members of a zip that a dataset reads, sorted by name (folders, hidden files, macOS resource forks,
    system files and licence / readme notes left out)."""
    return sorted(
        (i for i in zf.infolist() if not i.is_dir() and not _skip(i.filename)
         and not Path(i.filename).name.startswith(".") and "__MACOSX" not in i.filename),
        key=lambda i: i.filename,
    )


def load_zip(path: Path, channels: int, resolution: int, limit: int | None = None,
             background: Sequence[int] | str = WHITE) -> Decoded:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path} is not a readable zip file ({exc})") from None
    with zf:
        infos = zip_members(zf)
        if not infos:
            raise DataError(f"{path} contains no files")

        def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
            def read() -> bytes:
                try:
                    return zf.read(info)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:  # corrupt member
                    raise ImageError(f"{info.filename}: {exc}") from None
            return read

        return _decode_all(((i.filename, reader(i)) for i in infos), channels, resolution, len(infos),
                           f"reading {path.name}", limit, background, [i.filename for i in infos])


def load_npz(path: Path, channels: int, resolution: int, limit: int | None = None,
             background: Sequence[int] | str = WHITE) -> Decoded:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz.files:
                raise DataError(f"{path} has arrays {npz.files}; atelier expects one named 'images' "
                                "(uint8, N x H x W or N x H x W x C) and optionally 'labels'")
            images = npz["images"]
            labels = npz["labels"] if "labels" in npz.files else None
            # Class names, as `atelier synth` and `atelier data prepare` write them (a 1-d array of strings).
            classes = tuple(str(c) for c in npz["classes"]) if "classes" in npz.files else ()
            names = [str(n) for n in npz["names"]] if "names" in npz.files else []
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
        names = names[:limit]
    images = _convert_channels(images, channels, background, path)
    if images.shape[1:3] != (resolution, resolution):
        from PIL import Image


        out = []
        for a in images:
            # RGBA is resized with premultiplied alpha by Pillow (see fit_to_square).
            img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
            a2 = np.asarray(fit_to_square(img, resolution))
            out.append(a2[..., None] if a2.ndim == 2 else a2)
        images = np.stack(out)
    return Decoded(images, labels.astype(np.int64) if labels is not None else None, classes, [], names)


def _convert_channels(images: np.ndarray, channels: int, background: Sequence[int] | str, path: Path) -> np.ndarray:
    """uint8 ``(N, H, W, c)`` -> ``(N, H, W, channels)``: RGBA is composited over ``background`` for 1 or 3
    channels, and opaque images get alpha 255 for 4."""
    c = images.shape[-1]
    if c == channels:
        return images
    if c == 1 and channels > 1:
        raise DataError(f"{path} holds 1-channel images; the config asks for {channels} channels "
                        "(set data.channels: 1, or give colour images)")
    if c == 4 and channels < 4:
        images, c = composite(images, background), 3
    if c == 3 and channels == 4:
        return np.concatenate([images, np.full(images.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    if c == 3 and channels == 1:
        # ITU-R 601-2 luma, as Pillow's convert("L").
        images = (images @ np.array([0.299, 0.587, 0.114]) + 0.5).clip(0, 255).astype(np.uint8)[..., None]
    return images
