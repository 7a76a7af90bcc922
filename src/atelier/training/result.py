"""What a training run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    images_seen: int
    seconds: float
    interrupted: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    grid: Path | None = None
    loss_plot: Path | None = None
    model_card: Path | None = None
    resumed_from: int | None = None  # the step a resumed run started from
    nothing_to_do: bool = False      # a resumed run already past its budget
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # records measured after training (finetune)
