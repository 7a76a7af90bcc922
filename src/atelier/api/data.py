"""The data workflows: describe a source (sizes, alpha, duplicates, classes), prepare a folder once into
arrays, recommend a training recipe from the data, fetch a named dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atelier.data import ImageDataset, open_source, parse_spec
from atelier.data.info import NEAR_THRESHOLD, DataReport, data_info
from atelier.data.mnist import fetch as fetch_named
from atelier.data.prepare import prepare_dataset, prepared_meta
from atelier.data.recipe import recommend_recipe
from atelier.imageio import save_image
from atelier.images import make_grid
from atelier.provenance import COMPOSITE_SOURCE_TYPE

__all__ = ["DataReport", "data_grid", "describe_data", "fetch", "open_data", "prepare_data", "recommend_recipe"]


def describe_data(source: str, near: bool | None = None, threshold: float = NEAR_THRESHOLD) -> DataReport:
    """Counts, original sizes, modes, alpha use, colour, class folders, exact and near duplicates, licence."""
    return data_info(source, near=near, threshold=threshold)


def open_data(source: str, channels: int | None = None, resolution: int | None = None,
              report: DataReport | None = None, limit: int | None = None) -> ImageDataset:
    """A data source read as it is: the MNIST family at 28 px grey; a folder, zip or npz at its images' own size
    (when they share one, up to 256 px) and as grey, colour or RGBA as they are; ``channels``/``resolution``
    force them; ``limit``: the first N images only."""
    name, split = parse_spec(source)
    if split is not None:
        return open_source(source, channels=channels or 1, resolution=resolution or 28, limit=limit)
    report = report or data_info(source, near=False, sample=256)
    ch = channels or (4 if report.transparency_share > 0 else 1 if report.colour == 0 else 3)
    res = resolution or (report.median_side if len(report.sizes) == 1 and report.median_side <= 256 else 64)
    return open_source(source, channels=ch, resolution=res, limit=limit)


def data_grid(ds: ImageDataset, out: str | Path, n: int = 64, strip_metadata: bool = False) -> Path:
    """A grid of the first ``n`` images (RGBA over a checkerboard); not generated: marked as a composite,
    without the watermark."""
    return save_image(make_grid(ds.images[:n], scale=2 if ds.resolution <= 32 else 1), out,
                      {"workflow": "data-info", "source": ds.name, "DigitalSourceType": COMPOSITE_SOURCE_TYPE},
                      strip_metadata=strip_metadata)


def prepare_data(folder: str | Path, resolution: int, channels: int | None = None, alpha: str = "composite",
            background: str = "white", out: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Decode a folder (or .zip) of images once into a prepared ``.npz``; returns (path, its meta record)."""
    ch = channels or (4 if alpha == "keep" else 3)
    path = prepare_dataset(folder, resolution, ch, alpha=alpha, background=background, out=out)
    return path, prepared_meta(path) or {}


def fetch(name: str, mirror: str | None = None) -> list[Path]:
    """Download a named dataset's files (sha256-checked) into atelier's cache, unless present locally."""
    return list(fetch_named(name, mirror=mirror))
