"""The model registry: a name maps to a family's config class and networks (registered by the family's file).

Every network is built the same way, ``Net(cfg, resolution=R, channels=C)``: ``cfg`` is the family's
typed config (the ``model:`` section of a run's config, a pydantic model), and resolution and channels
come from the data. The config class is the one place where a family's options are defined; a network's
``config`` property records what :func:`save_pretrained` writes (family, resolution, channels and the
config), so :func:`load_pretrained` rebuilds it without unpickling anything.

A family's file ends with one :func:`register` call naming its config class and its networks by slot
(``{"G": Generator, "D": Discriminator}``); how a family is trained and loaded is said one layer up
(:mod:`atelier.families`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from atelier.config import RunConfig
from atelier.errors import ConfigError, RunError
from atelier.utils import atomic_write_text

__all__ = ["ModelSpec", "Network", "build", "get", "load_pretrained", "register", "registered", "save_pretrained"]


class Network(nn.Module):
    """Base of atelier's networks: built from the family's config and the data's shape, nothing else."""

    family: str = ""  # set by register()

    def __init__(self, cfg: BaseModel, *, resolution: int, channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.resolution, self.channels = resolution, channels

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """Inputs of the right kind for this network, seeded (tests, export): images in [-1, 1] by default."""
        g = torch.Generator().manual_seed(0)
        return (torch.rand(batch, self.channels, self.resolution, self.resolution, generator=g) * 2 - 1,)

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds this network: ``type(net)(Config(**config), resolution=..., channels=...)``."""
        return {"family": self.family, "resolution": self.resolution, "channels": self.channels,
                "config": self.cfg.model_dump(mode="json")}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: type[BaseModel]
    # Slot -> network class; every one is built as cls(cfg, resolution=, channels=).
    networks: dict[str, type[Network]]
    # Checks across the run config's sections (e.g. a GAN's loss against its critic); raises ValueError.
    check: Callable[[RunConfig], None] | None = None
    # The config of a network saved before networks recorded their family, in today's terms.
    legacy_config: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def parse(self, params: dict[str, Any]) -> BaseModel:
        """The family's config from a ``model:`` section without its ``name`` (defaults filled in)."""
        return self.config.model_validate(params)

    def build(self, cfg: BaseModel, resolution: int, channels: int) -> dict[str, nn.Module]:
        return {slot: cls(cfg, resolution=resolution, channels=channels) for slot, cls in self.networks.items()}


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    for cls in spec.networks.values():
        cls.family = spec.name
    _REGISTRY[spec.name] = spec
    return spec


def registered() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"model.name: unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build(model_cfg: dict[str, Any], resolution: int, channels: int) -> dict[str, nn.Module]:
    """Networks of a validated ``model:`` section (``{"name": ..., **options}``), by slot."""
    params = dict(model_cfg)
    spec = get(params.pop("name"))
    return spec.build(spec.parse(params), resolution, channels)


def save_pretrained(module: Network, out_dir: str | Path) -> Path:
    """Write ``config.json`` (class + how to rebuild it) and ``model.safetensors``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"class": type(module).__name__, **module.config}
    atomic_write_text(out_dir / "config.json", json.dumps(cfg, indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"))
    return out_dir


def load_pretrained(path: str | Path) -> nn.Module:
    """Rebuild a network saved by :func:`save_pretrained` (no pickle involved)."""
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise RunError(f"{path} is not a saved atelier model (needs config.json and model.safetensors)")
    try:
        saved = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{cfg_file} is not valid JSON ({exc})") from None
    classes = {c.__name__: (spec, c) for spec in _REGISTRY.values() for c in spec.networks.values()}
    name = saved.get("class") if isinstance(saved, dict) else None
    if name not in classes:
        raise RunError(f"{cfg_file}: unknown network class {name!r}")
    spec, cls = classes[saved["class"]]
    if "family" not in saved:  # written before networks were built from their family's config
        old = saved.get("config", {})
        saved = {"resolution": old.get("resolution", 0), "channels": old.get("channels", 3),
                 "config": spec.legacy_config(old) if spec.legacy_config else old}
    try:
        module = cls(spec.parse(saved["config"]), resolution=int(saved["resolution"]), channels=int(saved["channels"]))
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{cfg_file}: cannot rebuild the network ({exc})") from None
    module.load_state_dict(load_file(str(weights)))
    return module
