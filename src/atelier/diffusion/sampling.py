"""Sampling and SDEdit with diffusers' schedulers, with classifier-free guidance.

Guidance follows diffusers' convention (Ho & Salimans 2022 with scale w = their w + 1):
out = uncond + w (cond - uncond). w = 0 is the unconditional model (the null class) alone, w = 1 the
conditional model alone (each one network pass, no blend); any other w batches the two passes into one
call of the network. Randomness (the initial noise, DDPM's and Euler's per-step noise) comes from one
torch.Generator, so a seed fixes the images for a given sampler and step count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from atelier.diffusion.objective import _check_labels, denoiser_output, make_scheduler
from atelier.errors import ConfigError
from atelier.models.diffusion import DiffusionConfig

__all__ = ["guided_output", "make_generator", "resolve_labels", "sample", "sdedit"]

Labels = int | Sequence[int] | torch.Tensor | None


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator:
    """The generator of one sampling call: ``generator`` as given, else a CPU one seeded with ``seed`` (a seed drawn
    from torch's global generator when both are None)."""
    if generator is not None:
        if seed is not None:
            raise ValueError("give a seed or a generator, not both")
        return generator
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return torch.Generator().manual_seed(int(seed))


def resolve_labels(cfg: DiffusionConfig, labels: Labels, n: int, guidance: float | None) -> torch.Tensor | None:
    """Class labels (n,) for a sampling call, checked; None for an unconditional model."""
    if not cfg.num_classes:
        if labels is not None:
            raise ConfigError("this diffusion model is unconditional; it takes no class (drop the class option)")
        if guidance is not None:
            raise ConfigError("guidance needs a class-conditional model (model.num_classes > 0) and a class")
        return None
    if labels is None:
        if guidance not in (None, 0):
            raise ConfigError("guidance needs a class to guide towards (give a class)")
        return None
    if isinstance(labels, int):
        labels = [labels] * n
    return _check_labels(cfg, torch.as_tensor(labels), n, allow_null=False)


def guided_output(unet: torch.nn.Module, cfg: DiffusionConfig, x: torch.Tensor, t: torch.Tensor,
                  labels: torch.Tensor | None, guidance: float | None) -> torch.Tensor:
    """The network's output at (x, t) for ``labels`` under guidance scale ``guidance`` (see the module doc).

    For a class-conditional model, ``labels`` None means the unconditional model (the null class).
    """
    B = x.shape[0]
    t = t.reshape(-1).to(x.device).expand(B) if t.numel() == 1 else t.to(x.device)
    if not cfg.num_classes:
        return denoiser_output(unet, x, t, None)
    null = torch.full((B,), cfg.num_classes, dtype=torch.long, device=x.device)
    w = 1.0 if guidance is None else float(guidance)
    if labels is None or w == 0.0:
        return denoiser_output(unet, x, t, null)
    labels = labels.to(x.device)
    if w == 1.0:
        return denoiser_output(unet, x, t, labels)
    both = denoiser_output(unet, torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
    cond, uncond = both.float().chunk(2)
    return uncond + w * (cond - uncond)


def _device(unet: torch.nn.Module) -> torch.device:
    p = next(unet.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _chain(unet: torch.nn.Module, cfg: DiffusionConfig, sched: Any, x: torch.Tensor, timesteps: torch.Tensor,
           labels: torch.Tensor | None, guidance: float | None, gen: torch.Generator) -> torch.Tensor:
    scale = getattr(sched, "scale_model_input", None)
    for t in timesteps:
        x_in = scale(x, t) if scale is not None else x          # Euler's 1 / sqrt(sigma^2 + 1); others: x
        out = guided_output(unet, cfg, x_in, torch.as_tensor(t), labels, guidance)
        x = sched.step(out.to(x.dtype), t, x, generator=gen, return_dict=False)[0]
    return x.clamp(-1.0, 1.0)


def _noise(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    # Drawn on the generator's device and moved, so a CPU seed gives the same noise on every device.
    return torch.randn(shape, generator=gen, device=gen.device).to(device)


@torch.no_grad()
def sample(unet: torch.nn.Module, cfg: DiffusionConfig, n: int, sampler: str = "dpm++", steps: int = 20,
           seed: int | None = None, generator: torch.Generator | None = None, labels: Labels = None,
           guidance: float | None = None, shape: tuple[int, int] | None = None,
           noise: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` images (n, C, H, W) in [-1, 1] from ``steps`` steps of ``sampler`` (see :func:`make_scheduler`).

    ``labels``: one class for all images or one per image (class-conditional models); ``guidance``: the
    classifier-free guidance scale (None: 1 with a class, unconditional without). ``shape``: (H, W), by
    default the network's training resolution. ``noise``: the starting standard-normal x_T (n, C, H, W)
    instead of a draw from the generator (a loaded model draws it per seed, as a GAN's latents); the
    generator then only feeds the stochastic samplers' per-step noise. The network is put in eval mode for
    the call.
    """
    if n < 1:
        raise ConfigError(f"n must be a positive number of images, got {n}")
    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    y = resolve_labels(cfg, labels, n, guidance)
    sched = make_scheduler(cfg, sampler)
    if sampler == "ddpm" and steps > cfg.num_train_timesteps:
        raise ConfigError(f"ddpm takes at most {cfg.num_train_timesteps} steps (the training chain), got {steps}")
    gen = make_generator(seed, generator)
    dev = _device(unet)
    sched.set_timesteps(steps, device=dev)
    H, W = shape or _resolution(unet)
    if noise is None:
        noise = _noise((n, _channels(unet), H, W), gen, dev)
    elif noise.shape != (n, _channels(unet), H, W):
        raise ConfigError(f"noise of shape {tuple(noise.shape)} does not fit {n} images of {(_channels(unet), H, W)}")
    x = noise.to(dev).float() * getattr(sched, "init_noise_sigma", 1.0)   # Euler: sigma_max
    was_training = unet.training
    unet.eval()
    try:
        return _chain(unet, cfg, sched, x, sched.timesteps, y, guidance, gen)
    finally:
        unet.train(was_training)


@torch.no_grad()
def sdedit(unet: torch.nn.Module, cfg: DiffusionConfig, image: torch.Tensor, strength: float = 0.6,
           steps: int = 50, seed: int | None = None, generator: torch.Generator | None = None,
           sampler: str = "dpm++", labels: Labels = None, guidance: float | None = None) -> torch.Tensor:
    """SDEdit (Meng et al., "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential
    Equations", ICLR 2022): noise ``image`` (B, C, H, W) in [-1, 1] to the level of the last
    ``strength`` fraction of a ``steps``-step chain and denoise it from there.

    As in diffusers' image-to-image pipelines, ``steps`` counts the full chain: about strength x steps
    denoising steps run. Strength 1 starts from (almost) pure noise; small strengths stay close to the input.
    """
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"strength must be in (0, 1], got {strength}")
    if image.ndim != 4:
        raise ConfigError(f"expected images of shape (B, C, H, W), got {tuple(image.shape)}")
    run = min(int(steps * strength), steps)
    if run < 1:
        raise ConfigError(f"strength {strength} of {steps} steps runs no step: raise the strength or the steps")
    y = resolve_labels(cfg, labels, image.shape[0], guidance)
    sched = make_scheduler(cfg, sampler)
    gen = make_generator(seed, generator)
    dev = _device(unet)
    sched.set_timesteps(steps, device=dev)
    start = (steps - run) * sched.order
    timesteps = sched.timesteps[start:]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start)
    x0 = image.to(dev).float()
    noise = _noise(tuple(x0.shape), gen, dev)
    t0 = timesteps[:1].repeat(x0.shape[0])
    # diffusers names the forward jump add_noise (DDPM-type and Euler) or scale_noise (flow matching).
    x = sched.scale_noise(x0, t0, noise) if hasattr(sched, "scale_noise") else sched.add_noise(x0, noise, t0)
    was_training = unet.training
    unet.eval()
    try:
        return _chain(unet, cfg, sched, x, timesteps, y, guidance, gen)
    finally:
        unet.train(was_training)


def _resolution(unet: torch.nn.Module) -> tuple[int, int]:
    size = getattr(unet, "config", {}).get("resolution") or _unet2d(unet).config.sample_size
    return (size, size) if isinstance(size, int) else tuple(size)


def _channels(unet: torch.nn.Module) -> int:
    ch = getattr(unet, "config", {}).get("channels")
    return int(ch) if ch else int(_unet2d(unet).config.in_channels)


def _unet2d(unet: torch.nn.Module) -> Any:
    return getattr(unet, "unet", unet)
