"""What the studio shows for a model before anyone uploads anything: an example input from the model's own
data (a translator's first held-out input, a stylizer's first content photo) and a thumbnail (its latest
progress grid). Every kind of model gets both, so the page never shows an empty or black tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from atelier.api.progress import latest_grid
from atelier.data.files import list_folder
from atelier.data.paired import load_paired
from atelier.data.spec import expand_source
from atelier.errors import AtelierError
from atelier.images import IMAGE_SUFFIXES, load_image
from atelier.loaded import LoadedModel, Stylizer, Translator

__all__ = ["example_input", "thumbnail_path"]

EXAMPLE_SIDE = 256  # the long side of an example photo (the page shows it beside the result)


def example_input(model: LoadedModel) -> np.ndarray | None:
    """An uint8 (H, W, C) image the model can be tried on, from the data it was trained with; None when the
    data is not on this machine (or the model takes no image)."""
    d = model.cfg.data
    try:
        if isinstance(model, Translator) and d.paired:
            pairs = load_paired(d.eval_source or d.source, d.paired, d.direction, d.channels, d.resolution, limit=1)
            return pairs.images[0, : d.channels].permute(1, 2, 0).numpy().copy()
        if isinstance(model, Stylizer):
            root = Path(expand_source(d.source))
            files = list_folder(root) if root.is_dir() else []
            photos = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            if not photos:
                return None
            img = Image.fromarray(load_image(photos[0], channels=3))
            img.thumbnail((EXAMPLE_SIDE, EXAMPLE_SIDE), Image.Resampling.LANCZOS)
            return np.asarray(img)
    except (AtelierError, OSError):
        return None
    return None


def thumbnail_path(run_dir: str | Path) -> Path | None:
    """The picture that stands for a run: its latest progress grid (any kind of model)."""
    return latest_grid(run_dir)
