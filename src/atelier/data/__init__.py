"""Data sources and the training batch loader.

A *source spec* is one string: ``mnist`` / ``mnist:test`` / ``fashion-mnist[:split]`` by name, or a
path to an image folder (recursive), a ``.zip`` of images or an ``.npz`` with an ``images`` array
(e.g. one written by :func:`prepare_dataset`). Every source is read once into memory as a uint8
tensor ``(N, C, H, W)`` (C = 1, 3 or 4 = RGBA): a few thousand sprites at 64-128 px fit easily, and
batches are then a gather plus one conversion, with no worker processes to manage. Folders and zips
are read through a cache of decoded arrays keyed by their contents (:mod:`atelier.data.prepare`), so
only the first run pays for decoding.

Also here: :func:`data_info` (sizes, modes, alpha use, duplicates, classes of a source) and
:func:`recommend_recipe` (a training recipe chosen from those facts).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from atelier.data.dataset import UNKNOWN_LICENSE, ImageDataset
from atelier.data.loader import BatchLoader
from atelier.data.mnist import NAMED, load_named
from atelier.errors import DataError
from atelier.images import WHITE

if TYPE_CHECKING:
    from atelier.config import DataConfig

__all__ = ["BatchLoader", "ImageDataset", "class_names", "data_info", "open_data", "open_source", "parse_spec",
           "prepare_dataset", "recommend_recipe"]


def expand_source(spec: str) -> str:
    """Expand ``$VAR`` / ``${VAR}`` and ``~`` in a source spec; an unset variable is a clear error."""
    out = os.path.expanduser(os.path.expandvars(spec))
    if "$" in out:
        raise DataError(f"data source {spec!r} uses an environment variable that is not set "
                        "(e.g. export ATELIER_DATA=/path/to/data)")
    return out


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"mnist:test"`` -> ``("mnist", "test")``; a path -> ``(path, None)``."""
    name, _, split = spec.partition(":")
    if name.lower() in NAMED:
        return name.lower(), (split or "train")
    return spec, None


def class_names(source: str, num_classes: int) -> tuple[str, ...]:
    """Names of ``num_classes`` classes of a model trained on ``source``: a named dataset's ("Trouser"...), else
    the numbers "0".."K-1"."""
    name, split = parse_spec(source)
    names = tuple(NAMED[name].classes) if split is not None else ()
    return names if len(names) == num_classes else tuple(str(i) for i in range(num_classes))


def skipped_warning(name: str, skipped: list[str], what: str = "file") -> None:
    """One summary warning naming (up to five of) the unreadable items a source skipped."""
    shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    warnings.warn(f"{name}: skipped {len(skipped)} unreadable {what}(s): {shown}", UserWarning, stacklevel=3)


def open_source(spec: str, channels: int = 1, resolution: int = 28, limit: int | None = None, *,
                alpha: str | None = None, background: str | Sequence[int] = WHITE,
                cache: bool | None = None) -> ImageDataset:
    """Read a data source into memory at the given channel count and square resolution.

    ``channels`` 1 or 3 composite transparency over ``background`` (``alpha="composite"``, the default for
    them); 4 keeps it (``alpha="keep"``) and gives opaque images alpha 255. Folders and zips go through the
    dataset cache (``cache=None``: unless ``ATELIER_DATA_CACHE=0``); a prepared ``.npz`` is read as stored.
    """
    from atelier.data import files
    from atelier.data.prepare import cache_enabled, prepared_meta, read_cached, resolve_alpha

    resolve_alpha(channels, alpha)
    name, split = parse_spec(expand_source(spec))
    if split is not None:
        ds = NAMED[name]
        if channels != 1:
            raise DataError(f"{name} is grayscale (1 channel); the config asks for {channels}. "
                            "Set data.channels: 1")
        images, labels = load_named(name, split)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        images = images[..., None]
        if resolution != images.shape[1]:
            images = _resize_all(images, resolution)
        return ImageDataset(
            images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
            labels=torch.from_numpy(labels), name=f"{name}:{split}", classes=ds.classes, license=ds.license,
        )

    path = Path(name).expanduser()
    if not path.exists():
        known = ", ".join(NAMED)
        raise DataError(f"data source not found: {spec} (give a folder, a .zip, an .npz, or one of: {known})")
    prepared, license = None, None
    if path.is_dir() or path.suffix.lower() == ".zip":
        if path.is_dir() and not files.list_folder(path):
            raise DataError(f"{path} contains no files; put images (PNG, JPEG, ...) in it")
        if cache if cache is not None else cache_enabled():
            decoded, entry, _ = read_cached(path, channels, resolution, background, limit)
            prepared = str(entry) if entry.is_file() else None
        elif path.is_dir():
            decoded = files.load_folder(path, channels, resolution, limit, background)
        else:
            decoded = files.load_zip(path, channels, resolution, limit, background)
    elif path.suffix.lower() == ".npz":
        decoded = files.load_npz(path, channels, resolution, limit, background)
        meta = prepared_meta(path)
        if meta is not None:
            prepared, license = str(path), meta.get("license")
    else:
        raise DataError(f"{spec} is a file atelier cannot read as a dataset; give a folder, a .zip or an .npz")
    images, labels, classes, skipped = decoded
    if len(images) == 0:
        detail = f" ({len(skipped)} unreadable file(s), e.g. {skipped[0]})" if skipped else ""
        raise DataError(f"{spec} holds no readable images{detail}")
    if channels == 3 and _all_gray(images):
        raise DataError(f"{spec} holds only grayscale images; the config asks for 3 channels. "
                        "Set data.channels: 1 (--set data.channels=1)")
    if skipped:
        skipped_warning(spec, skipped)
    return ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
        labels=torch.from_numpy(labels) if labels is not None else None,
        name=str(path), classes=classes, skipped=skipped, license=license or _folder_license(path),
        names=decoded.names, prepared=prepared,
    )


def open_data(data: DataConfig, source: str | None = None, limit: int | None = None) -> ImageDataset:
    """Open ``data.source`` (or ``source``, e.g. ``data.eval_source``) with every read option of a run's data
    section: channels, resolution, alpha mode, background and limit."""
    return open_source(source or data.source, channels=data.channels, resolution=data.resolution,
                       limit=limit if limit is not None else data.limit, alpha=data.alpha,
                       background=data.background)


def __getattr__(name: str):
    # Imported on first use (PEP 562): these modules import atelier.data themselves, so a top-level import
    # here would be a cycle.
    if name == "prepare_dataset":
        from atelier.data.prepare import prepare_dataset

        return prepare_dataset
    if name == "data_info":
        from atelier.data.info import data_info

        return data_info
    if name == "recommend_recipe":
        from atelier.data.recipe import recommend_recipe

        return recommend_recipe
    raise AttributeError(f"module 'atelier.data' has no attribute {name!r}")


# The CMP facades as shipped for pix2pix/CycleGAN carry no licence file; say what is known (../shared/data/SOURCES.md).
FACADES_LICENSE = ("none stated by the source; CMP Facade Database (R. Tyleček, R. Šára, GCPR 2013), "
                   "its own terms not checked")


def _folder_license(path: Path) -> str:
    from atelier.data.files import folder_license

    if path.is_dir() and (note := folder_license(path)):
        return note
    if any(part.lower().startswith("facades") for part in path.resolve().parts[-3:]):
        return FACADES_LICENSE
    return UNKNOWN_LICENSE


def _all_gray(images: np.ndarray) -> bool:
    return bool(images.shape[-1] == 3 and (images[..., 0] == images[..., 1]).all()
                and (images[..., 1] == images[..., 2]).all())


def _resize_all(images: np.ndarray, resolution: int) -> np.ndarray:
    from PIL import Image

    from atelier.images import fit_to_square

    return np.stack([np.asarray(fit_to_square(Image.fromarray(a[..., 0]), resolution))[..., None] for a in images])
