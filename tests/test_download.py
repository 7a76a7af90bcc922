"""Download code against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from atelier.data.mnist import NAMED, fetch, find_file
from atelier.download import download
from atelier.errors import DownloadError
from conftest import DATA_REASON, SHARED_DATA, mnist_available


@pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)
def test_fetch_mnist_from_local_server_checks_sha256(server, online, tmp_path, monkeypatch):
    root, url = server
    shutil.copytree(SHARED_DATA / "mnist", root / "mnist")
    monkeypatch.setenv("ATELIER_DATA_URL", url)
    paths = fetch("mnist")
    assert len(paths) == 4 and all(p.is_file() for p in paths)
    cache = Path(os.environ["ATELIER_CACHE"])  # this test's own cache (conftest), not the data mirror
    assert all(p.resolve().is_relative_to(cache.resolve()) for p in paths)
    # Found in the cache the second time: the server is no longer needed.
    (root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert find_file(NAMED["mnist"], "t10k-labels-idx1-ubyte.gz", allow_download=False).is_file()


def test_wrong_checksum_is_rejected_and_nothing_is_left(server, online, tmp_path):
    root, url = server
    (root / "f.bin").write_bytes(b"tampered payload")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download([f"{url}/f.bin"], dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_unreachable_mirror_falls_back_then_reports_all(server, online, tmp_path):
    import hashlib

    root, url = server
    payload = b"hello"
    (root / "g.bin").write_bytes(payload)
    dest = tmp_path / "g.bin"
    out = download([f"{url}/missing.bin", f"{url}/g.bin"], dest, hashlib.sha256(payload).hexdigest(),
                   progress=False)
    assert out.read_bytes() == payload
    with pytest.raises(DownloadError, match="404"):
        download([f"{url}/missing.bin"], tmp_path / "h.bin", "0" * 64, progress=False)


def test_offline_mode_refuses_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_OFFLINE", "1")
    with pytest.raises(DownloadError, match="ATELIER_OFFLINE"):
        download(["http://127.0.0.1:9/x"], tmp_path / "x", "0" * 64)
    assert not Path(tmp_path / "x").exists()
