"""Real images into a generator's latent space (projection) and directions to move them along.

:mod:`~atelier.inversion.project` finds the latent of an image (StyleGAN2's projector for a mapping network, a
prior-regularised z search otherwise) under the no-download distance of :mod:`~atelier.inversion.distance`;
:mod:`~atelier.inversion.directions` finds latent directions (SeFa, GANSpace's PCA, class means). The workflows that
read runs and write files are in :mod:`atelier.api.project`.
"""

from atelier.inversion.directions import METHODS, Directions, combine, find_directions, move
from atelier.inversion.distance import FEATURES, ProjectionDistance, choose_features, psnr, ssim
from atelier.inversion.path_length import path_length
from atelier.inversion.project import SPACES, Projection, has_mapping, project_batch, project_latent, render

__all__ = ["FEATURES", "METHODS", "SPACES", "Directions", "Projection", "ProjectionDistance", "choose_features",
           "combine", "find_directions", "has_mapping", "move", "path_length", "project_batch", "project_latent",
           "psnr", "render", "ssim"]
