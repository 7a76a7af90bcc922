from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests never download: named datasets come from the local mirror (CI sets ATELIER_DATA too).
if not os.environ.get("ATELIER_DATA") and SHARED_DATA.is_dir():
    os.environ["ATELIER_DATA"] = str(SHARED_DATA)
os.environ["ATELIER_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path_factory.mktemp("cache")))


# Overrides that make a DCGAN run take well under a second per step on a CPU.
TINY = {
    "model.width": 8, "model.z_dim": 16, "data.limit": 128, "train.batch_size": 16, "train.steps": 6,
    "train.device": "cpu", "log.every": 2, "log.sample_every": 3, "log.checkpoint_every": 3,
    "log.grid": 2, "log.tensorboard": False,
}


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One tiny trained DCGAN run folder, trained once per test session (alone in its parent folder)."""
    if not mnist_available():
        pytest.skip("MNIST mirror (ATELIER_DATA) not present")
    import atelier

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_CACHE", str(tmp_path_factory.mktemp("cache")))
        run = tmp_path_factory.mktemp("runs") / "tiny-dcgan"
        atelier.train(None, run, dict(TINY), progress=False)
    return run


@contextlib.contextmanager
def live_server(app, host: str = "127.0.0.1"):
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def mnist_available() -> bool:
    return Path(os.environ.get("ATELIER_DATA", ""), "mnist", "train-images-idx3-ubyte.gz").is_file()
