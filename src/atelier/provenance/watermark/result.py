"""What a detector found (shared by every method)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detection:
    """What :func:`atelier.provenance.watermark.detect` found. ``detected``: a payload was decoded and its CRC-16
    matches (and, for a searched scale, the synchronisation was significant)."""

    detected: bool
    id32: int | None  # the decoded 32-bit model id hash (None unless detected)
    confidence: float  # z-score of the synchronisation (tile) or of the lattice fit (QIM)
    shift: tuple[int, int]  # where the tile / QIM window grid starts (in the image as the detector resampled it)
    bits: np.ndarray  # the 48 decoded payload bits (also when the CRC fails)
    method: str = "tile"  # "tile": the spread-spectrum tile (from 128 px); "qim": the low-frequency QIM frame
    # Size of the image now relative to when it was marked (0.5: shrunk to half), and its rotation in degrees
    # (counter-clockwise), as found by the tile's synchronisation; None when only the QIM frame, which needs
    # neither, was read.
    scale: float | None = 1.0
    rotation: float | None = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"detected": self.detected, "method": self.method,
                "payload": None if self.id32 is None else f"{self.id32:08x}",
                "confidence": round(self.confidence, 2), "shift": list(self.shift),
                "scale": None if self.scale is None else round(self.scale, 4),
                "rotation": None if self.rotation is None else round(self.rotation, 2) + 0.0}  # (no -0.0)
