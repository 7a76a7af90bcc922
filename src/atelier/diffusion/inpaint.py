"""Inpainting by RePaint resampling (Lugmayr et al., "RePaint: Inpainting using Denoising Diffusion
Probabilistic Models", CVPR 2022), for every objective atelier trains, and the masks that drive it.

At each level of the chain the known pixels are replaced by the input image noised to that level, the
network denoises the whole image one step, and every ``jump_length`` steps the chain jumps back up
(re-noising) ``jump_n_sample - 1`` times, so the generated region can agree with the known one. The
jump schedule is diffusers' RePaintScheduler's; the steps move between levels x = a x0 + s eps of
:func:`~atelier.diffusion.objective.noise_levels` (DDIM's update with ``eta``, Song et al. 2021: 1 is
DDPM's ancestral step as in the paper), which also covers v-prediction and flow models, which
RePaintScheduler (epsilon only) does not. The known pixels are pasted back at the end, so the result
equals the input bit for bit outside the mask.

Masks: True (white in a mask image) marks the hole to fill, as in diffusers' inpainting pipelines.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from atelier.diffusion.objective import noise_levels, predict_x0
from atelier.diffusion.sampling import Labels, _device, _noise, guided_output, make_generator, resolve_labels
from atelier.errors import ConfigError, ImageError
from atelier.images import open_image
from atelier.models.diffusion import DiffusionConfig, import_diffusers

__all__ = ["inpaint", "load_mask", "rect_mask", "repaint_schedule"]


def repaint_schedule(steps: int, jump_length: int = 5, jump_n_sample: int = 4) -> list[int]:
    """RePaint's level sequence (diffusers' RePaintScheduler): an entry below its predecessor is one denoising
    step down to that level (one network call), an entry above it is one re-noising step up."""
    if steps < 1 or jump_length < 1 or jump_n_sample < 1:
        raise ConfigError(f"steps, jump_length and jump_n_sample must be >= 1, got {steps}, {jump_length}, "
                          f"{jump_n_sample}")
    sched = import_diffusers().RePaintScheduler(num_train_timesteps=steps)
    sched.set_timesteps(steps, jump_length=jump_length, jump_n_sample=jump_n_sample)
    return [int(t) for t in sched.timesteps]   # with T = steps, its timesteps are the level indices


def _step_down(x0: torch.Tensor, x: torch.Tensor, hi: tuple[float, float, float], lo: tuple[float, float, float],
               eta: float, gen: torch.Generator) -> torch.Tensor:
    """DDIM's update from level ``hi`` to ``lo`` given the predicted x0 (eta = 1: the DDPM posterior's noise)."""
    (a, s, _), (a_lo, s_lo, _) = hi, lo
    eps = (x - a * x0) / s
    # Posterior std of q(x_lo | x_hi, x0) for x = a x0 + s eps, times eta.
    c = eta * s_lo * math.sqrt(max(0.0, 1.0 - (a * s_lo / (a_lo * s)) ** 2))
    out = a_lo * x0 + math.sqrt(max(s_lo**2 - c**2, 0.0)) * eps
    return out + c * _noise(tuple(x.shape), gen, x.device) if c > 0 else out


def _step_up(x: torch.Tensor, lo: tuple[float, float, float], hi: tuple[float, float, float],
             gen: torch.Generator) -> torch.Tensor:
    """Re-noise from level ``lo`` to ``hi`` with the forward process: x_hi = (a_hi / a_lo) x_lo + fresh noise."""
    (a, s, _), (a_hi, s_hi, _) = lo, hi
    r = a_hi / a
    return r * x + math.sqrt(max(s_hi**2 - (r * s) ** 2, 0.0)) * _noise(tuple(x.shape), gen, x.device)


@torch.no_grad()
def inpaint(unet: torch.nn.Module, cfg: DiffusionConfig, image: torch.Tensor, mask: torch.Tensor, steps: int = 50,
            seed: int | None = None, generator: torch.Generator | None = None, jump_length: int = 5,
            jump_n_sample: int = 4, eta: float = 1.0, labels: Labels = None,
            guidance: float | None = None) -> torch.Tensor:
    """Fill the hole ``mask`` (B or 1, 1, H, W), True = generate, of ``image`` (B, C, H, W) in [-1, 1].

    Network calls per image: ``len`` of the descending entries of :func:`repaint_schedule` (about
    steps x jump_n_sample), twice that under guidance other than 0 or 1. Returns (B, C, H, W) in [-1, 1],
    identical to ``image`` wherever the mask is False.
    """
    if image.ndim != 4:
        raise ConfigError(f"expected images of shape (B, C, H, W), got {tuple(image.shape)}")
    B, _, H, W = image.shape
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != (H, W) or mask.shape[0] not in (1, B):
        raise ConfigError(f"the mask must be (1 or {B}, 1, {H}, {W}) to fit the image, got {tuple(mask.shape)}")
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta must be in [0, 1], got {eta}")
    y = resolve_labels(cfg, labels, B, guidance)
    levels = noise_levels(cfg, steps)
    schedule = repaint_schedule(steps, jump_length, jump_n_sample)
    gen = make_generator(seed, generator)
    dev = _device(unet)
    known = image.to(dev).float()
    hole = mask.to(dev).bool().expand(B, 1, H, W)
    x = _noise(tuple(known.shape), gen, dev)            # level `steps`: pure noise
    level = steps
    was_training = unet.training
    unet.eval()
    try:
        for target in schedule:
            if target > level:
                x = _step_up(x, levels[level], levels[target], gen)
            else:
                a, s, t = levels[level]
                # The known region at this level: the input itself, noised afresh (RePaint eq. 8).
                x = torch.where(hole, x, a * known + s * _noise(tuple(known.shape), gen, dev))
                out = guided_output(unet, cfg, x, torch.tensor(t, device=dev), y, guidance).float()
                x0 = predict_x0(cfg, out, x, a, s).clamp(-1.0, 1.0)
                x = _step_down(x0, x, levels[level], levels[target], eta, gen)
            level = target
    finally:
        unet.train(was_training)
    return torch.where(hole, x.clamp(-1.0, 1.0), image.to(dev).to(x.dtype))


def rect_mask(spec: str, height: int, width: int) -> torch.Tensor:
    """A (1, 1, H, W) hole from ``"x0,y0,x1,y1"`` in pixels (x1, y1 exclusive), inside the image."""
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", spec or "")
    if m is None:
        raise ConfigError(f"a rectangle mask is 'x0,y0,x1,y1' in pixels (e.g. 8,8,24,24), got {spec!r}")
    x0, y0, x1, y1 = (int(v) for v in m.groups())
    if not (x0 < x1 <= width and y0 < y1 <= height):
        raise ConfigError(f"rectangle {spec!r} must satisfy x0 < x1 <= {width} and y0 < y1 <= {height} "
                          f"(the image is {width}x{height})")
    mask = torch.zeros(1, 1, height, width, dtype=torch.bool)
    mask[..., y0:y1, x0:x1] = True
    return mask


def load_mask(path: str | Path, height: int, width: int) -> torch.Tensor:
    """A (1, 1, H, W) hole from a mask image: white (gray level > 127) = fill, black = keep.

    Transparent pixels count as black (a brushed mask of white strokes on a transparent layer fills its
    strokes), and the file must have the image's size, so a mask never shifts by a resize.
    """
    from PIL import Image

    img = open_image(path)
    if img.size != (width, height):
        raise ImageError(f"mask {path} is {img.width}x{img.height} px; it must match the image ({width}x{height})")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    gray = np.asarray(img.convert("L"), dtype=np.uint8)                  # (H, W)
    return torch.from_numpy(gray > 127).view(1, 1, height, width)
