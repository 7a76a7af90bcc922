"""Data sources and the training batch loader.

A *source spec* is one string: ``mnist`` / ``mnist:test`` / ``fashion-mnist[:split]`` by name, or a
path to an image folder (recursive), a ``.zip`` of images or an ``.npz`` with an ``images`` array.
Every source is read once into memory as a uint8 tensor ``(N, C, H, W)``: MNIST-sized data fits
easily, and batches are then a gather plus one conversion, with no worker processes to manage.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from atelier.data.mnist import NAMED, load_named
from atelier.errors import DataError

__all__ = ["BatchLoader", "ImageDataset", "class_names", "open_source", "parse_spec"]


@dataclass
class ImageDataset:
    """Images in memory: uint8 ``(N, C, H, W)``, optional int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    classes: tuple[str, ...] = ()
    license: str = "unknown (not stated by the source)"
    skipped: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[2])


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


def open_source(spec: str, channels: int = 1, resolution: int = 28, limit: int | None = None) -> ImageDataset:
    """Read a data source into memory at the given channel count and square resolution."""
    from atelier.data import files

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
    if path.is_dir():
        images, labels, classes, skipped = files.load_folder(path, channels, resolution, limit)
    elif path.suffix.lower() == ".zip":
        images, labels, classes, skipped = files.load_zip(path, channels, resolution, limit)
    elif path.suffix.lower() == ".npz":
        images, labels, classes, skipped = files.load_npz(path, channels, resolution, limit)
    else:
        raise DataError(f"{spec} is a file atelier cannot read as a dataset; give a folder, a .zip or an .npz")
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
        name=str(path), classes=classes, skipped=skipped, license=_folder_license(path),
    )


# The CMP facades as shipped for pix2pix/CycleGAN carry no licence file; say what is known (../shared/data/SOURCES.md).
FACADES_LICENSE = ("none stated by the source; CMP Facade Database (R. Tyleček, R. Šára, GCPR 2013), "
                   "its own terms not checked")


def _folder_license(path: Path) -> str:
    if any(part.lower().startswith("facades") for part in path.resolve().parts[-3:]):
        return FACADES_LICENSE
    return ImageDataset.license


def _all_gray(images: np.ndarray) -> bool:
    return bool(images.shape[-1] == 3 and (images[..., 0] == images[..., 1]).all()
                and (images[..., 1] == images[..., 2]).all())


def _resize_all(images: np.ndarray, resolution: int) -> np.ndarray:
    from PIL import Image

    from atelier.images import fit_to_square

    return np.stack([np.asarray(fit_to_square(Image.fromarray(a[..., 0]), resolution))[..., None] for a in images])


class BatchLoader:
    """Endless seeded batches with an exactly restorable position.

    Epoch ``e`` visits the images in ``randperm(N)`` drawn from a generator seeded with
    ``(seed, e)``, so the data order depends only on the seed and the position ``(epoch, index)``:
    saving those two integers is enough to resume the stream bit for bit. A trailing partial batch is
    dropped (every batch has the same size, as BatchNorm statistics prefer).

    Augmentation (random ``crop`` to a square size, horizontal flips) draws from a generator seeded by
    the same position, and applies to all channels of an image at once: for paired data, stored as
    input and target stacked on the channel axis, both halves get the same crop and flip.

    Data-parallel training: ``batch_size`` is the *global* batch and process ``rank`` of ``world_size``
    gets rows ``[rank * b, (rank + 1) * b)`` of it, ``b = batch_size / world_size`` (a distributed
    sampler over the same seeded permutation). Augmentation is drawn for the global batch and then
    sliced, so the union of the ranks' batches is exactly the one-process batch, image for image and
    flip for flip; the position is global too, so a checkpoint resumes on any number of processes.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int, hflip: bool = False,
                 crop: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        if batch_size > len(dataset):
            raise DataError(f"batch size {batch_size} is larger than the dataset ({len(dataset)} images); "
                            f"lower --batch-size")
        if batch_size % world_size:
            raise DataError(f"batch size {batch_size} is the global batch and must split evenly over "
                            f"{world_size} processes; use a multiple of {world_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.local_batch = batch_size // world_size
        self.seed = seed
        self.hflip = hflip
        if crop is not None and crop > dataset.resolution:
            raise DataError(f"crop {crop} is larger than the images ({dataset.resolution} px)")
        self.crop = crop if crop != dataset.resolution else None
        self.epoch = 0
        self.index = 0
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(len(self.dataset), generator=g)
        return self._perm

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next batch: float ``(B, C, H, W)`` in [-1, 1] and labels (or None)."""
        if self.index + self.batch_size > len(self.dataset):
            self.epoch, self.index, self._perm = self.epoch + 1, 0, None
        idx = self._permutation()[self.index : self.index + self.batch_size]
        self.index += self.batch_size
        mine = slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)
        x = self.dataset.images[idx[mine]]
        if self.crop is not None or self.hflip:
            g = torch.Generator().manual_seed(self.seed * 7_919 + self.epoch * 1_000_003 + self.index)
            if self.crop is not None:
                span = self.dataset.resolution - self.crop + 1
                offsets = torch.randint(0, span, (len(idx), 2), generator=g)[mine].tolist()
                x = torch.stack([img[:, y : y + self.crop, x0 : x0 + self.crop] for img, (y, x0) in zip(x, offsets,
                                                                                                        strict=True)])
            if self.hflip:
                flip = (torch.rand(len(idx), generator=g) < 0.5)[mine]
                x[flip] = x[flip].flip(-1)
        x = x.float().div_(127.5).sub_(1.0)
        labels = self.dataset.labels[idx[mine]] if self.dataset.labels is not None else None
        return x, labels

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index, self._perm = int(state["epoch"]), int(state["index"]), None
