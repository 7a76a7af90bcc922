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
# Tests use tiny models that gain nothing from a second thread, and OpenMP threads spin badly when the
# cores are shared (20x slower steps measured on a loaded 2-core machine). Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny() -> dict:
    """Overrides that make a DCGAN run take well under a second per step on a CPU."""
    return {
        "model.width": 8, "model.z_dim": 16, "data.limit": 128, "train.batch_size": 16, "train.steps": 6,
        "train.device": "cpu", "log.every": 2, "log.sample_every": 3, "log.checkpoint_every": 3,
        "log.grid": 2, "log.tensorboard": False,
    }


def mnist_available() -> bool:
    return Path(os.environ.get("ATELIER_DATA", ""), "mnist", "train-images-idx3-ubyte.gz").is_file()
