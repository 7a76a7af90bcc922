"""atelier: train, sample, edit, evaluate and label image generators.

Every workflow is a function of :mod:`atelier.api`, re-exported here (the CLI and the studio are thin shells
over the same functions)::

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

from atelier.openmp import set_wait_policy

set_wait_policy()  # first, before anything imports torch: its OpenMP runtime reads the wait policy once, on load

from atelier.api import *  # noqa: E402, F403  (the public API, listed in atelier.api.__all__)
from atelier.api import __all__ as _api  # noqa: E402
from atelier.errors import AtelierError  # noqa: E402
from atelier.version import __version__  # noqa: E402

__all__ = ["AtelierError", "__version__", *_api]
