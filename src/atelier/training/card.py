"""The model card: what was trained, on what data (and its licence), for how long, how it looks."""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from atelier.utils import atomic_write_text

if TYPE_CHECKING:
    from atelier.training.gan import GANTrainer, TrainResult


def _params(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()):,}"


def _loss_text(cfg) -> str:
    lc = cfg.loss
    parts = [lc.name]
    if lc.gp_weight:
        parts.append(f"gradient penalty {lc.gp_weight:g}")
    if lc.r1_gamma:
        parts.append(f"R1 gamma {lc.r1_gamma:g} every {lc.r1_every} steps")
    if lc.n_critic > 1:
        parts.append(f"{lc.n_critic} D steps per G step")
    return ", ".join(parts)


def _augment_text(trainer: GANTrainer) -> str:
    a = trainer.cfg.augment
    how = (f"adaptive p (ADA, target {a.ada_target:g}), final p {trainer.augment.p:.3f}" if a.ada_target is not None
           else f"p {a.p:g}")
    return f"DiffAugment {a.policy}, {how}"


def write_model_card(trainer: GANTrainer, result: TrainResult) -> Path:
    from atelier.version import __version__

    cfg, ds = trainer.cfg, trainer.dataset
    model = dict(cfg.model)
    name = model.pop("name")
    rate = result.images_seen / result.seconds if result.seconds else 0.0
    grid = result.grid.relative_to(trainer.run_dir).as_posix() if result.grid else None
    objective, final = trainer.describe_objective(result.metrics)
    lines = [
        f"# Model card: {trainer.run_dir.name}",
        "",
        "Images from this model are AI-generated. Every image atelier writes carries metadata saying so "
        "(IPTC digital source type `trainedAlgorithmicMedia`) and, from 128 px a side, an invisible watermark "
        "naming this run (check with `atelier verify IMAGE`).",
        "",
        "## Model",
        f"- Architecture: `{name}` ({', '.join(f'{k}={v}' for k, v in model.items())}), "
        f"{cfg.data.resolution}x{cfg.data.resolution}x{cfg.data.channels}",
        f"- Parameters: G {_params(trainer.G)}, D {_params(trainer.D)}; "
        + (f"sampling uses the EMA generator (half-life {cfg.train.ema_half_life_kimg} kimg)"
           if trainer.ema is not None else "inference uses G"),
        f"- Loss: {objective}",
        *([f"- Augmentation before D: {_augment_text(trainer)}"] if trainer.augment.enabled else []),
        "",
        "## Training data",
        f"- Source: `{ds.name}` ({len(ds):,} images{', ' + str(len(ds.classes)) + ' classes' if ds.classes else ''})",
        f"- Licence: {ds.license}",
        "",
        "## Training",
        f"- Steps: {result.step:,} of {cfg.train.steps:,} at batch {cfg.train.batch_size} "
        f"({result.images_seen / 1000:,.1f} kimg seen){' — interrupted, resumable' if result.interrupted else ''}",
        f"- Training time: {result.seconds / 60:.1f} min ({rate:,.0f} images/s), device `{trainer.device}`, "
        f"precision {cfg.train.precision}, {torch.get_num_threads()} threads",
        f"- Final losses: {final}",
        f"- Seed {cfg.seed}; resolved config in `config.yaml`; per-step metrics in `metrics.jsonl`",
        f"- Software: atelier {__version__}, PyTorch {torch.__version__}, Python {platform.python_version()}",
        f"- Written {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}",
        "",
        "## Quality",
        "- No FID/KID measured for this run yet.",
        "",
    ]
    if grid:
        lines += [f"## {trainer.grid_title}", "", f"![samples]({grid})", ""]
    if (trainer.run_dir / "loss.png").is_file():
        lines += ["![losses](loss.png)", ""]
    path = trainer.run_dir / "model_card.md"
    atomic_write_text(path, "\n".join(lines))
    return path
