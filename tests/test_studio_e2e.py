"""A designer's whole session in a real browser (Debian's Chromium through Playwright; never Playwright's own
download), against ``atelier serve`` as a user starts it (the default database, its own training worker):

upload a zip of 64 pictures -> read the summary and the recipe -> start a tiny training job -> see progress and
a sample grid arrive -> stop it -> restart the server -> resume the job to its end -> generate from the new
model -> favourite an image -> download it from the gallery as a zip -> check its provenance.

Screenshots of each step go to ``$ATELIER_SCREENSHOTS`` when set (the manual's are made with
``ATELIER_SCREENSHOTS=docs/images/studio``), else to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")
if os.environ.get("CI"):
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api")

from conftest import TINY_JOB_EXTRA, atelier_process, free_port, make_picture_zip, wait_for_http  # noqa: E402

STEPS = 400


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_upload_train_watch_stop_restart_resume_generate_favourite_download(tmp_path):
    import atelier

    shots = Path(os.environ.get("ATELIER_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    pictures = make_picture_zip(tmp_path / "pictures.zip", n=64)
    runs, port = tmp_path / "runs", free_port()
    base = f"http://127.0.0.1:{port}"
    serve = ("serve", "--runs", str(runs), "--port", str(port))  # the default database: runs/.studio/studio.db
    runs.mkdir()
    server = atelier_process(*serve, log=tmp_path / "server.log")
    try:
        wait_for_http(base + "/api/health")
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                               "--disable-component-update", "--disable-sync", "--no-first-run"])
            ctx = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
            page.goto(base)
            page.set_default_timeout(90_000)  # a busy CI machine: the waits below with their own timeouts are longer
            page.wait_for_function("document.querySelector('#health-text').textContent.includes('online')")

            # 1. New model: the zip, what atelier sees in it, the recipe.
            page.click("[data-view=train]")
            page.set_input_files("#zip-input", str(pictures))
            page.wait_for_selector("#step-recipe:not([hidden])", timeout=120_000)
            assert "64" in page.locator("#facts").inner_text() and "24x24" in page.locator("#facts").inner_text()
            page.wait_for_function("document.querySelector('#sheet').naturalWidth > 0")
            page.fill("#job-budget", str(STEPS))
            page.select_option("#job-unit", "steps")
            page.click("#step-recipe details summary")
            page.fill("#job-extra", TINY_JOB_EXTRA)
            page.wait_for_function(f"document.querySelector('#plan').textContent.includes('{STEPS} steps')")
            name = page.input_value("#job-name")
            assert name == "pictures"
            page.screenshot(path=str(shots / "1-new-model.png"))

            # 2. Start it, watch it learn: progress and the latest sample grid arrive by server-sent events.
            page.click("#start-job")
            page.wait_for_function("document.querySelector('#jd-grid').naturalWidth > 0", timeout=120_000)
            assert "running" in page.locator("#jd-state").inner_text()
            assert page.locator("#step-recipe").is_hidden()  # the form folds away once the job is queued
            assert "images/s" in page.locator("#jd-stats").inner_text()
            page.wait_for_selector("#jd-loss polyline")
            page.screenshot(path=str(shots / "2-training.png"))

            # 3. Stop it: it finishes its step and writes a checkpoint.
            page.click("#jd-stop")
            page.wait_for_function("document.querySelector('#jd-state').textContent === 'stopped'", timeout=120_000)
            job = _get(f"{base}/api/jobs/1")
            stopped_at = job["checkpoint_step"]
            assert 0 < stopped_at < STEPS and job["state"] == "stopped"
            page.screenshot(path=str(shots / "3-stopped.png"))

            # 4. Restart the server (and its worker); the page shows the job resumable; resume it to the end.
            server.send_signal(signal.SIGTERM)
            assert server.wait(90) == 0
            server = atelier_process(*serve, log=tmp_path / "server.log")
            wait_for_http(base + "/api/health")
            page.reload()
            page.click("[data-view=train]")
            page.wait_for_selector(".job.stopped")
            assert f"checkpoint {stopped_at:,}" in page.locator(".job").inner_text()
            page.click(".job")
            page.click("#jd-resume")
            page.wait_for_function("document.querySelector('#jd-state').textContent === 'finished'", timeout=180_000)
            job = _get(f"{base}/api/jobs/1")
            assert (job["state"], job["step"], job["checkpoint_step"]) == ("finished", STEPS, STEPS)
            log = (runs / name / "job.log").read_text()
            assert f"resuming {runs / name} from step {stopped_at:,}" in log
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots / "4-resumed.png"))

            # 5. Generate from it, favourite one.
            page.click("#jd-open")
            page.wait_for_function(f"document.querySelector('#stage-title').textContent === '{name}'")
            page.wait_for_selector("#grid .tile img")
            assert page.locator("#grid .tile").count() == 16
            page.locator("#grid .tile").nth(2).click()
            page.wait_for_selector("#variations .tile img")
            page.click("#fav")
            page.wait_for_function("document.querySelector('#fav-count').textContent === '1'")
            page.wait_for_function("document.querySelector('#favourites .tile img').naturalWidth > 0")
            page.screenshot(path=str(shots / "5-generate.png"))

            # 6. The gallery: the favourite, selected and downloaded as a zip.
            page.click("[data-view=gallery]")
            page.wait_for_selector("#gallery .tile img")
            page.select_option("#gal-filter", "fav")
            page.wait_for_function("document.querySelectorAll('#gallery .tile').length === 1")
            page.click("#gallery .tile .pick-box")
            page.locator("#gallery .tile").click()
            with page.expect_download() as dl:
                page.click("#gal-download")
            download = tmp_path / dl.value.suggested_filename
            dl.value.save_as(download)
            page.screenshot(path=str(shots / "6-gallery.png"))
            assert not errors, errors
            assert not outside, outside
            ctx.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(90)

    # The download's provenance: its record, its metadata, its watermark, matched to the run that made it.
    assert download.name == "atelier-gallery-1-images.zip"
    with zipfile.ZipFile(download) as zf:
        zf.extractall(tmp_path / "unzipped")
    (entry,) = json.loads((tmp_path / "unzipped" / "manifest.json").read_text())["images"]
    assert (entry["model"], entry["seed"], entry["step"], entry["favourite"]) == (name, 2, STEPS, True)
    png = tmp_path / "unzipped" / entry["file"]
    with Image.open(png) as img:
        meta = dict(img.text)
        assert min(img.size) >= 256
    assert meta["DigitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert (meta["atelier:run"], meta["atelier:seed"], meta["atelier:step"]) == (name, "2", str(STEPS))
    assert meta["atelier:workflow"] == "studio-generate"
    report = atelier.verify(png, runs_dir=runs)
    assert report["recognised"] and report["watermark"]["detected"] and report["watermark"]["matches_metadata"]
    assert Path(report["watermark"]["run"]).name == name
