"""The training objective and the schedulers that sample it, both from one :class:`DiffusionConfig`.

Noise paths (x0 an image in [-1, 1], eps ~ N(0, I)):
  * variance preserving (``epsilon``, ``v_prediction``): x_t = a_t x0 + s_t eps, a_t^2 = alphas_cumprod[t]
    of diffusers' DDPMScheduler, s_t^2 = 1 - a_t^2, integer t in [0, T) drawn uniformly (Ho et al. 2020);
  * ``flow``: x_t = (1 - t) x0 + t eps, t in [0, 1), velocity target eps - x0, the network sees t * T
    (diffusers' FlowMatchEulerDiscreteScheduler convention, so its sampler and DPM-Solver++'s flow mode
    integrate what was trained).

Every sampler is a diffusers scheduler configured from the same fields (``make_scheduler``), so the
betas, the prediction type and the timestep scale cannot drift apart between training and sampling.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from atelier.errors import ConfigError
from atelier.models.diffusion import DiffusionConfig, import_diffusers

__all__ = ["SAMPLERS", "add_noise", "alphas_cumprod", "denoiser_output", "make_scheduler", "noise_levels",
           "predict_x0", "samplers_for", "training_loss"]

SAMPLERS = ("ddpm", "ddim", "dpm++", "euler")
# diffusers' names of the two variance-preserving schedules (linear: Ho et al.'s 1e-4..0.02 betas).
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def samplers_for(cfg: DiffusionConfig) -> tuple[str, ...]:
    """The samplers that integrate this objective. A flow model has no DDPM/DDIM chain of its own (DDIM's
    deterministic update on a straight path is Euler's, which is offered as ``euler``)."""
    return ("euler", "dpm++") if cfg.prediction == "flow" else SAMPLERS


def make_scheduler(cfg: DiffusionConfig, sampler: str = "dpm++") -> Any:
    """A fresh diffusers scheduler for ``sampler``, configured like training (a new one per chain: multistep
    solvers keep state).

    ``ddpm`` and ``ddim`` use "trailing" timestep spacing, which starts few-step chains at the last
    training timestep (pure noise; Lin et al., "Common Diffusion Noise Schedules and Sample Steps are
    Flawed", WACV 2024); ``dpm++`` is DPM-Solver++(2M) (Lu et al. 2022); ``euler`` is Karras et al.'s
    Euler for epsilon / v models, and the flow ODE's Euler step for flow models.
    """
    if sampler not in samplers_for(cfg):
        raise ConfigError(f"unknown sampler {sampler!r} for a {cfg.prediction} model; choose one of: "
                          f"{', '.join(samplers_for(cfg))}")
    d = import_diffusers()
    T = cfg.num_train_timesteps
    if cfg.prediction == "flow":
        if sampler == "euler":
            return d.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=1.0)
        return d.DPMSolverMultistepScheduler(num_train_timesteps=T, prediction_type="flow_prediction",
                                             use_flow_sigmas=True, flow_shift=1.0, algorithm_type="dpmsolver++",
                                             solver_order=2)
    common = dict(num_train_timesteps=T, beta_schedule=BETA_SCHEDULES[cfg.schedule], prediction_type=cfg.prediction)
    if sampler == "ddpm":
        return d.DDPMScheduler(**common, clip_sample=True, timestep_spacing="trailing")
    if sampler == "ddim":
        return d.DDIMScheduler(**common, clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")
    if sampler == "dpm++":
        # DPM-Solver++ steps with the predicted x0 = (x - s eps) / a, which amplifies the network's error by 1 / a
        # (up to 2e4 at the top of the cosine schedule, 150 for linear): clip it to the pixel range, as DDPM and
        # DDIM do (thresholding with sample_max_value 1 is exactly that clip; without it an epsilon model trained
        # 20 CPU-minutes drew noise blobs). And, as diffusers recommends for the cosine schedule, start where
        # log(a / s) >= -5.1 (t ~ 995) rather than at a_t = 5e-5.
        clip = -5.1 if cfg.schedule == "cosine" else -math.inf
        return d.DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                             lambda_min_clipped=clip, thresholding=True, sample_max_value=1.0)
    return d.EulerDiscreteScheduler(**common)


@lru_cache(maxsize=8)
def _ddpm(schedule: str, prediction: str, T: int) -> Any:
    return import_diffusers().DDPMScheduler(num_train_timesteps=T, beta_schedule=BETA_SCHEDULES[schedule],
                                            prediction_type=prediction)


def alphas_cumprod(cfg: DiffusionConfig) -> torch.Tensor:
    """a_t^2 for t = 0 .. T-1 of a variance-preserving model, (T,) float32 (diffusers' own values)."""
    if cfg.prediction == "flow":
        raise ConfigError("a flow model has no alphas_cumprod: its path is x_t = (1 - t) x0 + t eps")
    return _ddpm(cfg.schedule, cfg.prediction, cfg.num_train_timesteps).alphas_cumprod.clone()


def add_noise(cfg: DiffusionConfig, x0: torch.Tensor, noise: torch.Tensor,
              t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The noisy input, the regression target and the network's timestep for given draws.

    ``t``: (B,) integer timesteps in [0, T) for epsilon / v models, or flow times in [0, 1] for flow.
    Returns ``(x_t, target, model_t)``, x_t and target (B, C, H, W) float32, model_t (B,).
    """
    x0, noise = x0.float(), noise.float()
    if cfg.prediction == "flow":
        sigma = t.float().view(-1, 1, 1, 1)
        x_t = (1.0 - sigma) * x0 + sigma * noise
        return x_t, noise - x0, t.float() * cfg.num_train_timesteps
    sched = _ddpm(cfg.schedule, cfg.prediction, cfg.num_train_timesteps)
    t = t.long()
    x_t = sched.add_noise(x0, noise, t)
    target = noise if cfg.prediction == "epsilon" else sched.get_velocity(x0, noise, t)
    return x_t, target, t


def _check_labels(cfg: DiffusionConfig, labels: torch.Tensor, batch: int, allow_null: bool) -> torch.Tensor:
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.numel() != batch:
        raise ConfigError(f"got {labels.numel()} class labels for {batch} images")
    top = cfg.num_classes + 1 if allow_null else cfg.num_classes
    if labels.numel() and (labels.min() < 0 or labels.max() >= top):
        raise ConfigError(f"class {int(labels.max() if labels.max() >= top else labels.min())} is out of range: "
                          f"this model has classes 0..{cfg.num_classes - 1}")
    return labels


def training_loss(unet: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor | None, cfg: DiffusionConfig,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One denoising-regression loss on a batch x0 (B, C, H, W) in [-1, 1] -> ``{"loss": mean squared error}``.

    Random draws, in this order: the timesteps (B,), the noise (B, C, H, W) and, for a class-conditional
    model with ``label_dropout`` > 0, the label dropout (B,). They come from ``generator`` on its own
    device (a CPU generator makes them identical on every device, and saving its state makes resume
    exact), or from the global generator of x0's device when ``generator`` is None. An unconditional
    model ignores ``labels``; a class-conditional one needs them and sees the null class instead with
    probability ``label_dropout`` (classifier-free guidance, Ho & Salimans 2022). The loss is computed in
    float32 whatever autocast does to the network.
    """
    B = x0.shape[0]
    dev = generator.device if generator is not None else x0.device
    if cfg.prediction == "flow":
        if cfg.flow_timesteps == "uniform":
            t = torch.rand(B, generator=generator, device=dev)
        else:   # logit-normal(0, 1): sigmoid of a standard normal
            t = torch.sigmoid(torch.randn(B, generator=generator, device=dev))
    else:
        t = torch.randint(0, cfg.num_train_timesteps, (B,), generator=generator, device=dev)
    noise = torch.randn(x0.shape, generator=generator, device=dev)
    t, noise = t.to(x0.device), noise.to(x0.device)
    cond = None
    if cfg.num_classes:
        if labels is None:
            raise ConfigError(f"this diffusion model is class-conditional ({cfg.num_classes} classes): train it on "
                              f"labelled data, or set model.num_classes: 0")
        cond = _check_labels(cfg, labels, B, allow_null=False).to(x0.device)
        if cfg.label_dropout > 0:
            drop = torch.rand(B, generator=generator, device=dev).to(x0.device) < cfg.label_dropout
            cond = torch.where(drop, torch.full_like(cond, cfg.num_classes), cond)
    x_t, target, model_t = add_noise(cfg, x0, noise, t)
    out = denoiser_output(unet, x_t.to(x0.dtype), model_t, cond)
    return {"loss": F.mse_loss(out.float(), target)}


def denoiser_output(unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                    labels: torch.Tensor | None) -> torch.Tensor:
    """``unet(x, t, labels)`` as a tensor, for atelier's DiffusionUNet and for a bare diffusers UNet2DModel."""
    out = unet(x, t, class_labels=labels)
    return out if isinstance(out, torch.Tensor) else out[0]


def noise_levels(cfg: DiffusionConfig, steps: int) -> list[tuple[float, float, float]]:
    """``steps + 1`` levels (a, s, network timestep) from clean (level 0: a = 1, s = 0) to pure noise.

    Level i > 0 is training timestep round(i T / steps) - 1 (trailing spacing, so the top is T - 1) for
    epsilon / v models, and flow time i / steps for flow models (network timestep i T / steps). Used by
    the loops that move both ways along the path (RePaint's resampling jumps).
    """
    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    T = cfg.num_train_timesteps
    levels = [(1.0, 0.0, 0.0)]
    if cfg.prediction == "flow":
        levels += [(1.0 - i / steps, i / steps, i * T / steps) for i in range(1, steps + 1)]
        return levels
    ab = alphas_cumprod(cfg).double()
    for i in range(1, steps + 1):
        t = max(round(i * T / steps) - 1, 0)
        levels.append((float(ab[t].sqrt()), float((1 - ab[t]).sqrt()), float(t)))
    return levels


def predict_x0(cfg: DiffusionConfig, out: torch.Tensor, x: torch.Tensor, a: float, s: float) -> torch.Tensor:
    """The clean image the network's output implies at a level with x = a x0 + s eps."""
    if cfg.prediction == "epsilon":
        return (x - s * out) / a
    if cfg.prediction == "v_prediction":
        return a * x - s * out              # v = a eps - s x0 and a^2 + s^2 = 1
    return x - s * out                      # flow: v = eps - x0, x = (1 - s) x0 + s eps
