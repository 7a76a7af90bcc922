"""The watermark's payload and its channel code, shared by every method.

48 bits = a 32-bit hash of the model/run id + CRC-16/CCITT-FALSE, coded with the standard rate-1/3,
constraint-length-7 convolutional code (generators 133/171/165 octal, the CCSDS/3GPP ones), terminated with
K-1 zero bits, and decoded with soft-decision Viterbi (Viterbi 1967). A watermark is *detected* only when
the CRC matches: each CRC test on an unmarked image passes with probability 2^-16.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

ID_BITS = 32
CRC_BITS = 16
PAYLOAD_BITS = ID_BITS + CRC_BITS
K = 7
GENERATORS = (0o133, 0o171, 0o165)
CODED_BITS = (PAYLOAD_BITS + K - 1) * len(GENERATORS)
KEY = b"atelier-watermark-v1"


def model_id_hash(model_id: str) -> int:
    """The 32-bit id carried in the watermark for a model/run id string."""
    return int.from_bytes(hashlib.blake2b(model_id.encode("utf-8"), digest_size=4).digest(), "big")


def crc16(value: int, nbits: int = ID_BITS) -> int:
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
    word = ((id32 & 0xFFFFFFFF) << CRC_BITS) | crc16(id32 & 0xFFFFFFFF)
    return np.array([(word >> i) & 1 for i in range(PAYLOAD_BITS - 1, -1, -1)], dtype=np.uint8)


def bits_to_int(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2)


def check_payload(bits: np.ndarray) -> int | None:
    """The 32-bit id of 48 decoded bits when their CRC-16 matches, else None."""
    word = bits_to_int(bits)
    id32, crc = word >> CRC_BITS, word & 0xFFFF
    return id32 if crc16(id32) == crc else None


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
    state, out = 0, list[int]()
    for b in list(bits) + [0] * (K - 1):
        reg = (int(b) << (K - 1)) | state
        out.extend(bin(reg & g).count("1") & 1 for g in GENERATORS)
        state = reg >> 1
    return np.array(out, dtype=np.uint8)


@lru_cache(maxsize=64)
def coded_symbols(id32: int) -> np.ndarray:
    """The coded bits of a payload as +-1 symbols (+1 for bit 0), read-only: (CODED_BITS,)."""
    out = 1.0 - 2.0 * conv_encode(encode_payload(id32 & 0xFFFFFFFF)).astype(np.float64)
    out.setflags(write=False)
    return out


def viterbi_decode(soft: np.ndarray, n_bits: int = PAYLOAD_BITS) -> np.ndarray:
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


def agreement(soft: np.ndarray, bits: np.ndarray) -> float:
    """Cosine between the soft coded values and the codeword of ``bits`` re-encoded, over the coded bits that
    have a value: near 1 for a watermark read well, far lower for the best path through noise. A second test
    besides the CRC (see :data:`atelier.provenance.watermark.MIN_AGREEMENT`)."""
    sym = 1.0 - 2.0 * conv_encode(bits).astype(np.float64)
    used = soft != 0
    norm = float(np.sqrt(np.sum(soft[used] ** 2) * np.count_nonzero(used)))
    return float(np.dot(sym[used], soft[used]) / norm) if norm > 0 else 0.0
