"""The pix2pix task: a conditional GAN step on pairs (Isola et al. 2017).

    phase D   fake = G(x); D sees (x, y) as real and (x, fake) as fake, each in its own forward (D has
              BatchNorm, so real and fake are not mixed in one batch); D's loss is halved, as in the paper,
              to slow D relative to G
    phase G   gan_weight * BCE(D(x, fake) -> 1) + l1_weight * |fake - y|

With ``gan_weight: 0`` D is not trained at all and G is the L1-only U-Net of the paper's ablation.
"""

from __future__ import annotations

import torch

from atelier.config import RunConfig
from atelier.data.paired import load_paired
from atelier.errors import ConfigError
from atelier.images import make_grid
from atelier.losses import get_loss
from atelier.models import get as get_model
from atelier.tasks.common import loader
from atelier.training.task import Context, Grid, Task

__all__ = ["Pix2PixTask"]


class Pix2PixTask(Task):
    grid_title = "Held-out examples: input | output | target"

    def __init__(self, cfg: RunConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        d, m = cfg.data, cfg.model
        if d.paired is None:
            raise ConfigError("pix2pix trains on paired images: set data.paired to side_by_side or folders")
        self.dataset = load_paired(d.source, d.paired, d.direction, d.channels, d.load_size or d.resolution, d.limit)
        self.data = loader(ctx, self.dataset, crop=d.resolution)
        params = dict(m)
        spec = get_model(params.pop("name"))
        nets = spec.build(spec.parse(params), d.resolution, d.channels)
        self.G, self.D = ctx.wrap(nets["G"]), ctx.wrap(nets["D"])
        self.networks = {"G": self.G, "D": self.D}
        betas = cfg.optim.betas
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.optim.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.optim.lr_d, betas=betas)
        self.optimizers = {"opt_g": self.opt_g, "opt_d": self.opt_d}
        self.loss = get_loss(cfg.loss.name)
        self.l1_weight, self.gan_weight = float(m["l1_weight"]), float(m["gan_weight"])
        # Fixed held-out pairs, shown as input | output | target in every progress grid.
        fixed = load_paired(d.eval_source or d.source, d.paired, d.direction, d.channels, d.resolution,
                            limit=min(cfg.log.grid, 8))
        self.fixed_pairs = (fixed.images.float() / 127.5 - 1).to(ctx.device)

    def step(self, batch: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        ctx, C = self.ctx, self.cfg.data.channels
        batch = ctx.to_device(batch)
        x, y = batch[:, :C], batch[:, C:]                                   # (B, C, H, W) each
        with ctx.autocast():
            fake = self.G(x)
        out: dict[str, float] = {}
        if self.gan_weight > 0:
            # ---- phase D: (x, y) -> real, (x, G(x)) -> fake ------------------------------------------
            self.D.requires_grad_(True)
            with ctx.autocast():
                real_logits = self.D(torch.cat([x, y], dim=1))              # (B, 1, h, w)
                fake_logits = self.D(torch.cat([x, fake.detach()], dim=1))
            d_terms = self.loss.d_loss(real_logits, fake_logits)
            ctx.optimize(0.5 * d_terms["loss"], self.opt_d)
            out.update(loss_d=d_terms["loss"].item(), d_real=float(d_terms["d_real"]), d_fake=float(d_terms["d_fake"]))
            # ---- phase G: fool the updated D while staying close to y -------------------------------
            self.D.requires_grad_(False)
            with ctx.autocast():
                g_adv = self.loss.g_loss(self.D(torch.cat([x, fake], dim=1)))["loss"]
        else:
            g_adv = torch.zeros((), device=ctx.device)
        l1 = (fake.float() - y).abs().mean()
        loss_g = self.gan_weight * g_adv + self.l1_weight * l1
        ctx.optimize(loss_g, self.opt_g)
        out.update(loss_g=loss_g.item(), g_adv=g_adv.item(), l1=l1.item())
        return out

    @torch.no_grad()
    def grid(self) -> Grid:
        C = self.cfg.data.channels
        x, y = self.fixed_pairs[:, :C], self.fixed_pairs[:, C:]
        was_training = self.G.training
        self.G.eval()
        fake = self.G(x).float()
        self.G.train(was_training)
        rows = torch.stack([x, fake, y], dim=1).flatten(0, 1)               # input | output | target rows
        return Grid(make_grid(rows, nrow=3, pad=4), {"generator": "G", "layout": "input|output|target"})

    def describe(self, metrics: dict[str, float]) -> list[str]:
        c = self.cfg
        objective = (f"{c.loss.name} adversarial x {self.gan_weight:g} + L1 x {self.l1_weight:g}" if self.gan_weight
                     else f"L1 x {self.l1_weight:g} only (no discriminator)")
        return ["- Inference uses G (in eval mode: dropout off, batch-norm running statistics)",
                f"- Loss: {objective}; Adam lr G {c.optim.lr_g:g}, D {c.optim.lr_d:g}, betas {list(c.optim.betas)}"]

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"l1": f"{metrics.get('l1', 0.0):.3f}", "g": f"{metrics.get('loss_g', 0.0):.2f}"}
