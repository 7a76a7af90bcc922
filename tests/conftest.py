from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The shared data: ATELIER_DATA when set (CI sets it; a git worktree elsewhere has no ../shared), else the
# project's ../shared/data.
SHARED_DATA = Path(os.environ["ATELIER_DATA"]) if os.environ.get("ATELIER_DATA") else REPO.parent / "shared" / "data"

# Tests never download: named datasets come from the local mirror.
if not os.environ.get("ATELIER_DATA") and SHARED_DATA.is_dir():
    os.environ["ATELIER_DATA"] = str(SHARED_DATA)
os.environ["ATELIER_OFFLINE"] = "1"
# The shared datasets tests read (../shared/data in this project; see README "Tests"). In CI they must all be
# there: a wrong ATELIER_DATA would otherwise quietly skip most of the suite.
DATA_FOLDERS = ("mnist", "fashion-mnist", "content", "style", "facades", "emoji")
if os.environ.get("CI"):
    _missing = [f for f in DATA_FOLDERS if not Path(os.environ.get("ATELIER_DATA", ""), f).is_dir()]
    if _missing:
        raise RuntimeError(f"CI is set but ATELIER_DATA={os.environ.get('ATELIER_DATA')!r} lacks {', '.join(_missing)}")
DATA_REASON = ("needs the shared datasets: set ATELIER_DATA to the data folder (mnist/, content/, ...; README: Tests) "
               "or run `atelier data fetch mnist` online")
# Tests use tiny models that gain nothing from a second thread, and OpenMP threads spin badly when the
# cores are shared (20x slower steps measured on a loaded 2-core machine). Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path_factory.mktemp("cache")))


# Overrides that make a DCGAN run take well under a second per step on a CPU.
TINY = {
    "model.width": 8, "model.z_dim": 16, "data.limit": 128, "train.batch_size": 16, "train.steps": 6,
    "train.device": "cpu", "log.every": 2, "log.sample_every": 3, "log.checkpoint_every": 3,
    "log.grid": 2, "log.tensorboard": False,
}


# Overrides of configs/facades-seg.yaml (and facades-pix2pix.yaml) that train on the real facades in seconds.
TINY_SEG = {"data.resolution": 32, "data.load_size": 36, "data.limit": 8, "model.ngf": 4, "train.steps": 3,
            "train.batch_size": 2, "train.device": "cpu", "log.every": 1, "log.sample_every": 3,
            "log.checkpoint_every": 3, "log.grid": 2, "log.tensorboard": False}


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


def _train_tiny(tmp_path_factory, folder: str, name: str, overrides: dict) -> Path:
    """Train a tiny run once per test session, alone in its own parent folder, with a private cache."""
    if not mnist_available():
        pytest.skip(DATA_REASON)
    import atelier

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_CACHE", str(tmp_path_factory.mktemp("cache")))
        run = tmp_path_factory.mktemp(folder) / name
        atelier.train(None, run, overrides, progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One tiny trained DCGAN run folder, trained once per test session (alone in its parent folder)."""
    return _train_tiny(tmp_path_factory, "runs", "tiny-dcgan", dict(TINY))


@pytest.fixture
def own_tiny_run(tiny_run, tmp_path) -> Path:
    """A copy of the session's tiny run for a test that writes into it (records, logs): the shared one stays as
    trained."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name))


@pytest.fixture(scope="session")
def tiny_cgan_run(tmp_path_factory) -> Path:
    """One tiny class-conditional DCGAN run (10 MNIST classes), alone in its parent folder."""
    return _train_tiny(tmp_path_factory, "cruns", "tiny-cgan", {**TINY, "model.num_classes": 10, "train.steps": 3})


def make_trainer(run_dir: Path, overrides: dict, config=None, **task_options):
    """The one loop over the task of the config's family, built but not started (nothing written yet)."""
    from atelier import families
    from atelier.api import prepare
    from atelier.training import Trainer

    cfg, _ = prepare(config, run_dir, overrides)
    return Trainer(cfg, run_dir, families.get(cfg.model["name"]).task, progress=False, **task_options)


def mnist_available() -> bool:
    return Path(os.environ.get("ATELIER_DATA", ""), "mnist", "train-images-idx3-ubyte.gz").is_file()


def data_available(folder: str) -> bool:
    return Path(os.environ.get("ATELIER_DATA", ""), folder).is_dir()


needs_mnist = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)


# ------------------------------------------------------------------- shared helpers and fixtures of the tests
def run_cli(*args: str, ok: bool = True):
    """``atelier ARGS`` in-process; asserts exit status 0 unless ``ok=False``."""
    from click.testing import CliRunner

    from atelier.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def one_line_error(result, pattern: str) -> None:
    """A user mistake: exit status 2, one ``error: ...`` line matching ``pattern``, no traceback."""
    import re

    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``root`` (downloads are tested against it, never the internet)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed, and no local data mirror to find files in."""
    monkeypatch.delenv("ATELIER_OFFLINE", raising=False)
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path / "no-mirror"))


def make_pairs(folder: Path, n: int = 6, size: int = 32, seed: int = 0) -> Path:
    """Side-by-side pairs where B is a known function of A: B = 255 - A (colour inverse)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = np.zeros((size, size, 3), np.uint8)
        y, x = rng.integers(2, size - 12, 2)
        a[y : y + 10, x : x + 10] = rng.integers(60, 255, 3)        # a coloured square at a random place
        a[:, : size // 4] = 200                                     # an asymmetric band (catches bad flips)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def tiny_p2p(tmp_path) -> dict:
    """Overrides of a tiny pix2pix run on synthetic pairs (train and held-out test)."""
    train, test = make_pairs(tmp_path / "train"), make_pairs(tmp_path / "test", n=3, seed=1)
    return {
        "data.source": str(train), "data.eval_source": str(test), "data.paired": "side_by_side",
        "data.direction": "AtoB", "data.resolution": 32, "data.load_size": 36, "data.channels": 3,
        "data.hflip": True, "model.name": "pix2pix", "model.ngf": 4, "model.ndf": 4,
        "train.batch_size": 2, "train.steps": 6, "train.device": "cpu", "train.precision": "fp32",
        "train.channels_last": False, "log.every": 2, "log.sample_every": 3, "log.checkpoint_every": 3,
        "log.grid": 3, "log.tensorboard": False,
    }


def small_photo(path: Path, size: int = 48) -> Path:
    """A small copy of a shared image (tests stay fast), or a synthetic one when the data is absent."""
    import numpy as np
    from PIL import Image

    data = Path(os.environ.get("ATELIER_DATA", ""))
    src = {"content": data / "content" / "chelsea.png", "style": data / "style" / "starry_night.jpg"}.get(path.stem)
    if src is not None and src.is_file():
        with Image.open(src) as im:
            im.convert("RGB").resize((size, size * 2 // 3), Image.Resampling.LANCZOS).save(path)
    else:
        rng = np.random.default_rng(len(path.stem))
        Image.fromarray(rng.integers(0, 255, (size * 2 // 3, size, 3), dtype=np.uint8)).save(path)
    return path


def tiny_style_run(run_dir: Path, photos: Path, style: Path, steps: int, batch_size: int = 2):
    """Train a tiny fast style network (width 4, 32 px crops)."""
    from atelier.api import train_style

    return train_style(run_dir, style=[str(style)], content_dir=str(photos), features="random", progress=False,
                       overrides={"data.resolution": 32, "train.steps": steps, "train.batch_size": batch_size,
                                  "optim.lr_g": 2e-2, "model.width": 4, "model.res_blocks": 1, "log.every": 1,
                                  "log.sample_every": 3, "log.checkpoint_every": 2, "log.tensorboard": False})


# ------------------------------------------------------------------- the studio: pictures, tiny jobs, servers
# A studio training job small enough for a test: a width-4 DCGAN, 16 images a step, frequent logs and grids.
TINY_JOB_EXTRA = ("model.width=4\nmodel.z_dim=8\ntrain.batch_size=16\nlog.every=5\nlog.sample_every=20\n"
                  "log.checkpoint_every=20\nlog.tensorboard=false")


def make_pictures(folder: Path, n: int = 64, size: int = 24, seed: int = 0) -> Path:
    """``n`` small colour pictures (a coloured square on a light ground), as a designer's folder."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = np.full((size, size, 3), 236, np.uint8)
        y, x = rng.integers(0, size // 2, 2)
        a[y : y + size // 2, x : x + size // 2] = rng.integers(0, 255, 3)
        Image.fromarray(a).save(folder / f"picture-{i:03d}.png")
    return folder


def make_picture_zip(path: Path, n: int = 64, size: int = 24) -> Path:
    """A zip of ``n`` small pictures, as a designer would upload it."""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_pictures(Path(tmp) / "pictures", n, size)
        with zipfile.ZipFile(path, "w") as zf:
            for p in sorted(folder.iterdir()):
                zf.write(p, f"my-pictures/{p.name}")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def atelier_process(*args: str, log: Path, env: dict | None = None):
    """``python -m atelier ARGS`` as a child process (the studio's server or a worker), output to ``log``."""
    import subprocess
    import sys

    full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "atelier", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=full_env)


def wait_for(predicate, timeout: float = 60.0, every: float = 0.1, what: str = "a condition"):
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    def up() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(up, timeout, 0.2, f"{url} to answer")
