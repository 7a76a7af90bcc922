"""A loaded foundation model: a Stable Diffusion-family pipeline from a user's own checkpoint, loaded offline,
with the text-to-image, image-to-image and inpainting modes on the same weights.

Stable Diffusion: Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022;
SDXL: Podell et al., "SDXL: Improving Latent Diffusion Models for High-Resolution Image Synthesis", 2023. The
pipelines themselves are diffusers' (imported at function level: the ``diffusion`` extra).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from atelier.device import resolve_device
from atelier.errors import AtelierError, ConfigError, MissingExtraError
from atelier.foundation.detect import ModelInfo, detect
from atelier.foundation.env import diffusers

__all__ = ["DTYPES", "MODES", "SAMPLERS", "FoundationModel", "load_foundation", "quiet"]

# sampler name -> (diffusers scheduler class, extra config)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),                                         # Song et al. 2021
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),  # Lu et al. 2022
    "euler": ("EulerDiscreteScheduler", {}),                               # Karras et al. 2022
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),                                         # Ho et al. 2020
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODES = ("t2i", "img2img", "inpaint")
_PIPELINES = {
    "sd": {"t2i": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
           "inpaint": "StableDiffusionInpaintPipeline"},
    "sdxl": {"t2i": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
             "inpaint": "StableDiffusionXLInpaintPipeline"},
}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """diffusers and transformers warn about deprecations and config details that are not the user's to fix."""
    with warnings.catch_warnings():
        for module in ("diffusers", "transformers", "huggingface_hub", "torch"):
            warnings.filterwarnings("ignore", module=module)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


class FoundationModel:
    """A user's Stable Diffusion-family checkpoint, loaded: ``generate()`` one image per call and seed."""

    def __init__(self, info: ModelInfo, pipe: Any, device: torch.device, dtype: str, sha256: str,
                 levers: list[str]) -> None:
        self.info = info
        self.device = device
        self.dtype = dtype
        self.sha256 = sha256
        self.levers = levers                       # the memory / speed options that are on
        self._pipes: dict[str, Any] = {"inpaint" if info.inpainting else "t2i": pipe}
        self._base = pipe
        self._scheduler_config = dict(pipe.scheduler.config)
        self.safety_checker = getattr(pipe, "safety_checker", None) is not None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def default_sampler(self) -> str:
        """The scheduler class the checkpoint ships with (``--sampler default``)."""
        return str(self._scheduler_config.get("_class_name", "?"))

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the VAE's downscale (8 for every SD family; diffusers' SD
        pipelines require 8 in any case). The UNet's own downsampling needs no multiple: diffusers' UNet sizes its
        upsampling to the skip connections."""
        return int(np.lcm(8, int(self._base.vae_scale_factor)))

    @property
    def default_size(self) -> tuple[int, int]:
        side = int(self._base.unet.config.sample_size * self._base.vae_scale_factor)
        return side, side

    def check_size(self, size: tuple[int, int]) -> None:
        m = self.multiple
        if size[0] % m or size[1] % m or min(size) < m:
            raise ConfigError(f"size {size[0]}x{size[1]}: width and height must be multiples of {m} for this model "
                              f"(its native size is {self.default_size[0]}x{self.default_size[1]})")

    def _pipe(self, mode: str) -> Any:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if self.info.inpainting and mode != "inpaint":
            raise AtelierError(f"{self.name} is an inpainting checkpoint (its UNet takes a mask): use it for "
                               "inpainting only (atelier sd-inpaint)")
        if mode not in self._pipes:
            cls = getattr(diffusers(), _PIPELINES[self.info.family][mode])
            with quiet():
                pipe = cls.from_pipe(self._base)
            pipe.set_progress_bar_config(**getattr(self._base, "_progress_bar_config", {}))
            self._pipes[mode] = pipe
        return self._pipes[mode]

    def _set_sampler(self, pipe: Any, sampler: str) -> None:
        extra: dict[str, Any]
        if sampler == "default":
            name, extra = self._scheduler_config.get("_class_name", ""), {}
        elif sampler in SAMPLERS:
            name, extra = SAMPLERS[sampler]
        else:
            raise ConfigError(f"unknown sampler {sampler!r}; use default or {', '.join(SAMPLERS)}")
        cls = getattr(diffusers(), name)
        with quiet():
            pipe.scheduler = cls.from_config(self._scheduler_config, **extra)

    def generate(self, mode: str, prompt: str, *, negative: str = "", steps: int = 25, guidance: float = 6.0,
                 seed: int = 0, size: tuple[int, int] | None = None, sampler: str = "default",
                 image: Image.Image | None = None, mask: Image.Image | None = None,
                 strength: float = 0.75) -> np.ndarray:
        """One image as uint8 ``(H, W, 3)``.

        The starting noise comes from a CPU generator seeded with ``seed`` (diffusers draws it on the CPU and
        moves it), so a seed gives the same noise on any device; fp16 / GPU kernels may still differ slightly.
        """
        pipe = self._pipe(mode)
        self._set_sampler(pipe, sampler)
        kwargs: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative or None, "num_inference_steps": steps,
                                  "guidance_scale": guidance, "output_type": "np",
                                  "generator": torch.Generator("cpu").manual_seed(seed)}
        if mode == "t2i":
            w, h = size or self.default_size
            self.check_size((w, h))
            kwargs.update(width=w, height=h)
        else:
            if image is None:
                raise ValueError(f"{mode} needs an image")
            w, h = image.size
            kwargs.update(image=image, strength=strength)
            if mode == "inpaint":
                kwargs.update(mask_image=mask, width=w, height=h)
        with quiet(), torch.inference_mode():
            out = pipe(**kwargs)
        arr = np.asarray(out.images[0], dtype=np.float32)           # (H, W, 3) in [0, 1]
        return (arr * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def _torch_dtype(name: str, device: torch.device) -> tuple[str, torch.dtype]:
    if name == "auto":
        name = "fp16" if device.type == "cuda" else "fp32"
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; use auto, fp32, fp16 or bf16")
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("--dtype fp16 needs a CUDA device; on a CPU use fp32 (or bf16)")
    return name, DTYPES[name]


def load_foundation(path: str | Path, *, config: str | Path | None = None, device: str = "auto",
                    dtype: str = "auto", attention_slicing: bool = False, vae_tiling: bool = False,
                    cpu_offload: bool = False, progress_bar: bool = False) -> FoundationModel:
    """Load a Stable Diffusion 1.x / 2.x / SDXL checkpoint offline.

    ``path`` is a diffusers folder or a single ``.safetensors`` file; a single file needs ``config``, a diffusers
    folder of the same family whose configs and tokenizer are used (its weights are not read; atelier never
    downloads them). Levers: ``dtype`` (auto = fp16 on a GPU, fp32 on a CPU), ``attention_slicing`` (less memory,
    a little slower), ``vae_tiling`` (decode large images tile by tile), ``cpu_offload`` (keep each sub-model on
    the CPU until it runs: small GPUs; needs the ``accelerate`` package). ``progress_bar`` shows diffusers' step
    bar on stderr (worth it on a CPU, where an image takes minutes).
    """
    info = detect(path)
    dev = resolve_device(device)
    dtype_name, torch_dtype = _torch_dtype(dtype, dev)
    if cpu_offload:   # checked before the (slow) load
        if dev.type != "cuda":
            raise ConfigError("--cpu-offload moves sub-models to the GPU one at a time; it needs a CUDA device")
        try:
            import accelerate  # noqa: F401  (optional: diffusers' offload hooks need it)
        except ImportError:
            raise MissingExtraError("--cpu-offload needs the accelerate package: pip install accelerate") from None
    d = diffusers()
    cls = getattr(d, _PIPELINES[info.family]["inpaint" if info.inpainting else "t2i"])
    with quiet():
        if info.layout == "folder":
            if config is not None:
                raise ConfigError("--config is for single-file checkpoints; a diffusers folder has its own configs")
            pipe = _from_folder(cls, info, torch_dtype)
        else:
            pipe = _from_file(cls, info, config, torch_dtype)
    if info.layout == "single-file" and not info.verified:
        warnings.warn(f"{info.path.name}: single-file {info.label} checkpoints load through diffusers' own key "
                      "converter, which atelier's tests cover for Stable Diffusion 1.x only; compare a first image "
                      "with the model's diffusers folder if you have it", UserWarning, stacklevel=2)
    pipe.set_progress_bar_config(disable=not progress_bar)
    levers = [dtype_name]
    if attention_slicing:
        pipe.enable_attention_slicing()
        levers.append("attention-slicing")
    if vae_tiling:
        pipe.vae.enable_tiling()
        levers.append("vae-tiling")
    if cpu_offload:
        pipe.enable_model_cpu_offload()
        levers.append("cpu-offload")
    else:
        pipe.to(dev)
    return FoundationModel(info, pipe, dev, dtype_name, info.sha256(), levers)


def _from_folder(cls: Any, info: ModelInfo, torch_dtype: torch.dtype) -> Any:
    extra: dict[str, Any] = {}
    listed = json.loads((info.path / "model_index.json").read_text(encoding="utf-8")).get("safety_checker")
    if isinstance(listed, list) and listed and listed[0] is not None and not (info.path / "safety_checker").is_dir():
        # Listed but not shipped (a pruned copy): load without it rather than fail; the metadata says so.
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        return cls.from_pretrained(info.path, local_files_only=True, use_safetensors=True, torch_dtype=torch_dtype,
                                   variant=info.variant, **extra)
    except Exception as exc:  # diffusers / transformers raise many types for a file they cannot use
        raise AtelierError(f"cannot load {info.path}: {_first_line(exc)}") from exc


def _from_file(cls: Any, info: ModelInfo, config: str | Path | None, torch_dtype: torch.dtype) -> Any:
    if config is None:
        raise ConfigError(f"{info.path.name} is a single-file {info.label} checkpoint: it holds weights but not the "
                          "tokenizer or the model configs. Pass --config DIR, a diffusers folder of the same family "
                          "(only its *.json, vocab and merges files are read; atelier never downloads them)")
    cfg = Path(config)
    if not (cfg / "model_index.json").is_file():
        raise ConfigError(f"--config {cfg}: not a diffusers folder (no model_index.json)")
    # Only the configs and tokenizer are read from ``cfg``; the components come from the single file.
    tokenizers = ("tokenizer", "tokenizer_2") if info.family == "sdxl" else ("tokenizer",)
    missing = [t for t in tokenizers if not (cfg / t).is_dir()]
    if missing:
        raise ConfigError(f"--config {cfg} is incomplete: no {' or '.join(missing)}/ folder")
    try:
        return cls.from_single_file(str(info.path), config=str(cfg), local_files_only=True, torch_dtype=torch_dtype)
    except Exception as exc:  # diffusers raises its own SingleFileComponentError, OSError, ValueError, ...
        raise AtelierError(f"cannot load {info.path.name} with the configs of {cfg}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
