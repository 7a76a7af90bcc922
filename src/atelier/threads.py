"""CPU threads for a busy machine: how many OpenMP threads a CPU run uses, chosen from the free cores and
re-checked while it trains (the wait policy is set earlier, by :mod:`atelier.openmp`)."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from atelier.errors import ConfigError

__all__ = ["THREADS_ENV", "CpuSampler", "ThreadTuner", "choose_threads", "configure_threads", "cpu_budget",
           "others_busy", "parse_threads"]

# ---------------------------------------------------------------------------------------------- CPU threads
# How many OpenMP threads a CPU training run uses. On a quiet machine one thread per core is fastest; on a
# shared one (a laptop, a CI runner, other jobs), threads beyond the free cores wait for each other at every
# parallel region's barrier while the scheduler runs someone else, and a 2-thread DCGAN step ran 2-10x slower
# than a 1-thread one (issue 16, benchmarks/busy_cpu.py). So atelier picks the count from the cores free at
# the start and re-checks it while training with a short in-process A/B (ThreadTuner); the wait policy that
# makes oversubscription cheap is set before torch loads (atelier.openmp).

THREADS_ENV = "ATELIER_THREADS"


def cpu_budget() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (containers, CI)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota + 0.5)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us``) quota; None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def _proc_stat() -> tuple[float, float, int] | None:
    """(busy, total) jiffies over all CPUs and the number of CPUs, from Linux's /proc/stat (None elsewhere)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    fields = [float(v) for v in lines[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user); steal counts as busy:
    # a hypervisor that runs another VM takes the core from us as surely as a local process does.
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    total = sum(fields[:8])
    ncpu = sum(1 for line in lines[1:] if line.startswith("cpu"))
    return total - idle, total, max(1, ncpu)


class CpuSampler:
    """Cores kept busy by *other* processes between two readings.

    Linux: the machine's busy time from /proc/stat minus this process's own CPU time
    (``time.process_time``), over the wall time between calls. Elsewhere: the 1-minute load average minus
    this process's own share (a coarser, lagging figure). ``reader``/``own``/``clock`` are injectable for tests.
    """

    def __init__(self, reader: Callable[[], tuple[float, float, int] | None] = _proc_stat,
                 own: Callable[[], float] = time.process_time, clock: Callable[[], float] = time.monotonic) -> None:
        self._reader, self._own, self._clock = reader, own, clock
        self._last: tuple[tuple[float, float, int] | None, float, float] | None = None
        self.cores = os.cpu_count() or 1

    def read(self) -> float | None:
        """Others' busy cores since the previous call (None on the first call, or where nothing is readable)."""
        now = (self._reader(), self._own(), self._clock())
        last, self._last = self._last, now
        if last is None:
            return None
        (stat1, own1, t1), (stat2, own2, t2) = last, now
        wall = t2 - t1
        if wall <= 0:
            return None
        mine = (own2 - own1) / wall
        if stat1 is not None and stat2 is not None and stat2[1] > stat1[1]:
            self.cores = stat2[2]
            busy = (stat2[0] - stat1[0]) / (stat2[1] - stat1[1]) * stat2[2]
            return max(0.0, busy - mine)
        try:
            return max(0.0, os.getloadavg()[0] - mine)
        except (AttributeError, OSError):  # Windows
            return None


def others_busy(interval: float = 0.25) -> float | None:
    """Cores used by other processes over the next ``interval`` seconds (this process sleeps meanwhile)."""
    sampler = CpuSampler()
    sampler.read()
    time.sleep(interval)
    return sampler.read()


def choose_threads(cpus: int, busy: float | None) -> int:
    """The thread count for ``cpus`` usable cores when other processes keep ``busy`` cores busy.

    One thread per free core, rounded to the nearest, at least 1: 2 cores with one busy neighbour
    (busy 1.0) give 1 thread, 2 cores with a neighbour at 30% (busy 0.3) give 2. Unknown load: all cores.
    """
    if cpus < 1:
        raise ValueError(f"cpus must be >= 1, got {cpus}")
    if busy is None:
        return cpus
    return int(min(cpus, max(1, math.floor(cpus - busy + 0.5))))


def parse_threads(value: str | int | None) -> str | int:
    """``"auto"`` / ``"off"`` / a positive count, from a config value or ``ATELIER_THREADS``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return "auto"
    if isinstance(value, str) and value.strip().lower() == "off":
        return "off"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() != str(n):
        raise ConfigError(f"threads must be auto, off or a positive whole number, got {value!r} "
                          f"(train.threads or {THREADS_ENV})")
    return n


def configure_threads(setting: str | int | None = "auto", *, adaptive: bool = True, interval_s: float = 30.0,
                      sample_s: float = 0.25) -> ThreadTuner:
    """Choose this process's CPU thread count once, at the start of a run; returns the tuner the loop calls.

    ``setting`` is ``train.threads`` (``auto``, ``off`` or N); ``ATELIER_THREADS`` in the environment wins
    over it (a per-machine choice beats a shared config file), and ``OMP_NUM_THREADS`` set by the user
    counts as a fixed N. ``auto``: as many threads as free cores (:func:`choose_threads` over a
    ``sample_s`` reading of the machine), then re-checked every ``interval_s`` of training by an A/B of
    the neighbouring counts (:class:`ThreadTuner`; ``adaptive=False`` keeps the first choice, e.g. under
    torchrun, where ranks must not re-tune on their own). ``off``: leave torch's own choice (all cores) alone.
    """
    env = os.environ.get(THREADS_ENV)
    choice = parse_threads(env if env is not None and env.strip() else setting)
    cpus = cpu_budget()
    if choice == "auto" and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        choice = max(1, int(os.environ["OMP_NUM_THREADS"]))
    if choice == "off":
        return ThreadTuner(torch.get_num_threads(), cpus, adaptive=False, reason="off (torch's default)")
    if isinstance(choice, int):
        torch.set_num_threads(choice)
        return ThreadTuner(choice, cpus, adaptive=False, reason="fixed")
    busy = others_busy(sample_s) if cpus > 1 else None
    n = choose_threads(cpus, busy)
    torch.set_num_threads(n)
    reason = "auto" if busy is None else f"auto: other processes used {busy:.1f} of {cpus} cores"
    return ThreadTuner(n, cpus, adaptive=adaptive and cpus > 1, interval_s=interval_s, reason=reason)


class ThreadTuner:
    """Keeps the thread count right while a run trains: the loop calls :meth:`observe` after every step.

    Now and then it runs a short interleaved A/B: the next ``2 + 2 * arm_steps`` steps alternate between
    the current count and a neighbour (one fewer, or one more up to ``max_threads``), the first step of
    each discarded (new threads, new oneDNN primitives), and the count with the higher median images/s
    wins if it is ``margin`` better. Interleaving makes the comparison fair when the load changes during
    it. A trial starts when the steady rate moves by ``change`` from the rate measured after the last
    decision (other jobs started or stopped), or after ``interval_s`` seconds of training; each trial that
    keeps the count doubles that interval (up to 8x), so a quiet machine pays for one losing arm's
    3 steps every few minutes, not every 30 s.
    """

    def __init__(self, threads: int, max_threads: int, *, adaptive: bool = True, interval_s: float = 30.0,
                 arm_steps: int = 3, margin: float = 0.08, change: float = 0.35, window: int = 5,
                 set_threads: Callable[[int], None] = torch.set_num_threads, reason: str = "") -> None:
        self.threads, self.max_threads = threads, max_threads
        self.adaptive = adaptive and max_threads > 1
        self.reason = reason
        self.interval_s, self.arm_steps, self.margin, self.change, self.window = (
            interval_s, arm_steps, margin, change, window)
        self._set = set_threads
        self._backoff = 1
        self._since = 0.0                       # training seconds since the last decision
        self._steady: list[float] = []          # images/s at self.threads since the last decision
        self._ref: float | None = None          # the median of the first `window` of those
        self._plan: list[int] = []              # thread counts of the trial's coming steps
        self._arm: int | None = None            # the count the observed step ran with (trials only)
        self._rates: dict[int, list[float]] = {}
        self._down = True                       # which neighbour the next trial tries (between 1 and max)
        self.last_trial: dict[int, float] = {}  # median images/s per count in the last trial

    def describe(self) -> str:
        return f"{self.threads} thread{'s' if self.threads != 1 else ''} ({self.reason})"

    def observe(self, images: int, seconds: float) -> str | None:
        """Record one training step; returns a message when the thread count changed."""
        if not self.adaptive or seconds <= 0:
            return None
        rate = images / seconds
        if self._arm is not None:
            return self._trial_step(rate)
        self._since += seconds
        self._steady.append(rate)
        if self._ref is None and len(self._steady) >= self.window:
            self._ref = statistics.median(self._steady[: self.window])
        recent = statistics.median(self._steady[-self.window:]) if len(self._steady) >= self.window else None
        moved = (self._ref is not None and recent is not None and len(self._steady) >= 2 * self.window
                 and abs(recent / self._ref - 1) > self.change)
        if moved:
            self._backoff = 1
        if moved or self._since >= self.interval_s * self._backoff:
            self._start_trial()
        return None

    def _start_trial(self) -> None:
        if self.threads >= self.max_threads:
            alt = self.threads - 1
        elif self.threads <= 1:
            alt = self.threads + 1
        else:
            alt = self.threads - 1 if self._down else self.threads + 1
            self._down = not self._down
        cur = self.threads
        self._plan = [alt, cur] * (self.arm_steps + 1)
        self._rates = {alt: [], cur: []}
        self._next()

    def _next(self) -> None:
        self._arm = self._plan.pop(0)
        self._set(self._arm)

    def _trial_step(self, rate: float) -> str | None:
        arm = self._arm
        assert arm is not None
        if len(self._plan) < 2 * self.arm_steps:  # the first step of each arm is not counted
            self._rates[arm].append(rate)
        if self._plan:
            self._next()
            return None
        self._arm = None
        old = self.threads
        medians = {k: statistics.median(v) for k, v in self._rates.items()}
        self.last_trial = medians
        alt = next(k for k in medians if k != old)
        if medians[alt] > medians[old] * (1 + self.margin):
            self.threads, self._backoff = alt, 1
        else:
            self._backoff = min(8, self._backoff * 2)
        self._set(self.threads)
        self._since, self._steady, self._ref = 0.0, [], None
        if self.threads == old:
            return None
        self.reason = "auto: A/B while training"
        return (f"threads {old} -> {self.threads}: {medians[self.threads]:.0f} vs {medians[old]:.0f} images/s "
                f"in an interleaved A/B of {self.arm_steps} steps each")
