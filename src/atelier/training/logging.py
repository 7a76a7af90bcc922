"""Run-folder records: metrics.jsonl, TensorBoard events, the loss plot and the model card."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from atelier.runs import read_metrics
from atelier.utils import atomic_write_text

__all__ = ["RunLogger", "plot_losses"]


class RunLogger:
    """Appends one JSON object per logged step; mirrors scalars to TensorBoard on rank 0."""

    def __init__(self, run_dir: Path, resume_step: int, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        # Lines written after the checkpoint we resume from describe steps that will be trained
        # again: drop them so the record has each step once.
        rows = read_metrics(self.path)
        kept = [r for r in rows if r.get("step", 0) <= resume_step]
        if len(kept) != len(rows):
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, values: dict[str, Any]) -> None:
        row = {"step": step, **values}
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def add_image(self, tag: str, image, step: int) -> None:
        if self._tb is not None:
            import numpy as np

            arr = np.asarray(image)
            self._tb.add_image(tag, arr if arr.ndim == 3 else arr[:, :, None], step, dataformats="HWC")

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


_COLOURS = ["#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e", "#5d6d7e"]


def plot_losses(metrics_path: Path, out: Path) -> Path | None:
    """The logged loss terms over steps and, for a GAN, D's mean outputs on real and fake images, as a PNG."""
    rows = [r for r in read_metrics(metrics_path) if "event" not in r and any(k.startswith("loss") for k in r)]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[-1] if k.startswith("loss")][:6]
    steps = [r["step"] for r in rows]
    panels = 2 if "d_real" in rows[-1] else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), dpi=110, squeeze=False)
    ax1 = axes[0][0]
    for key, colour in zip(keys, _COLOURS, strict=False):
        ax1.plot(steps, [r.get(key, math.nan) for r in rows], label=key, color=colour)
    ax1.set_xlabel("step")
    ax1.set_title("losses")
    ax1.legend(frameon=False)
    ax1.grid(alpha=0.3)
    if panels == 2:
        ax2 = axes[0][1]
        ax2.plot(steps, [r.get("d_real") for r in rows], label="D(x) real", color="#1e8449")
        ax2.plot(steps, [r.get("d_fake") for r in rows], label="D(G(z)) fake", color="#7d3c98")
        ax2.axhline(0.5, color="gray", lw=0.8, ls="--")
        ax2.set_ylim(0, 1)
        ax2.set_title("discriminator outputs (mean sigmoid)")
        ax2.set_xlabel("step")
        ax2.legend(frameon=False)
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
