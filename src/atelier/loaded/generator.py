"""A generator loaded from a run: latents (and a class) in, images out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from atelier.data import class_names
from atelier.images import to_uint8_array
from atelier.latent import balanced_labels, generate, latents
from atelier.loaded.base import ExportSpec, LoadedModel

__all__ = ["Generator"]


class Generator(LoadedModel):
    """A trained generator (a GAN's EMA or raw G, a VAE's decoder), ready to sample.

    ``g.sample(16, seed=0)`` gives uint8 ``(16, C, H, W)``; the same seed always gives the same images.
    """

    kind = "generator"
    workflow = "sample"
    capabilities = ("generate",)

    @property
    def z_dim(self) -> int:
        return int(self.cfg.model["z_dim"])

    @property
    def num_classes(self) -> int:
        """0 for an unconditional model; a conditional one takes a label per latent."""
        return int(self.cfg.model.get("num_classes", 0) or 0)

    @property
    def classes(self) -> list[str] | None:
        return list(class_names(self.cfg.data.source, self.num_classes)) if self.num_classes else None

    def latents(self, n: int | None = None, seed: int = 0, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """``n`` latents from one seed, or one latent per seed in ``seeds`` (the same z for a seed always)."""
        return latents(self.z_dim, n, seed, seeds)

    def class_labels(self, labels: int | Sequence[int] | torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Labels for ``n`` images: one class for all, or one per image (checked).

        For a conditional model, None cycles through the classes (0, 1, ..., K-1, 0, ...), so that samples,
        grids and evaluations are class-balanced; an unconditional model takes None only.
        """
        if labels is None:
            return balanced_labels(n, self.num_classes)
        if not self.num_classes:
            raise ValueError("this model is unconditional; it takes no class (drop --class)")
        y = torch.as_tensor(labels, dtype=torch.long).flatten()
        if y.numel() == 1:
            y = y.expand(n)
        if y.numel() != n:
            raise ValueError(f"got {y.numel()} labels for {n} latents")
        bad = y[(y < 0) | (y >= self.num_classes)]
        if bad.numel():
            raise ValueError(f"class {int(bad[0])} is out of range: this model has classes 0..{self.num_classes - 1}")
        return y.contiguous()

    def generate(self, z: torch.Tensor, batch_size: int = 256,
                 labels: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Latents (and, for a conditional model, class labels) -> uint8 images ``(N, C, H, W)``."""
        return generate(self.network, z, self.class_labels(labels, z.shape[0]), batch_size=batch_size)

    def sample(self, n: int | None = None, seed: int = 0, *, seeds: Sequence[int] | None = None,
               labels: int | Sequence[int] | torch.Tensor | None = None,
               pil: bool = False, batch_size: int = 256) -> torch.Tensor | list[Image.Image]:
        images = self.generate(self.latents(n, seed, seeds), batch_size=batch_size, labels=labels)
        if not pil:
            return images
        return [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in to_uint8_array(images)]

    def metadata(self, **fields: Any) -> dict[str, Any]:
        # "ema" / "raw" name the generator as the CLI's --raw does (the checkpoint slot is "G_ema" / "G").
        return super().metadata(generator="ema" if self.which.endswith("_ema") else "raw", **fields)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "z_dim": self.z_dim, "classes": self.classes,
                "conditional": bool(self.num_classes)}

    def export_spec(self) -> ExportSpec:
        example = {"z": torch.zeros(2, self.z_dim)}
        if self.num_classes:  # the largest class, so parity checks draw labels from the whole range
            example["y"] = torch.full((2,), self.num_classes - 1, dtype=torch.long)
        return self.network, example, {}

    def export_sizes(self) -> str:
        return f"outputs {self.resolution}x{self.resolution} images (any batch size)"
