"""Reading a data source into memory: named datasets, folders, zips and .npz files, at a configured size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from atelier.data import files
from atelier.data.dataset import ImageDataset
from atelier.data.mnist import NAMED, load_named
from atelier.data.prepare import cache_enabled, npz_provenance, prepared_meta, read_cached, resolve_alpha
from atelier.data.spec import expand_source, parse_spec, skipped_warning, source_license, synth_license
from atelier.errors import DataError
from atelier.images import WHITE, fit_to_square

if TYPE_CHECKING:
    from atelier.config import DataConfig

__all__ = ["open_data", "open_source"]


def open_source(spec: str, channels: int = 1, resolution: int = 28, limit: int | None = None, *,
                alpha: str | None = None, background: str | Sequence[int] = WHITE,
                cache: bool | None = None) -> ImageDataset:
    """Read a data source into memory at the given channel count and square resolution.

    ``channels`` 1 or 3 composite transparency over ``background`` (``alpha="composite"``, the default for
    them); 4 keeps it (``alpha="keep"``) and gives opaque images alpha 255. Folders and zips go through the
    dataset cache (``cache=None``: unless ``ATELIER_DATA_CACHE=0``); a prepared ``.npz`` is read as stored.
    """
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
            license = synth_license(npz_provenance(path))
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
        name=str(path), classes=classes, skipped=skipped, license=license or source_license(path),
        names=decoded.names, prepared=prepared,
    )


def open_data(data: DataConfig, source: str | None = None, limit: int | None = None) -> ImageDataset:
    """Open ``data.source`` (or ``source``, e.g. ``data.eval_source``) with every read option of a run's data
    section: channels, resolution, alpha mode, background and limit."""
    return open_source(source or data.source, channels=data.channels, resolution=data.resolution,
                       limit=limit if limit is not None else data.limit, alpha=data.alpha,
                       background=data.background)


def _all_gray(images: np.ndarray) -> bool:
    return bool(images.shape[-1] == 3 and (images[..., 0] == images[..., 1]).all()
                and (images[..., 1] == images[..., 2]).all())


def _resize_all(images: np.ndarray, resolution: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(fit_to_square(Image.fromarray(a[..., 0]), resolution))[..., None] for a in images])
