"""MNIST-family datasets from their original IDX ``.gz`` files.

Lookup order for each file: ``$ATELIER_DATA/<name>/<file>`` (a local mirror: CI points it at
``shared/data``), then atelier's cache, then a download from the public mirrors (or
``$ATELIER_DATA_URL/<name>/<file>``) checked against the sha256 below.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atelier.download import cache_dir, download
from atelier.errors import DataError

__all__ = ["NAMED", "NamedDataset", "find_file", "read_idx", "fetch", "load_named"]


@dataclass(frozen=True)
class NamedDataset:
    name: str
    urls: tuple[str, ...]  # base URLs, tried in order
    files: dict[str, tuple[str, str, str]]  # split -> (images file, labels file, "") ...
    sha256: dict[str, str]
    license: str
    classes: tuple[str, ...]
    citation: str


_MNIST_SHA = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_FASHION_SHA = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", ""),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", ""),
}

NAMED: dict[str, NamedDataset] = {
    "mnist": NamedDataset(
        name="mnist",
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        files=_SPLITS,
        sha256=_MNIST_SHA,
        license=(
            "none stated by the authors (LeCun, Cortes, Burges); third parties often describe it as "
            "CC BY-SA 3.0 (not verified)"
        ),
        classes=tuple(str(i) for i in range(10)),
        citation="Y. LeCun, C. Cortes, C. J. C. Burges, The MNIST database of handwritten digits, 1998",
    ),
    "fashion-mnist": NamedDataset(
        name="fashion-mnist",
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files=_SPLITS,
        sha256=_FASHION_SHA,
        license="MIT, Copyright 2017 Zalando SE",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        citation="H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST, arXiv:1708.07747, 2017",
    ),
}


def _mirror_dirs() -> list[Path]:
    dirs = []
    if env := os.environ.get("ATELIER_DATA"):
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return dirs + [cache_dir() / "data"]


def find_file(ds: NamedDataset, filename: str, allow_download: bool = True, mirror: str | None = None) -> Path:
    for base in _mirror_dirs():
        candidate = base / ds.name / filename
        if candidate.is_file():
            return candidate
    if not allow_download:
        raise DataError(
            f"{ds.name}/{filename} not found in {', '.join(str(d) for d in _mirror_dirs())}; "
            f"run `atelier data fetch {ds.name}` (online) or set ATELIER_DATA to a folder holding {ds.name}/"
        )
    mirror = mirror or os.environ.get("ATELIER_DATA_URL")
    urls = [f"{mirror.rstrip('/')}/{ds.name}/{filename}"] if mirror else [u + filename for u in ds.urls]
    return download(urls, cache_dir() / "data" / ds.name / filename, ds.sha256[filename])


def fetch(name: str, mirror: str | None = None) -> list[Path]:
    """Make every file of a named dataset available locally (downloading what is missing)."""
    ds = NAMED[name]
    return [find_file(ds, f, mirror=mirror) for f in ds.sha256]


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a numpy array."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08:
            raise DataError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
        dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        if data.size != int(np.prod(dims)):
            raise DataError(f"{path} is truncated: header says {dims}, found {data.size} values")
        return data.reshape(dims).copy()  # frombuffer views are read-only
    except (OSError, EOFError, struct.error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def load_named(name: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) of a named dataset split."""
    ds = NAMED[name]
    if split not in ds.files:
        raise DataError(f"{name} has splits {sorted(ds.files)}, not {split!r}")
    img_file, lbl_file, _ = ds.files[split]
    images = read_idx(find_file(ds, img_file))
    labels = read_idx(find_file(ds, lbl_file)).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{name}:{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels
