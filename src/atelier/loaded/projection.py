"""What :meth:`atelier.loaded.Generator.project` does: an image (a file, a PIL image or uint8 pixels) into the
generator's latent space, in memory. :func:`atelier.api.project` writes the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from atelier.errors import AtelierError
from atelier.images import fit_to_square, load_image, to_channels
from atelier.inversion import Projection, ProjectionDistance, choose_features, has_mapping, project_latent
from atelier.inversion.project import Space

__all__ = ["ImageInput", "project_image", "target_tensor"]

ImageInput = str | Path | Image.Image | np.ndarray


class _Generator(Protocol):
    """What a projection reads of :class:`atelier.loaded.Generator` (a protocol: the class imports this module)."""

    network: torch.nn.Module
    cfg: Any

    @property
    def num_classes(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def resolution(self) -> int: ...

    @property
    def device(self) -> torch.device: ...


def target_tensor(image: ImageInput, channels: int, resolution: int) -> torch.Tensor:
    """Any image as the generator's input size: (1, C, res, res) in [-1, 1]; resized on its short side and centre-
    cropped; transparency kept for an RGBA generator, composited over white for a grey or RGB one."""
    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise AtelierError(f"image not found: {image}")
        arr = load_image(image, channels=channels, resolution=resolution)
    elif isinstance(image, Image.Image):
        arr = np.asarray(fit_to_square(to_channels(image, channels), resolution), dtype=np.uint8)
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise AtelierError(f"image arrays must be uint8 (H, W) or (H, W, C), got {arr.dtype} {arr.shape}")
        pil = Image.fromarray(arr if arr.ndim == 2 or arr.shape[2] != 1 else arr[:, :, 0])
        arr = np.asarray(fit_to_square(to_channels(pil, channels), resolution), dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def project_image(g: _Generator, image: ImageInput, space: Space | None = None, steps: int = 500, *,
                  features: str = "auto", lr: float = 0.1, seed: int = 0, noise: bool = True,
                  label: int | None = None) -> Projection:
    """See :meth:`atelier.loaded.Generator.project`."""
    net = g.network
    space = space or ("w" if has_mapping(net) else "z")
    if label is not None and not (0 <= label < g.num_classes):
        raise AtelierError(f"class {label}: this model has " + (f"classes 0..{g.num_classes - 1}" if g.num_classes
                                                                 else "no classes (it is unconditional)"))
    target = target_tensor(image, g.channels, g.resolution).to(g.device)
    name = choose_features(features, g.cfg.data.source, g.channels, g.resolution)
    distance = ProjectionDistance(name, g.channels, g.resolution, device=g.device)
    return project_latent(net, target, distance, space, steps, lr, seed=seed, optimize_noise=noise, label=label,
                          num_classes=g.num_classes if space == "z" else 0)
