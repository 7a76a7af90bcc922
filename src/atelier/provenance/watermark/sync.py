"""Finding the tile's scale and rotation: its spectral peaks move with the image (template synchronisation).

A periodic pattern's spectrum is a lattice of peaks: the tile's used bins ``k / 64`` (cycles per pixel). An image
shrunk by ``s`` and turned by ``theta`` carries them at ``R(theta) k / (64 s)``, whatever was cropped, because a
crop only changes their phases (Kutter 1998; Pereira & Pun 2000, whose template is the same idea with a few
dedicated peaks; here the tile's own ~225 bins are the template, so no energy is spent on it). The search:

1. the power spectrum of the whitened image, divided by its local mean (a flat picture spectrum scores 1 per
   bin, a peak far more), on a centre crop;
2. a coarse grid over scale (0.45-2.4) and rotation (+-4 degrees) on a small crop with its peaks widened by a
   3x3 maximum, scoring each hypothesis by the mean normalised power at its ~225 peaks (capped, so a single
   strong picture peak counts little);
3. the best few refined on a larger crop with bilinear reads, to 0.05% and 0.02 degrees, which is what folding a
   1000 px image modulo the tile needs (0.4% or 0.2 degrees already halve its z-score).

The tile's detector then undoes the best hypotheses (:func:`undo`) and confirms one with the sync correlation
and the CRC; see :func:`atelier.provenance.watermark.detect`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from atelier.provenance.watermark.pixels import warp
from atelier.provenance.watermark.tile import frequencies

SCALE_RANGE = (0.45, 2.4)  # shrunk to 0.45x (the band 0.16-0.25 then reaches Nyquist) up to enlarged 2.4x
MAX_DEGREES = 4.0
COARSE_SIDE = 384  # crop for the coarse grid (peaks wide enough for its steps)
FINE_SIDE = 768  # crop for the refinement (sharper peaks; bounded time on large images)
UNDO_SIDE = 1024  # largest side of the region a hypothesis is resampled and decoded on
COARSE_STEPS = (0.0075, 0.5)  # log-scale step, degrees
# Refinement, two levels of ((+- relative scale, step), (+- degrees, step)): 0.05% and 0.02 degrees at the end.
FINE_LEVELS = (((0.012, 0.002), (0.6, 0.1)), ((0.0025, 0.0005), (0.12, 0.02)))
CAP = 8.0  # cap on one bin's normalised power (a picture's own strong peaks)
PAD_UNDER, PAD_UNDER_SIDE = 2, 384  # crops up to this side are zero-padded 2x
WIDEN_FROM = 400  # crops larger than this have their peaks widened (3x3 maximum) for the coarse grid


def _centre(a: np.ndarray, side: int) -> np.ndarray:
    h, w = a.shape
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return a[top:top + side, left:left + side]


def normalised_power(hp: np.ndarray, side: int) -> tuple[np.ndarray, int]:
    """|rfft2|^2 of the centre crop of a whitened image over its ring's mean (a picture's smooth spectrum scores
    about 1 per bin, whatever the radius): (h, w // 2 + 1), and the crop's (padded) width w.

    Per ring, not a local mean: on a small image the tile's peaks are a few bins apart and would raise any local
    mean around them."""
    a = _centre(hp, side).astype(np.float64)
    # No window: the whitened picture has no edge to leak (a window costs the peaks ~4 dB). Small crops are
    # zero-padded twice over, so that a peak between two bins is read at its height.
    pad = PAD_UNDER if max(a.shape) <= PAD_UNDER_SIDE else 1
    h, w = pad * a.shape[0], pad * a.shape[1]
    power = np.abs(np.fft.rfft2(a - a.mean(), s=(h, w))) ** 2
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    ring = np.rint(np.hypot(fy, fx) * max(h, w)).astype(np.int64)
    # A ring's mean power, robust to the peaks: for exponentially distributed powers, the mean of the log is
    # log(mean) - Euler's gamma, and one peak 100x the rest moves it by log(100) / (bins in the ring).
    counts = np.maximum(np.bincount(ring.ravel()), 1)
    mean_log = np.bincount(ring.ravel(), weights=np.log(power.ravel() + 1e-30)) / counts
    level = np.exp(mean_log + np.euler_gamma)
    return power / np.maximum(level[ring], 1e-30), w


def _max3(p: np.ndarray) -> np.ndarray:
    q = np.pad(p, 1, mode="edge")
    return np.max([q[i:i + p.shape[0], j:j + p.shape[1]] for i in range(3) for j in range(3)], axis=0)


def _points(scales: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """(S, A, B, 2) frequencies of the tile's bins after scaling by ``scales`` and turning by ``degrees``.

    An image turned counter-clockwise by theta (Pillow's ``rotate``), in (y down, x right) pixel coordinates,
    carries a frequency (fy, fx) at (fy cos - fx sin, fy sin + fx cos)."""
    f = frequencies()  # (B, 2)
    t = np.radians(degrees)
    c, s = np.cos(t)[:, None], np.sin(t)[:, None]
    fy = f[None, :, 0] * c - f[None, :, 1] * s  # (A, B)
    fx = f[None, :, 0] * s + f[None, :, 1] * c
    return np.stack([fy, fx], -1)[None] / scales[:, None, None, None]


def _score(p: np.ndarray, w: int, pts: np.ndarray, bilinear: bool) -> np.ndarray:
    """Mean capped normalised power at ``pts`` (..., B, 2) cycles/pixel; bins beyond 0.48 cycles/pixel (or lost to
    the antialiasing of a shrink) are left out of the mean. Returns (...)."""
    h, wr = p.shape
    fy, fx = pts[..., 0], pts[..., 1]
    flip = fx < 0  # the spectrum of a real image is symmetric: read (-fy, -fx) instead
    fy, fx = np.where(flip, -fy, fy), np.abs(fx)
    ok = (np.abs(fy) < 0.48) & (fx < 0.48)
    y, x = fy * h, fx * w
    if bilinear:
        y0, x0 = np.floor(y), np.floor(x)
        wy, wx = y - y0, x - x0
        y0, x0 = y0.astype(int), np.clip(x0.astype(int), 0, wr - 2)
        vals = ((1 - wy) * (1 - wx) * p[y0 % h, x0] + (1 - wy) * wx * p[y0 % h, x0 + 1]
                + wy * (1 - wx) * p[(y0 + 1) % h, x0] + wy * wx * p[(y0 + 1) % h, x0 + 1])
    else:
        vals = p[np.rint(y).astype(int) % h, np.clip(np.rint(x).astype(int), 0, wr - 1)]
    # Coarse: linear, the best statistic for weak peaks, capped against a picture's own strong peaks. Fine:
    # logarithmic, so that strong peaks do not saturate and the best hypothesis stays sharp.
    vals = (np.log1p(vals) if bilinear else np.minimum(vals, CAP)) * ok
    return vals.sum(-1) / np.maximum(ok.sum(-1), 1)


@lru_cache(maxsize=1)
def _coarse_grid() -> tuple[np.ndarray, np.ndarray]:
    scales = np.exp(np.arange(np.log(SCALE_RANGE[0]), np.log(SCALE_RANGE[1]), COARSE_STEPS[0]))
    degrees = np.arange(-MAX_DEGREES, MAX_DEGREES + 1e-9, COARSE_STEPS[1])
    return scales, degrees


def estimate(hp: np.ndarray, count: int = 3) -> list[tuple[float, float, float]]:
    """The ``count`` best (score, scale, degrees) hypotheses for a whitened image ``hp``; score ~1 where the tile
    is absent (scale: the image's size now over its size when marked)."""
    scales, degrees = _coarse_grid()
    p, w = normalised_power(hp, COARSE_SIDE)
    # On a large crop the peaks are narrower than the grid's steps: widen them.
    coarse = _score(_max3(p) if min(p.shape[0], w) > WIDEN_FROM else p, w, _points(scales, degrees), bilinear=False)
    order = np.argsort(coarse.ravel())[::-1]
    picked: list[tuple[int, int]] = []
    for flat in order:  # the best hypotheses, at least a few grid steps apart
        i, j = divmod(int(flat), len(degrees))
        if all(abs(i - a) > 3 or abs(j - b) > 3 for a, b in picked):
            picked.append((i, j))
        if len(picked) == count:
            break
    fine_p, fine_w = normalised_power(hp, FINE_SIDE)
    out = []
    for i, j in picked:
        sc, dg = float(scales[i]), float(degrees[j])
        for (span_s, step_s), (span_d, step_d) in FINE_LEVELS:  # coarse-to-fine around the best so far
            ss = sc * np.exp(np.arange(-span_s, span_s + 1e-12, step_s))
            dd = dg + np.arange(-span_d, span_d + 1e-12, step_d)
            fine = _score(fine_p, fine_w, _points(ss, dd), bilinear=True)
            a, b = divmod(int(np.argmax(fine)), len(dd))
            sc, dg, best = float(ss[a]), float(dd[b]), float(fine[a, b])
        out.append((best, sc, dg))
    return sorted(out, reverse=True)


def undo(y: np.ndarray, scale: float, degrees: float, side: int = UNDO_SIDE) -> np.ndarray:
    """Resample ``y`` so that a tile shrunk by ``scale`` and turned by ``degrees`` is 64 px and upright again: the
    centre region, at most ``side`` px a side (plenty of tile copies; bounded time whatever the hypothesis)."""
    h, w = y.shape
    oh, ow = min(side, max(1, round(h / scale))), min(side, max(1, round(w / scale)))
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    # Output pixel p reads the input at centre_in + scale * R(theta) (p - centre_out); the sign convention is
    # the one of :func:`_points` (Pillow's counter-clockwise rotate).
    cx, cy, ox, oy = w / 2, h / 2, ow / 2, oh / 2
    a, b, d, e = scale * c, scale * s, -scale * s, scale * c
    return warp(y, (ow, oh), (a, b, cx - a * ox - b * oy, d, e, cy - d * ox - e * oy))
