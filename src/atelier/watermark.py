"""A blind, crop-tolerant invisible watermark for atelier's images (numpy only).

Why this method
---------------
The issue asks for a payload that survives JPEG q75, a 0.5x resize and back, a 10% crop from any edge,
grayscale conversion and +-10% brightness on images from 64x64 to 2048x2048, decoded blind. The usual
DWT-DCT watermark (``invisible-watermark`` 0.2.0, which pulls OpenCV) embeds per block at fixed positions;
measured on the benchmark photos it refuses images under 256 px, reaches only 34.7 dB (256 px) / 37.0 dB
(512 px), and any 10% crop, JPEG q75 or grayscale conversion leaves its 48 bits at chance (~50%). So atelier uses a
*periodic spread-spectrum* watermark, after Kutter's self-referencing watermark (Kutter 1998) and the
tiled-template idea of Pereira & Pun (2000):

* **One 64x64 tile, repeated over the whole image.** Its 2D spectrum has energy only on DFT bins in a
  band of 0.16-0.25 cycles/pixel: just below a 0.5x downscale's cutoff (0.25) and inside the DCT
  coefficients JPEG q75 keeps. A picture's own energy falls with frequency, so the upper end of what the
  attacks leave is where the pattern competes least with the picture: measured against the first band
  (0.04-0.22), this moved 128 px images from 87% to 98% mean bit accuracy over all attacks.
* **Synchronisation for free.** Folding the image modulo 64 (summing all tile copies) adds the copies of
  the watermark coherently and the picture incoherently; a crop only shifts the tile cyclically, which is a
  phase ramp on its spectrum. A known pseudo-random *sync* part of the spectrum is correlated against all
  64x64 cyclic shifts at once with one FFT; the peak gives the shift, and its z-score (against the
  picture's own spectrum, estimated from a fold with period 65 where the watermark does not add up) is
  the reported confidence.
* **Payload**: 48 bits = a 32-bit hash of the model/run id + CRC-16, coded with the standard rate-1/3,
  constraint-length-7 convolutional code (generators 133/171/165 octal) and decoded with soft-decision
  Viterbi; each coded bit is spread over several spectrum coefficients. A watermark is *detected* only
  when the CRC matches, which bounds the false-positive rate at a few in 10^5 per image in theory
  (measured in ``benchmarks/watermark_robustness.py``).
* **Luminance only**, the same offset on R, G and B, so grayscale conversion keeps it and a brightness
  change only scales it; the detector is invariant to scale. Strength: RMS 3.05 levels (PSNR ~38.5 dB).
* **Luminance/contrast mask** (:func:`_mask`): flat dark regions (MNIST backgrounds) get 0.2x the
  strength, where the pattern showed as faint sparkles (half of it clipped at 0); textured or bright regions
  keep it. A mask that moves energy *into* texture was measured and made small images fail more often: the
  detector weights pixels by 1 / local energy of the high-passed picture, so texture counts little there.
  Informed embedding (measuring the picture's interference per coded bit and giving each bit the amplitude
  it needs) was also tried and did not help: the detector's local normalisation mixes the bits.
* **Detector noise model**: pixels are weighted by 1 / local energy of the high-passed picture (5x5), and
  each bin by gain / picture power, estimated per bin (its neighbourhood in the period-65 fold, mixed with
  its ring's median) so that oriented textures, which load single bins, count less.
* **Size limit, measured** (``benchmarks/watermark_robustness.py``, 20 images, all attacks of the issue):
  from 128 px every attack decodes with >= 98% mean bit accuracy and from 192 px every image decodes
  exactly; at 96 px it is 85-93% and at 64 px 61-78%: a 38.5 dB pattern on 4096 pixels is drowned by the
  picture's own mid-frequency energy (measured signal-to-noise per coded bit about -5 dB at 64 px against
  +2.7 dB at 128 px), more than fewer payload bits could buy back. So images of :data:`PRESENCE_SIZE`
  (64) to 127 px carry a **presence pattern** instead: every bin holds known values, no payload, and the
  detector reports "made by atelier" (no model id) when its correlation z-score passes a threshold set on
  clean images (false positives 0 of 2,736; detected after every attack at 80-112 px, 95-100% at 64 px).
  Under 64 px even that is unreliable (forced onto 28x28 images it is found 5-40% of the time, at 48 px
  75-85%): metadata only.

Embedding is deterministic (same pixels + same payload -> same output): a cached tile, one ``np.tile``,
the mask and an add; the mask is skipped on images without dark pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "ATTACKS",
    "MIN_SIZE",
    "PRESENCE_SIZE",
    "Detection",
    "detect",
    "embed",
    "encode_payload",
    "model_id_hash",
    "psnr",
]

TILE = 64
# Band of the watermark spectrum in cycles/pixel (see the module docstring).
BAND = (0.16, 0.25)
SYNC_BINS = 64  # complex bins given to the synchronisation pattern; the rest carry the coded payload
ID_BITS = 32
CRC_BITS = 16
PAYLOAD_BITS = ID_BITS + CRC_BITS
# Rate-1/3, K=7 convolutional code (the CCSDS/3GPP generators), terminated with K-1 zero bits.
K = 7
GENERATORS = (0o133, 0o171, 0o165)
# Default strength: RMS of the added luminance pattern in 8-bit levels (PSNR = 20 log10(255 / rms)).
STRENGTH = 3.05
# Smallest side the payload is written on. Measured with benchmarks/watermark_robustness.py: from 128 px
# every attack of the issue decodes with >= 98% mean bit accuracy; at 96 px 85-93%, at 64 px 61-78%.
MIN_SIZE = 128
# From this side up to MIN_SIZE images carry a payload-free "presence" pattern: it says "made by atelier"
# without the model id; detected when its correlation z-score reaches PRESENCE_Z (set on clean images for
# a false-positive rate under 1%: on 740 clean images the best of all shifts reached 4.6, of the shifts
# along an axis 3.9, with no shift 2.5); smaller images get metadata only.
PRESENCE_SIZE = 64
PRESENCE_Z = 5.0
PRESENCE_Z_AXES = 4.2  # the 127 shifts along an axis
PRESENCE_Z_ORIGIN = 3.5  # no shift
KEY = b"atelier-watermark-v1"
WHITEN_RADIUS = 2
# Detector: pixels are weighted by 1 / (local energy of the high-passed picture over a 5x5 window + this
# floor), so busy textures, where the picture drowns the watermark, count less than smooth regions
# (measured best: floor of 1-80, window 3x3 to 31x31).
DETECT_FLOOR = 5.0
NORM_RADIUS = 2
# Noise power per bin: this share from the bin's own neighbourhood (radius in bins), the rest from its ring.
LOCAL_NOISE_RADIUS = 2
LOCAL_NOISE_MIX = 0.7
# Perceptual mask (see _mask): local RMS activity (levels) above which a region counts as textured, mean
# luminance below which it counts as dark, the strength kept on flat black, the most given back elsewhere.
MASK_ACTIVITY = 8.0
MASK_DARK = 48.0
MASK_LO, MASK_HI = 0.2, 1.6
MASK_BOOST = 1.25


# ---------------------------------------------------------------------------------------------- payload
def model_id_hash(model_id: str) -> int:
    """The 32-bit id carried in the watermark for a model/run id string."""
    return int.from_bytes(hashlib.blake2b(model_id.encode("utf-8"), digest_size=4).digest(), "big")


def _crc16(value: int, nbits: int = ID_BITS) -> int:
    """CRC-16/CCITT-FALSE of an ``nbits`` integer (big-endian bits)."""
    crc = 0xFFFF
    for i in range(nbits - 1, -1, -1):
        bit = (value >> i) & 1
        top = (crc >> 15) & 1
        crc = (crc << 1) & 0xFFFF
        if top ^ bit:
            crc ^= 0x1021
    return crc


def encode_payload(id32: int) -> np.ndarray:
    """32-bit id -> 48 payload bits (id then CRC-16), as a uint8 array of 0/1."""
    word = ((id32 & 0xFFFFFFFF) << CRC_BITS) | _crc16(id32 & 0xFFFFFFFF)
    return np.array([(word >> i) & 1 for i in range(PAYLOAD_BITS - 1, -1, -1)], dtype=np.uint8)


def _bits_to_int(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2)


def _check_payload(bits: np.ndarray) -> int | None:
    word = _bits_to_int(bits)
    id32, crc = word >> CRC_BITS, word & 0xFFFF
    return id32 if _crc16(id32) == crc else None


# ------------------------------------------------------------------------------------ convolutional code
@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each next state: its two predecessor states, the input bit, and the 3 output symbols per branch."""
    n_states = 1 << (K - 1)
    ns = np.arange(n_states)
    bit = ns >> (K - 2)
    prev = np.stack([((ns & (n_states // 2 - 1)) << 1) | x for x in (0, 1)], axis=1)  # (S, 2)
    reg = (bit[:, None] << (K - 1)) | prev  # (S, 2) 7-bit registers
    outs = np.stack([np.vectorize(lambda r, g=g: bin(int(r) & g).count("1") & 1)(reg) for g in GENERATORS], -1)
    return prev, bit, 1.0 - 2.0 * outs  # symbols +1 for bit 0, -1 for bit 1: (S, 2, 3)


def conv_encode(bits: np.ndarray) -> np.ndarray:
    state, out = 0, []
    for b in list(bits) + [0] * (K - 1):
        reg = (int(b) << (K - 1)) | state
        out.extend(bin(reg & g).count("1") & 1 for g in GENERATORS)
        state = reg >> 1
    return np.array(out, dtype=np.uint8)


def viterbi_decode(soft: np.ndarray, n_bits: int) -> np.ndarray:
    """Soft-decision Viterbi: ``soft`` > 0 means coded bit 0; returns the ``n_bits`` decoded bits."""
    prev, bit, sym = _trellis()
    n_states = prev.shape[0]
    steps = n_bits + K - 1
    y = soft[: steps * 3].reshape(steps, 3)
    metric = np.full(n_states, -np.inf)
    metric[0] = 0.0
    choice = np.zeros((steps, n_states), dtype=np.int8)
    for t in range(steps):
        cand = metric[prev] + sym @ y[t]  # (S, 2)
        choice[t] = np.argmax(cand, axis=1)
        metric = cand[np.arange(n_states), choice[t]]
    state, out = 0, []  # terminated code: the path ends in state 0
    for t in range(steps - 1, -1, -1):
        out.append(bit[state])
        state = prev[state, choice[t, state]]
    return np.array(out[::-1][:n_bits], dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class _Layout:
    rows: np.ndarray  # (B,) DFT row index of each used complex bin (half plane)
    cols: np.ndarray
    sync: np.ndarray  # (Bs,) complex +-1+-1j values of the sync bins (the first Bs bins)
    dof_bit: np.ndarray  # (2*(B-Bs),) which coded bit each real degree of freedom of a data bin carries
    dof_sign: np.ndarray  # (2*(B-Bs),) +-1 scrambling


@lru_cache(maxsize=1)
def _layout() -> _Layout:
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
    n_coded = (PAYLOAD_BITS + K - 1) * len(GENERATORS)
    n_dof = 2 * (len(idx) - SYNC_BINS)
    dof_bit = rng.permutation(np.arange(n_dof) % n_coded)
    dof_sign = rng.choice([-1.0, 1.0], n_dof)
    return _Layout(rows, cols, sync, dof_bit, dof_sign)


def _unit_tile(values: np.ndarray) -> np.ndarray:
    """The real 64x64 tile with ``values`` on the layout's bins (and their conjugates), unit RMS, float32."""
    lay = _layout()
    spec = np.zeros((TILE, TILE), dtype=np.complex128)
    spec[lay.rows, lay.cols] = values
    spec[(-lay.rows) % TILE, (-lay.cols) % TILE] = np.conj(values)
    tile = np.fft.ifft2(spec).real
    tile /= np.sqrt(np.mean(tile**2))
    tile = tile.astype(np.float32)
    tile.setflags(write=False)
    return tile


@lru_cache(maxsize=1)
def _presence_values() -> np.ndarray:
    """Known +-1+-1j values on every used bin: the payload-free pattern of images under MIN_SIZE."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(KEY + b"-presence").digest()[:8], "big"))
    n = len(_layout().rows)
    return rng.choice([-1.0, 1.0], n) + 1j * rng.choice([-1.0, 1.0], n)


@lru_cache(maxsize=1)
def _presence_tile() -> np.ndarray:
    return _unit_tile(_presence_values())


@lru_cache(maxsize=64)
def _tile(id32: int) -> np.ndarray:
    """The 64x64 watermark tile for a payload, with unit RMS (float32)."""
    lay = _layout()
    coded = 1.0 - 2.0 * conv_encode(encode_payload(id32)).astype(np.float64)  # +-1
    dof = coded[lay.dof_bit] * lay.dof_sign
    return _unit_tile(np.concatenate([lay.sync, dof[0::2] + 1j * dof[1::2]]))


# ------------------------------------------------------------------------------------------------ pixels
def _luma(arr: np.ndarray) -> np.ndarray:
    a = arr.astype(np.float32)
    if a.ndim == 2:
        return a
    if a.shape[2] == 1:
        return a[:, :, 0]
    return a[:, :, 0] * 0.299 + a[:, :, 1] * 0.587 + a[:, :, 2] * 0.114


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated (cumulative sums: O(pixels) for any r)."""
    p = np.pad(a, r + 1, mode="edge").astype(np.float64)
    c = p.cumsum(0).cumsum(1)
    n = 2 * r + 1
    s = c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n]
    return (s[: a.shape[0], : a.shape[1]] / (n * n)).astype(np.float32)


def _mask(y: np.ndarray) -> np.ndarray:
    """Luminance/contrast mask: the strength per pixel, lower on flat dark regions where the pattern shows.

    On black backgrounds (MNIST grids) half of the pattern is clipped away and the rest shows as faint
    sparkles, while the detector gains little there; textured or bright regions hide it. A little of the
    energy taken away is given back elsewhere (at most ``MASK_BOOST``); on mostly dark images the rest is
    simply not spent. Measured on the benchmark photos it changes no bit accuracy (few dark flat areas).
    """
    if float(y.min()) >= MASK_DARK:  # nothing dark: the mask would be 1 everywhere
        return np.ones_like(y)
    hp = y - _box(y, WHITEN_RADIUS)
    act = np.sqrt(np.maximum(_box(hp * hp, 3), 0.0))
    flat = 1.0 - np.clip(act / MASK_ACTIVITY, 0.0, 1.0)
    dark = 1.0 - np.clip(_box(y, 3) / MASK_DARK, 0.0, 1.0)
    m = 1.0 - (1.0 - MASK_LO) * flat * dark
    m = m * min(1.0 / float(np.sqrt(np.mean(m * m))), MASK_BOOST)
    return np.minimum(m, MASK_HI).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def embed(arr: np.ndarray, id32: int, strength: float = STRENGTH, *, min_size: int = MIN_SIZE,
          presence_size: int = PRESENCE_SIZE) -> np.ndarray:
    """Return a watermarked copy of a uint8 ``(H, W)`` or ``(H, W, C)`` image carrying ``id32``.

    Images with a side under ``min_size`` carry the payload-free presence pattern instead (from
    ``presence_size``), smaller ones are returned unchanged (metadata only); the benchmark lowers
    ``min_size`` to measure what the payload would do on smaller images.
    """
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    h, w = arr.shape[:2]
    if min(h, w) < min(min_size, presence_size):
        return arr
    tile = _tile(id32 & 0xFFFFFFFF) if min(h, w) >= min_size else _presence_tile()
    pattern = np.tile(tile, (-(-h // TILE), -(-w // TILE)))[:h, :w]
    delta = pattern * _mask(_luma(arr)) * strength
    if arr.ndim == 3:
        delta = delta[:, :, None]
    return np.clip(np.rint(arr.astype(np.float32) + delta), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ detect
@dataclass
class Detection:
    """What :func:`detect` found. ``detected``: the payload's CRC-16 matches, or (``kind == "presence"``,
    images under MIN_SIZE) the presence pattern's z-score passes its threshold; ``id32`` is None then."""

    detected: bool
    id32: int | None  # the decoded 32-bit model id hash (None unless detected)
    confidence: float  # z-score of the synchronisation peak (about 4 or less on unmarked images)
    shift: tuple[int, int]
    bits: np.ndarray  # the 48 decoded payload bits (also when the CRC fails)
    kind: str = "payload"  # "payload", or "presence": the payload-free pattern of an image under MIN_SIZE

    def to_dict(self) -> dict[str, object]:
        return {"detected": self.detected, "kind": self.kind,
                "payload": None if self.id32 is None else f"{self.id32:08x}",
                "confidence": round(self.confidence, 2), "shift": list(self.shift)}


def _whiten(y: np.ndarray) -> np.ndarray:
    hp = y - _box(y, WHITEN_RADIUS)  # removes the picture's strongest (lowest) frequencies
    hp = hp - hp.mean()
    return hp / (_box(hp * hp, NORM_RADIUS) + DETECT_FLOOR)



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


def _noise_power(hp: np.ndarray, lay: _Layout) -> np.ndarray:
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
class _Front:
    values: np.ndarray  # matched-filtered spectrum values of the used bins
    weights: np.ndarray
    noise: np.ndarray


def _front(arr: np.ndarray) -> _Front:
    """The detector's front end: whiten, fold modulo the tile, matched-filter the used bins."""
    lay = _layout()
    hp = _whiten(_luma(arr))
    spec = _fold_spectrum(hp, TILE)
    noise = _noise_power(hp, lay)
    weights = _highpass_gain()[lay.rows, lay.cols] / noise
    return _Front(spec[lay.rows, lay.cols] * weights, weights, noise)


def _soft_at(front: _Front, shift: tuple[int, int]) -> np.ndarray:
    """Soft values of the coded bits (> 0: bit 0) with the tile shifted by ``shift``."""
    lay = _layout()
    ns = SYNC_BINS
    dy, dx = shift
    phase = np.exp(-2j * np.pi * (lay.rows[ns:] * dy + lay.cols[ns:] * dx) / TILE)
    data = front.values[ns:] * phase
    dof = np.empty(2 * len(data))
    dof[0::2], dof[1::2] = data.real, data.imag
    return np.bincount(lay.dof_bit, weights=dof * lay.dof_sign, minlength=(PAYLOAD_BITS + K - 1) * len(GENERATORS))


def detect(arr: np.ndarray, candidates: int = 3) -> Detection:
    """Blind detection: find the tile shift from the sync pattern, then decode and check the payload."""
    lay = _layout()
    front = _front(arr)
    z = _correlate(front, lay.sync, slice(0, SYNC_BINS))
    order = np.argsort(z.ravel())[::-1][:candidates]
    best: Detection | None = None
    for flat in order:
        shift = divmod(int(flat), TILE)
        bits = viterbi_decode(_soft_at(front, shift), PAYLOAD_BITS)
        id32 = _check_payload(bits)
        found = Detection(id32 is not None, id32, float(z.ravel()[flat]), shift, bits)
        if found.detected:
            return found
        best = best or found
    assert best is not None
    if min(arr.shape[:2]) < MIN_SIZE:
        zp = _correlate(front, _presence_values(), slice(None))
        # Most edits keep the tile's origin (re-encoding, resizing back, a crop from the right or bottom) or
        # move it along one axis (a crop from the left or top): fewer shifts tested, so a lower threshold
        # holds the same false-positive rate as the best of all 4096 shifts.
        on_axes = np.zeros((TILE, TILE), dtype=bool)
        on_axes[0, :] = on_axes[:, 0] = True
        for where, threshold in ((zp[:1, :1], PRESENCE_Z_ORIGIN), (np.where(on_axes, zp, -np.inf), PRESENCE_Z_AXES),
                                 (zp, PRESENCE_Z)):
            flat = int(np.argmax(where))
            if where.ravel()[flat] >= threshold:
                shift = divmod(flat, TILE) if where.shape == zp.shape else (0, 0)
                return Detection(True, None, float(where.ravel()[flat]), shift, best.bits, "presence")
    return best


def _correlate(front: _Front, pattern: np.ndarray, bins: slice) -> np.ndarray:
    """z-score of the correlation of the used ``bins`` with a known ``pattern``, for every 64x64 shift."""
    lay = _layout()
    grid = np.zeros((TILE, TILE), dtype=np.complex128)
    grid[lay.rows[bins], lay.cols[bins]] = front.values[bins] * np.conj(pattern)
    # Cropping by (dy, dx) multiplies bin k by exp(+2 pi i k.d / T); fft2 tries every d at once. Dividing by
    # the correlation's standard deviation on a picture without a watermark gives a z-score.
    return np.fft.fft2(grid).real / np.sqrt(np.sum(front.weights[bins] ** 2 * front.noise[bins]))


# ------------------------------------------------------------------------------ the attacks of issue 7
# Shared by tests/test_watermark.py and benchmarks/watermark_robustness.py, so both measure the same thing.
def _jpeg(img, quality: int = 75):
    import io

    from PIL import Image

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as out:
        return out.convert(img.mode)


def _crop(img, edge: str):
    w, h = img.size
    cx, cy = round(0.1 * w), round(0.1 * h)
    return img.crop({"left": (cx, 0, w, h), "top": (0, cy, w, h), "right": (0, 0, w - cx, h),
                     "bottom": (0, 0, w, h - cy)}[edge])


def _resize_back(img):
    from PIL import Image

    half = img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC)
    return half.resize(img.size, Image.Resampling.BICUBIC)


def _brightness(img, factor: float):
    from PIL import ImageEnhance

    return ImageEnhance.Brightness(img).enhance(factor)


# name -> function of a PIL image returning the attacked PIL image
ATTACKS = {
    "none": lambda im: im,
    "jpeg q75": _jpeg,
    "resize 0.5x + back": _resize_back,
    "crop 10% left": lambda im: _crop(im, "left"),
    "crop 10% top": lambda im: _crop(im, "top"),
    "crop 10% right": lambda im: _crop(im, "right"),
    "crop 10% bottom": lambda im: _crop(im, "bottom"),
    "grayscale": lambda im: im.convert("L"),
    "brightness +10%": lambda im: _brightness(im, 1.1),
    "brightness -10%": lambda im: _brightness(im, 0.9),
}
