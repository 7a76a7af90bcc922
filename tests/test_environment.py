"""What the install promises: the pinned torch, and no torchvision (docs/dependencies.md).

Which torch *build* is installed (CPU or CUDA) depends on the index it came from and is the user's choice
(docs/getting-started.md), so it is not checked here: a CUDA install legitimately brings nvidia-* packages.
"""

from __future__ import annotations

from importlib import metadata

import torch


def test_no_torchvision():
    names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    assert "torchvision" not in names, "torchvision is installed; atelier must not come to depend on it"


def test_pinned_torch():
    # "2.13.0" from PyPI, "2.13.0+cpu" from PyTorch's CPU index: the same version.
    assert torch.__version__.split("+")[0] == "2.13.0"
