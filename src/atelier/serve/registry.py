"""What the studio can serve: a registry of model kinds, and a cache of the run folders it has loaded.

A *kind* says how to recognise a run folder from its ``config.yaml`` and how to load it into a
:class:`ServedModel`, an object with the capabilities the server exposes (``generate``, ``stylize``,
``translate``). Adding a model family to the studio (a conditional GAN, a fast style network, pix2pix)
is one :func:`register_kind` call with a loader; the endpoints, the page and ``atelier export`` pick
it up from the capabilities. This module does not import FastAPI, so ``atelier export`` uses it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atelier.data import class_names
from atelier.errors import RunError

__all__ = ["BACKENDS", "GeneratorModel", "ModelKind", "ModelStore", "ServedModel", "TranslatorModel", "detect_kind",
           "register_kind"]

BACKENDS = ("torch", "onnx")
CAPABILITIES = ("generate", "stylize", "translate")


class ServedModel:
    """Base of everything the studio serves; subclasses implement the methods of their capabilities."""

    kind: str = ""
    capabilities: tuple[str, ...] = ()

    def __init__(self, name: str, run_dir: Path) -> None:
        self.name = name
        self.run_dir = run_dir
        self.lock = threading.Lock()  # one forward pass at a time per model: BatchNorm/ORT state is shared

    def info(self) -> dict[str, Any]:
        card = self.run_dir / "model_card.md"
        return {"name": self.name, "kind": self.kind, "capabilities": list(self.capabilities),
                "card": card.read_text(encoding="utf-8") if card.is_file() else None}

    def metadata(self, **fields: Any) -> dict[str, Any]:
        return {"run": self.run_dir.name, "kind": self.kind, **fields}

    def export_spec(self) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        """The network to export to ONNX and an example input per argument (batch axis first)."""
        raise NotImplementedError

    # Capabilities (only the ones in ``capabilities`` are called).
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def stylize(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def translate(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class GeneratorModel(ServedModel):
    """A GAN generator: seeds (and a class, for a conditional one) -> images, eager PyTorch or ONNX Runtime."""

    kind = "unconditional"
    capabilities = ("generate",)

    def __init__(self, name: str, run_dir: Path, backend: str = "torch", device: str = "cpu") -> None:
        import atelier

        super().__init__(name, run_dir)
        self.g = atelier.load(run_dir, device=device)
        self.backend = backend
        self.classes: list[str] | None = (list(class_names(self.g.cfg.data.source, self.g.num_classes))
                                          if self.g.num_classes else None)
        if self.classes:
            self.kind = "conditional"
        self._session = None
        if backend == "onnx":
            from atelier.export import onnx_session

            module, example = self.export_spec()
            self._session = onnx_session(module, example)

    @property
    def z_dim(self) -> int:
        return self.g.z_dim

    def latents(self, seeds: Sequence[int]) -> torch.Tensor:
        return self.g.latents(seeds=seeds)

    def info(self) -> dict[str, Any]:
        cfg = self.g.cfg
        return {**super().info(), "model": cfg.model["name"], "step": self.g.step, "z_dim": self.z_dim,
                "resolution": cfg.data.resolution, "channels": cfg.data.channels, "data": cfg.data.source,
                "classes": self.classes, "backend": self.backend}

    def metadata(self, **fields: Any) -> dict[str, Any]:
        return self.g.metadata(backend=self.backend, **fields)

    def export_spec(self) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        example = {"z": torch.zeros(2, self.z_dim)}
        if self.g.num_classes:  # the largest class, so parity checks draw labels from the whole range
            example["y"] = torch.full((2,), self.g.num_classes - 1, dtype=torch.long)
        return self.g.network, example

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with self.lock:
            if self._session is None:
                return self.g.generate(z, labels=labels)
            feed = {"z": z.float().numpy()}
            y = self.g.class_labels(labels, z.shape[0])
            if y is not None:
                feed["y"] = y.numpy()
            x = torch.from_numpy(self._session.run(None, feed)[0])
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass(frozen=True)
class ModelKind:
    """How to recognise one kind of run folder from its config and load it for serving."""

    name: str
    capabilities: tuple[str, ...]  # what the endpoints may call, known before the model is loaded
    matches: Callable[[dict[str, Any]], bool]  # the raw config.yaml dict -> is this kind?
    load: Callable[..., ServedModel]  # (name, run_dir, backend=, device=) -> ServedModel


_KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> ModelKind:
    _KINDS[kind.name] = kind
    return kind


class _LoadedRunModel(ServedModel):
    """A model served through whatever ``atelier.load`` returns for its run folder, called on an image.

    PyTorch only: the ONNX Runtime backend serves generators, for now.
    """

    def __init__(self, name: str, run_dir: Path, backend: str = "torch", device: str = "cpu") -> None:
        import atelier

        super().__init__(name, run_dir)
        self.m = atelier.load(run_dir, device=device)
        self.backend = "torch"

    def metadata(self, **fields: Any) -> dict[str, Any]:
        return self.m.metadata(**fields)

    def _apply(self, image: np.ndarray) -> np.ndarray:
        with self.lock:
            return np.asarray(self.m(image))


class TranslatorModel(_LoadedRunModel):
    """An image-to-image generator (pix2pix): an uploaded image in, its translation out, at the upload's size."""

    kind = "translate"
    capabilities = ("translate",)

    def info(self) -> dict[str, Any]:
        cfg = self.m.cfg
        return {**super().info(), "model": cfg.model["name"], "step": self.m.step, "resolution": self.m.resolution,
                "channels": self.m.channels, "data": cfg.data.source, "classes": None, "backend": self.backend}

    def export_spec(self) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        return self.m.network, {"x": torch.zeros(2, self.m.channels, self.m.resolution, self.m.resolution)}

    def translate(self, image: np.ndarray) -> np.ndarray:
        return self._apply(image)


class StyleServedModel(_LoadedRunModel):
    """A fast style network (``atelier train-style`` run): an uploaded photo in, restyled at its own size."""

    kind = "stylize"
    capabilities = ("stylize",)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "model": "fast-style", "step": self.m.step, "style": self.m.style,
                "channels": 3, "classes": None, "backend": self.backend}

    def export_spec(self) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        return self.m.network, {"x": torch.zeros(2, 3, 64, 64)}

    def stylize(self, image: np.ndarray) -> np.ndarray:
        return self._apply(image)


def _model_kind(cfg: dict[str, Any]) -> str | None:
    """The registry's kind of a config's model ("gan", "translation"), None when it is not a known model."""
    from atelier.models import get, registered

    model = cfg.get("model") or {}
    if not isinstance(model, dict) or model.get("name") not in registered():
        return None
    return get(model["name"]).kind


# A VAE's decoder samples like a GAN's generator.
register_kind(ModelKind("generate", GeneratorModel.capabilities, lambda cfg: _model_kind(cfg) in ("gan", "vae"),
                        GeneratorModel))
register_kind(ModelKind("translate", TranslatorModel.capabilities,
                        lambda cfg: _model_kind(cfg) == "translation", TranslatorModel))
register_kind(ModelKind("stylize", StyleServedModel.capabilities,
                        lambda cfg: cfg.get("kind") == "fast-style", StyleServedModel))


def _read_config(run_dir: Path) -> dict[str, Any] | None:
    from atelier.config import read_yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        data = read_yaml(path)
    except Exception:  # a broken config is listed as unservable, not a crash of the listing
        return None
    return data if isinstance(data, dict) else None


def detect_kind(run_dir: Path) -> ModelKind | None:
    """The kind of a run folder with a checkpoint, or None when no registered kind serves it."""
    cfg = _read_config(run_dir)
    if cfg is None:
        return None
    for kind in _KINDS.values():
        if kind.matches(cfg):
            return kind
    return None


class ModelStore:
    """The run folders under ``runs`` that a registered kind can serve; each is loaded once and cached."""

    def __init__(self, runs: str | Path | Sequence[str | Path], backend: str = "torch", device: str = "cpu") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend, self.device = backend, device
        self.roots = [Path(p) for p in ([runs] if isinstance(runs, (str, Path)) else runs)]
        self.runs = self._scan(self.roots)
        self._loaded: dict[str, ServedModel] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in self.runs}

    @staticmethod
    def _scan(paths: list[Path]) -> dict[str, tuple[Path, ModelKind]]:
        found: dict[str, tuple[Path, ModelKind]] = {}
        for path in paths:
            if not path.is_dir():
                raise RunError(f"runs folder not found: {path}")
            # A run folder itself, or a folder of run folders.
            candidates = [path] if (path / "config.yaml").is_file() else sorted(p for p in path.iterdir() if p.is_dir())
            for run_dir in candidates:
                kind = detect_kind(run_dir)
                if kind is not None and (run_dir / "checkpoints" / "latest").exists():
                    found[run_dir.name] = (run_dir, kind)
        return found

    def add(self, name: str, run_dir: Path, kind: ModelKind) -> None:
        """Serve one more run folder under ``name`` (e.g. one outside the runs folder)."""
        self.runs[name] = (Path(run_dir), kind)
        self._locks[name] = threading.Lock()

    def names(self) -> list[str]:
        return list(self.runs)

    def get(self, name: str) -> ServedModel:
        if name not in self.runs:
            shown = ", ".join(self.runs) or "none (train one with `atelier train`)"
            raise KeyError(f"no model named {name!r}; available: {shown}")
        model = self._loaded.get(name)
        if model is not None:
            return model
        with self._locks[name]:  # concurrent first requests load the model once
            if name not in self._loaded:
                run_dir, kind = self.runs[name]
                self._loaded[name] = kind.load(name, run_dir, backend=self.backend, device=self.device)
            return self._loaded[name]

    def with_capability(self, capability: str) -> list[str]:
        return [n for n, (_, kind) in self.runs.items() if capability in kind.capabilities]
