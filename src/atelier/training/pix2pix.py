"""The pix2pix trainer: the GAN loop of :mod:`atelier.training.gan` with a conditional step.

One step on a batch of pairs (input x, target y), after Isola et al. 2017:

    phase D   fake = G(x); D sees (x, y) as real and (x, fake) as fake, each in its own forward
              (D has BatchNorm, so real and fake are not mixed in one batch); D's loss is halved,
              as in the paper, to slow D relative to G
    phase G   gan_weight * BCE(D(x, fake) -> 1) + l1_weight * |fake - y|

With ``gan_weight: 0`` D is not trained at all and G is the L1-only U-Net of the paper's ablation.
Checkpoints, exact resume, signals, logs and the model card are the GAN trainer's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from atelier.data import ImageDataset
from atelier.data.paired import load_paired
from atelier.device import autocast
from atelier.errors import ConfigError
from atelier.images import make_grid
from atelier.training.gan import GANTrainer
from atelier.training.logging import RunLogger

__all__ = ["Pix2PixTrainer"]


class Pix2PixTrainer(GANTrainer):
    uses_ema = False  # the paper samples from G itself; dropout and BN make an EMA of little use here
    grid_title = "Held-out examples: input | output | target"

    def _open_data(self) -> ImageDataset:
        d = self.cfg.data
        if d.paired is None:
            raise ConfigError("pix2pix trains on paired images: set data.paired to side_by_side or folders")
        return load_paired(d.source, d.paired, d.direction, d.channels, d.load_size or d.resolution, d.limit)

    def _crop_size(self) -> int | None:
        return self.cfg.data.resolution

    def _setup_samples(self) -> None:
        d, m = self.cfg.data, self.cfg.model
        self.l1_weight, self.gan_weight = float(m["l1_weight"]), float(m["gan_weight"])
        # Fixed held-out pairs, shown as input | output | target in every progress grid.
        fixed = load_paired(d.eval_source or d.source, d.paired, d.direction, d.channels, d.resolution,
                            limit=min(self.cfg.log.grid, 8))
        self.fixed_pairs = (fixed.images.float() / 127.5 - 1).to(self.device)

    def train_step(self, batch: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        C = self.cfg.data.channels
        B = batch.shape[0]
        batch = batch.to(self.device, non_blocking=True)
        if self.cfg.train.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        x, y = batch[:, :C], batch[:, C:]                                   # (B, C, H, W) each
        with autocast(self.device, self.precision):
            fake = self.G(x)
        out: dict[str, float] = {}

        if self.gan_weight > 0:
            # ---- phase D: (x, y) -> real, (x, G(x)) -> fake ------------------------------------------
            self.D.requires_grad_(True)
            with autocast(self.device, self.precision):
                real_logits = self.D(torch.cat([x, y], dim=1))              # (B, 1, h, w)
                fake_logits = self.D(torch.cat([x, fake.detach()], dim=1))
            d_terms = self.loss.d_loss(real_logits, fake_logits)
            self._optimize(0.5 * d_terms["loss"], self.opt_d)
            out.update(loss_d=d_terms["loss"].item(), d_real=float(d_terms["d_real"]),
                       d_fake=float(d_terms["d_fake"]))
            # ---- phase G: fool the updated D while staying close to y -------------------------------
            self.D.requires_grad_(False)
            with autocast(self.device, self.precision):
                g_adv = self.loss.g_loss(self.D(torch.cat([x, fake], dim=1)))["loss"]
        else:
            g_adv = torch.zeros((), device=self.device)
            out["loss_d"] = 0.0
        l1 = (fake.float() - y).abs().mean()
        loss_g = self.gan_weight * g_adv + self.l1_weight * l1
        self._optimize(loss_g, self.opt_g)

        self.step += 1
        self._count_images(B)
        out.update(loss_g=loss_g.item(), g_adv=g_adv.item(), l1=l1.item())
        return out

    @torch.no_grad()
    def write_grid(self, logger: RunLogger | None = None) -> Path:
        C = self.cfg.data.channels
        x, y = self.fixed_pairs[:, :C], self.fixed_pairs[:, C:]
        was_training = self.G.training
        self.G.eval()
        fake = self.G(x).float()
        self.G.train(was_training)
        rows = torch.stack([x, fake, y], dim=1).flatten(0, 1)               # input | output | target rows
        return self._save_grid(make_grid(rows, nrow=3, pad=4), logger, generator="G", layout="input|output|target")
