"""Throughput watch: tells the user when training runs far below its own best rate, and why.

A shared laptop or CI runner is the normal case: other processes start, and a step that ran at 700
images/s runs at 90 (issue 16). The loop feeds :class:`ThroughputMonitor` each log window's images/s;
it compares the rate with the run's best window and, when it falls ``factor`` times below, returns one
line naming the likely cause, read from the machine (other processes' CPU use, via
:class:`atelier.device.CpuSampler`) and the thread count atelier uses now. It speaks once when the
rate drops and once when it recovers, not every window.
"""

from __future__ import annotations

from dataclasses import dataclass

from atelier.threads import CpuSampler

__all__ = ["ThroughputMonitor", "explain_slowdown"]

BUSY_CORES = 0.5  # other processes using at least half a core count as "the CPU is busy"


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def explain_slowdown(rate: float, best: float, busy: float | None, cores: int, threads: int | None) -> str:
    """One line: how far below the best the rate is, and the likely cause."""
    head = f"throughput {rate:,.0f} img/s, {best / max(rate, 1e-9):.1f}x below this run's best {best:,.0f} img/s: "
    if busy is None:
        why = "the cause is unknown (this system gives no CPU load reading)"
    elif busy >= BUSY_CORES:
        why = f"the CPU is busy (other processes keep {busy:.1f} of {cores} cores busy)"
    else:
        why = (f"not other processes (they use {busy:.1f} of {cores} cores); something in this run or machine "
               "(memory swapping, a slow disk, a thermal limit)")
    tail = f"; atelier now uses {_threads(threads)}" if threads is not None else ""
    return head + why + tail


@dataclass
class _State:
    best: float = 0.0
    windows: int = 0
    slow: bool = False


class ThroughputMonitor:
    """Feed it each log window's images/s; it returns a message when the rate drops or recovers.

    ``factor``: how many times below the best window a rate must fall to count as a drop (2: half the
    best); a drop ends once the rate is back above ``best / recover``. ``sampler`` reads other processes'
    CPU use between calls (injectable for tests). ``note`` is a short word for a progress bar while slow.
    """

    def __init__(self, factor: float = 2.0, recover: float = 1.4, sampler: CpuSampler | None = None) -> None:
        if factor <= 1 or not 1 <= recover < factor:
            raise ValueError(f"need factor > 1 and 1 <= recover < factor, got factor={factor}, recover={recover}")
        self.factor, self.recover = factor, recover
        self.sampler = sampler if sampler is not None else CpuSampler()
        self.sampler.read()  # start the first window's CPU reading
        self.state = _State()
        self.busy: float | None = None
        self.note = ""

    @property
    def best(self) -> float:
        return self.state.best

    def update(self, rate: float, threads: int | None = None) -> str | None:
        """Record one window's images/s; returns a line to print when the run turns slow or recovers."""
        s = self.state
        self.busy = self.sampler.read()
        s.windows += 1
        message = None
        if s.windows > 1 and not s.slow and rate * self.factor < s.best:
            s.slow = True
            message = explain_slowdown(rate, s.best, self.busy, self.sampler.cores, threads)
            self.note = "CPU busy" if self.busy is not None and self.busy >= BUSY_CORES else "slow"
        elif s.slow and rate * self.recover >= s.best:
            s.slow = False
            self.note = ""
            message = f"throughput back to {rate:,.0f} img/s (best {s.best:,.0f})" + (
                f" with {_threads(threads)}" if threads is not None else "")
        s.best = max(s.best, rate)
        return message
