"""What one request may ask for (:class:`Limits`) and the bounded queue in front of the models (:class:`Gate`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import HTTPException

__all__ = ["MAX_BATCH", "MAX_FRAMES", "BodySize", "Gate", "Limits", "ServerTiming", "busy"]

T = TypeVar("T")
# Hard caps written into the OpenAPI schema; Limits may lower them per server.
MAX_BATCH = 64
MAX_FRAMES = 64


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond these the server answers a 4xx that names the limit."""

    max_batch: int = MAX_BATCH  # images per generate / variations request
    max_frames: int = MAX_FRAMES  # frames per interpolation
    max_upload_bytes: int = 16 * 1024 * 1024  # whole request body (multipart overhead included)
    max_upload_pixels: int = 4096 * 4096  # decoded size of an uploaded image (decompression bombs)
    max_concurrent: int = 2  # forward passes at once (this CPU has 2 cores)
    max_waiting: int = 128  # requests queued for a slot before the server says 429
    wait_seconds: float = 30.0  # how long a queued request waits for a slot before 429
    max_output_pixels: int = 16_000_000  # pixels of all images in one response, after ``scale``


class Gate:
    """A bounded queue in front of the models: ``max_concurrent`` forward passes at work, ``max_waiting`` in line.

    Forward passes run on a small fixed pool of threads rather than on whichever of FastAPI's ~40 worker
    threads took the request: PyTorch's per-thread intra-op state stays warm on a reused thread (a fresh
    thread's first passes measured 2-3x slower), and at most ``max_concurrent`` compete for the cores.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=limits.max_concurrent, thread_name_prefix="atelier-model")
        self._waiting = 0
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._waiting >= self.limits.max_waiting:
                raise busy(f"{self._waiting} requests are already in line")
            self._waiting += 1
        try:
            future = self._pool.submit(fn)
            try:
                return future.result(timeout=self.limits.wait_seconds)
            except FuturesTimeout:
                if future.cancel():  # still queued: give up on it
                    raise busy(f"no model was free within {self.limits.wait_seconds:g} s") from None
                return future.result()  # already running: let it finish
        finally:
            with self._lock:
                self._waiting -= 1


def busy(why: str) -> HTTPException:
    return HTTPException(429, f"the server is busy ({why}); retry in a moment", headers={"Retry-After": "1"})


class ServerTiming:
    """Adds ``Server-Timing: app;dur=<ms>`` to every response: the time from request to response headers,
    so clients (the page, benchmarks/serve_speed.py) can tell server time from network time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                message["headers"] = [*message.get("headers", []), (b"server-timing", f"app;dur={ms:.2f}".encode())]
            await send(message)

        await self.app(scope, receive, timed_send)


class BodySize:
    """Answers 413 with a JSON message naming the limit when a request's ``Content-Length`` is over it (before
    the body is read; FastAPI's own limit still stops a body sent without a length, with a plain-text 413).
    ``limit_of(method, path)`` gives the limit of a request."""

    def __init__(self, app: Any, limit_of: Callable[[str, str], int]) -> None:
        self.app, self.limit_of = app, limit_of

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
            limit = self.limit_of(scope.get("method", "GET"), scope.get("path", ""))
            if length is not None and length.isdigit() and int(length) > limit:
                body = json.dumps({"detail": f"the request body is {int(length):,} bytes; this server accepts at "
                                             f"most {limit:,} here (its upload limit)"}).encode()
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
