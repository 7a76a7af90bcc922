"""atelier's blind invisible watermark: a 48-bit payload that survives the web (issues 7 and 20). numpy only.

The payload (:mod:`.payload`): a 32-bit hash of the run/model id + CRC-16, rate-1/3 convolutional code, soft
Viterbi. Two layers carry it, because no single one survived everything images meet:

* **The tile** (:mod:`.tile`, from 128 px): a 64x64 spread-spectrum pattern repeated over the image in a
  0.16-0.25 cycles/pixel band. Folding the image modulo 64 makes it crop-proof, and its spectrum is a lattice of
  peaks that move with a rescale or a rotation: :mod:`.sync` finds the scale (0.45-2.4x) and rotation (+-4 deg)
  from them, so a rotated, cropped, screenshotted or mildly shrunk image is read at the tile's own scale again.
* **The QIM frame** (:mod:`.qim`, :mod:`.qim_detect`, from 64 px): dithered QIM on the lowest lapped-transform
  coefficients of the image resampled to a 64 px short side. A thumbnail gives the same frame again, so this
  layer needs no scale at all, and its frequencies are low enough to outlive a 0.33x shrink and JPEG or WebP,
  where the tile's band is past Nyquist (issue 20: 0.5x + JPEG lost the tile on every photo).

Why both, measured (``benchmarks/watermark_robustness.py``): with the tile's scale search alone, 0.5x + JPEG q75
decoded on 1 of 12 photos at 256 px and 0.33x on 3 (the tile's band sits at the codec's and the resampler's
cut-off); the QIM frame alone cannot follow a rotation or a crop of the short side. From 128 px the tile gets
:data:`TILE_SHARE` of the energy and the frame the rest (PSNR ~38.5 dB in all); images mostly flat black (MNIST
grids) keep the tile alone, whose mask spares black backgrounds. Images under 128 px carry the frame alone.

Old marks (issue 7's tile, and its QIM at 64-127 px, read as a frame at the image's own scale) are still found.
"""

from __future__ import annotations

import numpy as np

from atelier.provenance.watermark import qim, qim_detect, sync, tile
from atelier.provenance.watermark.payload import (
    CODED_BITS,
    PAYLOAD_BITS,
    check_payload,
    conv_encode,
    encode_payload,
    model_id_hash,
    viterbi_decode,
)
from atelier.provenance.watermark.pixels import luma, psnr
from atelier.provenance.watermark.result import Detection

__all__ = [
    "CODED_BITS",
    "MIN_SIZE",
    "PAYLOAD_BITS",
    "STRENGTH",
    "TILE_MIN_SIZE",
    "Detection",
    "check_payload",
    "conv_encode",
    "detect",
    "embed",
    "encode_payload",
    "model_id_hash",
    "psnr",
    "viterbi_decode",
]

STRENGTH = 3.05
MIN_SIZE = 64
TILE_MIN_SIZE = 128
# From 128 px, the share of the energy (strength^2) given to the tile; the rest goes to the QIM frame. Measured
# on the 12 benchmark photos and paintings at 256 px: 0.45 read 0.33x + WebP q75 on 12 of 12 (11 with the
# flat-region weighting); 0.57 on 4 and 0.7 on 2, while the tile's own cases (a 50% crop, a rotation) stayed at
# 8-9 of 12 at 128 px from 0.45 to 0.7.
TILE_SHARE = 0.45
# Images whose flat dark regions (the mask's 0.2x) cover more than this share (MNIST grids) keep the tile alone
# at full strength: the QIM frame's smooth offsets would show on black as faint grey patches.
DARK_SHARE = 0.25
QIM_MIN_DETECT = 42  # smallest side searched for the QIM frame (a 128 px image shrunk to 0.33x)
KNOWN_MIN_Z = 5.0  # z-score of the known payload's whole tile that confirms a scale found after a QIM detection


def embed(arr: np.ndarray, id32: int, strength: float = STRENGTH) -> np.ndarray:
    """Return a watermarked copy of a uint8 ``(H, W)`` or ``(H, W, C)`` image carrying ``id32``.

    ``strength`` is the RMS of the change in 8-bit levels. Images with a side under :data:`MIN_SIZE` are
    returned unchanged (metadata only); under :data:`TILE_MIN_SIZE` the payload is written by QIM alone; from
    there by the tile and the QIM frame, which share the energy (:data:`TILE_SHARE`).
    """
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    h, w = arr.shape[:2]
    id32 &= 0xFFFFFFFF
    if min(h, w) < MIN_SIZE:
        return arr
    y = luma(arr)
    m = tile.mask(y)
    dark = float(np.mean(m < 0.5)) > DARK_SHARE
    if min(h, w) < TILE_MIN_SIZE:
        # Mostly black small images (MNIST grids) keep the frame at their own scale (issue 7's QIM): resampling
        # their hard strokes to the canonical frame cost crops and brightness (crop 10%: 90% -> 0% of 3x3 grids).
        return qim.embed(arr, id32, strength, kappa=1.0 if dark else None)
    share = 1.0 if dark else TILE_SHARE
    d = tile.tiled(id32, (h, w)) * m * (strength * np.sqrt(share))
    base = arr.astype(np.float32) + (d[:, :, None] if arr.ndim == 3 else d)
    if share == 1.0:
        return np.clip(np.rint(base), 0, 255).astype(np.uint8)
    return qim.embed(base, id32, strength * np.sqrt(1.0 - share), None if float(m.min()) >= 1.0 else m)


def detect(arr: np.ndarray, trace: list[Detection] | None = None) -> Detection:
    """Blind detection, cheapest first: the tile at the image's own scale; the QIM frame (any scale); then the
    tile at the scales and rotations its spectral peaks point to (:mod:`.sync`). ``trace``, when given, receives
    the best attempt of every stage (for benchmarks: how close an unmarked image came)."""
    tried = trace if trace is not None else []
    y = luma(arr)
    hp = tile.whiten(y)
    found = tile.decode(hp)
    tried.append(found)
    if found.detected:
        return found
    if min(y.shape) >= QIM_MIN_DETECT:
        q = qim_detect.detect(arr)
        if q is not None:
            tried.append(q)
            if q.detected:
                assert q.id32 is not None
                q.scale, q.rotation = _geometry(y, hp, q.id32)
                return q
    for _, scale, degrees in sync.estimate(hp):
        f = tile.decode(tile.whiten(sync.undo(y, scale, degrees)))
        f.scale, f.rotation, f.method = scale, degrees, "tile"
        tried.append(f)
        if f.detected:
            return f
    return found


def _geometry(y: np.ndarray, hp: np.ndarray, id32: int) -> tuple[float | None, float | None]:
    """Scale and rotation of an image whose payload the QIM frame gave: the tile's spectral peaks, confirmed by
    correlating the whole known tile; (None, None) when the tile is gone (a shrink under 0.45x)."""
    pattern = tile.spectrum(id32)
    for _, scale, degrees in sync.estimate(hp):
        fr = tile.front(tile.whiten(sync.undo(y, scale, degrees)))
        if float(tile.correlate(fr, pattern, slice(None)).max()) >= KNOWN_MIN_Z:
            return scale, degrees
    return None, None
