from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests never download: named datasets come from the local mirror (CI sets ATELIER_DATA too).
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
