"""What the studio serves: the run folders under its runs folder, each loaded once (through
:func:`atelier.load`) and cached, with a lock per model.

A served model is a :class:`~atelier.loaded.LoadedModel` (its kind, capabilities, metadata and export spec
come from there) plus the studio's own concerns: its name, its model card, one forward pass at a time, and
the ONNX Runtime backend for generators.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atelier import families
from atelier.api.diffusion import with_sampling
from atelier.errors import AtelierError, RunError
from atelier.export import onnx_session
from atelier.latent import to_uint8
from atelier.loaded import DiffusionModel, Generator, LoadedModel
from atelier.runs import Run

__all__ = ["BACKENDS", "ModelStore", "ServedModel"]

BACKENDS = ("torch", "onnx")


class ServedModel:
    """A loaded model as the studio serves it."""

    def __init__(self, name: str, run: Run, model: LoadedModel, backend: str = "torch",
                 checkpoint: Path | None = None) -> None:
        self.name, self.run, self.model = name, run, model
        self.checkpoint = checkpoint  # the file it was loaded from: a newer one means the run trained on
        self.lock = threading.Lock()  # one forward pass at a time per model: BatchNorm/ORT state is shared
        # ONNX Runtime serves one-pass generators; a diffusion model's exported graph is its denoiser, called by a
        # sampler many times per image, so it is served by PyTorch.
        one_pass = isinstance(model, Generator) and not isinstance(model, DiffusionModel)
        self.backend = backend if one_pass else "torch"
        self._session = None
        if self.backend == "onnx":
            module, example, spatial = model.export_spec()
            self._session = onnx_session(module, example)

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def capabilities(self) -> tuple[str, ...]:
        return self.model.capabilities

    @property
    def run_dir(self) -> Path:
        return self.run.path

    def info(self) -> dict[str, Any]:
        card = self.run.path / "model_card.md"
        info = self.model.info()
        if isinstance(info.get("data"), str) and ("/" in info["data"] or "\\" in info["data"]):
            info["data"] = Path(info["data"]).name  # a folder's name, not the server's path
        return {**info, "name": self.name, "backend": self.backend,
                "card": card.read_text(encoding="utf-8") if card.is_file() else None}

    def metadata(self, **fields: Any) -> dict[str, Any]:
        extra = {"backend": self.backend} if isinstance(self.model, Generator) else {}
        return self.model.metadata(**extra, **fields)

    # ------------------------------------------------------------------ capabilities
    def latents(self, seeds: Sequence[int]) -> torch.Tensor:
        assert isinstance(self.model, Generator)
        return self.model.latents(seeds=seeds)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None, psi: float = 1.0,
                 sampling: dict[str, Any] | None = None) -> torch.Tensor:
        """Images from latents; ``psi`` < 1 truncates in w (mapping networks: the exported graph has no psi
        input, so truncated images come from PyTorch); ``sampling``: a diffusion model's steps / sampler /
        guidance for this call."""
        g = self.model
        assert isinstance(g, Generator)
        with self.lock:
            if self._session is None or psi != 1.0 or sampling:
                return with_sampling(g, **(sampling or {})).generate(z, labels=labels, psi=psi)
            feed = {"z": z.float().numpy()}
            y = g.class_labels(labels, z.shape[0])
            if y is not None:
                feed["y"] = y.numpy()
            return to_uint8(torch.from_numpy(self._session.run(None, feed)[0]))

    def _apply(self, image: np.ndarray) -> np.ndarray:
        with self.lock:
            return np.asarray(self.model(image))  # type: ignore[operator]

    def stylize(self, image: np.ndarray) -> np.ndarray:
        return self._apply(image)

    def translate(self, image: np.ndarray) -> np.ndarray:
        return self._apply(image)


class ModelStore:
    """The run folders under ``runs`` that atelier can serve; each is loaded once and cached."""

    def __init__(self, runs: str | Path | Sequence[str | Path], backend: str = "torch", device: str = "cpu") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend, self.device = backend, device
        self.roots = [Path(p) for p in ([runs] if isinstance(runs, (str, Path)) else runs)]
        self.runs: dict[str, tuple[Path, families.Family]] = self._scan(self.roots)
        self._loaded: dict[str, ServedModel] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in self.runs}
        self._refresh_lock = threading.Lock()

    @staticmethod
    def _scan(paths: list[Path]) -> dict[str, tuple[Path, families.Family]]:
        found: dict[str, tuple[Path, families.Family]] = {}
        for path in paths:
            if not path.is_dir():
                raise RunError(f"runs folder not found: {path}")
            # A run folder itself, or a folder of run folders (the studio's own .studio folder is none).
            candidates = [path] if (path / "config.yaml").is_file() else sorted(
                p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            for run_dir in candidates:
                run = Run(run_dir)
                name = run.model_name()
                if name is None or name not in families.registered() or run.latest_checkpoint() is None:
                    continue  # not a run, a family this version does not know, or nothing trained yet
                found[run_dir.name] = (run_dir, families.get(name))
        return found

    def refresh(self) -> None:
        """Serve the runs that appeared since (a job's first checkpoint); folders that vanished stay listed
        until a restart (their loaded models keep working)."""
        with self._refresh_lock:
            try:
                found = self._scan(self.roots)
            except RunError:
                return
            new = {name: entry for name, entry in found.items() if name not in self.runs}
            if new:
                # New dicts, swapped in whole: request threads iterating the old ones are not disturbed.
                self._locks = {**self._locks, **{name: threading.Lock() for name in new}}
                self.runs = {**self.runs, **new}

    def add(self, name: str, run_dir: Path) -> None:
        """Serve one more run folder under ``name`` (e.g. one outside the runs folder)."""
        model_name = Run(run_dir).model_name()
        if model_name is None:
            raise RunError(f"{run_dir} is not a run folder")
        self.runs[name] = (Path(run_dir), families.get(model_name))
        self._locks[name] = threading.Lock()

    def names(self) -> list[str]:
        return list(self.runs)

    def get(self, name: str) -> ServedModel:
        if name not in self.runs:
            shown = ", ".join(self.runs) or "none (train one with `atelier train`)"
            raise KeyError(f"no model named {name!r}; available: {shown}")
        run_dir, _ = self.runs[name]
        latest = Run(run_dir).latest_checkpoint()
        model = self._loaded.get(name)
        if model is not None and (latest is None or latest == model.checkpoint):
            return model
        with self._locks[name]:  # concurrent first requests load the model once
            model = self._loaded.get(name)
            if model is None or (latest is not None and latest != model.checkpoint):
                # First use, or the run trained on (a studio job) since: serve its newest checkpoint.
                loaded = families.load(run_dir, device=self.device)
                model = ServedModel(name, Run(run_dir), loaded, backend=self.backend, checkpoint=latest)
                self._loaded[name] = model
            return model

    def with_capability(self, capability: str) -> list[str]:
        return [n for n, (_, family) in self.runs.items() if capability in family.loaded.capabilities]


def load_error(exc: Exception) -> str:
    """A model that cannot be loaded is listed with why, not a crash of the listing."""
    return str(exc) if isinstance(exc, (AtelierError, KeyError)) else f"{type(exc).__name__}: {exc}"
