"""Neural style transfer: optimisation (Gatys et al. 2016), feed-forward (Johnson et al. 2016), and the
feature networks they measure style with (VGG-19, or a weights-free random multi-scale network)."""

from __future__ import annotations

from atelier.style.features import RandomFeatures, VGG19Features, build_features
from atelier.style.gatys import PerceptualLoss, StylizeResult, stylize

__all__ = ["PerceptualLoss", "RandomFeatures", "StylizeResult", "VGG19Features", "build_features", "stylize"]
