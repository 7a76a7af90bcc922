"""A generator loaded from a run: latents (and a class) in, images out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, cast

import torch
from PIL import Image

from atelier.data import class_names
from atelier.errors import AtelierError
from atelier.images import to_uint8_array
from atelier.inversion import Projection
from atelier.latent import balanced_labels, generate, interpolate_path, latents, to_uint8, truncate
from atelier.loaded.base import ExportSpec, LoadedModel
from atelier.loaded.projection import ImageInput, project_image

__all__ = ["Generator"]


class MappingGenerator(Protocol):
    """A generator with a mapping network (the StyleGAN2 family): what truncation and style mixing use."""

    sizes: list[int]

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None, psi: float = 1.0) -> torch.Tensor: ...

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor: ...

    def ws_index(self, size: int) -> int: ...


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

    @property
    def supports_truncation(self) -> bool:
        """Whether the network truncates in its own latent space (a mapping network's tracked w average)."""
        return bool(getattr(self.network, "supports_truncation", False))

    def check_truncation(self, psi: float) -> None:
        if psi != 1.0 and not self.supports_truncation:
            raise AtelierError(f"truncation needs a generator with a mapping network and a tracked w average "
                               f"(model stylegan2); this run's model is {self.cfg.model['name']}")
        if not 0.0 <= psi <= 2.0:
            raise AtelierError(f"truncation psi must be in [0, 2] (1 = off, 0.7 = more typical images), got {psi}")

    def generate(self, z: torch.Tensor, batch_size: int = 256,
                 labels: int | Sequence[int] | torch.Tensor | None = None, psi: float = 1.0) -> torch.Tensor:
        """Latents (and, for a conditional model, class labels) -> uint8 images ``(N, C, H, W)``.

        ``psi`` < 1 truncates towards the average w (Karras et al. 2019 sec. 5; StyleGAN-type models only)."""
        self.check_truncation(psi)
        options = {"psi": psi} if psi != 1.0 else {}
        return generate(self.network, z, self.class_labels(labels, z.shape[0]), batch_size=batch_size, **options)

    @torch.no_grad()
    def walk(self, z: torch.Tensor, frames: int, mode: Literal["slerp", "lerp"] = "slerp", psi: float = 1.0,
             labels: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """``frames`` images between each consecutive pair of the latents ``z`` (K, z_dim): uint8
        ``((K-1) * frames, C, H, W)``. A mapping network walks in w, linearly (where StyleGAN's images change
        evenly: its perceptual path length is measured there), truncated towards w_avg by ``psi``; any other
        generator walks in z by ``mode`` (slerp keeps a Gaussian latent's norm), truncated by scaling z."""
        if not self.supports_truncation:
            return self.generate(truncate(interpolate_path(z, frames, mode), psi), labels=labels)
        self.check_truncation(psi)
        net = cast(MappingGenerator, self.network)
        y = self.class_labels(labels, z.shape[0])
        ws = net.mapping(z.to(self.device), None if y is None else y.to(self.device), psi=psi)   # (K, L, w_dim)
        path = interpolate_path(ws.flatten(1).float(), frames, "lerp").view(-1, *ws.shape[1:])
        return torch.cat([to_uint8(net.synthesis(chunk)) for chunk in path.split(256)])

    @property
    def default_crossover(self) -> int:
        """16 px (styles of 4-8 px from the row: shape and layout), or the middle feature size if 16 is not one."""
        sizes = getattr(self.network, "sizes", [16])
        return 16 if 16 in sizes else sizes[len(sizes) // 2]

    @torch.no_grad()
    def mix(self, coarse_z: torch.Tensor, fine_z: torch.Tensor, crossover: int | None = None, psi: float = 1.0,
            labels: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Style mixing (StyleGAN sec. 3.1): image [i, j] takes the styles of feature sizes below ``crossover``
        (default 16 px: shape and layout) from ``coarse_z[i]`` and the rest (colour, detail) from ``fine_z[j]``.
        Returns uint8 ``(len(coarse_z), len(fine_z), C, H, W)``."""
        self.check_truncation(psi)
        net = cast(MappingGenerator, self.network)
        if not self.supports_truncation:
            raise AtelierError(f"style mixing needs a generator with a mapping network (model stylegan2); this "
                               f"run's model is {self.cfg.model['name']}")
        size = crossover or self.default_crossover
        try:
            cut = net.ws_index(size)
        except ValueError as exc:
            raise AtelierError(f"crossover: {exc}") from None
        R, C, dev = coarse_z.shape[0], fine_z.shape[0], self.device
        yr, yc = self.class_labels(labels, R), self.class_labels(labels, C)
        wa = net.mapping(coarse_z.to(dev), None if yr is None else yr.to(dev), psi=psi)   # (R, L, w_dim)
        wb = net.mapping(fine_z.to(dev), None if yc is None else yc.to(dev), psi=psi)     # (C, L, w_dim)
        ws = torch.cat([wa[:, None, :cut].expand(-1, C, -1, -1), wb[None, :, cut:].expand(R, -1, -1, -1)], dim=2)
        images = torch.cat([to_uint8(net.synthesis(chunk)) for chunk in ws.flatten(0, 1).split(256)])
        return images.view(R, C, *images.shape[1:])

    def sample(self, n: int | None = None, seed: int = 0, *, seeds: Sequence[int] | None = None,
               labels: int | Sequence[int] | torch.Tensor | None = None,
               pil: bool = False, batch_size: int = 256, psi: float = 1.0) -> torch.Tensor | list[Image.Image]:
        images = self.generate(self.latents(n, seed, seeds), batch_size=batch_size, labels=labels, psi=psi)
        if not pil:
            return images
        return [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in to_uint8_array(images)]

    def project(self, image: ImageInput, space: Literal["w", "w+", "z"] | None = None, steps: int = 500,
                **options: Any) -> Projection:
        """The latent whose image matches ``image`` (GAN inversion; see :mod:`atelier.inversion.project`): w or
        w+ (and the noise maps) for a mapping network, z otherwise. ``options``: features, lr, seed, noise, label.
        :func:`atelier.api.project` also writes the latent, the reconstruction and a progress strip."""
        return project_image(self, image, space, steps, **options)

    def metadata(self, **fields: Any) -> dict[str, Any]:
        # "ema" / "raw" name the generator as the CLI's --raw does (the checkpoint slot is "G_ema" / "G").
        return super().metadata(generator="ema" if self.which.endswith("_ema") else "raw", **fields)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "z_dim": self.z_dim, "classes": self.classes,
                "conditional": bool(self.num_classes), "truncation": self.supports_truncation,
                # Style mixing: the feature sizes a crossover may be (the first is the constant input's).
                **({"mixing": {"sizes": list(getattr(self.network, "sizes", []))[1:],
                               "default": self.default_crossover}} if self.supports_truncation else {})}

    def export_spec(self) -> ExportSpec:
        example = {"z": torch.zeros(2, self.z_dim)}
        if self.num_classes:  # the largest class, so parity checks draw labels from the whole range
            example["y"] = torch.full((2,), self.num_classes - 1, dtype=torch.long)
        return self.network, example, {}

    def export_sizes(self) -> str:
        return f"outputs {self.resolution}x{self.resolution} images (any batch size)"
