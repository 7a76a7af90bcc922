"""QIM on lapped-transform coefficients of a canonical 64 px frame: the low-frequency, scale-free layer.

**Dithered quantisation-index modulation** (Chen & Wornell 2001) does not fight the picture's energy: each used
coefficient is moved to the nearest point of one of two interleaved lattices (step ``D``, offset by a keyed
dither; bit 1 is offset by ``D / 2``), so a blind detector reads the bit from which lattice the coefficient
sits nearest, whatever the picture.

* **The canonical frame.** The luminance is resampled so that its short side is :data:`CANON` (64) px, with the
  same factor on both axes, and the payload lives in that frame. A rescale that is not undone (a thumbnail,
  issue 20) gives the same frame again, so this layer needs no scale search: the detector resamples whatever
  it is given to 64 px. Its frequencies are 0.016-0.109 cycles per frame pixel, i.e. under 0.11 * 64 / side
  cycles per image pixel (0.027 at 256 px): after a 0.33x shrink and JPEG they are still among the lowest
  the codec keeps. At exactly 64 px the frame is the image, as in the first QIM (issue 7), whose marks read
  the same.
* **Coefficients**: the 16 lowest of a 2D *modulated lapped transform* (MLT, Malvar 1990): 32x32 windows every
  16 px with a sine window, frequencies (k + 1/2) / 32 for k = 0..3 on each axis. QIM on 16x16 block-DCT
  coefficients was measured first and lost a 0.5x resize (61% bit accuracy at 64 px): resampling mixes the
  picture across block edges, where DCT basis vectors are cut off sharply; MLT basis vectors fade to zero.
* **Only windows wholly inside the frame** are used (3x3 on a square: 144 coefficients). Coded bits are laid out
  ring by ring from the top-left window, the first two generators' bits first, so a square image carries 144
  distinct coded bits and what a crop leaves still decodes.
* **Step**: set per image so that the RMS change is ``strength``; further passes re-quantise what rounding,
  clipping and the frame's resampling moved.
* **Measured** (``benchmarks/watermark_robustness.py``, 12 photos and paintings at 256 px, this layer alone): at
  a strength of 1.5 (44.7 dB) it read 0.5x + JPEG q75 and 0.33x exactly on every image but 0.33x + WebP q75 on
  none; at 2.2, 7 of 12; at 3.05, 12 of 12. Hence the energy it gets next to the tile
  (:data:`atelier.provenance.watermark.TILE_SHARE`).

Reading it back: :mod:`.qim_detect`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from atelier.provenance.watermark.payload import (
    CODED_BITS,
    GENERATORS,
    KEY,
    PAYLOAD_BITS,
    K,
    conv_encode,
    encode_payload,
)
from atelier.provenance.watermark.pixels import box, luma, resample

CANON = 64  # short side of the canonical frame (px)
HOP = 16  # MLT hop; each window spans 2 * HOP pixels and overlaps its neighbours by half
FREQS = 4  # k = 0..3 on each axis: (k + 1/2) / 32 cycles/pixel = 0.016-0.109
PERIOD = 8  # the slot layout repeats every 8 windows along an axis (long images)
# Perceptual weighting (see embed): windows whose fine detail has less RMS than ACTIVITY levels move their
# coefficients alpha = activity / ACTIVITY of the way to the lattice, at least ALPHA_LO.
ACTIVITY = 6.0
ACTIVITY_SIDE = 256
ALPHA_LO = 0.5
PASSES = 6  # most re-quantisation passes (see _apply), on images of at most MANY_PASSES_PIXELS
MANY_PASSES_PIXELS = 512 * 512
PASS_TOLERANCE = 0.02

@dataclass(frozen=True)
class _Basis:
    phi: np.ndarray  # (K, 2N) the MLT basis vectors of one window (orthonormal with the neighbours')
    pu: np.ndarray  # (P,) frequency index along y of each coefficient class
    pv: np.ndarray  # (P,) along x
    f2: np.ndarray  # (P,) squared frequency (cycles/pixel)^2
    dither: np.ndarray  # (P,) key-dependent lattice offset, in steps
    slot: np.ndarray  # (T, T, P) the coded bit each class of a window carries (window index mod T)
    dc_free: np.ndarray  # classes with k >= 1 on both axes: small values, a coarse scale grid does


@lru_cache(maxsize=1)
def basis() -> _Basis:
    n, k = np.arange(2 * HOP), np.arange(FREQS)
    window = np.sin(np.pi * (n + 0.5) / (2 * HOP))  # the MLT's sine window: smooth, ~0 at both ends
    phi = np.sqrt(2 / HOP) * window * np.cos(np.pi / HOP * (n + 0.5 + HOP / 2) * (k[:, None] + 0.5))
    pu, pv = (a.ravel() for a in np.meshgrid(k, k, indexing="ij"))
    freq = (k + 0.5) / (2 * HOP)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(KEY + b"-qim").digest()[:8], "big"))
    dither = rng.uniform(0.0, 1.0, len(pu))
    # Coded bits in order of need: the first two generators (a rate-1/2 code on their own) before the third,
    # each shuffled in trellis time so that one bad window hits scattered bits. Windows are filled ring by
    # ring from the top-left, so a 3x3-window frame carries 144 distinct coded bits.
    steps, n_gen = PAYLOAD_BITS + K - 1, len(GENERATORS)
    first = np.array([n_gen * t + g for t in range(steps) for g in range(2)])
    rest = np.array([n_gen * t + g for t in range(steps) for g in range(2, n_gen)])
    order = np.concatenate([rng.permutation(first), rng.permutation(rest)])
    blocks = sorted(((by, bx) for by in range(PERIOD) for bx in range(PERIOD)), key=lambda b: (max(b), b))
    slot = np.empty((PERIOD, PERIOD, len(pu)), dtype=np.int64)
    for i, (by, bx) in enumerate(blocks):
        slot[by, bx, rng.permutation(len(pu))] = order[(i * len(pu) + np.arange(len(pu))) % len(order)]
    dc_free = np.flatnonzero((pu >= 1) & (pv >= 1))
    return _Basis(phi, pu, pv, freq[pu] ** 2 + freq[pv] ** 2, dither, slot, dc_free)


# ---------------------------------------------------------------------------------------------- the frame
def frame_shape(h: float, w: float, kappa: float) -> tuple[int, int]:
    """(frame height, width) of an h x w image seen at ``kappa`` frame pixels per image pixel; a last partial
    frame pixel counts (a crop by 10% of 64 px leaves 57.6 frame pixels, where the last window still fits)."""
    return max(1, int(np.ceil(h * kappa - 0.05))), max(1, int(np.ceil(w * kappa - 0.05)))


def to_frame(y: np.ndarray, kappa: float, origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The luminance ``y`` (H, W) resampled to the frame (antialiased bicubic; the same factor on both axes),
    starting ``origin`` image pixels in: (h, w) float64. Past the last image pixel, the edge is repeated."""
    if kappa == 1.0 and origin == (0.0, 0.0):
        return y.astype(np.float64)
    fh, fw = frame_shape(y.shape[0] - origin[0], y.shape[1] - origin[1], kappa)
    box_ = (origin[1], origin[0], origin[1] + fw / kappa, origin[0] + fh / kappa)
    pad = int(np.ceil(max(box_[2] - y.shape[1], box_[3] - y.shape[0], 0.0))) + 1
    return resample(np.pad(y, ((0, pad), (0, pad)), mode="edge"), (fw, fh), box_).astype(np.float64)


def from_frame(d: np.ndarray, shape: tuple[int, int], kappa: float) -> np.ndarray:
    """A frame-sized change (h, w) brought to the image's pixels (H, W): float32, bicubic (it is smooth), the
    inverse of :func:`to_frame`'s mapping (Pillow's separable resize: 6x faster than its affine transform)."""
    if kappa == 1.0:
        return d.astype(np.float32)
    h, w = shape
    padded = np.pad(d, ((0, 1), (0, 1)), mode="edge")  # the image may end a fraction of a frame pixel further
    return resample(padded, (w, h), (0.0, 0.0, w * kappa, h * kappa))


def windows(length: int) -> int:
    return (length - 2 * HOP) // HOP + 1


def ref_step(strength: float) -> float:
    """The step that spends ``strength`` RMS on one window per hop^2 pixels (dithered QIM: step^2 / 12 per
    coefficient); a frame with fewer windows per pixel gets a larger step (:func:`embed`)."""
    return float(np.sqrt(12.0 * strength**2 * HOP**2 / len(basis().pu)))


def coefs(y: np.ndarray) -> np.ndarray:
    """(P, H - 2N + 1, W - 2N + 1): the used coefficients of the window starting at every pixel."""
    from numpy.lib.stride_tricks import sliding_window_view

    q = basis()
    span = 2 * HOP
    a = np.einsum("ki,hwi->khw", q.phi, sliding_window_view(y, span, axis=0))
    return np.einsum("lj,khwj->klhw", q.phi, sliding_window_view(a, span, axis=2))[q.pu, q.pv]


def grid_coefs(y: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """(P, ny, nx): the used coefficients of the windows at multiples of the hop."""
    q = basis()
    span = 2 * HOP
    rows = np.stack([y[i * HOP:i * HOP + span] for i in range(ny)])  # (ny, 2N, W)
    a = np.einsum("ki,aiw->kaw", q.phi, rows)
    cols = np.stack([a[:, :, j * HOP:j * HOP + span] for j in range(nx)], axis=2)  # (K, ny, nx, 2N)
    return np.einsum("lj,kabj->klab", q.phi, cols)[q.pu, q.pv]


def synth(dc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of coefficient changes ``dc`` (P, ny, nx) on the windows at multiples of the hop."""
    q = basis()
    _, ny, nx = dc.shape
    full = np.zeros((FREQS, FREQS, ny, nx))
    full[q.pu, q.pv] = dc
    pix = np.einsum("ki,klab,lj->aibj", q.phi, full, q.phi)  # (ny, 2N, nx, 2N)
    out = np.zeros(shape)
    span = 2 * HOP
    for a in range(2):  # windows of one parity do not overlap: one reshaped add each
        for b in range(2):
            part = pix[a::2, :, b::2, :]
            rows, cols = part.shape[0] * span, part.shape[2] * span
            out[a * HOP:a * HOP + rows, b * HOP:b * HOP + cols] += part.reshape(rows, cols)
    return out


def slots(ny: int, nx: int, first: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(P, ny, nx): the coded bit each class of each window carries, the first window being ``first`` of
    the layout."""
    rows = (np.arange(ny)[:, None] + first[0]) % PERIOD
    cols = (np.arange(nx)[None, :] + first[1]) % PERIOD
    return basis().slot[rows, cols].transpose(2, 0, 1)


def coded_soft(soft: np.ndarray, first: tuple[int, int]) -> np.ndarray:
    """Soft values of the coded bits: each window class's soft value (P, ny, nx) added to its slot's bit."""
    return np.bincount(slots(soft.shape[1], soft.shape[2], first).ravel(), weights=soft.ravel(), minlength=CODED_BITS)


# ---------------------------------------------------------------------------------------------------- embed
def activity(y: np.ndarray, kappa: float, ny: int, nx: int) -> np.ndarray:
    """(ny, nx): RMS (levels) of the picture's fine detail under each window of the frame: texture, which hides
    the layer's smooth change; a clear sky or a flat background has about 0.5 (8-bit rounding).

    Measured on the picture seen at :data:`ACTIVITY_SIDE` px (never enlarged), so that it does not depend on the
    resolution: a 1024 px enlargement of a 256 px photo has a quarter of its detail per pixel, not less texture."""
    k = min(1.0, ACTIVITY_SIDE * kappa / CANON)
    small = to_frame(y, k)
    hp = small - box(small, 2)
    energy = to_frame(hp * hp, kappa / k)  # mean detail energy per frame pixel
    span = 2 * HOP
    c = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    r0, c0 = np.arange(ny)[:, None] * HOP, np.arange(nx)[None, :] * HOP
    total = c[r0 + span, c0 + span] - c[r0, c0 + span] - c[r0 + span, c0] + c[r0, c0]
    return np.sqrt(np.maximum(total, 0.0) / span**2)


def embed(base: np.ndarray, id32: int, strength: float, weight: np.ndarray | None = None,
          kappa: float | None = None) -> np.ndarray:
    """Dithered QIM in the canonical frame of ``base`` (float or uint8 (H, W[, C]), possibly already carrying
    the tile's float change): the marked image, rounded to uint8. ``weight`` (H, W) scales the change per pixel
    (the tile's mask); the passes of :func:`_apply` then ask more of the other pixels of each window.

    Windows over flat regions (:func:`activity` under :data:`ACTIVITY`) move their coefficients only part of the
    way to the lattice (distortion-compensated QIM, Chen & Wornell 2001, with ``alpha`` down to
    :data:`ALPHA_LO`), and the layer's energy shrinks with them: on a clear sky its smooth change shows as faint
    blotches, which texture hides. The detector is unchanged; those windows just read less surely.

    ``kappa`` (frame pixels per image pixel) defaults to the canonical frame's; 1.0 writes the frame at the
    image's own scale (see :func:`atelier.provenance.watermark.embed`)."""
    h, w = base.shape[:2]
    kappa = CANON / min(h, w) if kappa is None else kappa
    fh, fw = frame_shape(h, w, kappa)
    ny, nx = windows(fh), windows(fw)
    coded = conv_encode(encode_payload(id32))
    bits = coded[slots(ny, nx)]
    base = base.astype(np.float32)
    alpha = np.clip(activity(luma(base), kappa, ny, nx) / ACTIVITY, ALPHA_LO, 1.0)
    strength = strength * float(np.sqrt(np.mean(alpha**2)))
    step = ref_step(strength) * np.sqrt(fh * fw / (ny * nx * HOP**2))
    # The change is step^2 / 12 per coefficient only on average (few coefficients, clipping, and which lattice
    # point is nearest changes with the step): rescale the step until the RMS change is within 7% under to 2%
    # over ``strength``; the detector's scale search absorbs the difference.
    tried: list[tuple[float, np.ndarray]] = []
    for attempt in range(6):
        out = _apply(base, bits, step, kappa, weight, alpha)
        rms = float(np.sqrt(np.mean(np.square(out - base, dtype=np.float32))))
        tried.append((rms, out))
        if rms == 0.0 or 0.93 * strength <= rms <= 1.02 * strength:
            break
        step *= strength / rms * (0.97 if attempt >= 2 else 1.0)  # damped when it keeps missing
    fits = [t for t in tried if t[0] <= 1.02 * strength]
    rms, out = max(fits, key=lambda t: t[0]) if fits else min(tried, key=lambda t: t[0])
    return out.astype(np.uint8)


def _apply(base: np.ndarray, bits: np.ndarray, step: float, kappa: float, weight: np.ndarray | None,
           alpha: np.ndarray) -> np.ndarray:
    """The marked image (float, rounded and clipped). Later passes re-quantise what rounding, clipping (black or
    white areas) and the frame's resampling moved off the target (the lattice, or ``alpha`` of the way to it),
    until the coefficients are on average within :data:`PASS_TOLERANCE` of a step of it: two or three passes on
    a photo; on an MNIST grid, whose black background clips half of every change, the error shrinks slowly, and
    small images get up to :data:`PASSES` (3 passes: 12 of 20 grids found unattacked, 6: 20 of 20), large ones
    3 (each pass resamples the whole image twice)."""
    q = basis()
    _, ny, nx = bits.shape
    offset = (q.dither[:, None, None] + 0.5 * bits) * step
    fshape = frame_shape(base.shape[0], base.shape[1], kappa)
    delta = np.zeros(fshape)
    out, target = base, None
    passes = PASSES if base.shape[0] * base.shape[1] <= MANY_PASSES_PIXELS else 3
    for _ in range(passes):
        c = grid_coefs(to_frame(luma(out), kappa), ny, nx)
        if target is None:
            target = c + alpha * (np.round((c - offset) / step) * step + offset - c)
        elif np.abs(target - c).mean() < PASS_TOLERANCE * step:
            break
        delta += synth(target - c, fshape)
        pix = from_frame(delta, base.shape[:2], kappa)
        pix = pix if weight is None else pix * weight
        out = np.clip(np.rint(base + (pix[:, :, None] if base.ndim == 3 else pix)), 0, 255)
    return out
