"""OpenMP's wait policy, set before PyTorch loads its OpenMP runtime (imported first by ``atelier/__init__``).

This torch build runs its CPU kernels on GNU OpenMP (``torch.__config__.parallel_info()``: "ATen parallel
backend: OpenMP", ``torch/lib/libgomp.so.1``). libgomp reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT``
once, when the library is loaded, so they only take effect if they are in the environment before the
first ``import torch``: this module must not import torch, and nothing may import torch before it.

Why: by default a libgomp thread that reaches the end of a parallel region first spins for about
300,000 iterations (~3 ms) waiting for the others. On a machine where other processes are busy, the
thread it waits for is often descheduled, so the spinning thread burns the core the other one needs.
A DCGAN training step with 2 threads on 2 cores next to two busy processes ran 2-10x slower than with
one thread (issue 16). ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep at once; on a quiet
machine it costs little here, since a training step's parallel regions are long
(``benchmarks/busy_cpu.py`` measures both).
"""

from __future__ import annotations

import os
import sys

__all__ = ["WAIT_ENV", "set_wait_policy"]

# The variables a user may have set themselves; atelier leaves the policy alone if any of them is set.
WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def set_wait_policy(environ: dict[str, str] | None = None) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy or ``ATELIER_THREADS=off``.

    Returns the value set (None when nothing was changed). Does nothing once torch is imported (its
    runtime has read its settings), so the environment keeps saying what the process really runs with.
    """
    env = os.environ if environ is None else environ
    if env.get("ATELIER_THREADS", "").strip().lower() == "off" or any(k in env for k in WAIT_ENV):
        return None
    if environ is None and "torch" in sys.modules:
        return None  # too late for this process; leave the environment as the user had it
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"
