"""The studio's new endpoints without a browser: datasets and recipes, the job queue, the gallery, and a card,
thumbnail and action for every kind of model."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import threading
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient  # noqa: E402

from atelier.api.jobs import JobQueue  # noqa: E402
from atelier.api.studio_db import connect, default_url, jobs, workers  # noqa: E402
from atelier.serve import create_app  # noqa: E402
from atelier.serve.settings import StudioSettings  # noqa: E402
from conftest import TINY_JOB_EXTRA, make_picture_zip, small_photo, tiny_style_run  # noqa: E402


def _detail(resp, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    detail = resp.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


def _pixels(data: bytes) -> tuple[np.ndarray, dict[str, str]]:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img), dict(img.text)


@pytest.fixture
def studio(tiny_run, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / tiny_run.name).symlink_to(tiny_run, target_is_directory=True)
    with TestClient(create_app(runs, settings=StudioSettings(home=tmp_path / "home"))) as c:
        c.tmp = tmp_path
        yield c


@pytest.fixture
def dataset(studio, tmp_path):
    with open(make_picture_zip(tmp_path / "pictures.zip"), "rb") as fh:
        resp = studio.post("/api/datasets", files={"file": ("my pictures.zip", fh, "application/zip")})
    assert resp.status_code == 201, resp.text
    return resp.json()


# ------------------------------------------------------------------------------------------- new models
def test_a_zip_becomes_a_dataset_with_a_summary_a_contact_sheet_and_a_recipe(studio, dataset):
    s = dataset["summary"]
    assert dataset["name"] == "my pictures" and dataset["origin"] == "upload"
    assert (s["n_images"], s["sizes"], s["colour_share"], s["n_exact_duplicates"]) == (64, {"24x24": 64}, 1.0, 0)
    assert s["with_transparency"] == 0 and s["classes"] == {}
    sheet, meta = _pixels(studio.get(dataset["sheet"]).content)
    assert sheet.shape[0] > 100 and sheet.std() > 10  # 64 pictures, not a blank image
    assert meta["DigitalSourceType"].endswith("/composite")  # a preview of real pictures, not generated
    assert dataset["recipe"]["overrides"]["data.resolution"] == 32 and dataset["recipe"]["reasons"]
    assert [d["id"] for d in studio.get("/api/datasets").json()["datasets"]] == [dataset["id"]]
    families = studio.get("/api/families").json()
    assert {"dcgan", "resnet", "vae"} <= set(families["trainable"])
    assert "pix2pix" not in families["trainable"] and "fast-style" not in families["trainable"]

    ds = dataset["id"]
    plan = studio.post(f"/api/datasets/{ds}/plan", json={}).json()
    recommended = dataset["recipe"]["overrides"]["model.name"]
    assert plan["config"]["family"] == (recommended if recommended in families["trainable"] else "dcgan")
    assert plan["config"]["budget"] == {"minutes": 10} and plan["config"]["channels"] == 3
    plan = studio.post(f"/api/datasets/{ds}/plan", json={"family": "resnet", "budget": {"images": 5000},
                                                          "extra": TINY_JOB_EXTRA}).json()
    assert (plan["config"]["family"], plan["config"]["budget"]) == ("resnet", {"images": 5000})
    assert plan["config"]["model"]["width"] == 4 and plan["config"]["batch_size"] == 16
    assert any(r.startswith("model resnet (your choice)") for r in plan["reasons"])
    plan = studio.post(f"/api/datasets/{ds}/plan", json={"extra": "eval.every=50\neval.n=64"}).json()
    assert plan["config"]["eval_every"] == 50  # FID against the pictures themselves: a folder has no test split
    assert "FID every 50 steps against your pictures themselves (no held-out set)" in plan["reasons"]
    # The StyleGAN2-type family trains with the CLI recipe's settings, and R1's gamma follows the final
    # resolution and batch (StyleGAN2-ADA's 0.0002 * res^2 / batch) unless the designer sets it.
    sg = studio.post(f"/api/datasets/{ds}/plan", json={"family": "stylegan2"}).json()
    assert sg["config"]["batch_size"] == 32 and "training: StyleGAN2-ADA's small-data settings, batch 32, " \
        "R1 gamma 0.0064" in sg["reasons"]
    sg = studio.post(f"/api/datasets/{ds}/plan", json={"family": "stylegan2", "resolution": 64,
                                                        "extra": "train.batch_size=16"}).json()
    assert sg["config"]["batch_size"] == 16 and any(r.endswith("batch 16, R1 gamma 0.0512") for r in sg["reasons"])
    sg = studio.post(f"/api/datasets/{ds}/plan", json={"family": "stylegan2",
                                                        "extra": "train.batch_size=16\nloss.r1_gamma=1"}).json()
    assert any(r.endswith("batch 16, R1 gamma 1") for r in sg["reasons"])
    assert "cannot train from a folder of images" in _detail(
        studio.post(f"/api/datasets/{ds}/plan", json={"family": "pix2pix"}), 400)
    assert "unknown key" in _detail(studio.post(f"/api/datasets/{ds}/plan", json={"extra": "model.nope=3"}), 400)
    assert "positive number" in _detail(studio.post(f"/api/datasets/{ds}/plan", json={"budget": {"minutes": 0}}), 400)
    assert "a budget is one of" in _detail(studio.post(f"/api/datasets/{ds}/plan", json={"budget": {"hours": 1}}),
                                           400)


def test_the_plans_resolution_follows_the_budget_on_a_cpu(studio, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same plan on a machine with a GPU
    with open(make_picture_zip(tmp_path / "big.zip", n=12, size=64), "rb") as fh:
        ds = studio.post("/api/datasets", files={"file": ("big.zip", fh, "application/zip")}).json()["id"]

    def plan(**body):
        return studio.post(f"/api/datasets/{ds}/plan", json={"family": "stylegan2", **body}).json()

    short = plan()  # the studio's default budget, 10 minutes: a short CPU budget trains at 32 px
    assert short["config"]["resolution"] == 32
    assert any("a CPU budget of 10 minutes trains at 32 px" in r for r in short["reasons"])
    for budget in ({"minutes": 90}, {"images": 5000}):
        long = plan(budget=budget)
        assert long["config"]["resolution"] == 64, budget
        assert any(r.startswith("resolution 64 px: the images' median short side is 64 px") for r in long["reasons"])
    assert plan(resolution=64)["config"]["resolution"] == 64  # the designer's own choice stays
    assert "R1 gamma 0.0064" in " ".join(short["reasons"]) and "R1 gamma 0.0256" in " ".join(long["reasons"])


def test_jobs_are_queued_stopped_resumed_and_streamed(studio, dataset):
    body = {"dataset": dataset["id"], "name": "first", "budget": {"steps": 40}, "extra": TINY_JOB_EXTRA,
            "client_key": "page-key-0001"}
    job = studio.post("/api/jobs", json=body)
    assert job.status_code == 201 and job.json()["state"] == "queued", job.text
    job = job.json()
    assert job["summary"]["family"] and job["budget"] == {"steps": 40} and "run_dir" not in job
    assert studio.post("/api/jobs", json=body).json()["id"] == job["id"]  # a retried submission: the same job
    assert "already exists" in _detail(studio.post("/api/jobs", json={**body, "client_key": None}), 409)
    listing = studio.get("/api/jobs").json()
    assert listing["counts"]["queued"] == 1 and [j["name"] for j in listing["jobs"]] == ["first"]
    assert listing["workers"] == []  # none started here: the page says jobs wait for one
    detail = studio.get(f"/api/jobs/{job['id']}").json()
    assert detail["progress"]["step"] == 0 and detail["progress"]["grid"] is None
    assert "source" not in detail["config"]["data"]
    assert "no sample grid yet" in _detail(studio.get(f"/api/jobs/{job['id']}/grid.png"), 404)
    assert "only a stopped, interrupted" in _detail(studio.post(f"/api/jobs/{job['id']}/resume"), 409)
    stopped = studio.post(f"/api/jobs/{job['id']}/stop").json()
    assert stopped["state"] == "stopped" and stopped["message"] == "stopped before it started"
    assert "nothing to stop" in _detail(studio.post(f"/api/jobs/{job['id']}/stop"), 409)
    with studio.stream("GET", f"/api/jobs/{job['id']}/events") as resp:  # ends: the job is not active
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = "".join(resp.iter_text())
    update = json.loads(text.split("event: update\ndata: ")[1].split("\n")[0])
    assert update["job"]["state"] == "stopped" and update["progress"]["step"] == 0 and update["reset"] is True
    assert "event: end" in text
    # What the page gets from a run's folder: the last losses and the FID curve, without the server's paths.
    run = studio.tmp / "runs" / "first"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 5, "kimg": 0.08, "loss_d": 1.3, "loss_g": 0.7, "img_per_s": 90.0, "train_seconds": 1.0},
        {"event": "eval", "step": 5, "metric": "fid", "value": 310.5, "ref": str(run), "source": str(run)},
        {"step": 10, "kimg": 0.16, "loss_d": 1.1, "loss_g": 0.9, "img_per_s": 95.0, "train_seconds": 2.0},
        {"event": "eval", "step": 10, "metric": "fid", "value": 250.25, "ref": str(run), "source": str(run)}]))
    progress = studio.get(f"/api/jobs/{job['id']}").json()["progress"]
    assert (progress["step"], progress["losses"], progress["img_per_s"]) == (10, {"loss_d": 1.1, "loss_g": 0.9}, 95.0)
    assert progress["evals"] == [{"step": 5, "metric": "fid", "value": 310.5},
                                 {"step": 10, "metric": "fid", "value": 250.25}]
    resumed = studio.post(f"/api/jobs/{job['id']}/resume", json={"budget": {"minutes": 2}}).json()
    assert resumed["state"] == "queued" and resumed["budget"] == {"minutes": 2.0}
    assert "no job 999" in _detail(studio.post("/api/jobs/999/stop"), 404)


def test_workers_never_claim_the_same_job_and_dead_workers_jobs_become_interrupted(tmp_path):
    queue = JobQueue(default_url(tmp_path / "home"), tmp_path / "runs")
    ids = {queue.submit(f"job-{i}", {"any": "config"}, {"steps": 1})["id"] for i in range(24)}
    claimed: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def work(name: str) -> None:
        queue.register_worker(name, 1)
        while (job := queue.claim(name)) is not None:
            claimed[name].append(job["id"])

    threads = [threading.Thread(target=work, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for got in claimed.values() for i in got]
    assert sorted(every) == sorted(ids)  # each job claimed once, by exactly one worker

    # One worker dies (its process is gone); one stops sending heartbeats on another machine; one is fine. The
    # one that dies is the one that claimed most (a busy machine can start a thread after the others took all).
    a, b, c = sorted(claimed, key=lambda n: -len(claimed[n]))
    dead = subprocess.Popen(["true"])
    dead.wait()
    engine = connect(default_url(tmp_path / "home"))
    with engine.begin() as conn:
        conn.execute(workers.update().where(workers.c.id == a).values(pid=dead.pid))
        conn.execute(workers.update().where(workers.c.id == b).values(host="elsewhere", seen_at=0.0))
        conn.execute(jobs.update().where(jobs.c.id == claimed[a][0]).values(state="stopping"))
    swept = queue.sweep(stale_after=60)
    assert sorted(swept) == sorted(claimed[a] + claimed[b])
    states = {j["id"]: j["state"] for j in queue.recent()}
    assert states[claimed[a][0]] == "stopped"  # it was asked to stop: it did (its checkpoint is its last one)
    assert all(states[i] == "interrupted" for i in claimed[a][1:] + claimed[b])
    assert all(states[i] == "running" for i in claimed[c])
    assert queue.sweep(stale_after=60) == []  # once


# ---------------------------------------------------------------------------------------------- gallery
def test_the_gallery_keeps_each_image_once_and_exports_it_with_provenance(studio, tiny_run, tmp_path):
    import atelier

    model = tiny_run.name
    first = studio.post("/api/generate", json={"model": model, "n": 4, "seed": 10, "format": "json", "save": True})
    ids = [im["gallery_id"] for im in first.json()["images"]]
    again = studio.post("/api/generate", json={"model": model, "n": 4, "seed": 10, "format": "json", "save": True})
    assert [im["gallery_id"] for im in again.json()["images"]] == ids  # the same images: the same entries
    grid = studio.post("/api/generate", json={"model": model, "seeds": [10, 99], "save": True})
    assert grid.headers["X-Atelier-Gallery-Ids"].split(",")[0] == str(ids[0])
    var = studio.post("/api/variations", json={"model": model, "seed": 10, "n": 3, "format": "json", "save": True})
    assert len({im["gallery_id"] for im in var.json()["images"]} | set(ids)) == 7
    listing = studio.get("/api/gallery").json()
    assert listing["total"] == 8 and listing["models"] == [model]  # 4 + seed 99 + 3 variations
    rec = studio.get(f"/api/gallery/{ids[1]}").json()
    assert rec["seed"] == 11 and rec["workflow"] == "studio-generate" and rec["provenance"]["seed"] == 11
    assert rec["settings"] == {"endpoint": "/api/generate", "body": {"model": model, "truncation": 1.0, "seeds": [11]},
                               "index": 0}

    # Re-opening the settings remakes the very image.
    redo = studio.post(rec["settings"]["endpoint"], json={**rec["settings"]["body"], "format": "json"}).json()
    stored, _ = _pixels(studio.get(rec["url"]).content)
    remade, _ = _pixels(base64.b64decode(redo["images"][rec["settings"]["index"]]["image"].split(",")[1]))
    assert np.array_equal(stored, remade)

    assert studio.post(f"/api/gallery/{ids[1]}/favourite", json={"favourite": True}).json()["favourite"] is True
    assert [r["id"] for r in studio.get("/api/gallery", params={"favourite": "true"}).json()["images"]] == [ids[1]]
    picks = studio.post("/api/collections", json={"name": "picks"})
    assert picks.status_code == 201
    cid = picks.json()["id"]
    assert "already exists" in _detail(studio.post("/api/collections", json={"name": "picks"}), 409)
    assert studio.post(f"/api/collections/{cid}/images", json={"ids": [ids[1], ids[2], ids[1]]}).json()["added"] == 2
    assert studio.get("/api/gallery", params={"collection": cid}).json()["total"] == 2
    assert "no image 999" in _detail(studio.post(f"/api/collections/{cid}/images", json={"ids": [999]}), 404)

    resp = studio.post("/api/gallery/download", json={"ids": [ids[1], ids[2]]})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    out = tmp_path / "download"
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        zf.extractall(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["seed"] for e in manifest["images"]] == [11, 12]
    for entry in manifest["images"]:
        png = out / entry["file"]
        side = json.loads(png.with_suffix(".json").read_text())
        assert side["collections"] == ["picks"] and side["settings"]["body"]["seeds"] == [entry["seed"]]
        with Image.open(png) as img:
            assert img.size == (280, 280)  # 28 px enlarged 10x: large enough for the watermark
            meta = dict(img.text)
        assert meta["DigitalSourceType"].endswith("trainedAlgorithmicMedia")
        assert meta["atelier:seed"] == str(entry["seed"]) and meta["atelier:run"] == model
        assert meta["atelier:created"] == entry["provenance"]["created"]  # when it was made, not downloaded
        report = atelier.verify(png)
        assert report["recognised"] and report["watermark"]["detected"] and report["watermark"]["matches_metadata"]
    assert "at most 500" in _detail(studio.post("/api/gallery/download", json={"ids": list(range(1, 502))}), 422)


# ------------------------------------------------------------------------------ every kind of model (#16)
def test_every_kind_of_model_gets_a_card_a_thumbnail_and_an_action(tiny_run, tiny_p2p, tmp_path):
    import atelier

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / tiny_run.name).symlink_to(tiny_run, target_is_directory=True)
    atelier.train(None, runs / "facades", tiny_p2p, progress=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        small_photo(photos / f"{i}.png", 40)
    tiny_style_run(runs / "wave", photos, small_photo(tmp_path / "style.png", 40), steps=3)
    with TestClient(create_app(runs, settings=StudioSettings(home=tmp_path / "home"))) as c:
        listed = {m["name"]: m for m in c.get("/api/models").json()["models"]}
        assert {n: m["kind"] for n, m in listed.items()} == {
            tiny_run.name: "generator", "facades": "translator", "wave": "stylizer"}
        for name, m in listed.items():
            assert m["card"] and "# Model card" in m["card"], name
            thumb = c.get(f"/api/models/{name}/thumbnail")
            assert thumb.status_code == 200, name
            pixels, _ = _pixels(thumb.content)
            assert pixels.std() > 5, f"{name}'s thumbnail is blank"
        example, meta = _pixels(c.get("/api/models/facades/example").content)
        first_pair = np.asarray(Image.open(sorted((tmp_path / "test").iterdir())[0]).convert("RGB"))
        assert example.shape == (32, 32, 3)
        assert np.abs(example.astype(int) - first_pair[:, :32].astype(int)).mean() < 8  # its A half, resized
        assert meta["DigitalSourceType"].endswith("/composite")  # data, not a generated image
        assert c.get("/api/models/wave/example").status_code == 200
        assert "no example input" in _detail(c.get(f"/api/models/{tiny_run.name}/example"), 404)
        photo = (tmp_path / "photos" / "0.png").read_bytes()
        out = c.post("/api/stylize", data={"model": "wave", "save": "true"}, files={"file": ("cat.png", photo)})
        rec = c.get(f"/api/gallery/{out.headers['X-Atelier-Gallery-Ids']}").json()
        assert rec["workflow"] == "studio-stylize" and rec["kind"] == "stylizer" and rec["seed"] is None
        assert rec["settings"]["body"]["input"] == "cat.png" and len(rec["settings"]["body"]["input_sha256"]) == 64
