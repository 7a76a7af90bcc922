"""Diffusion and flow matching on diffusers: the training loss, sampling, guidance, inpainting, SDEdit and
export, as pure functions of a denoiser and its :class:`~atelier.models.diffusion.DiffusionConfig`.

Nothing here knows about run folders: the training task and the API call these functions. diffusers is
the optional extra ``atelier[diffusion]``, imported on first use with the hub offline.
"""

from __future__ import annotations

from atelier.diffusion.export import DenoiserExport, denoiser_example, export_diffusers, export_onnx, load_diffusers
from atelier.diffusion.inpaint import inpaint, load_mask, rect_mask, repaint_schedule
from atelier.diffusion.objective import (
    SAMPLERS,
    add_noise,
    alphas_cumprod,
    denoiser_output,
    make_scheduler,
    noise_levels,
    predict_x0,
    samplers_for,
    training_loss,
)
from atelier.diffusion.sampling import guided_output, make_generator, resolve_labels, sample, sdedit

__all__ = [
    "SAMPLERS",
    "DenoiserExport",
    "add_noise",
    "alphas_cumprod",
    "denoiser_example",
    "denoiser_output",
    "export_diffusers",
    "export_onnx",
    "guided_output",
    "inpaint",
    "load_diffusers",
    "load_mask",
    "make_generator",
    "make_scheduler",
    "noise_levels",
    "predict_x0",
    "rect_mask",
    "repaint_schedule",
    "resolve_labels",
    "sample",
    "samplers_for",
    "sdedit",
    "training_loss",
]
