"""Named pretrained weights: where a file is found, how it is checked, how it is loaded safely.

A feature network that needs ImageNet weights (Inception-v3 for FID, VGG-19 for style losses) asks
for them by name. Lookup order: an explicit path, ``$ATELIER_WEIGHTS/<file>``, the cache
(``~/.cache/atelier/weights``), and, only when ``download=True``, the official URL with its sha256.
Files load through safetensors or ``torch.load(weights_only=True)``; nothing is ever unpickled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from atelier.download import cache_dir, download
from atelier.errors import AtelierError

__all__ = ["NamedWeights", "WEIGHTS", "WeightsError", "load_state_dict", "register_weights", "resolve_weights"]


class WeightsError(AtelierError):
    """A weights file is missing, fails its checksum, or cannot be read safely."""


@dataclass(frozen=True)
class NamedWeights:
    name: str            # e.g. "inception-fid"
    filename: str        # the file name as published
    url: str             # official download URL
    sha256: str | None   # None when the publisher gives no checksum (then the size is not checked either)
    description: str     # what the weights are, for error messages


WEIGHTS: dict[str, NamedWeights] = {}


def register_weights(entry: NamedWeights) -> NamedWeights:
    WEIGHTS[entry.name] = entry
    return entry


def _search_dirs() -> list[Path]:
    dirs = []
    if env := os.environ.get("ATELIER_WEIGHTS"):
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return dirs + [cache_dir() / "weights"]


def resolve_weights(name: str, path: str | Path | None = None, download_ok: bool = False,
                    option: str = "--weights") -> Path:
    """The local file of a named weight set, or a WeightsError saying how to get it."""
    if name not in WEIGHTS:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(WEIGHTS)) or 'none'}")
    entry = WEIGHTS[name]
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(f"{option} {p}: file not found")
        return p
    for base in _search_dirs():
        if (base / entry.filename).is_file():
            return base / entry.filename
    if download_ok and entry.sha256:
        return download([entry.url], cache_dir() / "weights" / entry.filename, entry.sha256)
    raise WeightsError(
        f"{entry.description} weights not found. Download {entry.url} and pass {option} PATH, or put "
        f"{entry.filename} in $ATELIER_WEIGHTS or {cache_dir() / 'weights'}"
    )


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file, or a ``.pt``/``.pth`` through ``torch.load(weights_only=True)``."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle that weights_only refuses
        raise WeightsError(f"cannot read weights {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a plain state dict of tensors")
    return state
