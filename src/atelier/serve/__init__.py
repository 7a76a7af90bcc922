"""The studio: an HTTP API over atelier's trained models and the web page designers use (``atelier serve``):
generate, train new models from uploaded pictures (in worker processes, through a job queue in a database),
watch them learn, curate a gallery.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, SQLAlchemy): ``pip install 'atelier[serve]'``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from atelier.utils import require_extra

__all__ = ["background", "create_app", "serve"]


def create_app(runs: Any, backend: str = "torch", limits: Any = None, device: str = "cpu",
               settings: Any = None, foundation: Any = (), foundation_config: Any = None) -> Any:
    """The FastAPI app (see :func:`atelier.serve.app.create_app`); ``settings``: a
    :class:`~atelier.serve.settings.StudioSettings` (database, data roots, token, upload limits); ``foundation``:
    Stable Diffusion-family checkpoints to serve at ``/api/t2i``."""
    for module in ("fastapi", "python_multipart", "sqlalchemy"):
        require_extra(module, "serve", "the studio")
    if backend == "onnx":
        require_extra("onnxruntime", "export", "the ONNX Runtime backend")
    from atelier.serve.app import create_app as _create  # FastAPI: the optional extra atelier[serve]

    return _create(runs, backend=backend, limits=limits, device=device, settings=settings, foundation=foundation,
                   foundation_config=foundation_config)


def serve(runs: str | Path, host: str = "127.0.0.1", port: int = 7860, backend: str = "torch",
          device: str = "cpu", log_level: str = "info", settings: Any = None, worker: bool = True,
          max_jobs: int = 1, gpus_per_job: int = 1, announce: Any = None, foundation: Any = (),
          foundation_config: Any = None) -> None:
    """Serve the studio until interrupted, with one training worker in a child process unless ``worker=False``
    (then run ``atelier worker`` yourself, here or on other machines). Refuses to bind beyond this machine
    without a token or users."""
    uvicorn = require_extra("uvicorn", "serve", "the studio")
    from atelier.api.worker import start_worker_process  # SQLAlchemy: the optional extra atelier[serve]
    from atelier.serve.auth import check_exposure  # FastAPI: the optional extra atelier[serve]

    app = create_app(runs, backend=backend, device=device, settings=settings, foundation=foundation,
                     foundation_config=foundation_config)
    studio = app.state.studio
    check_exposure(host, studio.access)
    store = app.state.store
    for name in store.names():  # load now, so the first designer's click is not the slow one
        try:
            store.get(name)
        except Exception:  # noqa: BLE001  (listed with its error on the page)
            pass
    fm = getattr(app.state, "foundation", None)
    if fm is not None:
        for name in fm.names():
            fm.info(name)  # loads it (a load error is listed by GET /api/foundation)
    proc = None
    if worker and studio.runs_dir is not None:
        proc = start_worker_process(studio.settings.db_url, max_jobs=max_jobs, gpus_per_job=gpus_per_job,
                                    log=studio.settings.home / "worker.log")
    if announce is not None:
        announce(studio, proc)
    # uvicorn shuts down on SIGTERM and then raises the signal again for the handler that was there before:
    # make that one a normal exit, so the worker below is stopped in order (its jobs checkpoint).
    previous = signal.signal(signal.SIGTERM, _exit_normally)
    try:
        # Open event streams (a page watching a job) must not hold a restart up for long.
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    finally:
        if proc is not None:  # its jobs checkpoint and become resumable ("interrupted")
            proc.terminate()
            try:
                proc.wait(timeout=180)
            except Exception:  # noqa: BLE001
                proc.kill()
        signal.signal(signal.SIGTERM, previous)


def _exit_normally(signum: int, frame: Any) -> None:
    raise SystemExit(0)


@contextlib.contextmanager
def background(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread (notebooks, tests, benchmarks); yields its base URL.

    ``port=0`` picks a free port.
    """
    uvicorn = require_extra("uvicorn", "serve", "the studio")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the studio did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
