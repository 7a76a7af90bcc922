"""A diffusion or flow-matching model loaded from a run: a generator whose "latent" is the starting noise.

It is a :class:`~atelier.loaded.Generator`, so everything that samples a generator (``atelier sample``,
``synth``, ``evaluate``, the studio, interpolation between seeds) samples it too: a seed's latent is its
standard-normal x_T (C*H*W numbers, drawn as a GAN's z), and :meth:`generate` runs the sampler from there.
The sampler, its steps and the guidance scale default to the run's ``model:`` section and can be chosen per
call (:meth:`with_sampling`, or the keywords of :meth:`sample`). With the deterministic samplers (dpm++,
ddim, euler) an image depends only on its x_T (its seed and index) and class; ddpm's per-step noise comes
from the call's seed as well. It also inpaints (RePaint) and edits (SDEdit).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from PIL import Image

from atelier.diffusion import export_diffusers, inpaint, sample, samplers_for, sdedit
from atelier.errors import AtelierError, ConfigError
from atelier.images import to_uint8_array
from atelier.latent import to_uint8
from atelier.loaded.base import ExportSpec
from atelier.loaded.generator import Generator
from atelier.models.diffusion import DiffusionConfig, DiffusionUNet

__all__ = ["DiffusionModel"]

Labels = int | Sequence[int] | torch.Tensor | None


class DiffusionModel(Generator):
    """A trained denoiser (the EMA by default), ready to sample, inpaint and edit.

    ``m.sample(16, seed=0, steps=20, sampler="dpm++", guidance=3.0, labels=7)`` gives uint8 ``(16, C, H, W)``;
    the same seed, sampler and step count always give the same images.
    """

    # Generator's class attribute is typed as its one-element tuple; the base class's ClassVar is any tuple.
    capabilities = ("generate", "inpaint", "edit")  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        params = {k: v for k, v in self.cfg.model.items() if k != "name"}
        self.mcfg = DiffusionConfig.model_validate(params)
        self.sampler_name: str = self.mcfg.sampler
        self.steps, self.guidance = self.mcfg.sample_steps, self.mcfg.guidance

    # ------------------------------------------------------------------ sampling settings
    def with_sampling(self, steps: int | None = None, sampler: str | None = None,
                      guidance: float | None = None) -> DiffusionModel:
        """A copy sampling with these settings (None keeps the current one); the network is shared."""
        out = copy.copy(self)
        if sampler is not None:
            if sampler not in samplers_for(self.mcfg):
                raise AtelierError(f"unknown sampler {sampler!r} for this {self.mcfg.prediction} model; choose one "
                                   f"of: {', '.join(samplers_for(self.mcfg))}")
            out.sampler_name = sampler
        if steps is not None:
            if steps < 1:
                raise AtelierError(f"steps must be at least 1, got {steps}")
            out.steps = steps
        if guidance is not None:
            if guidance < 0:
                raise AtelierError(f"guidance must be >= 0, got {guidance}")
            if not self.num_classes:
                raise AtelierError("guidance needs a class-conditional model (model.num_classes > 0); this one is "
                                   "unconditional")
            out.guidance = guidance
        return out

    def _guidance(self, labels: torch.Tensor | None) -> float | None:
        return self.guidance if labels is not None else None

    # ------------------------------------------------------------------ the Generator interface
    @property
    def z_dim(self) -> int:
        return self.channels * self.resolution * self.resolution

    def generate(self, z: torch.Tensor, batch_size: int = 256,
                 labels: int | Sequence[int] | torch.Tensor | None = None, psi: float = 1.0,
                 seed: int = 0) -> torch.Tensor:
        """Starting noise (N, C*H*W) or (N, C, H, W) (and classes) -> uint8 images ``(N, C, H, W)``; ``seed`` feeds
        the stochastic samplers' per-step noise. No truncation (``psi`` 1 only: there is no mapping network)."""
        self.check_truncation(psi)
        y = self.class_labels(labels, z.shape[0])
        noise = z.reshape(z.shape[0], self.channels, self.resolution, self.resolution)
        out = []
        try:
            for i in range(0, len(noise), batch_size):
                yi = y[i:i + batch_size] if y is not None else None
                x = sample(self.network, self.mcfg, min(batch_size, len(noise) - i), sampler=self.sampler_name,
                           steps=self.steps, seed=seed + i, labels=yi, guidance=self._guidance(yi),
                           noise=noise[i:i + batch_size].to(self.device))
                out.append(to_uint8(x))
        except ConfigError as exc:
            raise AtelierError(str(exc)) from None
        return torch.cat(out)

    def sample(self, n: int | None = None, seed: int = 0, *, seeds: Sequence[int] | None = None,
               labels: Labels = None, pil: bool = False, batch_size: int = 256, psi: float = 1.0, y: Labels = None,
               steps: int | None = None, sampler: str | None = None,
               guidance: float | None = None) -> torch.Tensor | list[Image.Image]:
        """``n`` images from ``seed`` (or one per seed in ``seeds``); ``labels`` (alias ``y``): one class for all or
        one per image (default: cycling through the classes); ``steps`` / ``sampler`` / ``guidance`` override the
        run's defaults for this call."""
        if labels is not None and y is not None:
            raise ValueError("give labels or y, not both")
        m = self.with_sampling(steps, sampler, guidance)
        images = m.generate(m.latents(n, seed, seeds), batch_size=batch_size,
                            labels=labels if labels is not None else y, psi=psi, seed=seed)
        if not pil:
            return images
        return [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in to_uint8_array(images)]

    # ------------------------------------------------------------------ editing
    def _as_input(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float in [-1, 1] on the model's device, checked against the model's channels."""
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[1] != self.channels:
            raise AtelierError(f"expected images with {self.channels} channel(s), got shape {tuple(image.shape)}")
        stride = getattr(self.network, "stride", 1)
        if image.shape[2] % stride or image.shape[3] % stride:
            raise AtelierError(f"image height and width must be multiples of {stride} for this U-Net, got "
                               f"{image.shape[3]}x{image.shape[2]}")
        return (image.float() / 127.5 - 1.0).to(self.device)

    def inpaint(self, image: torch.Tensor, mask: torch.Tensor, seed: int = 0, steps: int = 50,
                jump_length: int = 5, jump_n_sample: int = 4, labels: Labels = None) -> torch.Tensor:
        """Fill the hole (``mask`` (1 or B, 1, H, W), True = fill) of uint8 ``image`` (B, C, H, W) by RePaint;
        pixels outside the hole are returned unchanged. uint8 out."""
        x = self._as_input(image)
        y = self.class_labels(labels, x.shape[0]) if labels is not None else None
        try:
            out = inpaint(self.network, self.mcfg, x, mask, steps=steps, seed=seed, jump_length=jump_length,
                          jump_n_sample=jump_n_sample, labels=y, guidance=self._guidance(y))
        except ConfigError as exc:
            raise AtelierError(str(exc)) from None
        # Known pixels: the input bytes themselves (the [-1, 1] round trip is exact for uint8, but say it here).
        return torch.where(mask.to(out.device).bool(), to_uint8(out).to(out.device), image.to(out.device)).cpu()

    def edit(self, image: torch.Tensor, strength: float = 0.6, seed: int = 0, steps: int | None = None,
             labels: Labels = None) -> torch.Tensor:
        """SDEdit: noise uint8 ``image`` (B, C, H, W) part-way (``strength`` of the chain) and denoise it with the
        model's sampler; ``steps`` counts the full chain (default: the model's steps). uint8 out."""
        x = self._as_input(image)
        y = self.class_labels(labels, x.shape[0]) if labels is not None else None
        try:
            out = sdedit(self.network, self.mcfg, x, strength=strength, steps=steps or self.steps, seed=seed,
                         sampler=self.sampler_name, labels=y, guidance=self._guidance(y))
        except ConfigError as exc:
            raise AtelierError(str(exc)) from None
        return to_uint8(out)

    # ------------------------------------------------------------------ describing and exporting
    def metadata(self, **fields: Any) -> dict[str, Any]:
        sampling: dict[str, Any] = {"sampler": self.sampler_name, "steps": self.steps}
        if self.num_classes:
            sampling["guidance"] = self.guidance
        return super().metadata(**{**sampling, **fields})

    def info(self) -> dict[str, Any]:
        return {**super().info(), "prediction": self.mcfg.prediction, "samplers": list(samplers_for(self.mcfg)),
                "sampler": self.sampler_name, "steps": self.steps, "guidance": self.guidance}

    def export_spec(self) -> ExportSpec:
        """The denoiser ``(sample, timestep[, class_labels]) -> output``; height and width free (multiples of the
        U-Net's total downsampling)."""
        net = cast(DiffusionUNet, self.network)
        inputs = net.example_inputs(2)
        names = ("sample", "timestep", "class_labels")[:len(inputs)]
        return net, dict(zip(names, inputs, strict=True)), {"sample": (net.stride, 1)}

    def export_sizes(self) -> str:
        s = cast(DiffusionUNet, self.network).stride
        return f"the denoiser: any batch size, height and width multiples of {s}"

    def export_diffusers(self, folder: Any, overwrite: bool = False) -> Any:
        """diffusers' own pipeline folder (``DiffusionPipeline.from_pretrained(folder)`` loads it), with the
        scheduler of this model's sampler."""
        return export_diffusers(self.network, self.mcfg, folder, sampler=self.sampler_name, overwrite=overwrite)
