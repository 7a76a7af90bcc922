"""The studio's speed, two ways.

**Latency** (default): one generate request through the studio, eager PyTorch vs the ONNX Runtime backend.
Each backend is served by uvicorn on loopback in this process (in turn, never at once); one client sends
``POST /api/generate`` (PNG grid out, provenance included) at batch 1 and 16, one request at a time.
"server" is the app's own time from request to response (its ``Server-Timing`` header), "client" adds
HTTP on loopback; the plain reference is ``Generator.generate`` called directly (no HTTP, no PNG).
Target (issue 8): a 4x4 grid of the MNIST DCGAN in under 50 ms server-side on this CPU.

**Load** (``--load``, issue 21): ``atelier serve`` as a user starts it (its own worker process), then 200
concurrent ``POST /api/generate`` requests (a 4x4 grid each, kept in the gallery as the page does), first with
nothing else running (the reference), then while the worker trains a job uploaded through the API. Reports
every status code (no 5xx allowed), client latency p50/p95/max, and the server process's peak resident memory
(sampled every 20 ms with psutil), plus the trainer's images/s before and during the burst.

    python benchmarks/serve_speed.py                           # runs/mnist-dcgan
    python benchmarks/serve_speed.py --run runs/mnist-dcgan --requests 60
    python benchmarks/serve_speed.py --load --run runs/mnist-dcgan       # 200 concurrent requests
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import torch

import atelier
from atelier.serve import background, create_app


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def through_server(url: str, model: str, batch: int, requests: int) -> tuple[list[float], list[float]]:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)  # keep-alive, like a browser
    client_ms, server_ms = [], []
    for i in range(requests + 5):
        body = json.dumps({"model": model, "n": batch, "seed": i * batch})
        started = time.perf_counter()
        conn.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status != 200 or not data.startswith(b"\x89PNG"):
            raise SystemExit(f"request failed: {resp.status} {data[:200]!r}")
        if i >= 5:  # warm-up requests are not counted
            client_ms.append(elapsed)
            server_ms.append(float(resp.getheader("server-timing").split("dur=")[1]))
    conn.close()
    return client_ms, server_ms


def direct(run: Path, batch: int, requests: int) -> list[float]:
    g = atelier.load(run)

    def timed() -> list[float]:
        out = []
        for i in range(requests + 5):
            z = g.latents(seeds=range(i * batch, (i + 1) * batch))
            started = time.perf_counter()
            g.generate(z)
            if i >= 5:
                out.append((time.perf_counter() - started) * 1000)
        return out

    # On one reused worker thread, as the server runs its forward passes (the main thread measured slower here).
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(timed).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/mnist-dcgan"))
    ap.add_argument("--requests", type=int, default=40, help="Timed requests per row (after 5 warm-up).")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--load", action="store_true", help="The concurrency test instead (see above).")
    ap.add_argument("--concurrent", type=int, default=200, help="--load: requests sent at once.")
    args = ap.parse_args()
    if args.load:
        from serve_load import main as load_main  # benchmarks/serve_load.py

        load_main(args.run, args.concurrent)
        return
    batches = [int(b) for b in args.batches.split(",")]
    print(f"run {args.run} | torch {torch.__version__}, {torch.get_num_threads()} threads | "
          f"{args.requests} requests per row, one at a time, loopback")
    rows = []
    for batch in batches:
        ref = direct(args.run, batch, args.requests)
        rows.append(("plain G.generate (no HTTP)", batch, None, ref))
        for backend in ("torch", "onnx"):
            app = create_app(args.run, backend=backend)
            with background(app) as url:
                client_ms, server_ms = through_server(url, args.run.name, batch, args.requests)
            rows.append((f"server, {backend}", batch, client_ms, server_ms))
    print(f"\n{'path':<28} {'batch':>5} {'server p50':>11} {'server p95':>11} {'client p50':>11} {'client p95':>11}")
    for name, batch, client_ms, server_ms in rows:
        c50 = f"{statistics.median(client_ms):9.1f}ms" if client_ms else f"{'-':>11}"
        c95 = f"{percentile(client_ms, 0.95):9.1f}ms" if client_ms else f"{'-':>11}"
        print(f"{name:<28} {batch:>5} {statistics.median(server_ms):9.1f}ms {percentile(server_ms, 0.95):9.1f}ms "
              f"{c50} {c95}")
    by = {(n, b): statistics.median(s) for n, b, _, s in rows}
    for batch in batches:
        t, o = by[("server, torch", batch)], by[("server, onnx", batch)]
        print(f"batch {batch}: onnxruntime / eager server p50 = {o / t:.2f}x; "
              f"server overhead over plain generate (torch) = {t - by[('plain G.generate (no HTTP)', batch)]:.1f} ms")
    if 16 in batches:
        best = min(by[("server, torch", 16)], by[("server, onnx", 16)])
        print(f"4x4 grid server-side p50, best backend: {best:.1f} ms (target < 50 ms): "
              f"{'met' if best < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
