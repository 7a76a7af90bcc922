"""Training jobs: a queue table in the studio's database, shared by the web server and every worker.

A job trains one run folder. Its life::

    queued --claim--> running --budget reached--> finished
      |                  |  \\--stop asked--> stopping --checkpoint written--> stopped
      |                  |   \\--the process or its worker died--> interrupted
      |                  \\--an error--> failed
      \\--stop asked--> stopped (it never started)

``stopped``, ``interrupted``, ``failed`` and ``finished`` jobs can be resumed (``finished`` ones with a larger
budget: "continue for longer"); a resume queues the job again and training continues from its last checkpoint
(exact resume: the same result as an uninterrupted run). Workers claim jobs with one conditional ``UPDATE``,
so two workers never take the same job, on SQLite or on a server database. A worker that stops sending
heartbeats (killed, its machine gone) has its jobs marked ``interrupted`` by whoever looks next: another
worker or the web server (:meth:`JobQueue.sweep`).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from atelier.api.studio_db import Conflict, NotFound, connect, jobs, now, row_dict, workers
from atelier.api.train import resume_step
from atelier.errors import ConfigError, RunError

__all__ = ["ACTIVE", "BUDGET_KINDS", "RESUMABLE", "RUN_NAME", "STATES", "JobQueue", "check_budget", "check_name"]

STATES = ("queued", "running", "stopping", "stopped", "finished", "failed", "interrupted")
ACTIVE = ("queued", "running", "stopping")
RESUMABLE = ("stopped", "interrupted", "failed", "finished")
BUDGET_KINDS = ("minutes", "images", "steps")
# A run folder's name: a single path component, never "." or "..", safe in a URL and on every file system.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
HEARTBEAT_S = 2.0
STALE_AFTER_S = 30.0


def check_name(name: str) -> str:
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise ConfigError(f"run name {name!r:.80} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def check_budget(budget: dict[str, Any]) -> dict[str, float | int]:
    """One budget: ``{"minutes": 5}``, ``{"images": 200000}`` or ``{"steps": 500}``."""
    if not isinstance(budget, dict) or len(budget) != 1 or next(iter(budget)) not in BUDGET_KINDS:
        raise ConfigError(f"a budget is one of {', '.join(BUDGET_KINDS)} with a positive value, e.g. "
                          f'{{"minutes": 5}}; got {budget!r:.100}')
    kind, value = next(iter(budget.items()))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ConfigError(f"budget {kind} must be a positive number, got {value!r:.40}")
    return {kind: float(value) if kind == "minutes" else int(value)}


def budget_overrides(budget: dict[str, Any]) -> dict[str, Any]:
    """The ``train.*`` keys of one budget (the other two unset, so this one decides)."""
    kind, value = next(iter(check_budget(budget).items()))
    return {f"train.{k}": (value if k == kind else None) for k in BUDGET_KINDS}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobQueue:
    """The jobs of one studio database; new runs go into ``runs_dir``."""

    def __init__(self, db: str | Engine, runs_dir: str | Path | None = None) -> None:
        self.engine = connect(db) if isinstance(db, str) else db
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None

    # ------------------------------------------------------------------ reading
    def get(self, job_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"no job {job_id}")
        return row_dict(row)

    def recent(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs).order_by(jobs.c.id.desc()).limit(limit)).all()
        return [row_dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for job in self.recent(limit=100_000):
            out[job["state"]] += 1
        return out

    # ------------------------------------------------------------------ what a user does
    def submit(self, name: str, config: dict[str, Any], budget: dict[str, Any], dataset_id: str | None = None,
               client_key: str | None = None, user: str | None = None) -> dict[str, Any]:
        """Queue a new job training ``config`` into ``runs_dir/name``. A second submission with the same
        ``client_key`` (a retried request) returns the first job instead of queueing another."""
        check_name(name)
        check_budget(budget)
        if client_key is not None:
            existing = self.by_key(client_key)
            if existing is not None:
                return existing
        if self.runs_dir is None:
            raise ConfigError("this studio serves a single run folder; serve a folder of runs to train new ones")
        run_dir = self.runs_dir / name
        if run_dir.exists():
            raise Conflict(f"a run named {name!r} already exists; choose another name")
        t = now()
        try:
            with self.engine.begin() as conn:
                key = conn.execute(insert(jobs).values(
                    name=name, run_dir=str(run_dir.resolve()), dataset_id=dataset_id, config=config,
                    budget=check_budget(budget), state="queued", step=0, kimg=0.0, client_key=client_key,
                    user=user, created_at=t, updated_at=t, message="waiting for a worker")).inserted_primary_key
                assert key is not None
                job_id = key[0]
        except IntegrityError:
            existing = self.by_key(client_key) if client_key is not None else None
            if existing is not None:
                return existing
            raise Conflict(f"a job named {name!r} already exists; choose another name") from None
        return self.get(int(job_id))

    def by_key(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.client_key == key)).first()
        return row_dict(row) if row is not None else None

    def stop(self, job_id: int) -> dict[str, Any]:
        """Ask a job to stop: a queued one stops at once, a running one at its next step, with a checkpoint."""
        job = self.get(job_id)
        t = now()
        with self.engine.begin() as conn:
            done = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "queued").values(
                state="stopped", message="stopped before it started", ended_at=t, updated_at=t)).rowcount
            done = done or conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "running").values(
                state="stopping", message="stopping: finishing the step and writing a checkpoint",
                updated_at=t)).rowcount
        if done:
            return self.get(job_id)  # read after the commit
        if job["state"] == "stopping":
            return job
        raise Conflict(f"job {job_id} is {job['state']}; there is nothing to stop")

    def resume(self, job_id: int, budget: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a stopped, interrupted, failed or finished job again, optionally with a new budget (a finished
        job needs a larger one: "continue for longer"). Training continues from the last checkpoint."""
        job = self.get(job_id)
        if job["state"] not in RESUMABLE:
            raise Conflict(f"job {job_id} is {job['state']}; only a stopped, interrupted, failed or finished job "
                           "can be resumed")
        new = check_budget(budget) if budget is not None else job["budget"]
        if job["state"] == "finished" and not self._budget_grows(job, new):
            raise Conflict(f"job {job_id} already reached its budget ({_describe(job['budget'])}); give a larger "
                           "budget to continue it")
        t = now()
        with self.engine.begin() as conn:
            done = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == job["state"]).values(
                state="queued", budget=new, message="waiting for a worker", ended_at=None, worker_id=None,
                pid=None, updated_at=t)).rowcount
        if not done:
            raise Conflict(f"job {job_id} changed state meanwhile; reload and try again")
        return self.get(job_id)

    @staticmethod
    def _budget_grows(job: dict[str, Any], new: dict[str, Any]) -> bool:
        kind, value = next(iter(new.items()))
        old_kind, old_value = next(iter(job["budget"].items()))
        if kind != old_kind:
            return True  # measured in other units: the training process says if there is nothing left to do
        return value > old_value

    # ------------------------------------------------------------------ what a worker does
    def register_worker(self, worker_id: str, max_jobs: int) -> None:
        t = now()
        with self.engine.begin() as conn:
            conn.execute(insert(workers).values(id=worker_id, host=socket.gethostname(), pid=os.getpid(),
                                                max_jobs=max_jobs, state="running", started_at=t, seen_at=t))

    def heartbeat(self, worker_id: str, state: str = "running") -> None:
        with self.engine.begin() as conn:
            conn.execute(update(workers).where(workers.c.id == worker_id).values(seen_at=now(), state=state))

    def list_workers(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(select(workers).order_by(workers.c.started_at.desc()))]

    def claim(self, worker_id: str) -> dict[str, Any] | None:
        """Take the oldest queued job for ``worker_id`` (None when there is none). The conditional UPDATE makes
        the claim atomic: of two workers racing for one job, one gets it and the other tries the next."""
        for _ in range(10):
            with self.engine.connect() as conn:
                job_id = conn.execute(select(jobs.c.id).where(jobs.c.state == "queued")
                                      .order_by(jobs.c.id).limit(1)).scalar()
            if job_id is None:
                return None
            t = now()
            with self.engine.begin() as conn:
                won = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "queued").values(
                    state="running", worker_id=worker_id, started_at=t, updated_at=t,
                    message="starting")).rowcount
            if won:
                return self.get(job_id)
        return None

    def unclaim(self, job_id: int, why: str) -> None:
        """Give a claimed job back to the queue (its run folder is still busy)."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "running").values(
                state="queued", worker_id=None, pid=None, message=why, updated_at=now()))

    def set_fields(self, job_id: int, **values: Any) -> None:
        """Progress and bookkeeping fields (step, kimg, img_per_s, pid, message) of a job."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values, updated_at=now()))

    def end(self, job_id: int, state: str, message: str) -> None:
        """The training process ended: record how, and the step a resume would start from."""
        if state not in STATES or state in ACTIVE:
            raise ValueError(f"not an end state: {state!r}")
        job = self.get(job_id)
        t = now()
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                state=state, message=message, checkpoint_step=_checkpoint_step(job["run_dir"]), pid=None,
                ended_at=t, updated_at=t))

    def sweep(self, stale_after: float = STALE_AFTER_S) -> list[int]:
        """Mark the jobs of dead workers (no heartbeat for ``stale_after`` seconds, or, on this host, a process
        that no longer exists) as interrupted (a stopping one as stopped). Returns those jobs' ids."""
        t = now()
        host = socket.gethostname()
        dead = []
        for w in self.list_workers():
            if w["state"] == "gone":
                continue
            gone = t - w["seen_at"] > stale_after or (w["host"] == host and not _pid_alive(w["pid"]))
            if w["state"] == "running" and gone:
                dead.append(w["id"])
        if not dead:
            return []
        with self.engine.connect() as conn:
            orphans = [row_dict(r) for r in conn.execute(select(jobs).where(
                and_(jobs.c.worker_id.in_(dead), or_(jobs.c.state == "running", jobs.c.state == "stopping"))))]
        with self.engine.begin() as conn:
            conn.execute(update(workers).where(workers.c.id.in_(dead)).values(state="gone"))
        for job in orphans:
            step = _checkpoint_step(job["run_dir"])
            state = "stopped" if job["state"] == "stopping" else "interrupted"
            where = f"the checkpoint at step {step:,}" if step is not None else "the start (no checkpoint yet)"
            with self.engine.begin() as conn:
                conn.execute(update(jobs).where(jobs.c.id == job["id"], jobs.c.state == job["state"]).values(
                    state=state, checkpoint_step=step, pid=None, ended_at=t, updated_at=t,
                    message=f"its worker stopped responding; resume continues from {where}"))
        return [j["id"] for j in orphans]


def _checkpoint_step(run_dir: str | Path) -> int | None:
    try:
        return resume_step(run_dir)
    except RunError:
        return None


def _describe(budget: dict[str, Any]) -> str:
    kind, value = next(iter(budget.items()))
    return f"{value:,g} {kind}"
