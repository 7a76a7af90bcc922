"""A semantic segmenter: pix2pix's U-Net with one output per class, trained with cross-entropy.

    net: the U-Net of :mod:`atelier.models.pix2pix` (Ronneberger et al. 2015's skips, Isola et al. 2017's
         4x4 stride-2 blocks), its tanh replaced by raw class scores.      # (B, 3, H, W) -> (B, K, H, W) logits

It is what the pix2pix paper's FCN-score needs (Isola et al. 2017, sec. 4.2: segment a generated photo and
compare with the label map it was made from), and what a region edit needs to pick "all the windows". The
classes and their colours are a palette (:mod:`atelier.labelmaps`): a registered name such as ``cmp-facades``
or a ``name=#rrggbb`` list.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from atelier.errors import ConfigError
from atelier.labelmaps import get_palette
from atelier.models.pix2pix import UNetConfig, UNetGenerator
from atelier.models.registry import ModelSpec, register

__all__ = ["SegmenterConfig", "UNetSegmenter"]


class SegmenterConfig(UNetConfig):
    # The classes and their colours in the label maps (a registered palette or ["name=#rrggbb", ...]).
    palette: str | list[str]
    # The loss weights of the classes: "none" (plain cross-entropy) or "balanced" (median frequency balancing,
    # Eigen & Fergus 2015: weight_c = median(freq) / freq_c over the training label maps), which lifts the rare
    # classes (doors, pillars) at some cost in pixel accuracy.
    class_weights: Literal["none", "balanced"] = "none"
    # Dropout of the three innermost decoder blocks (pix2pix's 0.5 is its noise source; a segmenter wants none).
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("palette")
    @classmethod
    def _known_palette(cls, v: str | list[str]) -> str | list[str]:
        try:
            get_palette(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v

    @property
    def num_classes(self) -> int:
        return len(get_palette(self.palette))


class UNetSegmenter(UNetGenerator):
    """Photo (B, C, H, W) in [-1, 1] -> class logits (B, K, H, W), K = the palette's classes."""

    def __init__(self, cfg: SegmenterConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels, out_channels=cfg.num_classes, logits=True)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> int64 class indices (B, H, W)."""
        return self(x).argmax(1)


register(ModelSpec(name="segmenter", config=SegmenterConfig, networks={"net": UNetSegmenter}))
