"""The data workflows: open and describe a data source; fetch a named dataset."""

from __future__ import annotations

from pathlib import Path

from atelier.data import ImageDataset, open_source, parse_spec
from atelier.data.mnist import fetch as fetch_named
from atelier.imageio import save_image
from atelier.images import make_grid
from atelier.metrics.reference import native_format
from atelier.provenance import COMPOSITE_SOURCE_TYPE

__all__ = ["data_grid", "fetch", "open_data"]


def open_data(source: str, channels: int | None = None, resolution: int | None = None) -> ImageDataset:
    """A data source read as it is: the MNIST family at 28 px grey; a folder, zip or npz at its own images' size
    and channels (e.g. 28x28 grey from `atelier synth`), else 64 px RGB; ``channels``/``resolution`` force them."""
    name, split = parse_spec(source)
    ch = channels or (1 if split is not None else 3)
    res = (resolution or 28) if split is not None else (resolution or 64)
    if split is None and not (channels and resolution):
        native = native_format(source)
        if native is not None:
            ch = channels or native[0]
            res = resolution or native[1] or 64
    return open_source(source, channels=ch, resolution=res)


def data_grid(ds: ImageDataset, out: str | Path, n: int = 64, strip_metadata: bool = False) -> Path:
    """A grid of the first ``n`` images (not generated: marked as a composite, without the watermark)."""
    return save_image(make_grid(ds.images[:n], scale=2 if ds.resolution <= 32 else 1), out,
                      {"workflow": "data-info", "source": ds.name, "DigitalSourceType": COMPOSITE_SOURCE_TYPE},
                      strip_metadata=strip_metadata)


def fetch(name: str, mirror: str | None = None) -> list[Path]:
    """Download a named dataset's files (sha256-checked) into atelier's cache, unless present locally."""
    return list(fetch_named(name, mirror=mirror))
