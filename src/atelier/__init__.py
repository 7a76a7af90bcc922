"""atelier: train, sample, evaluate and label image generators.

The public Python API (the CLI and the server are thin shells over it)::

    import atelier
    g = atelier.load("runs/mnist-dcgan")
    images = g.sample(16, seed=0)          # uint8 tensor (N, C, H, W)
    pils = g.sample(16, seed=0, pil=True)  # list of PIL images

    result = atelier.stylize("photo.jpg", "starry_night.jpg", size=256)   # Gatys et al. optimisation
    result.image.save("out.png")
    wave = atelier.load("runs/wave")                                        # a train-style run folder
    wave("photo.jpg").save("wave.png")
"""

from __future__ import annotations

from atelier.api import Generator, Translator, load, train
from atelier.errors import AtelierError
from atelier.style.gatys import stylize
from atelier.version import __version__

__all__ = ["AtelierError", "Generator", "Translator", "__version__", "load", "stylize", "train"]
