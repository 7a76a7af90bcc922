"""Model registry: a name (``"dcgan"``) maps to a config class and a builder of (G, D).

Adding an architecture is one file in this package plus one :func:`register` call. Every network is
built from keyword-only, JSON-serialisable arguments (its ``config``), so saving writes
``config.json`` + ``model.safetensors`` and loading rebuilds it without unpickling anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors.torch import load_file, save_file

from atelier.errors import ConfigError, RunError

__all__ = ["ModelSpec", "build", "load_pretrained", "model_config_class", "register", "registered", "save_pretrained"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: type[BaseModel]
    # build(resolution=, channels=, **config) -> {"G": generator, "D": discriminator, ...}
    build: Callable[..., dict[str, torch.nn.Module]]
    networks: dict[str, type[torch.nn.Module]]
    # "gan": noise -> image (sampled with atelier.load(run).sample); "translation": image -> image;
    # "vae": a decoder "G" (noise -> image, sampled like a GAN's G) trained with its encoder "D" on the ELBO.
    kind: str = "gan"


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def registered() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def _ensure_loaded() -> None:
    # Import the model files so that their register() calls run.
    from atelier.models import dcgan, pix2pix, resnet, stylegan2, vae  # noqa: F401


def get(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def model_config_class(name: str) -> type[BaseModel]:
    try:
        return get(name).config
    except ConfigError as exc:
        raise ValueError(f"model.name: {exc}") from None


def build(model_cfg: dict[str, Any], resolution: int, channels: int) -> dict[str, torch.nn.Module]:
    params = dict(model_cfg)
    spec = get(params.pop("name"))
    # Through the config class, so keys added since a run was saved take their defaults.
    params = spec.config.model_validate(params).model_dump()
    return spec.build(resolution=resolution, channels=channels, **params)


def save_pretrained(module: torch.nn.Module, out_dir: str | Path) -> Path:
    """Write ``config.json`` (class + constructor arguments) and ``model.safetensors``."""
    from atelier.utils import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"class": type(module).__name__, "module": type(module).__module__, "config": module.config}
    atomic_write_text(out_dir / "config.json", json.dumps(cfg, indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"))
    return out_dir


def load_pretrained(path: str | Path) -> torch.nn.Module:
    """Rebuild a network saved by :func:`save_pretrained` (no pickle involved)."""
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise RunError(f"{path} is not a saved atelier model (needs config.json and model.safetensors)")
    cfg = json.loads(cfg_file.read_text())
    _ensure_loaded()
    classes = {c.__name__: c for spec in _REGISTRY.values() for c in spec.networks.values()}
    if cfg.get("class") not in classes:
        raise RunError(f"{cfg_file}: unknown network class {cfg.get('class')!r}")
    module = classes[cfg["class"]](**cfg["config"])
    module.load_state_dict(load_file(str(weights)))
    return module
