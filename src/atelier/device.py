"""Device and precision, handled once for every trainer and sampler."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from pathlib import Path

import torch

from atelier.errors import ConfigError

__all__ = ["autocast", "bf16_native", "check_precision", "make_scaler", "resolve_device", "tune_allocator"]

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision the device cannot train in, before any step runs."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision fp16 needs a CUDA device (training on {device.type}); "
                          "use bf16 on a CPU (--precision bf16)")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU and CUDA, fp16 on CUDA (weights and optimiser state stay fp32); a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    check_precision(device, precision)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 (its 5-bit exponent underflows small gradients); None otherwise.

    bf16 has fp32's exponent range and needs none. Make one per optimiser: each scaler's skip/back-off
    decision then concerns only the gradients of the network it steps (PyTorch AMP examples, "multiple
    models, losses and optimizers").
    """
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_allocator(on: bool = True) -> bool:
    """Keep freed blocks below 32 MB in glibc's heap instead of returning them to the kernel.

    With glibc's defaults every training step's large activations are mmap'ed and unmapped again, so the
    step pays fresh page faults each time; a 32 MB mmap threshold and a trim threshold that never shrinks
    the heap let the next step reuse the pages. MNIST DCGAN on the 2-core CPU: +8% to +65% images/s on a quiet
    machine (PERF.md lever 2, there set with GLIBC_TUNABLES); +4% median (0.91x to 1.99x) over 13 fresh-process
    pairs on a machine loaded by other jobs (benchmarks/train_speed.py --compare --allocator-pairs). A training
    process only grows its heap to its peak working set, which it reaches on the first step anyway.
    ``on=False`` restores glibc's initial thresholds. Returns False where there is no glibc (macOS, Windows,
    musl), where this is a no-op.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    mmap, trim = (32 << 20, 2**31 - 1) if on else (128 << 10, 128 << 10)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 convolutions are fast here: a GPU that supports them, or a CPU with AVX512-BF16 / AMX.
    (Elsewhere oneDNN emulates bf16 by conversion, which need not be faster than fp32.)"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: stay with fp32 unless asked
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
