"""Checkpoints: one ``step-XXXXXXX.safetensors`` file per save, plus an atomic ``latest`` pointer.

All tensors (networks, EMA, optimiser moments, RNG states) go into the safetensors body; everything
else (step, images seen, data-loader position, optimiser hyper-parameters) is JSON in the file's
header metadata. Nothing is pickled, so loading a checkpoint can never execute code. Files are
written to a temporary name and renamed, then ``latest`` is rewritten the same way: a kill -9 at any
moment leaves the previous checkpoint as ``latest``.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from atelier.errors import RunError
from atelier.utils import atomic_write_bytes, atomic_write_text

__all__ = ["CheckpointManager", "flatten_state", "unflatten_state"]

FORMAT = "atelier-checkpoint/1"
_NAME = re.compile(r"^step-(\d{7,})\.safetensors$")


def flatten_state(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a placeholder; collect tensors by dotted key."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        if all(isinstance(k, str) for k in tree):
            return {k: flatten_state(v, f"{prefix}.{k}", tensors) for k, v in tree.items()}
        # Optimiser state is keyed by int parameter ids: keep the key types.
        return {"__items__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in tree.items()]}
    if isinstance(tree, (list, tuple)):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot store {type(tree).__name__} at {prefix} in a checkpoint")


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__items__" in tree:
            return {k: unflatten_state(v, tensors) for k, v in tree["__items__"]}
        return {k: unflatten_state(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


class CheckpointManager:
    def __init__(self, folder: Path, keep: int = 3) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def path_for(self, step: int) -> Path:
        return self.folder / f"step-{step:07d}.safetensors"

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """``state``: nested dicts/lists of tensors and JSON values (``state_dict()``s and counters)."""
        path = self._write(self.path_for(step), step, state)
        atomic_write_text(self.folder / "latest", path.name + "\n")
        self._prune()
        return path

    def save_best(self, step: int, state: dict[str, Any]) -> Path:
        """Write ``best.safetensors`` (same format; never pruned, never the ``latest`` pointer)."""
        return self._write(self.folder / "best.safetensors", step, state)

    @staticmethod
    def _write(path: Path, step: int, state: dict[str, Any]) -> Path:
        tensors: dict[str, torch.Tensor] = {}
        tree = flatten_state(state, "s", tensors)
        meta = {"format": FORMAT, "step": str(step), "state": json.dumps(tree)}
        atomic_write_bytes(path, st_save(tensors, metadata=meta))
        return path

    def _prune(self) -> None:
        keep = set(sorted(self.list())[-self.keep :])
        for p in self.list():
            if p not in keep and p.name not in ("best.safetensors",):
                p.unlink(missing_ok=True)

    def list(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if _NAME.match(p.name))

    def latest_path(self) -> Path | None:
        pointer = self.folder / "latest"
        if pointer.is_file():
            candidate = self.folder / pointer.read_text().strip()
            if candidate.is_file():
                return candidate
        found = self.list()
        return found[-1] if found else None

    @staticmethod
    def read(path: Path, tensors_only: str | None = None) -> dict[str, Any]:
        """Load a checkpoint file; ``tensors_only="s.G_ema"`` loads just that sub-tree's tensors."""
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise RunError(f"{path} is not an atelier checkpoint (format {meta.get('format')!r})")
                keys = [k for k in fh.keys() if tensors_only is None or k.startswith(tensors_only + ".")]
                tensors = {k: fh.get_tensor(k) for k in keys}
        except (SafetensorError, OSError, json.JSONDecodeError) as exc:
            raise RunError(f"checkpoint {path} is unreadable ({exc}); it may be truncated") from None
        tree = json.loads(meta["state"])
        if tensors_only is not None:
            for part in tensors_only.split(".")[1:]:
                tree = tree[part]
        return unflatten_state(tree, tensors)

    @staticmethod
    def read_step(path: Path) -> int:
        try:
            with safe_open(str(path), framework="pt") as fh:
                return int((fh.metadata() or {}).get("step", 0))
        except (SafetensorError, OSError) as exc:
            raise RunError(f"checkpoint {path} is unreadable ({exc})") from None

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest readable checkpoint (falling back past a corrupt one, with a warning)."""
        first = self.latest_path()
        candidates = ([first] if first else []) + [p for p in reversed(self.list()) if p != first]
        for path in candidates:
            try:
                return path, self.read(path)
            except RunError as exc:
                warnings.warn(f"{exc}; trying an older checkpoint", UserWarning, stacklevel=2)
        return None
