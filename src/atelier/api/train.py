"""The *train* workflow: a config and a run folder in, a trained (or resumed) run out."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atelier import distributed, families
from atelier.checkpoint import CheckpointManager
from atelier.config import RunConfig, read_yaml
from atelier.data.recipe import CPU_MINUTES, recommend_recipe
from atelier.errors import ConfigError
from atelier.runs import Run
from atelier.style.features import vgg19_available
from atelier.tasks.stylegan2 import recipe_defaults
from atelier.training.budget import Budget
from atelier.training.loop import Trainer
from atelier.training.result import TrainResult

__all__ = ["DEMO_MINUTES", "DEMO_OVERRIDES", "DEMO_STEPS", "DryRun", "demo_overrides", "describe_budget", "dry_run",
           "prepare", "recipe", "resume_step", "time_budget", "train", "train_style", "training_defaults",
           "training_reason"]

# ``atelier demo``: the built-in MNIST DCGAN with the recipe that reached recognisable, class-balanced digits
# fastest in images seen (measured with the digits evaluator on 10,000 samples, 2-core CPU): batch 64 and
# learning rates 4e-4 reach FID 16.9 with every class between 6.4% and 13.6% at 100k images, where the
# tutorial's batch 256 and 2e-4 stood at FID 30.9 with one class at 2.4% and one at 29% after 160k.
DEMO_OVERRIDES: dict[str, Any] = {"train.batch_size": 64, "optim.lr_g": 4e-4, "optim.lr_d": 4e-4}
DEMO_STEPS = 1600
DEMO_MINUTES = "12 minutes or less"  # start to finish; measured 12m22s on a 2-core CPU other jobs kept busy


def demo_overrides(steps: int = DEMO_STEPS) -> dict[str, Any]:
    """The demo's recipe for ``steps`` steps: six progress grids and three checkpoints along the way."""
    return {**DEMO_OVERRIDES, "train.steps": steps, "log.sample_every": max(1, steps // 6),
            "log.checkpoint_every": max(1, steps // 3)}

ConfigLike = str | Path | dict | RunConfig | None


def _config_data(config: ConfigLike) -> tuple[dict[str, Any] | None, str]:
    if config is None:
        return None, "config"
    if isinstance(config, RunConfig):
        return config.to_dict(), "config"
    if isinstance(config, dict):
        return config, "config"
    return read_yaml(config), str(config)


def prepare(config: ConfigLike, run_dir: str | Path, overrides: dict[str, Any] | None = None
            ) -> tuple[RunConfig, bool]:
    """The resolved config of a new run, or of ``run_dir`` resumed (then only budgets, device, logging and
    evaluation may change). Returns (config, resuming); writes nothing."""
    data, where = _config_data(config)
    return Run(run_dir).prepare(data, overrides or {}, where)


def resume_step(run_dir: str | Path) -> int | None:
    """The step a run folder would resume from (None: no checkpoint yet)."""
    path = Run(run_dir).latest_checkpoint()
    return CheckpointManager.read_step(path) if path is not None else None


def recipe(source: str, device: str = "auto", user: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The whole training recipe for a data source without a config: what :func:`atelier.data.recommend_recipe`
    picks from the data (family, resolution, channels, alpha, widths, augmentation, classes), on top of the chosen
    family's training defaults (:func:`training_defaults`). ``user``: the user's own dotted settings, which
    the settings derived from them follow (a CPU recipe's resolution follows their time budget, R1's gamma their
    resolution and batch size); they are not merged in. Returns (dotted overrides, one reason per choice)."""
    picked, reasons = recommend_recipe(source, device=device, minutes=time_budget(user or {}))
    gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    base = training_defaults({**picked, **(user or {})}, gpu)
    if base:
        reasons.append(training_reason(base) + ", budget " + ("5M images" if gpu else f"{CPU_MINUTES:g} minutes") +
                       " (change it with --minutes, --steps or --images)")
    return {**base, **picked}, reasons


def time_budget(settings: dict[str, Any]) -> float | None:
    """The minutes a run with these dotted settings trains for: ``train.minutes``, else None when a step or image
    budget decides, else a CPU recipe's default (:data:`atelier.data.recipe.CPU_MINUTES`)."""
    minutes = settings.get("train.minutes")
    if isinstance(minutes, int | float) and minutes > 0:
        return float(minutes)
    if settings.get("train.steps") is not None or settings.get("train.images") is not None:
        return None
    return CPU_MINUTES


def training_defaults(settings: dict[str, Any], gpu: bool) -> dict[str, Any]:
    """A recipe's training defaults for the family, resolution and batch size ``settings`` ends with (the recipe
    with the user's edits): StyleGAN2-ADA's small-data settings for stylegan2 (:func:`recipe_defaults`), none for
    the other families, whose config defaults serve. Values a user gave in ``settings`` still win over these."""
    if settings.get("model.name") != "stylegan2":
        return {}
    res, batch = settings.get("data.resolution"), settings.get("train.batch_size")
    if not isinstance(res, int) or res < 1:
        return {}  # the config check says what is wrong with it
    classes = settings.get("model.num_classes")
    return recipe_defaults(res, gpu, batch if isinstance(batch, int) and batch > 0 else None,
                           conditional=isinstance(classes, int) and classes > 0)


def training_reason(defaults: dict[str, Any]) -> str:
    """The reason line for :func:`training_defaults`'s settings."""
    start, ramp = defaults.get("model.cond_start_kimg"), defaults.get("model.cond_ramp_kimg")
    return (f"training: StyleGAN2-ADA's small-data settings, batch {defaults['train.batch_size']}, R1 gamma "
            f"{defaults['loss.r1_gamma']:g}" + ("" if not start or ramp is None else
            f"; classes blended in from {start:g}k to {start + ramp:g}k images seen (conditional from the first "
            "step, a GAN with a few hundred images per class can collapse to one picture per class)"))


def describe_budget(cfg: RunConfig) -> str:
    return Budget(cfg.train).describe()


def train(config: ConfigLike = None, run_dir: str | Path = "runs/atelier", overrides: dict[str, Any] | None = None,
          progress: bool | None = None, callback: Callable[[Trainer], None] | None = None) -> TrainResult:
    """Train a run, or resume it when ``run_dir`` already holds a checkpoint.

    ``config``: a YAML path, a dict, a RunConfig or None (the built-in MNIST DCGAN); ``overrides``: dotted keys
    (``{"train.steps": 500}``, ``{"train.minutes": 30}``). Returns a :class:`~atelier.training.TrainResult`
    (step, images seen, paths of the grid, loss plot and model card).
    """
    cfg, resuming = prepare(config, run_dir, overrides)
    family = families.get(cfg.model["name"])
    try:
        trainer = Trainer(cfg, Run(run_dir), family.task, progress=progress)
        if resuming:
            trainer.resume()
        result = trainer.fit(callback=callback)
        # Under torchrun every rank leaves the process group together: rank 0 still writes the grid and the card
        # after the last step, and a rank that tore gloo down meanwhile was seen to abort at exit (SIGABRT).
        distributed.barrier()
        return result
    finally:
        distributed.cleanup()  # under torchrun: leave the process group (a no-op in one process)


@dataclass
class DryRun:
    config: RunConfig
    result: TrainResult
    written: list[str]  # what a real run would write, relative to the run folder


def dry_run(config: ConfigLike, run_dir: str | Path, overrides: dict[str, Any] | None = None) -> DryRun:
    """Two steps on eight images in a temporary folder that is removed afterwards: checks a config, its data
    and its model end to end, and writes nothing into ``run_dir``."""
    overrides = dict(overrides or {})
    cfg, _ = prepare(config, Path(tempfile.gettempdir()) / "atelier-no-such-run", overrides)
    tmp = Path(tempfile.mkdtemp(prefix="atelier-dry-run-"))
    try:
        small = {**overrides, "data.limit": 8, "train.steps": 2, "train.minutes": None, "train.images": None,
                 "train.batch_size": min(cfg.train.batch_size, 8), "log.every": 1, "log.sample_every": 2,
                 "log.checkpoint_every": 2, "log.tensorboard": False, "eval.every": 0}
        result = train(config, tmp / "run", small, progress=False)
        written = sorted(p.relative_to(tmp / "run").as_posix() for p in (tmp / "run").rglob("*") if p.is_file())
        return DryRun(cfg, result, written)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_style(run_dir: str | Path, *, style: list[str] | None = None, content_dir: str | Path | None = None,
                features: str | None = None, vgg_weights: str | Path | None = None,
                overrides: dict[str, Any] | None = None, progress: bool | None = None,
                callback: Callable[[Trainer], None] | None = None) -> TrainResult:
    """Train (or resume) a fast style network: ``style`` images, a ``content_dir`` of photos, and config
    ``overrides`` (``{"train.steps": 600, "data.resolution": 256, "model.width": 16}``). ``features="auto"``
    picks VGG-19 when its weights are found, else the weights-free random network, once, at the start."""

    run = Run(run_dir)
    asked: dict[str, Any] = dict(overrides or {})
    if style:
        asked["model.style"] = [str(s) for s in style]
    if content_dir is not None:
        asked["data.source"] = str(content_dir)
    if vgg_weights is not None:
        asked["model.vgg_weights"] = str(vgg_weights)
    if features is not None:
        asked["model.features"] = ("vgg19" if vgg19_available(vgg_weights) else "random") if features == "auto" \
            else features
    if run.exists() and run.latest_checkpoint() is not None:
        return train(None, run.path, asked, progress=progress, callback=callback)
    base = {"data": {"channels": 3, "resolution": 256},
            "model": {"name": "fast-style"},
            "optim": {"lr_g": 3e-3, "lr_d": 3e-3},
            "train": {"steps": 600, "batch_size": 4, "precision": "fp32", "channels_last": False},
            "log": {"every": 10, "sample_every": 100, "checkpoint_every": 100}}
    if "model.features" not in asked:
        asked["model.features"] = "vgg19" if vgg19_available(asked.get("model.vgg_weights")) else "random"
    if not asked.get("model.style") or not asked.get("data.source"):
        raise ConfigError("train-style needs --style and --content-dir (or an existing --run-dir to resume)")
    return train(base, run.path, asked, progress=progress, callback=callback)
