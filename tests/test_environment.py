"""The install must stay CPU-only and torchvision-free (DESIGN.md: Choices and why)."""

from __future__ import annotations

from importlib import metadata

import torch


def test_no_torchvision_and_no_cuda_wheels():
    names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    assert "torchvision" not in names
    assert not sorted(n for n in names if n.startswith("nvidia-")), "a CUDA wheel was pulled in"


def test_pinned_torch():
    assert torch.__version__.split("+")[0] == "2.13.0"
