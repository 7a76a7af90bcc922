"""What several tasks share: reading the configured data, the seeded batch loader, grid scale, labels."""

from __future__ import annotations

from collections.abc import Callable

import torch

from atelier.config import RunConfig
from atelier.data import BatchLoader, ImageDataset
from atelier.data import open_data as read_data
from atelier.errors import DataError
from atelier.images import make_grid
from atelier.latent import balanced_labels, generate, latents
from atelier.training.ema import EMA
from atelier.training.task import Context, Grid

__all__ = ["EMAGeneratorViews", "check_labels", "grid_scale", "loader", "open_data"]


class EMAGeneratorViews:
    """The progress grid and the evaluation sampler of a GAN-type task, both drawn from its EMA generator:
    the grid from the task's fixed latents (and one row per class), the sampler from seeded latents with
    balanced labels."""

    cfg: RunConfig
    ctx: Context
    ema: EMA
    G: torch.nn.Module
    D: torch.nn.Module
    fixed_z: torch.Tensor
    fixed_y: torch.Tensor | None
    z_dim: int
    num_classes: int
    dataset: ImageDataset | None

    def noise(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This step's latents and, for a conditional model, the classes asked of G, from the global generator
        that the loop checkpoints. The classes follow the training data's class mix, as StyleGAN2-ADA draws
        each fake's label from a random training image: uniform classes would ask G for a folder's rarest class
        as often as for its largest, so D would see most of a rare class's images fake and most of a large
        class's real, and G would spend its steps unlike the mix it is sampled and scored with."""
        y = None
        if self.num_classes:
            labels = self.dataset.labels if self.dataset is not None else None
            assert labels is not None  # check_labels at construction
            y = labels[torch.randint(0, len(labels), (batch,))].to(self.ctx.device)
        return torch.randn(batch, self.z_dim, device=self.ctx.device), y

    def _g(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = self.G(z) if y is None else self.G(z, y)
        return out

    def _d(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = self.D(x) if y is None else self.D(x, y)
        return out

    @torch.no_grad()
    def grid(self) -> Grid:
        net = self.ema.model
        images = net(self.fixed_z) if self.fixed_y is None else net(self.fixed_z, self.fixed_y)
        return Grid(make_grid(images, nrow=self.cfg.log.grid, scale=grid_scale(self.cfg.data.resolution)),
                    {"generator": "ema"})

    def sampler(self) -> Callable[[int, int], torch.Tensor]:
        def sample(n: int, seed: int) -> torch.Tensor:
            return generate(self.ema.model, latents(self.z_dim, n, seed), balanced_labels(n, self.num_classes))

        return sample


def open_data(cfg: RunConfig) -> ImageDataset:
    """The training images, read with every option of the data section (channels, size, alpha, background)."""
    return read_data(cfg.data)


def loader(ctx: Context, dataset: ImageDataset, crop: int | None = None) -> BatchLoader:
    """The seeded loader of the global batch; under torchrun each rank takes its share."""
    cfg = ctx.cfg
    return BatchLoader(dataset, cfg.train.batch_size, seed=cfg.seed, hflip=cfg.data.hflip, crop=crop,
                       rank=ctx.world.rank, world_size=ctx.world.world_size)


def grid_scale(resolution: int) -> int:
    """Small images are enlarged in progress grids so that they can be seen."""
    return 3 if resolution <= 32 else (2 if resolution <= 64 else 1)


def check_labels(dataset: ImageDataset, num_classes: int) -> None:
    """A class-conditional model needs labels, and every label must be one of its classes."""
    if not num_classes:
        return
    labels = dataset.labels
    if labels is None:
        raise DataError(f"model.num_classes is {num_classes} but {dataset.name} has no labels; use a labelled "
                        "source (mnist, fashion-mnist, a folder per class, an .npz with labels) or set "
                        "model.num_classes: 0")
    top = int(labels.max())
    if top >= num_classes:
        raise DataError(f"{dataset.name} has labels up to {top}, but model.num_classes is {num_classes}; set "
                        f"model.num_classes: {top + 1}")
