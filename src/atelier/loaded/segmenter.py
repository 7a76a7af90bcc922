"""A semantic segmenter loaded from a run: a photo in, a class-index map of the same size out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from atelier.images import load_image
from atelier.labelmaps import Palette, get_palette
from atelier.loaded.base import FullyConvolutional

__all__ = ["Segmenter"]

ImageInput = str | Path | Image.Image | np.ndarray


class Segmenter(FullyConvolutional):
    """A trained segmenter: ``atelier.load("runs/facades-seg").segment(photo)`` -> uint8 ``(H, W)`` class indices.

    A photo of any size is resized to the training resolution, segmented, and its class scores are resized
    back (bilinear) before the arg-max, so the map has the photo's own size.
    """

    kind = "segmenter"
    workflow = "segment"
    capabilities = ("segment",)

    @property
    def palette(self) -> Palette:
        return get_palette(self.cfg.model["palette"])

    @property
    def classes(self) -> tuple[str, ...]:
        return self.palette.classes

    @torch.no_grad()
    def logits_batch(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 photos ``(N, C, H, W)`` of any size -> float class scores ``(N, K, h, w)`` (``size`` = (h, w),
        default the photos' own), computed at the training resolution."""
        r = self.resolution
        h, w = size or tuple(x.shape[-2:])
        x = x.to(self.device).float() / 127.5 - 1
        if tuple(x.shape[-2:]) != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
        logits = self.network(x).float()
        if (h, w) != (r, r):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits

    def predict_batch(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 photos ``(N, C, H, W)`` -> int64 class indices ``(N, h, w)`` on the CPU."""
        return self.logits_batch(x, size).argmax(1).cpu()

    def _array(self, image: ImageInput) -> np.ndarray:
        if isinstance(image, (str, Path)):
            return load_image(image, channels=self.channels)
        if isinstance(image, Image.Image):
            arr = np.asarray(image.convert("L" if self.channels == 1 else "RGB"))
        else:
            arr = np.asarray(image, dtype=np.uint8)
            if arr.ndim == 3 and arr.shape[2] == 4:
                arr = arr[..., :3]                                            # alpha: the colour is what is seen
            if self.channels == 3 and arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
        return arr[..., None] if arr.ndim == 2 else arr

    def segment(self, image: ImageInput) -> np.ndarray:
        """A photo (path, PIL image or uint8 array) -> uint8 ``(H, W)`` class indices at its own size."""
        arr = self._array(image)
        x = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None]     # a writable copy
        return self.predict_batch(x)[0].numpy().astype(np.uint8)

    def __call__(self, image: ImageInput) -> Image.Image:
        """The photo's label map drawn in the palette's colours (what the studio shows)."""
        return self.colorize(self.segment(image))

    def colorize(self, index: np.ndarray) -> Image.Image:
        return Image.fromarray(self.palette.colorize(index))

    def overlay(self, image: ImageInput, index: np.ndarray | None = None, alpha: float = 0.5) -> Image.Image:
        """The label colours blended over the photo (``alpha`` is the labels' weight)."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        arr = self._array(image)
        photo = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
        index = self.segment(arr) if index is None else index
        blend = (1 - alpha) * photo.astype(np.float32) + alpha * self.palette.colorize(index).astype(np.float32)
        return Image.fromarray(np.clip(blend.round(), 0, 255).astype(np.uint8))

    def mask(self, image: ImageInput, classes: Sequence[str]) -> np.ndarray:
        """bool ``(H, W)``: the pixels segmented as any of ``classes`` (names, case-insensitive)."""
        wanted = self.palette.indices(classes)
        return np.isin(self.segment(image), wanted)

    def metadata(self, **fields: Any) -> dict[str, Any]:
        return super().metadata(palette=self.palette.name, **fields)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "classes": list(self.classes),
                "colors": [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in self.palette.colors]}

