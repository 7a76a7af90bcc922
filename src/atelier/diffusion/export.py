"""Export a denoiser to diffusers' own pipeline folder (and back), and to ONNX with a parity check.

The diffusers folder is ``DDPMPipeline.save_pretrained``'s: ``model_index.json``, ``unet/config.json`` +
``unet/diffusion_pytorch_model.safetensors`` and ``scheduler/scheduler_config.json``, so
``DiffusionPipeline.from_pretrained(folder)`` loads it with diffusers alone. DDPMPipeline's loop
(noise, then ``scheduler.step`` per timestep) also runs the flow-matching and DPM-Solver++ schedulers,
so one pipeline class serves every objective; a class-conditional UNet loads the same way but needs
``class_labels`` at each call, which DDPMPipeline does not pass (sample it with atelier, or call
``pipe.unet`` yourself; the last class is the null class).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atelier.diffusion.objective import BETA_SCHEDULES, make_scheduler
from atelier.errors import RunError
from atelier.export import PARITY_TOL, export_module, max_abs_diff, onnx_session
from atelier.models.diffusion import DiffusionConfig, DiffusionUNet, import_diffusers
from atelier.utils import temp_dir

__all__ = ["DenoiserExport", "denoiser_example", "export_diffusers", "export_onnx", "load_diffusers"]


def _inner(unet: torch.nn.Module) -> Any:
    return unet.unet if isinstance(unet, DiffusionUNet) else unet


def export_diffusers(unet: torch.nn.Module, cfg: DiffusionConfig, folder: str | Path, sampler: str | None = None,
                     overwrite: bool = False) -> Path:
    """Write diffusers' pipeline folder for ``unet``; its scheduler is ``sampler``'s (default: DDPM's full chain,
    or flow matching's Euler), configured as atelier trained and samples the model.

    The folder is written beside its final place and renamed into it, so a failed export leaves nothing half
    written; an existing non-empty folder is replaced only with ``overwrite``.
    """
    d = import_diffusers()
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        raise RunError(f"{folder} already exists and is not empty; choose another folder or allow overwriting")
    sampler = sampler or ("euler" if cfg.prediction == "flow" else "ddpm")
    pipe = d.DDPMPipeline(unet=_inner(unet), scheduler=make_scheduler(cfg, sampler))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(folder.parent, prefix=f".{folder.name}.")
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if folder.exists():
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _config_from_diffusers(unet_config: dict[str, Any], sched_config: dict[str, Any]) -> DiffusionConfig:
    """The DiffusionConfig of a diffusers UNet2DModel + scheduler, or a RunError naming what does not fit."""
    name = sched_config.get("_class_name", "")
    pred = sched_config.get("prediction_type", "epsilon")
    if name == "FlowMatchEulerDiscreteScheduler" or pred == "flow_prediction":
        objective: dict[str, Any] = {"prediction": "flow"}
        if sched_config.get("shift", 1.0) != 1.0 or sched_config.get("flow_shift", 1.0) != 1.0:
            raise RunError("this flow scheduler shifts its timesteps; atelier's flow models use shift 1")
    else:
        schedules = {v: k for k, v in BETA_SCHEDULES.items()}
        beta = sched_config.get("beta_schedule", "linear")
        linear_ok = (sched_config.get("beta_start", 1e-4), sched_config.get("beta_end", 0.02)) == (1e-4, 0.02)
        if pred not in ("epsilon", "v_prediction") or beta not in schedules or (beta == "linear" and not linear_ok):
            raise RunError(f"scheduler {name} (prediction {pred!r}, betas {beta!r}) is not one atelier trains")
        objective = {"prediction": pred, "schedule": schedules[beta]}
    objective["num_train_timesteps"] = int(sched_config.get("num_train_timesteps", 1000))
    down = list(unet_config.get("down_block_types", ()))
    size = unet_config.get("sample_size")
    if not isinstance(size, int) or any(b not in ("DownBlock2D", "AttnDownBlock2D") for b in down):
        raise RunError("this UNet2DModel is not one atelier builds (square sample_size, DownBlock2D / "
                       "AttnDownBlock2D levels)")
    classes = unet_config.get("num_class_embeds")
    return DiffusionConfig(
        block_out_channels=tuple(unet_config["block_out_channels"]), layers_per_block=unet_config["layers_per_block"],
        attention_resolutions=tuple(size // 2**i for i, b in enumerate(down) if b.startswith("Attn")),
        attention_head_dim=unet_config.get("attention_head_dim") or unet_config["block_out_channels"][-1],
        norm_num_groups=unet_config["norm_num_groups"], dropout=unet_config.get("dropout", 0.0),
        num_classes=classes - 1 if classes else 0, **objective)


def load_diffusers(folder: str | Path) -> tuple[DiffusionUNet, DiffusionConfig]:
    """Load a diffusers pipeline folder (as :func:`export_diffusers` writes) as atelier's denoiser and config.

    Only safetensors weights are read (no pickle), from disk only. A class-conditional UNet's last class
    embedding is taken as the null class of classifier-free guidance, as atelier trains it.
    """
    d = import_diffusers()
    folder = Path(folder)
    files = [folder / "model_index.json", folder / "unet" / "config.json",
             folder / "scheduler" / "scheduler_config.json"]
    missing = [str(f.relative_to(folder)) for f in files if not f.is_file()]
    if missing:
        raise RunError(f"{folder} is not a diffusers pipeline folder with a UNet and a scheduler "
                       f"(missing {', '.join(missing)})")
    if not (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        raise RunError(f"{folder}/unet holds no diffusion_pytorch_model.safetensors (atelier reads no pickled weights)")
    loaded = d.UNet2DModel.from_pretrained(folder, subfolder="unet", use_safetensors=True, local_files_only=True)
    cfg = _config_from_diffusers(dict(loaded.config), json.loads(files[2].read_text()))
    unet = DiffusionUNet(cfg, resolution=loaded.config.sample_size, channels=loaded.config.in_channels)
    # Every constructor option must be what atelier builds, or the weights would load into another network.
    differ = sorted(k for k, v in unet.unet.config.items()
                    if not k.startswith("_") and json.dumps(loaded.config.get(k)) != json.dumps(v))
    if differ:
        raise RunError(f"this UNet2DModel sets options atelier's diffusion model does not have: {', '.join(differ)}")
    unet.unet.load_state_dict(loaded.state_dict())
    return unet.eval(), cfg


@dataclass
class DenoiserExport:
    path: Path
    inputs: dict[str, list[int | str]]
    max_abs_diff: float | None


def denoiser_example(unet: DiffusionUNet, batch: int = 2, scale: int = 1,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """Example inputs of the denoiser (``scale`` x its resolution): x_t, float timesteps, and class labels up to
    the null class for a class-conditional net."""
    gen = torch.Generator().manual_seed(seed)
    res = unet.resolution * scale
    ex = {"sample": torch.randn(batch, unet.channels, res, res, generator=gen),
          "timestep": torch.rand(batch, generator=gen) * 999}
    if unet.num_classes:
        ex["class_labels"] = torch.arange(batch) % (unet.num_classes + 1)
        ex["class_labels"][-1] = unet.num_classes            # the exporter sees the largest label
    return ex


def export_onnx(unet: DiffusionUNet, out: str | Path, check: bool = True) -> DenoiserExport:
    """The denoiser ``(sample, timestep[, class_labels]) -> output`` as ONNX, batch, height and width dynamic
    (height and width multiples of the U-Net's total downsampling), checked in ONNX Runtime at another batch
    size and twice the resolution."""
    # Function-level: ONNX is the optional extra atelier[export].
    step = unet.stride
    example = denoiser_example(unet)
    path = export_module(unet.eval(), example, out, spatial={"sample": (step, 1)}, output_name="output")
    diff = None
    if check:
        inputs = denoiser_example(unet, batch=3, scale=2, seed=1)
        diff = max_abs_diff(unet, onnx_session(path), inputs)
        if not diff <= PARITY_TOL:
            raise RunError(f"the ONNX denoiser differs from PyTorch by {diff:.3g} (> {PARITY_TOL}); it was written "
                           f"to {path} but should not be trusted")
    shapes: dict[str, list[int | str]] = {"sample": ["batch", unet.channels, f"{step}*h", f"{step}*w"],
                                          "timestep": ["batch"]}
    if "class_labels" in example:
        shapes["class_labels"] = ["batch"]
    return DenoiserExport(path, shapes, diff)
