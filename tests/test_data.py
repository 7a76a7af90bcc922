from __future__ import annotations

import gzip
import struct
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from atelier.data import BatchLoader, open_source, parse_spec
from atelier.data.mnist import read_idx
from atelier.errors import DataError, DownloadError
from conftest import DATA_REASON, mnist_available

needs_mnist = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)


def _write_images(folder, n, size=(40, 30), mode="RGB", prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{prefix}{i}.png")


def test_parse_spec():
    assert parse_spec("mnist") == ("mnist", "train")
    assert parse_spec("Fashion-MNIST:test") == ("fashion-mnist", "test")
    assert parse_spec("some/folder") == ("some/folder", None)


def test_read_idx_round_trip_and_truncation(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = struct.pack(">HBB", 0, 8, 3) + struct.pack(">3I", 2, 3, 4) + arr.tobytes()
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "b").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "b")


@needs_mnist
def test_mnist_from_mirror():
    ds = open_source("mnist:test", channels=1, resolution=28)
    assert ds.images.shape == (10_000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert "CC BY-SA" in ds.license
    small = open_source("fashion-mnist", channels=1, resolution=32, limit=5)
    assert small.images.shape == (5, 1, 32, 32) and small.license.startswith("MIT")


@needs_mnist
def test_mnist_with_three_channels_is_refused():
    with pytest.raises(DataError, match="grayscale.*data.channels: 1"):
        open_source("mnist", channels=3)


def test_missing_named_dataset_offline_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path))
    with pytest.raises(DownloadError, match="not available locally and ATELIER_OFFLINE"):
        open_source("mnist")


def test_folder_modes_resize_and_labels_from_subfolders(tmp_path):
    _write_images(tmp_path / "cats", 3, size=(50, 20))
    _write_images(tmp_path / "dogs", 2, size=(20, 50), mode="L")
    Image.new("RGBA", (30, 30), (255, 0, 0, 128)).save(tmp_path / "dogs" / "alpha.png")
    Image.new("CMYK", (30, 30)).save(tmp_path / "dogs" / "print.tif")
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(tmp_path / "dogs" / "deep.png")
    ds = open_source(str(tmp_path), channels=3, resolution=16)
    assert ds.images.shape == (8, 3, 16, 16)
    assert ds.classes == ("cats", "dogs") and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    # RGBA is composited on white: half-transparent red -> pink.
    alpha = ds.images[3]
    assert alpha[0, 8, 8] == 255 and 120 < alpha[1, 8, 8] < 135


def test_a_limited_read_keeps_the_folders_classes(tmp_path):
    # The first files of a class-folder tree are all of one class: data.limit (and every dry run) must still see
    # a labelled source with the whole folder's class numbering, or a conditional recipe fails on its own data.
    _write_images(tmp_path / "a", 4, size=(20, 20))
    _write_images(tmp_path / "b", 4, size=(20, 20))
    for cache in (False, True):
        small = open_source(str(tmp_path), channels=3, resolution=16, limit=3, cache=cache)
        assert small.classes == ("a", "b") and small.labels.tolist() == [0, 0, 0]
    assert open_source(str(tmp_path), channels=3, resolution=16).labels.tolist() == [0] * 4 + [1] * 4


def test_bad_files_are_skipped_with_one_summary_warning(tmp_path):
    _write_images(tmp_path, 3)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    good = (tmp_path / "img0.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match=r"skipped 3 unreadable file\(s\): empty.png, notes.txt, truncated.png"):
        ds = open_source(str(tmp_path), channels=3, resolution=8)
    assert len(ds) == 3 and sorted(ds.skipped) == ["empty.png", "notes.txt", "truncated.png"]


def test_folder_of_only_bad_files_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("nope")
    with pytest.raises(DataError, match=r"no readable images \(2 unreadable"):
        open_source(str(tmp_path), channels=3, resolution=8)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="data source not found: .*nowhere"):
        open_source(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no files"):
        open_source(str(tmp_path / "empty"))
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="cannot read as a dataset"):
        open_source(str(tmp_path / "x.csv"))


def test_grayscale_folder_cannot_give_three_channels(tmp_path):
    _write_images(tmp_path, 2, mode="L")
    with pytest.raises(DataError, match="only grayscale images.*data.channels: 1"):
        open_source(str(tmp_path), channels=3, resolution=8)
    assert open_source(str(tmp_path), channels=1, resolution=8).channels == 1


def test_zip_source_with_a_corrupt_member(tmp_path):
    _write_images(tmp_path / "src", 4)
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        for p in sorted((tmp_path / "src").iterdir()):
            zf.write(p, f"imgs/{p.name}")
        zf.writestr("imgs/broken.jpg", b"\xff\xd8\xff garbage")
        zf.writestr("__MACOSX/._img0.png", b"junk")
    with pytest.warns(UserWarning, match="broken.jpg"):
        ds = open_source(str(tmp_path / "d.zip"), channels=3, resolution=8, limit=3)
    assert ds.images.shape == (3, 3, 8, 8)
    (tmp_path / "bad.zip").write_bytes(b"PK not a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        open_source(str(tmp_path / "bad.zip"))


def test_npz_source(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (10, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=imgs, labels=np.arange(10) % 3)
    ds = open_source(str(tmp_path / "d.npz"), channels=1, resolution=12)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(imgs)) and ds.labels.tolist()[:4] == [0, 1, 2, 0]
    with pytest.raises(DataError, match="1-channel images; the config asks for 3"):
        open_source(str(tmp_path / "d.npz"), channels=3, resolution=12)
    np.savez(tmp_path / "wrong.npz", pictures=imgs)
    with pytest.raises(DataError, match="expects one named 'images'"):
        open_source(str(tmp_path / "wrong.npz"))
    np.savez(tmp_path / "mismatch.npz", images=imgs, labels=np.arange(3))
    with pytest.raises(DataError, match="10 images but 3 labels"):
        open_source(str(tmp_path / "mismatch.npz"), channels=1, resolution=12)


def _dataset(n=50):
    from atelier.data import ImageDataset

    imgs = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageDataset(images=imgs, labels=torch.arange(n), name="t")


def test_loader_is_seeded_and_covers_each_epoch_once():
    a, b, c = BatchLoader(_dataset(), 10, seed=1), BatchLoader(_dataset(), 10, seed=1), BatchLoader(_dataset(), 10, 2)
    epoch = torch.cat([a.next()[1] for _ in range(5)])
    assert sorted(epoch.tolist()) == list(range(50))
    assert torch.equal(epoch, torch.cat([b.next()[1] for _ in range(5)]))
    assert not torch.equal(epoch, torch.cat([c.next()[1] for _ in range(5)]))
    x, _ = a.next()
    assert x.min() >= -1 and x.max() <= 1 and x.dtype == torch.float32


def test_loader_resumes_the_same_stream():
    a = BatchLoader(_dataset(), 16, seed=3)
    for _ in range(4):  # crosses an epoch boundary (3 batches of 16 per epoch)
        a.next()
    state = a.state_dict()
    expected = [a.next()[1] for _ in range(5)]
    b = BatchLoader(_dataset(), 16, seed=3)
    b.load_state_dict(state)
    assert all(torch.equal(e, b.next()[1]) for e in expected)


def test_batch_larger_than_dataset_is_clear():
    with pytest.raises(DataError, match="lower --batch-size"):
        BatchLoader(_dataset(8), 16, seed=0)
