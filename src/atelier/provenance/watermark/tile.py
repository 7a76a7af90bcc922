"""The tiled spread-spectrum pattern: payload and synchronisation template from 128 px.

After Kutter's self-referencing watermark (Kutter 1998) and the tiled template of Pereira & Pun (2000):

* **One 64x64 tile, repeated over the whole image.** Its 2D spectrum has energy only on DFT bins in a band of
  0.16-0.25 cycles/pixel: inside the DCT coefficients JPEG q75 keeps, and where a picture's own energy, which
  falls with frequency, competes least (against a 0.04-0.22 band this moved 128 px images from 87% to 98% mean
  bit accuracy over issue 7's attacks). Bins near the axes are skipped: a picture's edges leak most there.
* **Synchronisation for free.** Folding the image modulo 64 (summing all tile copies) adds the copies of the
  watermark coherently and the picture incoherently; a crop only shifts the tile cyclically, which is a phase
  ramp on its spectrum. A known pseudo-random *sync* part of the spectrum is correlated against all 64x64
  cyclic shifts at once with one FFT; the peak gives the shift, and its z-score (against the picture's own
  spectrum, estimated from a fold with period 65 where the watermark does not add up) the confidence. A
  rescale or rotation that is not undone is found first by :mod:`.sync` (the tile's spectral peaks move with it).
* **Payload**: the coded bits (:mod:`.payload`) on the other bins, each spread over several coefficients.
* **Luminance only**, the same offset on R, G and B, so grayscale conversion keeps it and a brightness change
  only scales it; the detector is invariant to scale.
* **Luminance/contrast mask** (:func:`mask`): flat dark regions (MNIST backgrounds) get 0.2x the strength,
  where the pattern showed as faint sparkles (half of it clipped at 0). A mask moving energy *into* texture
  was measured and made small images fail more often (the detector weights texture little); informed
  embedding per coded bit did not help either (the detector's local normalisation mixes the bits).
* **Detector noise model**: pixels are weighted by 1 / local energy of the high-passed picture (5x5), and each
  bin by gain / picture power, estimated per bin (its neighbourhood in the period-65 fold, mixed with its ring's
  median) so that oriented textures, which load single bins, count less.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from atelier.provenance.watermark.payload import (
    CODED_BITS,
    KEY,
    PAYLOAD_BITS,
    check_payload,
    coded_symbols,
    viterbi_decode,
)
from atelier.provenance.watermark.pixels import box
from atelier.provenance.watermark.result import Detection

TILE = 64
BAND = (0.16, 0.25)  # band of the watermark spectrum in cycles/pixel (see the module docstring)
SYNC_BINS = 64  # complex bins given to the synchronisation pattern; the rest carry the coded payload
WHITEN_RADIUS = 2
# A sync peak is decoded (a CRC test) only from this z-score: the largest of 4096 shifts on an unmarked picture is
# about 3.5, and reaches 4.0 on about one picture in 8 (in theory: 4096 Gaussian z-scores), so an unmarked image
# gets fewer CRC tests than from the old detector, which tested 3 peaks whatever their z. At 4.5, a 50% crop of
# a 256 px painting was lost with every payload bit right (z 4.2).
MIN_Z = 4.0
# Detector: pixels are weighted by 1 / (local energy of the high-passed picture over a 5x5 window + this floor),
# so busy textures, where the picture drowns the watermark, count less than smooth regions (measured best: floor
# of 1-80, window 3x3 to 31x31).
DETECT_FLOOR = 5.0
NORM_RADIUS = 2
# Noise power per bin: this share from the bin's own neighbourhood (radius in bins), the rest from its ring.
LOCAL_NOISE_RADIUS = 2
LOCAL_NOISE_MIX = 0.7
# Perceptual mask (see mask): local RMS activity (levels) above which a region counts as textured, mean
# luminance below which it counts as dark, the strength kept on flat black, the most given back elsewhere.
MASK_ACTIVITY = 8.0
MASK_DARK = 48.0
MASK_LO, MASK_HI = 0.2, 1.6
MASK_BOOST = 1.25


@dataclass(frozen=True)
class Layout:
    rows: np.ndarray  # (B,) DFT row index of each used complex bin (half plane)
    cols: np.ndarray
    sync: np.ndarray  # (Bs,) complex +-1+-1j values of the sync bins (the first Bs bins)
    dof_bit: np.ndarray  # (2*(B-Bs),) which coded bit each real degree of freedom of a data bin carries
    dof_sign: np.ndarray  # (2*(B-Bs),) +-1 scrambling


@lru_cache(maxsize=1)
def layout() -> Layout:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(KEY).digest()[:8], "big"))
    f = np.fft.fftfreq(TILE)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.hypot(fy, fx)
    iy, ix = np.meshgrid(np.arange(TILE), np.arange(TILE), indexing="ij")
    # One bin of each conjugate pair (fx > 0, or fx == 0 and fy > 0); skip bins near the axes, where the
    # picture's own edges (a non-periodic image) leak the most energy.
    half = (fx > 0) | ((fx == 0) & (fy > 0))
    usable = half & (radius >= BAND[0]) & (radius <= BAND[1]) & (fx != 0) & (fy != 0)
    idx = rng.permutation(np.flatnonzero(usable))
    rows, cols = iy.ravel()[idx], ix.ravel()[idx]
    sync = rng.choice([-1.0, 1.0], SYNC_BINS) + 1j * rng.choice([-1.0, 1.0], SYNC_BINS)
    n_dof = 2 * (len(idx) - SYNC_BINS)
    dof_bit = rng.permutation(np.arange(n_dof) % CODED_BITS)
    dof_sign = rng.choice([-1.0, 1.0], n_dof)
    return Layout(rows, cols, sync, dof_bit, dof_sign)


def frequencies() -> np.ndarray:
    """(B, 2): the (fy, fx) frequency in cycles/pixel of every used bin of the unscaled tile."""
    lay = layout()
    f = np.fft.fftfreq(TILE)
    return np.stack([f[lay.rows], f[lay.cols]], axis=1)


@lru_cache(maxsize=64)
def spectrum(id32: int) -> np.ndarray:
    """The complex values of every used bin of the tile of a payload (sync, then data): (B,)."""
    lay = layout()
    dof = coded_symbols(id32 & 0xFFFFFFFF)[lay.dof_bit] * lay.dof_sign
    out = np.concatenate([lay.sync, dof[0::2] + 1j * dof[1::2]])
    out.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def tile(id32: int) -> np.ndarray:
    """The 64x64 watermark tile for a payload, with unit RMS (float32, read-only)."""
    lay = layout()
    values = spectrum(id32)
    spec = np.zeros((TILE, TILE), dtype=np.complex128)
    spec[lay.rows, lay.cols] = values
    spec[(-lay.rows) % TILE, (-lay.cols) % TILE] = np.conj(values)
    out = np.fft.ifft2(spec).real
    out = (out / np.sqrt(np.mean(out**2))).astype(np.float32)
    out.setflags(write=False)
    return out


def mask(y: np.ndarray) -> np.ndarray:
    """Luminance/contrast mask: the strength per pixel, lower on flat dark regions where the pattern shows.

    On black backgrounds (MNIST grids) half of the pattern is clipped away and the rest shows as faint
    sparkles, while the detector gains little there; textured or bright regions hide it. A little of the
    energy taken away is given back elsewhere (at most ``MASK_BOOST``); on mostly dark images the rest is
    simply not spent.
    """
    if float(y.min()) >= MASK_DARK:  # nothing dark: the mask would be 1 everywhere
        return np.ones_like(y)
    hp = y - box(y, WHITEN_RADIUS)
    act = np.sqrt(np.maximum(box(hp * hp, 3), 0.0))
    flat = 1.0 - np.clip(act / MASK_ACTIVITY, 0.0, 1.0)
    dark = 1.0 - np.clip(box(y, 3) / MASK_DARK, 0.0, 1.0)
    m = 1.0 - (1.0 - MASK_LO) * flat * dark
    m = m * min(1.0 / float(np.sqrt(np.mean(m * m))), MASK_BOOST)
    return np.minimum(m, MASK_HI).astype(np.float32)


def tiled(id32: int, shape: tuple[int, int]) -> np.ndarray:
    """The tile repeated over an image of ``shape`` (H, W) from its top-left corner: unit RMS, float32."""
    h, w = shape
    return np.tile(tile(id32 & 0xFFFFFFFF), (-(-h // TILE), -(-w // TILE)))[:h, :w]


# ---------------------------------------------------------------------------------------------------- detect
def whiten(y: np.ndarray) -> np.ndarray:
    """High-pass (removes the picture's strongest, lowest frequencies) and local energy normalisation."""
    hp = y - box(y, WHITEN_RADIUS)
    hp = hp - hp.mean()
    return hp / (box(hp * hp, NORM_RADIUS) + DETECT_FLOOR)


def _fold_spectrum(hp: np.ndarray, period: int) -> np.ndarray:
    """DFT of the image summed modulo ``period`` (all tile copies added up)."""
    h, w = hp.shape
    ph, pw = -(-h // period) * period, -(-w // period) * period
    full = np.zeros((ph, pw), dtype=np.float32)
    full[:h, :w] = hp
    return np.fft.fft2(full.reshape(ph // period, period, pw // period, period).sum(axis=(0, 2)))


@lru_cache(maxsize=1)
def _highpass_gain() -> np.ndarray:
    """Frequency response of ``y - box(y, WHITEN_RADIUS)`` on the tile's DFT grid."""
    f = np.fft.fftfreq(TILE)
    n = 2 * WHITEN_RADIUS + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(f == 0, 1.0, np.sin(np.pi * f * n) / (n * np.sin(np.pi * f)))
    return 1.0 - s[:, None] * s[None, :]


def _ring_index(period: int) -> np.ndarray:
    f = np.fft.fftfreq(period)
    return np.rint(np.hypot(*np.meshgrid(f, f, indexing="ij")) * TILE).astype(int)


def _noise_power(hp: np.ndarray, lay: Layout) -> np.ndarray:
    """Noise (picture) power of each used bin, with no watermark in it.

    Folding with a period one pixel longer than the tile adds the watermark copies incoherently, so the
    median power of that spectrum at the same radius estimates the picture's power alone.
    """
    power = np.abs(_fold_spectrum(hp, TILE + 1)) ** 2
    ring = _ring_index(TILE + 1)
    med = np.array([np.median(power[ring == k]) if np.any(ring == k) else 1.0 for k in range(ring.max() + 1)])
    # The median of an exponential variable is ln 2 times its mean.
    ring_noise = med[_ring_index(TILE)[lay.rows, lay.cols]] / np.log(2)
    # Oriented textures (stripes, rows of windows) load single bins far above their ring's median: mix in
    # the 65-fold's power around each bin's own frequency (measured: 128 px from 99.0% to 99.9%).
    r = LOCAL_NOISE_RADIUS
    p65 = TILE + 1
    fy = np.rint(np.fft.fftfreq(TILE)[lay.rows] * p65).astype(int)
    fx = np.rint(np.fft.fftfreq(TILE)[lay.cols] * p65).astype(int)
    acc = np.zeros(len(lay.rows))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            acc += power[(fy + dy) % p65, (fx + dx) % p65]
    local = acc / (2 * r + 1) ** 2
    return np.maximum(LOCAL_NOISE_MIX * local + (1 - LOCAL_NOISE_MIX) * ring_noise, 1e-9)


@dataclass
class Front:
    values: np.ndarray  # matched-filtered spectrum values of the used bins
    weights: np.ndarray
    noise: np.ndarray


def front(hp: np.ndarray) -> Front:
    """The detector's front end on a whitened image: fold modulo the tile, matched-filter the used bins."""
    lay = layout()
    spec = _fold_spectrum(hp, TILE)
    noise = _noise_power(hp, lay)
    weights = _highpass_gain()[lay.rows, lay.cols] / noise
    return Front(spec[lay.rows, lay.cols] * weights, weights, noise)


def correlate(fr: Front, pattern: np.ndarray, bins: slice = slice(0, SYNC_BINS)) -> np.ndarray:
    """(64, 64) z-score of the correlation of the used ``bins`` with a known ``pattern``, for every cyclic shift
    of the tile (the sync bins by default; every bin when the payload is known)."""
    lay = layout()
    grid = np.zeros((TILE, TILE), dtype=np.complex128)
    grid[lay.rows[bins], lay.cols[bins]] = fr.values[bins] * np.conj(pattern)
    # Cropping by (dy, dx) multiplies bin k by exp(+2 pi i k.d / T); fft2 tries every d at once. Dividing by
    # the correlation's standard deviation on a picture without a watermark gives a z-score.
    return np.fft.fft2(grid).real / np.sqrt(np.sum(np.abs(pattern) ** 2 * fr.weights[bins] ** 2 * fr.noise[bins]))


def sync_scores(fr: Front) -> np.ndarray:
    """(64, 64) z-score of the sync pattern's correlation for every cyclic shift of the tile."""
    return correlate(fr, layout().sync)


def soft_at(fr: Front, shift: tuple[int, int]) -> np.ndarray:
    """Soft values of the coded bits (> 0: bit 0) with the tile shifted by ``shift``."""
    lay = layout()
    ns = SYNC_BINS
    dy, dx = shift
    phase = np.exp(-2j * np.pi * (lay.rows[ns:] * dy + lay.cols[ns:] * dx) / TILE)
    data = fr.values[ns:] * phase
    dof = np.empty(2 * len(data))
    dof[0::2], dof[1::2] = data.real, data.imag
    return np.bincount(lay.dof_bit, weights=dof * lay.dof_sign, minlength=CODED_BITS)


def decode(hp: np.ndarray, candidates: int = 3, min_z: float = MIN_Z) -> Detection:
    """Find the tile's shift in a whitened image at the tile's own scale (the best ``candidates`` sync peaks at
    or above ``min_z``), decode and check the CRC; the best attempt when none matches."""
    fr = front(hp)
    z = sync_scores(fr).ravel()
    best: Detection | None = None
    for flat in np.argsort(z)[::-1][:candidates]:
        shift = divmod(int(flat), TILE)
        if z[flat] < min_z and best is not None:
            break
        bits = viterbi_decode(soft_at(fr, shift), PAYLOAD_BITS)
        id32 = check_payload(bits) if z[flat] >= min_z else None
        found = Detection(id32 is not None, id32, float(z[flat]), shift, bits)
        if found.detected:
            return found
        best = best or found
    assert best is not None
    return best
