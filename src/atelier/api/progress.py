"""How far a run has come, read from its folder while it trains: the step, images/s, losses, the time left,
the latest sample grid and the FID curve. The studio streams this to the page; a notebook can poll it.

Everything comes from what the training loop writes (``metrics.jsonl``, ``samples/grid-*.png``,
``config.yaml``), so it works for a run trained by any process on any machine that shares the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atelier.errors import AtelierError
from atelier.runs import Run
from atelier.training.budget import Budget

__all__ = ["MetricsTail", "latest_grid", "run_progress"]

# Fields of a metrics.jsonl row that are not loss terms.
_BOOKKEEPING = ("step", "kimg", "img_per_s", "train_seconds", "event")


class MetricsTail:
    """New rows of a metrics.jsonl since the last call (reads only what was appended; a file rewritten shorter,
    as a resume does, is read again from the start)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        self.restarted = False  # the last read started the file again (it was rewritten shorter)

    def read(self) -> list[dict[str, Any]]:
        self.restarted = False
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset, self._partial, self.restarted = 0, b"", True
        if size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        self.offset = size
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # a line still being written
        rows = []
        for line in lines:
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a line torn by a kill -9
            if isinstance(row, dict):
                rows.append(row)
        return rows


def latest_grid(run_dir: str | Path) -> Path | None:
    """The newest progress grid of a run (``samples/grid-<step>.png``), or None."""
    grids = sorted(Run(run_dir).samples_dir.glob("grid-*.png"))
    return grids[-1] if grids else None


def losses(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k not in _BOOKKEEPING and not k.startswith("lr_")
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_progress(run_dir: str | Path, rows: list[dict[str, Any]] | None = None,
                 budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The state of a run folder: ``step``, ``kimg``, ``img_per_s``, ``losses`` (the last logged terms),
    ``train_seconds``, ``fraction`` of the budget used and ``eta_seconds`` (of training time), ``grid`` (the
    latest grid's file name), ``evals`` (every FID record: step, fid, ...).

    ``rows``: the run's metrics rows if already read; ``budget``: ``{"minutes": 5}`` etc. when it differs
    from the one in config.yaml (a job queued to continue for longer)."""
    run = Run(run_dir)
    rows = run.read_metrics() if rows is None else rows
    train_rows = [r for r in rows if "event" not in r and "step" in r]
    evals = [r for r in rows if r.get("event") == "eval"]
    last = train_rows[-1] if train_rows else {}
    step = int(last.get("step", 0))
    images = int(round(float(last.get("kimg", 0.0)) * 1000))
    seconds = float(last.get("train_seconds", 0.0))
    fraction = eta = None
    described = None
    try:
        train = run.config().train if run.exists() else None
    except AtelierError:
        train = None
    if train is not None:
        if budget:
            kind, value = next(iter(budget.items()))
            train = train.model_copy(update={"steps": None, "minutes": None, "images": None, kind: value})
        b = Budget(train)
        described = b.describe()
        fraction = b.fraction(step, images, seconds) if (b.steps or b.minutes or b.images) else None
        if fraction is not None and 0 < fraction < 1 and seconds > 0:
            eta = seconds * (1 - fraction) / fraction
        elif fraction is not None and fraction >= 1:
            eta = 0.0
    grid = latest_grid(run_dir)
    return {"step": step, "kimg": last.get("kimg", 0.0), "img_per_s": last.get("img_per_s"),
            "losses": losses(last), "train_seconds": seconds, "fraction": fraction, "eta_seconds": eta,
            "budget": described, "grid": grid.name if grid is not None else None,
            "evals": [{k: v for k, v in e.items() if k != "event" and not isinstance(v, (dict, list))}
                      for e in evals]}
