"""An in-memory image dataset: what every data source is read into."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["UNKNOWN_LICENSE", "ImageDataset"]

UNKNOWN_LICENSE = "unknown (not stated by the source)"


@dataclass
class ImageDataset:
    """Images in memory: uint8 ``(N, C, H, W)`` (C = 1, 3 or 4 = RGBA), optional int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    classes: tuple[str, ...] = ()
    license: str = UNKNOWN_LICENSE
    skipped: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    # The prepared file the images came from (a cache entry or an `atelier data prepare` .npz), if any.
    prepared: str | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[2])
