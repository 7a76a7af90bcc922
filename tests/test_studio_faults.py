"""Faults the studio must survive without losing or duplicating work:

* the training process killed (``kill -9``) mid-step, then its worker killed mid-step: the job is marked
  interrupted each time, resumes from its last checkpoint, and ends with exactly the weights, log lines and
  sample grids of an uninterrupted run;
* the web server killed (``kill -9``) while it saves images to the gallery and queues a job: after a restart
  and the client's retries, every acknowledged image and job is there once, and every record has its file.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from atelier.api.jobs import JobQueue  # noqa: E402
from atelier.api.newmodel import Datasets, plan_training  # noqa: E402
from atelier.api.studio_db import connect, default_url  # noqa: E402
from conftest import (  # noqa: E402
    TINY_JOB_EXTRA,
    atelier_process,
    free_port,
    make_pictures,
    wait_for,
    wait_for_http,
)

STEPS = 120


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (reparented, exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(ckpt))


def _train_rows(run_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["step"] for r in rows if "event" not in r]


@pytest.mark.slow
def test_killed_trainer_and_killed_worker_resume_to_the_uninterrupted_result(tmp_path):
    import atelier

    home, runs = tmp_path / "home", tmp_path / "runs"
    runs.mkdir()
    url = default_url(home)
    engine = connect(url)
    dataset = Datasets(engine, home / "datasets").add_folder(make_pictures(tmp_path / "pictures"))
    cfg, _ = plan_training(dataset, "dcgan", 32, {"steps": STEPS}, TINY_JOB_EXTRA)  # a checkpoint every 20 steps
    queue = JobQueue(engine, runs)
    job = queue.submit("faulty", cfg, {"steps": STEPS})
    run_dir = runs / "faulty"

    worker = atelier_process("worker", "--db", url, "--poll", "0.2", log=tmp_path / "worker.log")
    try:
        # 1. The training process dies hard (no checkpoint of its own): its worker sees it and says so.
        wait_for(lambda: queue.get(job["id"])["step"] >= 30, 120, 0.02, what="the job to reach step 30")
        trainer = queue.get(job["id"])["pid"]
        os.kill(trainer, signal.SIGKILL)
        j = wait_for(lambda: (x := queue.get(job["id"]))["state"] == "interrupted" and x, 30, what="interrupted")
        assert "killed (signal 9)" in j["message"]
        assert j["checkpoint_step"] is not None and j["checkpoint_step"] % 20 == 0 and j["checkpoint_step"] < STEPS
        queue.resume(job["id"])

        # 2. The worker dies hard mid-step: its trainer gets SIGTERM from the kernel, checkpoints, and stops.
        wait_for(lambda: queue.get(job["id"])["step"] >= 75, 120, 0.02, what="the resumed job to reach step 75")
        trainer = queue.get(job["id"])["pid"]
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        wait_for(lambda: not _alive(trainer), 60, what="the orphaned trainer to checkpoint and exit")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    assert queue.sweep() == [job["id"]]  # the dead worker's job, seen by whoever looks next (here: this test)
    j = queue.get(job["id"])
    assert j["state"] == "interrupted" and "stopped responding" in j["message"]
    assert j["checkpoint_step"] is not None and 75 <= j["checkpoint_step"] < STEPS
    # The orphaned trainer wrote its own checkpoint at the step it was on (not only the last periodic one).
    assert f"interrupted at step {j['checkpoint_step']} " in (run_dir / "job.log").read_text()

    # 3. Resume on a fresh worker, to the end.
    queue.resume(job["id"])
    worker = atelier_process("worker", "--db", url, "--poll", "0.2", "--until-idle", log=tmp_path / "worker.log")
    assert worker.wait(180) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    j = queue.get(job["id"])
    assert (j["state"], j["step"], j["checkpoint_step"]) == ("finished", STEPS, STEPS), j

    # The same run, uninterrupted, in this process: same weights bit for bit, every log line and grid once.
    reference = tmp_path / "reference"
    atelier.train(cfg, reference, progress=False)
    ours, theirs = _tensors(run_dir), _tensors(reference)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert _train_rows(run_dir) == _train_rows(reference) == list(range(5, STEPS + 1, 5))
    grids = sorted(p.name for p in (run_dir / "samples").glob("grid-*.png"))
    assert grids == sorted(p.name for p in (reference / "samples").glob("grid-*.png"))
    assert grids == [f"grid-{s:07d}.png" for s in range(20, STEPS + 1, 20)]


def _post(base: str, path: str, body: dict, timeout: float = 30):
    import http.client
    import urllib.error
    import urllib.request

    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError):
        return None, None  # the server died under the request: the client retries


def test_a_server_killed_mid_request_loses_and_duplicates_nothing(tiny_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / tiny_run.name)
    home = tmp_path / "home"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ("serve", "--runs", str(runs), "--home", str(home), "--port", str(port), "--no-worker")
    requests = [{"model": tiny_run.name, "n": 4, "seed": 4 * i, "format": "json", "save": True} for i in range(48)]
    dataset = Datasets(connect(default_url(home)), home / "datasets").add_folder(make_pictures(tmp_path / "pics"))
    job = {"dataset": dataset["id"], "name": "queued-once", "budget": {"steps": 10}, "extra": TINY_JOB_EXTRA,
           "client_key": "the-page-made-this-key-1"}

    server = atelier_process(*args, log=tmp_path / "server.log")
    acknowledged: dict[int, int] = {}  # seed -> gallery id the server answered with
    try:
        wait_for_http(base + "/api/health")
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(_post, base, "/api/generate", r) for r in requests]
            futures.append(pool.submit(_post, base, "/api/jobs", job))
            wait_for(lambda: sum(f.done() for f in futures) >= 8, 60, 0.01, what="the first answers")
            server.send_signal(signal.SIGKILL)  # mid-flight: some answered, some in the middle, some not started
            results = [f.result() for f in futures]
    finally:
        server.kill()
        server.wait(10)
    for status, body in results[:-1]:
        if status == 200:
            acknowledged.update({im["seed"]: im["gallery_id"] for im in body["images"]})
    assert 0 < len(acknowledged) < 4 * len(requests), "the kill should land mid-flight"

    # Restart; the client retries everything (answered or not), as a page or script would after an error.
    server = atelier_process(*args, log=tmp_path / "server.log")
    try:
        wait_for_http(base + "/api/health")
        again = [_post(base, "/api/generate", r) for r in requests]
        jobs = [_post(base, "/api/jobs", job) for _ in range(2)]
        with urllib.request.urlopen(base + "/api/gallery?limit=500") as r:
            listing = json.loads(r.read())
    finally:
        server.terminate()
        server.wait(30)
    assert all(status == 200 for status, _ in again), again
    ids = {im["seed"]: im["gallery_id"] for _, body in again for im in body["images"]}
    assert all(ids[seed] == gid for seed, gid in acknowledged.items())  # nothing acknowledged was lost
    assert listing["total"] == len(ids) == 4 * len(requests)  # and nothing is there twice
    assert jobs[0][0] in (200, 201) and jobs[0][1]["id"] == jobs[1][1]["id"]  # one job, whatever was retried
    con = sqlite3.connect(home / "studio.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = con.execute("SELECT images.key, image_files.png FROM images LEFT JOIN image_files "
                             "ON image_files.key = images.key").fetchall()
        assert con.execute("SELECT count(*) FROM image_files").fetchone()[0] == len(stored)  # no stray picture
        assert con.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    finally:
        con.close()
    keys = [k for k, _ in stored]
    assert len(keys) == len(set(keys)) == 4 * len(requests)
    for _, png in stored:  # every record has its picture, whole
        with Image.open(io.BytesIO(png)) as img:
            img.load()
