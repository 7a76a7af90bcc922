"""The model card: what was trained, on what data (and its licence), for how long, how good it measured,
and how it looks. Written at the end of training and rewritten by ``atelier evaluate``."""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path
from typing import Any

import torch

from atelier.config import RunConfig
from atelier.runs import Run
from atelier.training.result import TrainResult
from atelier.training.task import Task
from atelier.utils import atomic_write_text
from atelier.version import __version__

__all__ = ["quality_lines", "write_model_card"]

CARD = "model_card.md"


def _params(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()):,}"


def quality_lines(run: Run, limit: int = 12) -> list[str]:
    """The run's latest evaluation record of each metric/evaluator/reference, with its protocol."""
    latest: dict[tuple, dict[str, Any]] = {}
    for r in run.read_metrics():
        if r.get("event") == "eval" and "metric" in r:
            latest[(r["metric"], r.get("evaluator"), r.get("ref"), r.get("split"), r.get("generator"))] = r
    if not latest:
        return [f"- Not measured yet: `atelier evaluate {run.path}` appends FID/KID records (or L1/PSNR/SSIM for an "
                "image-to-image run) to metrics.jsonl and lists them here."]
    lines = []
    for r in list(latest.values())[-limit:]:
        std = f" ± {r['std']:.4g}" if isinstance(r.get("std"), float) else ""
        n = r.get("n_generated") or r.get("pairs") or r.get("n_images")
        what = f"{n:,} samples" if isinstance(n, int) else ""
        protocol = ", ".join(x for x in (
            f"evaluator `{r['evaluator']}`" if r.get("evaluator") else "",
            f"reference `{r['ref']}`" if r.get("ref") else "", what,
            f"{r['generator']} generator" if r.get("generator") else "",
            f"step {r.get('checkpoint_step', r.get('step'))}") if x)
        lines.append(f"- {r['metric'].upper()} {r['value']:.4g}{std} ({protocol})")
    return lines


def _section_quality(run: Run) -> list[str]:
    return ["## Quality", *quality_lines(run), ""]


def write_model_card(run: Run, cfg: RunConfig, task: Task, result: TrainResult, device: str, budget: str) -> Path:
    model = dict(cfg.model)
    name = model.pop("name")
    rate = result.images_seen / result.seconds if result.seconds else 0.0
    nets = ", ".join(f"{slot} {_params(net)}" for slot, net in task.networks.items())
    ds = task.dataset
    data_lines = ["## Training data"]
    if ds is not None:
        classes = f", {len(ds.classes)} classes" if ds.classes else ""
        data_lines += [f"- Source: `{ds.name}` ({len(ds):,} images{classes})", f"- Licence: {ds.license}"]
    else:
        data_lines += [f"- Source: `{cfg.data.source}`"]
    final = ", ".join(f"{k} {v:.4f}" for k, v in list(result.metrics.items())[:5] if isinstance(v, float))
    lines = [
        f"# Model card: {run.name}",
        "",
        "Images from this model are AI-generated. Every image atelier writes carries metadata saying so "
        "(IPTC digital source type `trainedAlgorithmicMedia`) and, from 64 px a side, an invisible watermark "
        "naming this run (check with `atelier verify IMAGE`).",
        "",
        "## Model",
        f"- Family: `{name}` ({', '.join(f'{k}={v}' for k, v in model.items())}), "
        f"{cfg.data.resolution}x{cfg.data.resolution}x{cfg.data.channels}",
        f"- Parameters: {nets}",
        *task.describe(result.metrics),
        "",
        *data_lines,
        "",
        "## Training",
        f"- Steps: {result.step:,} at batch {cfg.train.batch_size} ({result.images_seen / 1000:,.1f} kimg seen); "
        f"budget {budget}{' — interrupted, resumable' if result.interrupted else ''}",
        f"- Training time: {result.seconds / 60:.1f} min ({rate:,.0f} images/s), device `{device}`, "
        f"precision {cfg.train.precision}, {torch.get_num_threads()} threads",
        *([f"- Final losses: {final}"] if final else []),
        f"- Seed {cfg.seed}; resolved config in `config.yaml`; per-step metrics in `metrics.jsonl`",
        f"- Software: atelier {__version__}, PyTorch {torch.__version__}, Python {platform.python_version()}",
        f"- Written {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}",
        "",
        *_section_quality(run),
    ]
    if result.grid is not None:
        lines += [f"## {task.grid_title}", "", f"![samples]({result.grid.relative_to(run.path).as_posix()})", ""]
    if (run.path / "loss.png").is_file():
        lines += ["![losses](loss.png)", ""]
    path = run.path / CARD
    atomic_write_text(path, "\n".join(lines))
    return path


def refresh_quality(run: Run) -> Path | None:
    """Rewrite the Quality section of an existing card from the run's evaluation records (after an evaluation)."""
    path = run.path / CARD
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").split("\n")
    try:
        start = text.index("## Quality")
    except ValueError:
        return None
    end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ") or text[i].startswith("![")),
               len(text))
    atomic_write_text(path, "\n".join(text[:start] + _section_quality(run) + text[end:]))
    return path
