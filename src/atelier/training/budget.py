"""Training budgets in the units people think in: steps, minutes of training, images seen.

A run stops at the first budget reached (``train.steps``, ``train.minutes``, ``train.images``; unset ones
do not limit). Minutes count training time only (``train_seconds``, summed over resumes; wall time, or this
process's CPU time with ``train.clock: cpu``), so a run
resumed with a larger budget continues where it stopped. The progress bar counts steps when steps are
the only budget, else the percentage of the nearest budget.
"""

from __future__ import annotations

import math

from tqdm.auto import tqdm

from atelier.config import TrainConfig

__all__ = ["Budget", "format_duration", "parse_count"]

_SUFFIXES = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_count(text: str) -> int:
    """``"2M"`` -> 2_000_000, ``"500k"`` -> 500_000, ``"1.5m"`` -> 1_500_000, ``"60000"`` -> 60_000."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = _SUFFIXES.get(t[-1:], 1)
    number = t[:-1] if scale != 1 else t
    value = float(number)  # ValueError for the caller to report
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a positive count")
    return int(round(value * scale))


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Budget:
    def __init__(self, train: TrainConfig) -> None:
        self.steps, self.minutes, self.images = train.steps, train.minutes, train.images

    def fractions(self, step: int, images: int, seconds: float) -> list[float]:
        out = []
        if self.steps is not None:
            out.append(step / self.steps)
        if self.minutes is not None:
            out.append(seconds / (60 * self.minutes))
        if self.images is not None:
            out.append(images / self.images)
        return out

    def fraction(self, step: int, images: int, seconds: float) -> float:
        """How far the nearest budget is used (1.0: reached)."""
        return min(1.0, max(self.fractions(step, images, seconds)))

    def reached(self, step: int, images: int, seconds: float) -> bool:
        return any(f >= 1.0 for f in self.fractions(step, images, seconds))

    def describe(self) -> str:
        parts = []
        if self.steps is not None:
            parts.append(f"{self.steps:,} steps")
        if self.minutes is not None:
            parts.append(f"{self.minutes:g} min")
        if self.images is not None:
            parts.append(f"{self.images:,} images")
        return " or ".join(parts)

    def of_steps(self) -> str:
        return f"/{self.steps}" if self.steps is not None else ""

    @property
    def steps_only(self) -> bool:
        return self.minutes is None and self.images is None

    def progress_bar(self, step: int, images: int, seconds: float, desc: str, disable: bool) -> tqdm:
        if self.steps_only:
            return tqdm(total=self.steps, initial=step, unit="step", dynamic_ncols=True, disable=disable, desc=desc)
        start = round(100 * self.fraction(step, images, seconds), 1)
        return tqdm(total=100.0, initial=start, unit="%", dynamic_ncols=True, disable=disable, desc=desc,
                    bar_format="{l_bar}{bar}| {n:.1f}/100% [{elapsed}<{remaining}{postfix}]")

    def update_bar(self, bar: tqdm, step: int, images: int, seconds: float) -> None:
        if self.steps_only:
            bar.update(1)
        else:
            bar.update(round(100 * self.fraction(step, images, seconds), 1) - bar.n)

    @staticmethod
    def eta(elapsed: float, start_fraction: float, fraction: float) -> str:
        """Time left at the rate of this session so far."""
        done = fraction - start_fraction
        return format_duration(elapsed * (1 - fraction) / done) if done > 0 else "?"
