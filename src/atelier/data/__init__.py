"""Data sources and the training batch loader.

A *source spec* is one string: ``mnist`` / ``mnist:test`` / ``fashion-mnist[:split]`` by name, or a
path to an image folder (recursive), a ``.zip`` of images or an ``.npz`` with an ``images`` array
(e.g. one written by :func:`prepare_dataset`). Every source is read once into memory as a uint8
tensor ``(N, C, H, W)`` (C = 1, 3 or 4 = RGBA): a few thousand sprites at 64-128 px fit easily, and
batches are then a gather plus one conversion, with no worker processes to manage. Folders and zips
are read through a cache of decoded arrays keyed by their contents (:mod:`atelier.data.prepare`), so
only the first run pays for decoding.

Also here: :func:`data_info` (sizes, modes, alpha use, duplicates, classes of a source) and
:func:`recommend_recipe` (a training recipe chosen from those facts).
"""

from __future__ import annotations

from atelier.data.dataset import ImageDataset
from atelier.data.info import data_info
from atelier.data.loader import BatchLoader
from atelier.data.prepare import prepare_dataset
from atelier.data.recipe import recommend_recipe
from atelier.data.sources import open_data, open_source
from atelier.data.spec import class_names, expand_source, parse_spec, skipped_warning

__all__ = ["BatchLoader", "ImageDataset", "class_names", "data_info", "expand_source", "open_data", "open_source",
           "parse_spec", "prepare_dataset", "recommend_recipe", "skipped_warning"]
