"""The provenance workflows: say whether an image was made by atelier; mark or look for the watermark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atelier.errors import AtelierError
from atelier.imageio import save_image
from atelier.images import load_image
from atelier.provenance import detect_image, verify_image
from atelier.provenance.watermark import MIN_SIZE, Detection, model_id_hash

__all__ = ["verify", "watermark_detect", "watermark_embed"]


def verify(image: str | Path, runs_dir: str | Path = "runs", trust_anchors: str | Path | None = None) -> dict[str, Any]:
    """Metadata, invisible watermark and C2PA manifest of an image, and whether atelier recognises it."""
    return verify_image(image, runs_dir=runs_dir, trust_anchors=trust_anchors)


def watermark_embed(image: str | Path, out: str | Path, model_id: str = "atelier",
                    strip_metadata: bool = False) -> int:
    """Mark an image from elsewhere with atelier's watermark (payload: a hash of ``model_id``). Returns the id."""
    pixels = load_image(image, channels=3)
    if min(pixels.shape[:2]) < MIN_SIZE:
        raise AtelierError(f"{image} is {pixels.shape[1]}x{pixels.shape[0]}; the watermark needs at least "
                           f"{MIN_SIZE} px a side")
    save_image(pixels, out, {"workflow": "watermark-embed", "model_id": model_id, "source": Path(image).name},
               strip_metadata=strip_metadata)
    return model_id_hash(model_id)


def watermark_detect(image: str | Path) -> Detection:
    """The watermark in an image file (an RGBA PNG's colour planes as stored first, then as a viewer shows it)."""
    return detect_image(image)[0]
