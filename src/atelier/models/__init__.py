"""Networks: one file per family, each with a config class and the networks built from it.

Every network is built the same way, ``Net(cfg, resolution=R, channels=C)``: ``cfg`` is the family's typed
config (the ``model:`` section of a run's config), and resolution and channels come from the data. Importing
this package registers every family's file (:mod:`atelier.models.registry` holds the registry itself).
"""

from __future__ import annotations

from atelier.models import (  # noqa: F401  (each registers itself)
    dcgan,
    diffusion,
    fast_style,
    pix2pix,
    resnet,
    segmenter,
    stylegan2,
    vae,
)
from atelier.models.registry import (
    ModelSpec,
    Network,
    build,
    get,
    load_pretrained,
    register,
    registered,
    save_pretrained,
)

__all__ = ["ModelSpec", "Network", "build", "get", "load_pretrained", "register", "registered", "save_pretrained"]
