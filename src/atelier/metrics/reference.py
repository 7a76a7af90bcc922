"""Image sets to score (data sources read to fit an evaluator) and the reference-feature cache.

Reference features of a named dataset split are computed once per evaluator and kept in
``<cache>/metrics/`` as safetensors, keyed by dataset, split, the dataset files' sha256, the
evaluator's weights sha256 and its preprocessing: a different evaluator file or preprocessing gets
a different key, never a stale hit. Folders, zips and .npz files are keyed the same way by their
fingerprint (every file's relative path, size and modification time, as the dataset cache of
:mod:`atelier.data.prepare` is) and the read options: editing, adding or touching a file recomputes.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from atelier.data import expand_source, open_source, parse_spec
from atelier.data.mnist import NAMED
from atelier.data.prepare import fingerprint
from atelier.download import cache_dir
from atelier.errors import DataError, ImageError
from atelier.images import IMAGE_SUFFIXES, open_image
from atelier.metrics.evaluators import Evaluator
from atelier.utils import atomic_write_bytes

if TYPE_CHECKING:
    from atelier.config import DataConfig

__all__ = ["ImageSet", "native_format", "read_images", "reference_features"]

CACHE_FORMAT = "atelier-ref-features/1"
_PROBE = 16  # images looked at to learn a folder's native size and colour


@dataclass
class ImageSet:
    images: torch.Tensor   # uint8 (N, C, H, W)
    name: str              # the source spec
    total: int             # images in the source (before taking a subset)


def _probe_images(path: Path) -> list[np.ndarray]:
    """A few decoded images of a folder / zip / npz at their native size (H, W, C)."""
    def decoded(items) -> list[np.ndarray]:
        out = []
        for name, read in items:
            try:
                img = open_image(read(), name=name)
            except ImageError:
                continue
            arr = np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
            out.append(arr[..., None] if arr.ndim == 2 else arr)
            if len(out) >= _PROBE:
                break
        return out

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        return decoded((p.name, p.read_bytes) for p in files)
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                infos = sorted((i for i in zf.infolist() if Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
                                and "__MACOSX" not in i.filename), key=lambda i: i.filename)
                return decoded((i.filename, lambda i=i: zf.read(i)) for i in infos)
        except (zipfile.BadZipFile, OSError):
            return []  # open_source reports it properly
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arr = npz["images"][:_PROBE] if "images" in npz.files else None
        except (OSError, ValueError, zipfile.BadZipFile):
            return []
        if arr is None:
            return []
        return [a[..., None] if a.ndim == 2 else a[..., :3] for a in arr]
    return []


def _probe_format(probe: list[np.ndarray]) -> tuple[list[tuple[int, int]], bool]:
    """The distinct (H, W) sizes of probed images, and whether any of them has colour."""
    sizes = sorted({a.shape[:2] for a in probe})
    colour = any(a.shape[2] == 3 and not ((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
                 for a in probe)
    return sizes, colour


def native_format(spec: str) -> tuple[int, int | None] | None:
    """(channels, square size) of a folder / zip / npz from its first images; the size is None when they are
    not all one square size, and the result is None when nothing readable was found."""

    path = Path(expand_source(spec))
    probe = _probe_images(path) if path.exists() else []
    if not probe:
        return None
    sizes, colour = _probe_format(probe)
    h, w = sizes[0]
    return (3 if colour else 1), (h if len(sizes) == 1 and h == w else None)


def read_images(spec: str, evaluator: Evaluator, n: int | None = None, seed: int = 0,
                like: DataConfig | None = None) -> ImageSet:
    """Read a data source for ``evaluator``: named datasets as they are, files at their native size, or, with
    ``like`` (a run's data section), exactly as that run read its training data (resolution, channels, alpha
    mode, background), so that a folder reference differs from the run's samples by the model only.

    A folder of 64x64 photos given to the 28x28 ``digits`` evaluator is refused (resizing them would
    score the resize, not the data). ``n`` takes a seeded random subset.
    """
    name, split = parse_spec(spec)
    ev = evaluator.spec
    if split is not None:
        if ev.datasets and name not in ev.datasets:
            warnings.warn(f"the {ev.name} evaluator was trained on {', '.join(ev.datasets)}, not {name}: "
                          "its scores on this data are not meaningful", UserWarning, stacklevel=2)
        ds = open_source(spec)
    elif like is not None:
        evaluator.check(like.channels, like.resolution, like.resolution, spec)
        ds = open_source(spec, channels=like.channels, resolution=like.resolution, alpha=like.alpha,
                         background=like.background)
    else:
        path = Path(spec).expanduser()
        probe = _probe_images(path) if path.exists() else []
        if not probe:
            ds = open_source(spec, channels=1, resolution=ev.resolution or 299)  # raises the data layer's error
        else:
            sizes, colour = _probe_format(probe)
            h, w = sizes[0]
            evaluator.check(3 if colour else 1, h, w, spec)
            if len(sizes) > 1 and ev.resolution is not None:
                raise DataError(f"{spec} holds images of several sizes ({', '.join(f'{a}x{b}' for a, b in sizes)}); "
                                f"the {ev.name} evaluator reads {ev.resolution}x{ev.resolution} images only")
            # One native square size: read as is. Mixed or non-square: square-crop to 299 (Lanczos).
            size = h if len(sizes) == 1 and h == w else 299
            ds = open_source(spec, channels=3 if colour else 1, resolution=size)
    images = ds.images
    total = len(images)
    if n is not None and n < total:
        idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
        images = images[idx.sort().values]
    return ImageSet(images, spec, total)


def _cache_key(name: str, split: str, evaluator: Evaluator) -> str:
    ds = NAMED[name]
    files = [f for f in ds.files[split] if f]
    key = {"format": CACHE_FORMAT, "dataset": name, "split": split,
           "data_sha256": [ds.sha256[f] for f in files], **evaluator.protocol()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _file_cache_key(path: Path, evaluator: Evaluator, like: DataConfig | None) -> str:

    read = None if like is None else [like.channels, like.resolution, like.alpha, like.background]
    key = {"format": CACHE_FORMAT, "path": str(path.resolve()), "fingerprint": fingerprint(path), "read": read,
           **evaluator.protocol()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def reference_features(ref: str, evaluator: Evaluator, batch_size: int = 500, use_cache: bool = True,
                       like: DataConfig | None = None) -> tuple[torch.Tensor, dict]:
    """Features ``(N, D)`` of a whole reference set, and what they are (``ref``, ``n_ref``, ``cached``).
    ``like``: read a folder reference as that data section reads its training data (see :func:`read_images`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save


    name, split = parse_spec(ref)
    path = None
    if split is not None and use_cache:
        if split not in NAMED[name].files:
            raise DataError(f"{name} has splits {sorted(NAMED[name].files)}, not {split!r}")
        key = _cache_key(name, split, evaluator)
        path = cache_dir() / "metrics" / f"ref-{name}-{split}-{evaluator.name}-{key[:16]}.safetensors"
    elif use_cache and (src := Path(expand_source(ref)).expanduser()).exists():
        key = _file_cache_key(src, evaluator, like)
        stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in src.name)[:40]
        path = cache_dir() / "metrics" / f"ref-{stem}-{evaluator.name}-{key[:16]}.safetensors"
    if path is not None and path.is_file():
        try:
            feats = load_file(str(path))["features"]
            return feats, {"ref": f"{name}:{split}" if split else ref, "n_ref": len(feats), "cached": True,
                           "cache_file": str(path)}
        except (SafetensorError, OSError, KeyError):
            path.unlink(missing_ok=True)  # torn or foreign: recompute below
    data = read_images(ref, evaluator, like=like)
    feats = evaluator(data.images, batch_size=batch_size, what=f"reference {ref}").features
    info = {"ref": f"{name}:{split}" if split else ref, "n_ref": len(feats), "cached": False}
    if path is not None:
        meta = {"format": CACHE_FORMAT, "ref": info["ref"], **evaluator.protocol()}
        atomic_write_bytes(path, save({"features": feats.contiguous()}, metadata=meta))
        info["cache_file"] = str(path)
    return feats, info
