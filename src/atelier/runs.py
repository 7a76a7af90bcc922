"""A run folder and its one owner: the resolved config, checkpoints, records and the resume policy.

```
runs/<name>/
  config.yaml        the fully resolved config (the only source of truth for resume and loading)
  checkpoints/       step-XXXXXXX.safetensors + latest (+ best.safetensors with in-training FID)
  samples/           grid-XXXXXXX.png, the fixed latents over time
  metrics.jsonl      one JSON object per logged step, plus evaluation records ("event": "eval")
  tb/, loss.png, model_card.md
```

Nothing else in atelier opens ``config.yaml``: training writes it through :meth:`Run.write_config`, and
loading, serving, exporting and evaluating read it through :meth:`Run.config`. Folders written by older
versions (``kind: fast-style`` style runs) are migrated here, in memory, so every reader sees one schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from atelier.checkpoint import CheckpointManager
from atelier.config import (
    RunConfig,
    apply_overrides,
    flatten,
    format_validation,
    read_yaml,
    save_config,
    validate_config,
)
from atelier.errors import ConfigError, RunError
from atelier.models import get as get_model

__all__ = ["RESUMABLE_KEYS", "Run", "load_config", "read_metrics", "resolve_config"]

# Keys that may change when a run is resumed: they do not change what has been trained so far (budgets only
# say when to stop; evaluations draw from their own seeded generators).
RESUMABLE_KEYS = ("train.steps", "train.minutes", "train.images", "train.device", "train.threads", "log.", "eval.")


def resolve_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a whole config: the schema, the ``model:`` section by its family's config class (defaults
    filled in), and the model against the data: the networks are built on PyTorch's ``meta`` device (no
    memory, no maths), so a resolution or channel count a model cannot take fails here, as one line naming
    both keys, before anything is written."""
    cfg = validate_config(data, where=where)
    params = dict(cfg.model)
    name = params.pop("name", "dcgan")
    try:
        spec = get_model(name)
        parsed = spec.parse(params)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_validation(exc, prefix='model.')}") from None
    object.__setattr__(cfg, "model", {"name": name, **parsed.model_dump(mode="json")})
    try:
        if spec.check is not None:
            spec.check(cfg)
        with torch.device("meta"):
            spec.build(parsed, cfg.data.resolution, cfg.data.channels)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A YAML config (or the defaults when ``path`` is None) with dotted overrides, fully resolved."""
    data = read_yaml(path) if path is not None else {}
    return resolve_config(apply_overrides(data, overrides or {}), where=str(path) if path else "config")


def _migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """An older run's config in today's schema (style runs of ``atelier train-style`` before the one loop)."""
    if raw.get("kind") != "fast-style":
        return raw
    log = {k: v for k, v in (raw.get("log") or {}).items()}
    model = {"name": "fast-style", "arch": "johnson", **(raw.get("model") or {})}  # before `arch`: Johnson's
    for key in ("style", "style_weight", "content_weight", "tv_weight", "features", "vgg_weights", "holdout"):
        if key in raw:
            model[key] = raw[key]
    model["style_scale"] = raw.get("style_scale", 1.0)  # what runs from before the field used
    return {
        "seed": raw.get("seed", 0),
        "data": {"source": raw.get("content_dir", ""), "resolution": raw.get("size", 256), "channels": 3},
        "model": model,
        "optim": {"lr_g": raw.get("lr", 3e-3), "lr_d": raw.get("lr", 3e-3)},
        "train": {"steps": raw.get("steps", 600), "batch_size": raw.get("batch_size", 4),
                  "device": raw.get("device", "auto"), "precision": "fp32", "channels_last": False},
        "log": log,
    }


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (a line torn by a kill -9 mid-write is skipped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class Run:
    """One run folder. Creating the object touches nothing on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    def checkpoints(self, keep: int = 3) -> CheckpointManager:
        return CheckpointManager(self.path / "checkpoints", keep=keep)

    # ------------------------------------------------------------------ reading
    def exists(self) -> bool:
        return self.config_path.is_file()

    def raw_config(self) -> dict[str, Any]:
        """config.yaml as stored, migrated to today's schema but not validated."""
        if not self.path.is_dir():
            raise RunError(f"run folder not found: {self.path}")
        if not self.exists():
            raise RunError(f"{self.path} is not an atelier run folder (no config.yaml); train one with `atelier train`")
        raw = read_yaml(self.config_path)
        if not isinstance(raw, dict):
            raise RunError(f"{self.config_path} does not hold a config (a mapping of keys to values)")
        return _migrate(raw)

    def config(self) -> RunConfig:
        return resolve_config(self.raw_config(), where=str(self.config_path))

    def model_name(self) -> str | None:
        """The family name in config.yaml (None when the folder is no run), without validating the rest."""
        try:
            model = self.raw_config().get("model") or {}
        except (RunError, ConfigError):
            return None
        return model.get("name", "dcgan") if isinstance(model, dict) else None

    def latest_checkpoint(self) -> Path | None:
        return self.checkpoints().latest_path()

    def require_checkpoint(self) -> Path:
        path = self.latest_checkpoint()
        if path is None:
            raise RunError(f"{self.path} has no checkpoint yet; train it first (`atelier train --run-dir {self.path}`)")
        return path

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics_path)

    def append_records(self, records: list[dict[str, Any]]) -> None:
        """Append evaluation records (one JSON line each) to metrics.jsonl."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")

    # ------------------------------------------------------------------ writing
    def write_config(self, cfg: RunConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.config_path)

    # ------------------------------------------------------------------ the resume policy
    def prepare(self, data: dict[str, Any] | None, overrides: dict[str, Any], where: str = "config"
                ) -> tuple[RunConfig, bool]:
        """The config of a new run, or of this folder being resumed. Returns (config, resuming).

        A folder with a checkpoint is resumed from its own config.yaml; only the keys in
        :data:`RESUMABLE_KEYS` (budgets, device, logging, evaluation) may differ from what it was trained with,
        anything else is refused naming the key. ``data`` is the asked-for config (None: the folder's own).
        """
        if not (self.exists() and self.latest_checkpoint() is not None):
            return _resolve(data or {}, overrides, where), False
        # Validate the stored config first, so keys added to atelier since the run started take their
        # defaults instead of looking like changes.
        stored = self.raw_config()
        base = flatten(resolve_config(stored, where=str(self.config_path)).to_dict())
        changed: dict[str, Any] = {}
        if data is not None:
            asked = flatten(_resolve(data, overrides, where).to_dict())
            changed = {k: v for k, v in asked.items() if base.get(k) != v}
        changed.update({k: v for k, v in overrides.items() if base.get(k) != v})
        bad = {k: v for k, v in changed.items() if not k.startswith(RESUMABLE_KEYS)}
        if bad:
            shown = ", ".join(f"{k}={v!r} (the run has {base.get(k)!r})" for k, v in list(bad.items())[:4])
            raise ConfigError(f"{self.path} was trained with a different config: {shown}. Resume with the same "
                              f"settings, or start a new run with another --run-dir")
        return _resolve(stored, changed, str(self.config_path)), True


def _resolve(data: dict[str, Any], overrides: dict[str, Any], where: str) -> RunConfig:
    """``resolve_config`` of ``data`` with dotted overrides, a key that does not exist blamed on ``--set``."""
    try:
        return resolve_config(apply_overrides(data, overrides), where=where)
    except ConfigError as exc:
        bad = [k for k in overrides if f"{k}: unknown key" in str(exc)]
        if bad:
            raise ConfigError(f"--set {bad[0]}: unknown key (check the spelling; see configs/mnist-dcgan.yaml "
                              "for every key)") from None
        raise
