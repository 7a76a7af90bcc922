"""The studio under load (``python benchmarks/serve_speed.py --load``; see that file's docstring).

Everything runs as a user would run it: ``atelier serve`` in its own process with its training worker, the
requests over HTTP on loopback from a pool of client threads, the training job submitted through the API.
"""

from __future__ import annotations

import collections
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None = None, files: bytes | None = None, timeout: float = 300):
    headers = {"Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    if files is not None:
        boundary = uuid.uuid4().hex
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"pictures.zip\"\r\n"
                f"Content-Type: application/zip\r\n\r\n").encode() + files + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data, headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            payload = r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    return status, (time.perf_counter() - started) * 1000, payload


def _pictures_zip(n: int = 64, size: int = 32) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            a = np.full((size, size, 3), 236, np.uint8)
            y, x = rng.integers(0, size // 2, 2)
            a[y : y + size // 2, x : x + size // 2] = rng.integers(0, 255, 3)
            png = io.BytesIO()
            Image.fromarray(a).save(png, format="PNG")
            zf.writestr(f"pictures/{i:03d}.png", png.getvalue())
    return buf.getvalue()


class PeakRSS:
    """Samples a process's resident memory every 20 ms in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


def _burst(base: str, model: str, concurrent: int, pid: int, first_seed: int = 0, save: bool = True) -> dict:
    # Seeds never asked for before: every image is new to the gallery.
    bodies = [{"model": model, "n": 16, "seed": first_seed + 16 * i, "format": "json", "save": save}
              for i in range(concurrent)]
    before = psutil.Process(pid).memory_info().rss
    with PeakRSS(pid) as rss, ThreadPoolExecutor(max_workers=concurrent) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda b: _call(base + "/api/generate", b)[:2], bodies))
        wall = time.perf_counter() - started
    after = psutil.Process(pid).memory_info().rss
    ms = [m for _, m in results]
    return {"statuses": collections.Counter(s for s, _ in results), "p50": statistics.median(ms),
            "p95": sorted(ms)[round(0.95 * (len(ms) - 1))], "max": max(ms), "wall": wall, "rss_before": before,
            "rss_peak": rss.peak, "rss_after": after}


def main(run: Path, concurrent: int = 200) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="atelier-load-"))
    try:
        runs = tmp / "runs"
        runs.mkdir()
        if not run.is_dir():
            raise SystemExit(f"no run folder {run}: train one first (atelier demo, or atelier train ...)")
        shutil.copytree(run, runs / run.name)
        port = _port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        log = open(tmp / "server.log", "wb")  # noqa: SIM115
        server = subprocess.Popen([sys.executable, "-m", "atelier", "serve", "--runs", str(runs), "--port", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            for _ in range(600):
                try:
                    if _call(base + "/api/health", timeout=2)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            for i in range(5):  # warm up: models loaded, threads started
                _call(base + "/api/generate", {"model": run.name, "n": 16, "seed": 10_000 + i, "format": "json"})
            rows = [("idle, not kept (reference)", _burst(base, run.name, concurrent, server.pid, 0, False), None),
                    ("idle, kept in the gallery", _burst(base, run.name, concurrent, server.pid, 100_000), None)]

            status, _, payload = _call(base + "/api/datasets", files=_pictures_zip())
            dataset = json.loads(payload)["id"]
            status, _, payload = _call(base + "/api/jobs", {
                "dataset": dataset, "name": "under-load", "family": "dcgan", "resolution": 32,
                "budget": {"minutes": 30}, "extra": "model.width=16\ntrain.batch_size=32\nlog.every=5\n"
                                                     "log.sample_every=200\nlog.checkpoint_every=200"})
            job = json.loads(payload)["id"]
            while json.loads(_call(f"{base}/api/jobs/{job}")[2])["step"] < 20:
                time.sleep(0.5)
            quiet = json.loads(_call(f"{base}/api/jobs/{job}")[2])["img_per_s"]
            result = _burst(base, run.name, concurrent, server.pid, 200_000)
            busy = json.loads(_call(f"{base}/api/jobs/{job}")[2])["img_per_s"]
            rows.append(("kept, while a job trains", result, (quiet, busy)))
            _call(f"{base}/api/jobs/{job}/stop", {})
        finally:
            server.terminate()
            server.wait(120)
            log.close()
        print(f"\n{concurrent} concurrent POST /api/generate (a 4x4 grid each, JSON), client-side latency; RSS of the "
              f"`atelier serve` process (its worker and trainer are other processes)")
        print(f"{'':<28}{'statuses':<16}{'p50':>9}{'p95':>9}{'max':>9}{'wall':>8}  {'RSS before':>11}"
              f"{'peak':>9}{'after':>9}  trainer img/s (before -> during)")
        for name, r, rates in rows:
            st = " ".join(f"{k}x{v}" for k, v in sorted(r["statuses"].items()))
            mb = lambda b: f"{b / 2**20:.0f} MB"  # noqa: E731
            tr = f"{rates[0]:.0f} -> {rates[1]:.0f}" if rates and rates[0] and rates[1] else "-"
            print(f"{name:<28}{st:<16}{r['p50']:>7.0f}ms{r['p95']:>7.0f}ms{r['max']:>7.0f}ms{r['wall']:>7.1f}s  "
                  f"{mb(r['rss_before']):>11}{mb(r['rss_peak']):>9}{mb(r['rss_after']):>9}  {tr}")
        bad = sum(v for rows_ in rows for k, v in rows_[1]["statuses"].items() if k >= 500)
        print(f"5xx responses: {bad}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
