"""atelier: train, sample, evaluate and label image generators.

The public Python API (the CLI and the server are thin shells over it)::

    import atelier
    g = atelier.load("runs/mnist-dcgan")
    images = g.sample(16, seed=0)          # uint8 tensor (N, C, H, W)
    pils = g.sample(16, seed=0, pil=True)  # list of PIL images
"""

from __future__ import annotations

from atelier.api import Generator, Translator, load, train
from atelier.errors import AtelierError

__version__ = "0.1.0"

__all__ = ["AtelierError", "Generator", "Translator", "__version__", "load", "train"]
