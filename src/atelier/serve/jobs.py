"""Training jobs from the page: queue one, watch it learn (server-sent events), stop, resume, continue.

The server only writes the queue and reads run folders; workers (``atelier worker``, or the one ``atelier
serve`` starts) train. Progress comes from what the training loop writes into the run folder, so it is the
same whichever machine trains. ``GET /api/jobs/{id}/events`` is a ``text/event-stream``: an ``update`` event
whenever the job's state, step or grid changes (with the new metric rows), a comment every 15 s to keep
proxies from closing it, and an ``end`` event once the job has stopped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from atelier.api.jobs import ACTIVE
from atelier.api.newmodel import plan_training
from atelier.api.progress import MetricsTail, latest_grid, losses, run_progress
from atelier.serve.context import IdPath, Studio, user
from atelier.serve.datasets import PlanRequest, summary

__all__ = ["add_job_routes", "public_job"]

POLL_S = 1.0
KEEPALIVE_S = 15.0
MAX_ROWS = 2000  # metric rows sent in the first event (the loss curve); later events send only new ones


class JobRequest(PlanRequest):
    dataset: str = Field(min_length=1, max_length=64, description="A dataset id from POST /api/datasets.")
    name: str = Field(min_length=1, max_length=200, description="The new run's name (its folder, and the model's "
                                                                "name in the studio).")
    client_key: str | None = Field(None, min_length=8, max_length=64,
                                   description="Any unique string: a retried submission with the same key returns "
                                               "the first job instead of queueing another.")


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    budget: dict[str, float] | None = Field(None, description='A new budget to continue for longer, e.g. '
                                                               '{"minutes": 20}; default: the job\'s own.')


def public_job(job: dict[str, Any], full: bool = False) -> dict[str, Any]:
    """A job as the page sees it: no server paths."""
    out = {k: v for k, v in job.items() if k not in ("run_dir", "config", "client_key", "worker_id")}
    out["summary"] = summary(job["config"])
    out["resumable"] = job["state"] in ("stopped", "interrupted", "failed", "finished")
    if full:
        cfg = dict(job["config"])
        cfg["data"] = {k: v for k, v in cfg["data"].items() if k not in ("source", "eval_source")}
        out["config"] = cfg
    return out


_EVAL_FIELDS = ("step", "metric", "value", "evaluator", "n_generated", "n_ref", "best")


def public_progress(progress: dict[str, Any]) -> dict[str, Any]:
    """A run's progress as the page sees it: evaluation records without the server's paths."""
    evals = [{k: e[k] for k in _EVAL_FIELDS if k in e} for e in progress["evals"]]
    return {**progress, "evals": evals}


def add_job_routes(app: FastAPI, s: Studio) -> None:
    queue = s.queue

    def job_or_404(job_id: IdPath) -> dict[str, Any]:
        return queue.get(job_id)  # NotFound -> 404

    @app.post("/api/jobs", status_code=201)
    def submit(req: JobRequest, request: Request) -> dict[str, Any]:
        """Queue a new training job on a dataset with the recommended recipe as edited."""
        dataset = s.datasets.get(req.dataset)
        cfg, _ = plan_training(dataset, req.family, req.resolution, req.budget, req.extra)
        budget = summary(cfg)["budget"]
        job = queue.submit(req.name, cfg, budget, dataset_id=dataset["id"], client_key=req.client_key,
                           user=user(request))
        return public_job(job)

    @app.get("/api/jobs")
    def list_jobs() -> dict[str, Any]:
        """Every job (newest first), the workers and how many jobs are in each state."""
        queue.sweep(s.settings.stale_after)
        jobs = queue.recent()
        workers = [{k: w[k] for k in ("id", "host", "pid", "max_jobs", "state", "seen_at")}
                   for w in queue.list_workers()[:20]]
        counts = {st: sum(j["state"] == st for j in jobs) for st in
                  ("queued", "running", "stopping", "stopped", "finished", "failed", "interrupted")}
        return {"jobs": [public_job(j) for j in jobs], "workers": workers, "counts": counts,
                "now": time.time()}

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: IdPath) -> dict[str, Any]:
        queue.sweep(s.settings.stale_after)
        job = job_or_404(job_id)
        return {**public_job(job, full=True),
                "progress": public_progress(run_progress(job["run_dir"], budget=job["budget"]))}

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: IdPath) -> dict[str, Any]:
        """Stop a job: it finishes its step and writes a checkpoint (a queued job just leaves the queue)."""
        return public_job(queue.stop(job_id))

    @app.post("/api/jobs/{job_id}/resume")
    def resume(job_id: IdPath, req: ResumeRequest | None = None) -> dict[str, Any]:
        """Queue a stopped, interrupted or failed job again; with a larger budget, continue a finished one."""
        return public_job(queue.resume(job_id, req.budget if req is not None else None))

    @app.get("/api/jobs/{job_id}/grid.png", responses={200: {"content": {"image/png": {}}}})
    def grid(job_id: IdPath) -> FileResponse:
        """The job's latest progress grid."""
        path = latest_grid(job_or_404(job_id)["run_dir"])
        if path is None:
            raise HTTPException(404, f"job {job_id} has no sample grid yet")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @app.get("/api/jobs/{job_id}/log")
    def log(job_id: IdPath, lines: int = Query(200, ge=1, le=2000)) -> dict[str, Any]:
        """The last lines the training process printed (its progress lines, or why it failed)."""
        path = Path(job_or_404(job_id)["run_dir"]) / "job.log"
        if not path.is_file():
            return {"lines": []}
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 256_000))
            text = fh.read().decode("utf-8", errors="replace")
        return {"lines": text.splitlines()[-max(1, min(lines, 2000)):]}

    @app.get("/api/jobs/{job_id}/events", responses={200: {"content": {"text/event-stream": {}}}})
    async def events(job_id: IdPath, request: Request) -> StreamingResponse:
        """Live progress as server-sent events (``EventSource`` in a browser)."""
        job = await run_in_threadpool(job_or_404, job_id)
        return StreamingResponse(_stream(s, job, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(s: Studio, job: dict[str, Any], request: Request) -> AsyncIterator[str]:
    tail = MetricsTail(Path(job["run_dir"]) / "metrics.jsonl")
    seen: list[dict[str, Any]] = []  # every row of the run so far (the progress is computed from them)
    last_key: tuple[Any, ...] | None = None
    last_sent = time.monotonic()
    reset = True
    while True:
        if await request.is_disconnected():
            return

        def look(job_id: IdPath = job["id"]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
            nonlocal seen, reset
            rows = tail.read()
            if tail.restarted:  # the run resumed and rewrote its log: start the curve again
                seen, reset = [], True
            seen.extend(rows)
            s.queue.sweep(s.settings.stale_after)
            j = s.queue.get(job_id)
            return j, rows, public_progress(run_progress(j["run_dir"], rows=seen, budget=j["budget"]))

        current, rows, progress = await run_in_threadpool(look)
        key = (current["state"], current["step"], progress["step"], progress["grid"], len(progress["evals"]),
               current["message"])
        if key != last_key or rows:
            train_rows = [{"step": r["step"], **losses(r)} for r in rows if "event" not in r and "step" in r]
            payload = {"job": public_job(current), "progress": progress, "rows": train_rows[-MAX_ROWS:],
                       "reset": reset}
            yield f"event: update\ndata: {json.dumps(payload)}\n\n"
            last_key, last_sent, reset = key, time.monotonic(), False
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if current["state"] not in ACTIVE:
            yield f"event: end\ndata: {json.dumps({'state': current['state']})}\n\n"
            return
        await asyncio.sleep(POLL_S)
