"""``atelier verify``: everything atelier can say about an image's origin (metadata, watermark, C2PA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atelier.errors import ImageError
from atelier.provenance.c2pa import read_c2pa
from atelier.provenance.metadata import DIGITAL_SOURCE_TYPE, PREFIX, match_run, read_metadata
from atelier.provenance.watermark import MIN_SIZE, detect

__all__ = ["verify_image"]


def verify_image(path: str | Path, runs_dir: str | Path = "runs",
                 trust_anchors: str | Path | None = None) -> dict[str, Any]:
    """Everything atelier can say about an image's origin; ``recognised`` is True when it is atelier's.

    ``watermark`` holds :meth:`Detection.to_dict <atelier.provenance.watermark.Detection.to_dict>`: the payload,
    the method that carried it, and the ``scale`` (size now / size when marked) and ``rotation`` the detector
    found (None when only the scale-free QIM frame was read)."""
    from atelier.images import load_image  # start-up time: atelier.images imports torch

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    pixels = load_image(path, channels=3, name=str(path))
    try:
        meta = read_metadata(path)
    except OSError:
        meta = {}
    found = detect(pixels)
    wm = found.to_dict()
    if found.id32 is not None:
        wm["run"] = match_run(found.id32, runs_dir)
        claimed = meta.get(f"{PREFIX}watermark")
        wm["matches_metadata"] = None if not claimed else claimed == f"{found.id32:08x}"
    if not found.detected and min(pixels.shape[:2]) < MIN_SIZE:  # (a marked 64 px image cropped can be found)
        wm["note"] = f"image smaller than {MIN_SIZE} px: atelier writes metadata only at this size"
    c2pa = read_c2pa(path, trust_anchors)
    ai_meta = meta.get("DigitalSourceType") == DIGITAL_SOURCE_TYPE and f"{PREFIX}version" in meta
    signed = c2pa["status"] in ("valid", "trusted") and "atelier" in c2pa.get("claim_generator", [])
    return {"image": str(path), "size": list(pixels.shape[1::-1]), "recognised": bool(found.detected or ai_meta
            or signed), "metadata": meta, "watermark": wm, "c2pa": c2pa}
