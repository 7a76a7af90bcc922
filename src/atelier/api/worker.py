"""A worker: takes queued jobs from the studio's database and trains each in its own process.

Each job runs ``atelier train --config RUN/job.yaml --run-dir RUN`` as a child process (with
``--gpus-per-job N`` > 1: ``torchrun --standalone --nproc_per_node=N -m atelier train ...``, as the CLI
documents), so a crash in training never takes the worker down, a web server never trains, and the worker
stays free to send heartbeats, pass on stop requests and record progress:

* **stop**: a job marked ``stopping`` gets SIGTERM; the training loop finishes its step, writes a checkpoint
  and exits (status 130): ``stopped``.
* **worker killed** (even ``kill -9``): on Linux each training process is started with a parent-death signal
  (SIGTERM), so it checkpoints and exits with its worker; the next worker or the web server marks the job
  ``interrupted`` (:meth:`~atelier.api.jobs.JobQueue.sweep`), resumable from that checkpoint.
* **training process killed**: ``interrupted``, resumable from its last periodic checkpoint (the steps after
  it are trained again; their log lines are replaced, not duplicated).
* **worker shut down** (SIGTERM / Ctrl-C): its jobs checkpoint and become ``interrupted``.

A run folder is locked (``flock`` on ``RUN/.job.lock``, held by the training process until it exits), so a
resumed job never starts while an earlier process of the same run is still writing its last checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from atelier.api.jobs import HEARTBEAT_S, STALE_AFTER_S, JobQueue, budget_overrides
from atelier.api.progress import MetricsTail
from atelier.config import RunConfig, apply_overrides, save_config
from atelier.errors import AtelierError
from atelier.runs import resolve_config

__all__ = ["Worker", "run_worker", "start_worker_process"]

STOPPED = 130  # `atelier train`'s exit status after a clean stop (SIGINT / SIGTERM, checkpoint written)
USER_ERROR = 2
LOG_NAME = "job.log"


def _parent_death_signal() -> None:
    """In the child, before exec: SIGTERM when the worker dies (Linux prctl(PR_SET_PDEATHSIG)), so a killed
    worker's training processes checkpoint and stop instead of running on unwatched."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Running:
    job: dict[str, Any]
    proc: subprocess.Popen
    tail: MetricsTail
    log: Any
    term_sent: bool = False
    step: int = 0


class Worker:
    """Runs up to ``max_jobs`` jobs at once from the queue of ``db`` (``poll`` seconds between looks)."""

    def __init__(self, db: str, max_jobs: int = 1, gpus_per_job: int = 1, poll: float = 1.0,
                 stale_after: float = STALE_AFTER_S, python: str = sys.executable,
                 echo: Callable[[str], None] = print) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs}")
        self.queue = JobQueue(db)
        self.id = str(uuid.uuid4())
        self.max_jobs, self.gpus_per_job, self.poll = max_jobs, gpus_per_job, poll
        self.stale_after, self.python, self.echo = stale_after, python, echo
        self.running: dict[int, Running] = {}
        self._stop = False
        self._last_beat = 0.0

    # ------------------------------------------------------------------ the loop
    def run(self, until_idle: bool = False) -> None:
        """Work until SIGTERM / SIGINT (or, with ``until_idle``, until the queue and this worker are empty)."""
        self.queue.register_worker(self.id, self.max_jobs)
        previous = {}
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
            for s in previous:
                signal.signal(s, lambda *_: self.request_stop())
        self.echo(f"worker {self.id[:8]} (pid {os.getpid()}): up to {self.max_jobs} job(s) at once")
        try:
            while not self._stop:
                try:
                    self.tick()
                except OperationalError as exc:  # the database restarting or unreachable: try again shortly
                    self.echo(f"worker {self.id[:8]}: database error, retrying: {str(exc).splitlines()[0]}")
                if until_idle and not self.running and self.queue.counts()["queued"] == 0:
                    break
                time.sleep(self.poll)
        finally:
            self.shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def request_stop(self) -> None:
        self._stop = True

    def tick(self) -> None:
        """One look at the world: heartbeat, dead workers, stop requests, ended processes, progress, new jobs."""
        t = time.monotonic()
        if t - self._last_beat >= HEARTBEAT_S:
            self.queue.heartbeat(self.id)
            self.queue.sweep(self.stale_after)
            self._last_beat = t
        for job_id, r in list(self.running.items()):
            code = r.proc.poll()
            if code is not None:
                self._ended(job_id, r, code)
                continue
            state = self.queue.get(job_id)["state"]
            if state == "stopping" and not r.term_sent:
                r.proc.send_signal(signal.SIGTERM)
                r.term_sent = True
            self._progress(job_id, r)
        while len(self.running) < self.max_jobs and not self._stop:
            job = self.queue.claim(self.id)
            if job is None:
                break
            self._start(job)

    # ------------------------------------------------------------------ one job
    def command(self, job: dict[str, Any], config_path: Path) -> list[str]:
        train = ["-m", "atelier", "train", "--config", str(config_path), "--run-dir", job["run_dir"]]
        if self.gpus_per_job > 1:
            return [self.python, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={self.gpus_per_job}", *train]
        return [self.python, *train]

    def _start(self, job: dict[str, Any]) -> None:
        run_dir = Path(job["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / ".job.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.queue.unclaim(job["id"], "waiting for an earlier process of this run to finish its checkpoint")
            return
        config_path = run_dir / "job.yaml"
        try:
            save_config(job_config(job["config"], job["budget"]), config_path)
        except AtelierError as exc:  # e.g. a family this version of atelier no longer has
            os.close(fd)
            self.queue.end(job["id"], "failed", str(exc))
            return
        log = open(run_dir / LOG_NAME, "ab")  # noqa: SIM115  (closed in _ended)
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} worker {self.id[:8]}: job {job['id']}\n".encode())
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ATELIER_JOB": str(job["id"])}
        try:
            # The lock's file description is inherited: the run stays locked until the trainer exits, even if
            # this worker dies first. A new session: a Ctrl-C at the worker's terminal reaches the worker,
            # which stops its jobs in order, not the trainers directly.
            proc = subprocess.Popen(self.command(job, config_path), stdout=log, stderr=subprocess.STDOUT, env=env,
                                    pass_fds=(fd,), start_new_session=True, preexec_fn=_parent_death_signal)
        except OSError as exc:
            log.close()
            os.close(fd)
            self.queue.end(job["id"], "failed", f"could not start training: {exc}")
            return
        os.close(fd)  # the child holds it
        self.queue.set_fields(job["id"], pid=proc.pid, message="training")
        tail = MetricsTail(run_dir / "metrics.jsonl")
        self.running[job["id"]] = Running(job, proc, tail, log)
        self.echo(f"job {job['id']} ({job['name']}): started, pid {proc.pid}")

    def _progress(self, job_id: int, r: Running) -> None:
        rows = [row for row in r.tail.read() if "event" not in row and "step" in row]
        if rows:
            last = rows[-1]
            r.step = int(last["step"])
            self.queue.set_fields(job_id, step=r.step, kimg=float(last.get("kimg", 0.0)),
                                  img_per_s=last.get("img_per_s"))

    def _ended(self, job_id: int, r: Running, code: int) -> None:
        self._progress(job_id, r)
        r.log.close()
        del self.running[job_id]
        state_now = self.queue.get(job_id)["state"]
        if code == 0:
            state, why = "finished", "finished: the budget is reached"
        elif code == STOPPED or (code == -signal.SIGTERM and r.term_sent):
            if state_now == "stopping":
                state, why = "stopped", "stopped by request; resume continues from its checkpoint"
            else:
                state, why = "interrupted", "the worker was shut down; resume continues from its checkpoint"
        elif code < 0:
            state, why = "interrupted", (f"the training process was killed (signal {-code}); resume continues "
                                         "from its last checkpoint")
        else:
            state, why = "failed", _last_error(Path(r.job["run_dir"]) / LOG_NAME, code)
        self.queue.end(job_id, state, why)
        self.echo(f"job {job_id} ({r.job['name']}): {state}")

    def shutdown(self, timeout: float = 120.0) -> None:
        """Stop every training process (each writes a checkpoint), record them as interrupted, sign off."""
        for r in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                r.proc.send_signal(signal.SIGTERM)
            r.term_sent = True
        deadline = time.monotonic() + timeout
        for job_id, r in list(self.running.items()):
            try:
                code = r.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                r.proc.kill()
                code = r.proc.wait()
            self._ended(job_id, r, code)
        self.queue.heartbeat(self.id, state="stopped")


def _last_error(log: Path, code: int) -> str:
    """The training process's own last error line (atelier prints one ``error: ...`` line), else its exit code."""
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errors = [ln for ln in lines[-50:] if ln.startswith("error:")]
    if errors:
        return errors[-1].removeprefix("error:").strip()
    tail = lines[-1] if lines else ""
    return f"training stopped with exit status {code}" + (f": {tail[:300]}" if tail else "") + f" (see {log.name})"


def run_worker(db: str, max_jobs: int = 1, gpus_per_job: int = 1, poll: float = 1.0,
               until_idle: bool = False, echo: Callable[[str], None] = print) -> None:
    """Run a worker on ``db`` until SIGTERM / Ctrl-C (what ``atelier worker`` does)."""
    Worker(db, max_jobs=max_jobs, gpus_per_job=gpus_per_job, poll=poll, echo=echo).run(until_idle=until_idle)


def start_worker_process(db: str, max_jobs: int = 1, gpus_per_job: int = 1, poll: float = 1.0,
                         log: Path | None = None) -> subprocess.Popen:
    """``atelier worker`` as a child process (what ``atelier serve`` starts by default); it gets SIGTERM when
    its parent dies."""
    cmd = [sys.executable, "-m", "atelier", "worker", "--db", db, "--max-jobs", str(max_jobs),
           "--gpus-per-job", str(gpus_per_job), "--poll", str(poll)]
    out = open(log, "ab") if log is not None else None  # noqa: SIM115  (the child owns it)
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                preexec_fn=_parent_death_signal)
    finally:
        if out is not None:
            out.close()


def job_config(config: dict[str, Any], budget: dict[str, Any]) -> RunConfig:
    """The config a job trains with: its stored config and its current budget."""
    return resolve_config(apply_overrides(config, budget_overrides(budget)))
