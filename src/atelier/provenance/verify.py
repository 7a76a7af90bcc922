"""``atelier verify``: everything atelier can say about an image's origin (metadata, watermark, C2PA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from atelier.errors import ImageError
from atelier.provenance.c2pa import read_c2pa
from atelier.provenance.metadata import DIGITAL_SOURCE_TYPE, PREFIX, match_run, read_metadata
from atelier.provenance.watermark import MIN_SIZE, Detection, detect

__all__ = ["detect_image", "verify_image"]


def detect_image(path: str | Path | bytes, name: str | None = None) -> tuple[Detection, tuple[int, int]]:
    """Look for the watermark in an image file; returns the detection and the image's (width, height).

    An RGBA image is read twice if need be: first its colour planes as stored (atelier marks the colour and
    keeps alpha exact, so fully transparent pixels still carry the mark), then composited over white, as a
    viewer shows it and a screenshot keeps it."""
    from atelier.images import load_image  # start-up time: atelier.images imports torch

    rgba = load_image(path, channels=4, name=name)
    size = (rgba.shape[1], rgba.shape[0])
    if rgba[:, :, 3].min() == 255:  # opaque: the colour planes are the picture
        return detect(np.ascontiguousarray(rgba[:, :, :3])), size
    found = detect(np.ascontiguousarray(rgba[:, :, :3]))
    if not found.detected:
        flat = detect(load_image(path, channels=3, name=name))
        found = flat if flat.detected or flat.confidence > found.confidence else found
    return found, size


def verify_image(path: str | Path, runs_dir: str | Path = "runs",
                 trust_anchors: str | Path | None = None) -> dict[str, Any]:
    """Everything atelier can say about an image's origin; ``recognised`` is True when it is atelier's.

    ``watermark`` holds :meth:`Detection.to_dict <atelier.provenance.watermark.Detection.to_dict>`: the payload,
    the method that carried it, and the ``scale`` (size now / size when marked) and ``rotation`` the detector
    found (None when only the scale-free QIM frame was read)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    found, size = detect_image(path, name=str(path))
    try:
        meta = read_metadata(path)
    except OSError:
        meta = {}
    wm = found.to_dict()
    if found.id32 is not None:
        wm["run"] = match_run(found.id32, runs_dir)
        claimed = meta.get(f"{PREFIX}watermark")
        wm["matches_metadata"] = None if not claimed else claimed == f"{found.id32:08x}"
    if not found.detected and min(size) < MIN_SIZE:  # (a marked 64 px image cropped can be found)
        wm["note"] = f"image smaller than {MIN_SIZE} px: atelier writes metadata only at this size"
    c2pa = read_c2pa(path, trust_anchors)
    ai_meta = meta.get("DigitalSourceType") == DIGITAL_SOURCE_TYPE and f"{PREFIX}version" in meta
    signed = c2pa["status"] in ("valid", "trusted") and "atelier" in c2pa.get("claim_generator", [])
    return {"image": str(path), "size": list(size), "recognised": bool(found.detected or ai_meta
            or signed), "metadata": meta, "watermark": wm, "c2pa": c2pa}
