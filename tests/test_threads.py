"""CPU thread policy (atelier.device), the OpenMP wait policy (atelier.openmp) and the throughput monitor
(atelier.throughput), on fake load readings and fake rate series: no timing in these tests."""

from __future__ import annotations

import pytest
import torch

from atelier.errors import ConfigError
from atelier.openmp import set_wait_policy
from atelier.threads import CpuSampler, ThreadTuner, choose_threads, configure_threads, parse_threads
from atelier.throughput import ThroughputMonitor, explain_slowdown


@pytest.mark.parametrize(("cpus", "busy", "expected"), [
    (2, 0.0, 2), (2, 0.3, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 1.9, 1), (2, 3.5, 1),  # issue 16's machine
    (8, 0.2, 8), (8, 2.4, 6), (8, 2.6, 5), (8, 12.0, 1), (1, 0.0, 1), (4, None, 4),
])
def test_threads_follow_the_free_cores(cpus, busy, expected):
    assert choose_threads(cpus, busy) == expected


def test_thread_settings_parse_and_refuse_nonsense():
    assert parse_threads(None) == parse_threads("auto") == parse_threads(" Auto ") == "auto"
    assert parse_threads("off") == "off"
    assert parse_threads("3") == parse_threads(3) == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ConfigError, match="threads must be auto, off or a positive"):
            parse_threads(bad)


def test_environment_wins_over_the_config_and_omp_num_threads_is_respected(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ATELIER_THREADS", "1")
        tuner = configure_threads("auto")
        assert (tuner.threads, tuner.adaptive, torch.get_num_threads()) == (1, False, 1)
        monkeypatch.delenv("ATELIER_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own choice counts as fixed
        tuner = configure_threads("auto")
        assert (tuner.threads, tuner.adaptive) == (1, False)
        tuner = configure_threads("off")
        assert tuner.reason.startswith("off") and not tuner.adaptive
    finally:
        torch.set_num_threads(before)


def test_cpu_sampler_subtracts_this_process_from_the_machine_load():
    # /proc/stat readings: (busy, total jiffies over 2 cpus, cpus); this process used 0.5 s of CPU per second.
    stats = iter([(0.0, 0.0, 2), (150.0, 200.0, 2), (170.0, 400.0, 2)])
    own = iter([0.0, 0.5, 1.0])
    clock = iter([0.0, 1.0, 2.0])
    s = CpuSampler(reader=lambda: next(stats), own=lambda: next(own), clock=lambda: next(clock))
    assert s.read() is None                      # the first reading only starts the window
    assert s.read() == pytest.approx(1.0)        # 1.5 busy cores, 0.5 of them ours
    assert s.read() == pytest.approx(0.0)        # 0.2 busy cores, less than ours: clipped at 0
    assert s.cores == 2


class FakeThreads:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, n: int) -> None:
        self.calls.append(n)


def _run(tuner: ThreadTuner, speed: dict[int, float], steps: int, images: int = 256) -> list[str]:
    """Feed the tuner ``steps`` steps whose images/s depend only on the thread count they ran with."""
    notes = []
    for _ in range(steps):
        running = tuner._arm if tuner._arm is not None else tuner.threads
        note = tuner.observe(images, images / speed[running])
        if note:
            notes.append(note)
    return notes


def test_tuner_drops_a_thread_when_the_machine_gets_busy_and_takes_it_back_later():
    fake = FakeThreads()
    tuner = ThreadTuner(2, 2, interval_s=30.0, set_threads=fake)
    assert _run(tuner, {2: 700.0, 1: 420.0}, 30) == []           # quiet: no trial yet, nothing changes
    notes = _run(tuner, {2: 150.0, 1: 280.0}, 30)                # neighbours start: the rate falls 4x
    assert tuner.threads == 1 and len(notes) == 1
    assert notes[0].startswith("threads 2 -> 1: 280 vs 150 images/s")
    assert fake.calls[-1] == 1
    notes = _run(tuner, {2: 700.0, 1: 420.0}, 40)                # they stop: the 1-thread rate rises
    assert tuner.threads == 2 and notes[-1].startswith("threads 1 -> 2: 700 vs 420")


def test_tuner_keeps_the_count_on_a_steady_machine_and_backs_off():
    fake = FakeThreads()
    tuner = ThreadTuner(2, 2, interval_s=1.0, arm_steps=3, set_threads=fake)
    speed = {2: 700.0, 1: 420.0}
    assert _run(tuner, speed, 400) == []
    assert tuner.threads == 2 and tuner.last_trial == pytest.approx({1: 420.0, 2: 700.0})
    ones = fake.calls.count(1)
    # 1 s at 700 img/s is 3 steps and a trial 8 (4 per arm). Without back-off 400 steps would hold 36
    # trials (144 one-thread steps); the interval doubling to 8x (24 steps) leaves about 14.
    assert 40 <= ones <= 64, ones
    assert ThreadTuner(1, 1, set_threads=fake).adaptive is False   # one core: nothing to tune


def test_tuner_ignores_the_first_step_of_each_arm():
    fake = FakeThreads()
    tuner = ThreadTuner(2, 2, interval_s=0.001, arm_steps=2, set_threads=fake)
    tuner.observe(256, 1.0)                                   # starts a trial: plan 1, 2, 1, 2, 1, 2
    rates = iter([1.0, 1.0, 700.0, 400.0, 700.0, 400.0])      # the first (slow) pair is discarded
    for r in rates:
        tuner.observe(256, 256 / r)
    assert tuner.threads == 1 and tuner.last_trial == pytest.approx({1: 700.0, 2: 400.0})


def test_wait_policy_is_set_only_when_the_user_chose_none():
    env: dict[str, str] = {}
    assert set_wait_policy(env) == "PASSIVE" and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}, {"ATELIER_THREADS": "off"}):
        env = dict(mine)
        assert set_wait_policy(env) is None and env == mine


class FakeSampler:
    def __init__(self, readings: list[float | None], cores: int = 2) -> None:
        self.readings, self.cores = iter([None, *readings]), cores

    def read(self) -> float | None:
        return next(self.readings)


def test_monitor_explains_a_drop_once_and_says_when_it_recovers():
    rates = [300.0, 440.0, 450.0, 430.0, 90.0, 85.0, 100.0, 420.0, 440.0]
    busy = [0.1, 0.0, 0.1, 0.2, 1.9, 1.9, 1.8, 0.1, 0.0]
    threads = [2, 2, 2, 2, 1, 1, 1, 1, 2]
    mon = ThroughputMonitor(sampler=FakeSampler(busy))
    said = [mon.update(r, t) for r, t in zip(rates, threads, strict=True)]
    assert said[:4] == [None] * 4
    assert said[4] == ("throughput 90 img/s, 5.0x below this run's best 450 img/s: the CPU is busy (other "
                       "processes keep 1.9 of 2 cores busy); atelier now uses 1 thread")
    assert said[5] is None and said[6] is None           # said once, not every window
    assert said[7] == "throughput back to 420 img/s (best 450) with 1 thread"
    assert said[8] is None and mon.best == 450.0


def test_monitor_names_another_cause_when_the_cpu_is_free():
    mon = ThroughputMonitor(sampler=FakeSampler([0.0, 0.1, 0.2]))
    assert mon.update(600.0) is None and mon.update(620.0) is None
    msg = mon.update(200.0)
    assert msg is not None and "3.1x below this run's best 620 img/s: not other processes (they use 0.2 of 2" in msg
    assert mon.note == "slow"
    assert "unknown" in explain_slowdown(100.0, 400.0, None, 4, None)
    with pytest.raises(ValueError):
        ThroughputMonitor(factor=1.0, sampler=FakeSampler([]))
