"""What a user's checkpoint is: a diffusers folder or a single ``.safetensors`` file, which Stable Diffusion
family, and whether every part is there, found without importing diffusers (only file names, JSON configs and
the safetensors header are read).

Supported: Stable Diffusion 1.x / 2.x and SDXL (base) as diffusers folders; Stable Diffusion 1.x / 2.x and SDXL
as single files in the original (CompVis / Stability) key layout, with a diffusers folder of the same family
for the configs and tokenizer. Weights are read from safetensors only: ``.ckpt`` / ``.bin`` files are pickles.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from atelier.errors import AtelierError
from atelier.provenance import weights_sha256

__all__ = ["ModelInfo", "detect", "family_of_keys"]

# diffusers pipeline class -> atelier family
_FOLDER_FAMILIES = {
    "StableDiffusionPipeline": "sd", "StableDiffusionImg2ImgPipeline": "sd", "StableDiffusionInpaintPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionXLInpaintPipeline": "sdxl",
}
_COMPONENTS = {
    "sd": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
}
_WHAT = {"unet": "the denoising UNet", "vae": "the VAE", "text_encoder": "the text encoder",
         "text_encoder_2": "the second text encoder", "tokenizer": "the tokenizer",
         "tokenizer_2": "the second tokenizer", "scheduler": "the scheduler config"}
# Single files in the original layout: key prefixes of each part (CompVis ldm / Stability sgm checkpoints).
_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
_PARTS = {
    "sd": {"UNet": "model.diffusion_model.", "VAE": "first_stage_model.", "text encoder": "cond_stage_model."},
    "sdxl": {"UNet": "model.diffusion_model.", "VAE": "first_stage_model.",
             "text encoders": "conditioner.embedders."},
}
# the token embedding of SD 1.x's CLIP (HF layout) and SD 2.x's OpenCLIP: its width tells 1.x (768) from 2.x (1024)
_TEXT_EMBEDDINGS = ("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                    "cond_stage_model.model.token_embedding.weight")
_PICKLES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass
class ModelInfo:
    """A checkpoint found on disk: where, which layout and family, and the files that hold its weights."""

    path: Path
    layout: str                          # "folder" | "single-file"
    family: str                          # "sd" (1.x / 2.x) | "sdxl"
    inpainting: bool = False             # a dedicated inpainting UNet (9 input channels)
    variant: str | None = None           # "fp16" when the folder holds only *.fp16.safetensors
    text_width: int | None = None        # the text encoder's width: 768 = SD 1.x, 1024 = SD 2.x
    weight_files: list[Path] = field(default_factory=list)
    # False for single files whose key layout atelier's tests do not cover (SD 2.x's OpenCLIP, SDXL): loaded
    # through diffusers' converter, with a warning
    verified: bool = True

    @property
    def name(self) -> str:
        return self.path.stem if self.layout == "single-file" else self.path.name

    @property
    def label(self) -> str:
        """A human name of the family: "Stable Diffusion 1.x", "SDXL", ..."""
        if self.family == "sdxl":
            base = "SDXL"
        else:
            base = {768: "Stable Diffusion 1.x", 1024: "Stable Diffusion 2.x"}.get(self.text_width or 0,
                                                                                  "Stable Diffusion")
        return base + (" (inpainting)" if self.inpainting else "")

    def sha256(self) -> str:
        """The single file's sha256 (the number model sites list); for a folder, the sha256 of its weight files'
        relative paths and sha256s, one ``path sha`` line each, sorted (each file hashed once per path, size and
        modification time)."""
        if self.layout == "single-file":
            return weights_sha256(self.path) or ""
        lines = sorted(f"{p.relative_to(self.path).as_posix()} {weights_sha256(p)}\n" for p in self.weight_files)
        return hashlib.sha256("".join(lines).encode()).hexdigest()


def detect(path: str | Path) -> ModelInfo:
    """Find what ``path`` holds, or raise one :class:`AtelierError` saying what is missing or unsupported."""
    path = Path(path)
    if not path.exists():
        raise AtelierError(f"model not found: {path}")
    if path.is_dir():
        return _detect_folder(path)
    if path.suffix.lower() in _PICKLES:
        raise AtelierError(f"{path.name} is a pickle checkpoint ({path.suffix}); atelier loads weights from "
                           ".safetensors only (pickles can run code when loaded): convert it to .safetensors first")
    if path.suffix.lower() != ".safetensors":
        raise AtelierError(f"{path}: give a diffusers folder (with model_index.json) or a .safetensors file")
    return _detect_file(path)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AtelierError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise AtelierError(f"{path} is not a JSON object")
    return data


def _detect_folder(path: Path) -> ModelInfo:
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise AtelierError(f"{path} is not a diffusers model folder (no model_index.json); give the folder that "
                           "holds model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/")
    index = _read_json(index_file)
    cls = str(index.get("_class_name", ""))
    family = _FOLDER_FAMILIES.get(cls)
    if family is None:
        raise AtelierError(f"{path} holds a {cls or 'unknown'} model; atelier runs Stable Diffusion 1.x / 2.x and "
                           "SDXL checkpoints (StableDiffusionPipeline, StableDiffusionXLPipeline)")
    missing: list[str] = []
    weights: list[Path] = []
    variants: set[str] = set()
    for part in _COMPONENTS[family]:
        sub = path / part
        problem = _check_component(part, sub, index.get(part), weights, variants)
        if problem:
            missing.append(f"{_WHAT[part]} ({part}/: {problem})")
    if missing:
        raise AtelierError(f"model folder {path} is incomplete: missing {'; '.join(missing)}")
    unet_cfg = _read_json(path / "unet" / "config.json")
    te_cfg = _read_json(path / "text_encoder" / "config.json")
    return ModelInfo(path=path, layout="folder", family=family,
                     inpainting=int(unet_cfg.get("in_channels", 4)) == 9,
                     variant="fp16" if variants == {"fp16"} else None,
                     text_width=te_cfg.get("hidden_size") or (te_cfg.get("text_config") or {}).get("hidden_size"),
                     weight_files=sorted(weights))


def _check_component(part: str, sub: Path, entry: object, weights: list[Path], variants: set[str]) -> str | None:
    """Why ``sub`` cannot be loaded (None when it can); adds its weight files to ``weights``."""
    if not entry or not isinstance(entry, list) or entry[0] is None:
        return "not listed in model_index.json"
    if not sub.is_dir():
        return "folder not found"
    if part.startswith("tokenizer"):
        has_bpe = (sub / "vocab.json").is_file() and (sub / "merges.txt").is_file()
        return None if has_bpe or (sub / "tokenizer.json").is_file() else "no vocab.json + merges.txt or tokenizer.json"
    if part == "scheduler":
        return None if (sub / "scheduler_config.json").is_file() else "no scheduler_config.json"
    if not (sub / "config.json").is_file():
        return "no config.json"
    files = sorted(sub.glob("*.safetensors"))
    if not files:
        pickles = [p.name for p in sub.iterdir() if p.suffix in _PICKLES]
        if pickles:
            return (f"weights only as pickle ({', '.join(pickles)}); atelier loads .safetensors only: "
                    "convert them first")
        return "no .safetensors weights"
    plain = [p for p in files if ".fp16." not in p.name]
    if not plain:
        variants.add("fp16")
    weights.extend(plain or files)
    return None


def family_of_keys(keys: set[str]) -> str | None:
    """The family of a single file in the original key layout, from its key names alone; None if unknown."""
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "sdxl"
    if _UNET_IN in keys and any(k.startswith("cond_stage_model.") for k in keys):
        return "sd"
    return None


def _detect_file(path: Path) -> ModelInfo:
    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = set(fh.keys())
            in_channels = fh.get_slice(_UNET_IN).get_shape()[1] if _UNET_IN in keys else None
            width = next((fh.get_slice(k).get_shape()[1] for k in _TEXT_EMBEDDINGS if k in keys), None)
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise AtelierError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    if any("joint_blocks." in k for k in keys):
        raise AtelierError(f"{path.name} is a Stable Diffusion 3 checkpoint; atelier runs Stable Diffusion 1.x / "
                           "2.x and SDXL")
    family = family_of_keys(keys)
    if family is None:
        unet = _UNET_IN in keys or any(k.startswith("model.diffusion_model.") for k in keys)
        what = "only a UNet (no text encoder)" if unet else "no Stable Diffusion UNet (model.diffusion_model.*)"
        raise AtelierError(f"{path.name} is not a full Stable Diffusion 1.x / 2.x / SDXL checkpoint: it has {what}")
    missing = [name for name, prefix in _PARTS[family].items() if not any(k.startswith(prefix) for k in keys)]
    if missing:
        raise AtelierError(f"{path.name} is incomplete: it has no {' and no '.join(missing)} "
                           f"(a full checkpoint holds {', '.join(_PARTS[family])})")
    hf_clip = any(k.startswith("cond_stage_model.transformer.") for k in keys)
    return ModelInfo(path=path, layout="single-file", family=family, inpainting=in_channels == 9,
                     text_width=width, weight_files=[path], verified=family == "sd" and hf_clip)
