"""The studio: an HTTP API over atelier's trained models and the web page designers use (``atelier serve``).

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart): ``pip install 'atelier[serve]'``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from atelier.utils import require_extra

__all__ = ["background", "create_app", "serve"]


def create_app(runs: Any, backend: str = "torch", limits: Any = None, device: str = "cpu") -> Any:
    """The FastAPI app (see :func:`atelier.serve.app.create_app`)."""
    for module in ("fastapi", "python_multipart"):
        require_extra(module, "serve", "the studio")
    if backend == "onnx":
        require_extra("onnxruntime", "export", "the ONNX Runtime backend")
    from atelier.serve.app import create_app as _create

    return _create(runs, backend=backend, limits=limits, device=device)


def serve(runs: str | Path, host: str = "127.0.0.1", port: int = 7860, backend: str = "torch",
          device: str = "cpu", log_level: str = "info") -> None:
    """Load every model under ``runs`` and serve the studio until interrupted."""
    uvicorn = require_extra("uvicorn", "serve", "the studio")
    app = create_app(runs, backend=backend, device=device)
    store = app.state.store
    for name in store.names():  # load now, so the first designer's click is not the slow one
        store.get(name)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


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
