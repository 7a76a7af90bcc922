"""The diffusion task: one denoising-regression step per batch, an EMA of the denoiser, samples for grids and FID.

    t ~ U, eps ~ N(0, I); x_t = a_t x0 + s_t eps (or (1 - t) x0 + t eps for flow matching)
    loss = || unet(x_t, t, y') - target ||^2,   target = eps | v | eps - x0  (model.prediction)
    y' = y, or the null class with probability model.label_dropout (classifier-free guidance)

(Ho et al. 2020; Salimans & Ho 2022; Liu et al. / Lipman et al. 2023; Ho & Salimans 2022; the maths is
:func:`atelier.diffusion.training_loss`.) The optimiser is Adam at ``optim.lr_g`` with ``optim.betas``; the
EMA of the denoiser (``train.ema_half_life_kimg``) is what grids, FID, ``atelier sample`` and the exports
use: raw weights of a diffusion model sample far worse. Every random draw (timesteps, noise, label dropout)
comes from the global generator, which the loop checkpoints with the data position, so a resumed run
continues bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from atelier import distributed
from atelier.config import AugmentConfig, LossConfig, RunConfig
from atelier.diffusion import sample, training_loss
from atelier.errors import ConfigError
from atelier.images import make_grid
from atelier.latent import balanced_labels, to_uint8
from atelier.models import get as get_model
from atelier.models.diffusion import DiffusionConfig
from atelier.tasks.common import check_labels, grid_scale, loader, open_data
from atelier.training.ema import EMA
from atelier.training.task import Context, Grid, Task

__all__ = ["DiffusionTask"]


class DiffusionTask(Task):
    grid_title = "Samples (EMA denoiser, fixed noise)"

    def __init__(self, cfg: RunConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        # The loss and augment sections configure a GAN's discriminator; say so rather than ignore them.
        changed = [f"{section}.{k}" for section, default in (("loss", LossConfig()), ("augment", AugmentConfig()))
                   for k, v in getattr(cfg, section).model_dump().items() if v != getattr(default, k)]
        if changed:
            raise ConfigError(f"a diffusion model has no discriminator: {', '.join(changed)} does not apply (leave "
                              "the loss and augment sections out; the objective is model.prediction)")
        self.dataset = open_data(cfg)
        self.data = loader(ctx, self.dataset)
        params = dict(cfg.model)
        spec = get_model(params.pop("name"))
        self.mcfg: DiffusionConfig = spec.parse(params)  # type: ignore[assignment]
        check_labels(self.dataset, self.mcfg.num_classes)
        nets = spec.build(self.mcfg, cfg.data.resolution, cfg.data.channels)
        self.unet = ctx.wrap(nets["unet"])
        self.networks = {"unet": self.unet}
        self.ema = EMA(distributed.unwrap(self.unet), cfg.train.ema_half_life_kimg, cfg.train.ema_rampup)
        self.emas = {"unet": self.ema}
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas)
        self.optimizers = {"opt": self.opt}
        # The progress grids start from the same noise every time, so changes over time are the model's. A
        # class-conditional model's grid has one row per class (log.grid images each).
        k = self.mcfg.num_classes
        n = cfg.log.grid * (k or cfg.log.grid)
        g = torch.Generator().manual_seed(cfg.seed + 2_718_281)
        c, r = cfg.data.channels, cfg.data.resolution
        self.fixed_noise = torch.randn(n, c, r, r, generator=g)
        self.fixed_y = torch.arange(k).repeat_interleave(cfg.log.grid) if k else None

    def step(self, real: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        ctx = self.ctx
        x0 = ctx.to_device(real)
        y = labels.to(ctx.device) if labels is not None and self.mcfg.num_classes else None
        with ctx.autocast():
            loss = training_loss(self.unet, x0, y, self.mcfg)["loss"]
        ctx.optimize(loss, self.opt)
        self.ema.update(self.unet, ctx.global_batch, ctx.images_seen)
        return {"loss": loss.item()}

    # ------------------------------------------------------------------ showing it
    def _sample(self, n: int, noise: torch.Tensor, labels: torch.Tensor | None, seed: int) -> torch.Tensor:
        """uint8 (n, C, H, W) from the EMA denoiser with the config's sampler, steps and guidance."""
        m = self.mcfg
        out = []
        for i in range(0, n, 256):   # bounded memory for FID's thousands of samples
            y = labels[i:i + 256] if labels is not None else None
            x = sample(self.ema.model, m, min(256, n - i), sampler=m.sampler, steps=m.sample_steps, seed=seed + i,
                       labels=y, guidance=m.guidance if y is not None else None, noise=noise[i:i + 256])
            out.append(to_uint8(x))
        return torch.cat(out)

    @torch.no_grad()
    def grid(self) -> Grid:
        m = self.mcfg
        images = self._sample(len(self.fixed_noise), self.fixed_noise, self.fixed_y, seed=self.cfg.seed)
        return Grid(make_grid(images, nrow=self.cfg.log.grid, scale=grid_scale(self.cfg.data.resolution)),
                    {"generator": "ema", "sampler": m.sampler, "steps": m.sample_steps,
                     **({"guidance": m.guidance} if m.num_classes else {})})

    def sampler(self) -> Callable[[int, int], torch.Tensor]:
        c, r = self.cfg.data.channels, self.cfg.data.resolution

        def draw(n: int, seed: int) -> torch.Tensor:
            noise = torch.randn(n, c, r, r, generator=torch.Generator().manual_seed(seed))
            return self._sample(n, noise, balanced_labels(n, self.mcfg.num_classes), seed)

        return draw

    def describe(self, metrics: dict[str, float]) -> list[str]:
        m, c = self.mcfg, self.cfg
        what = {"epsilon": "the noise (epsilon-prediction)", "v_prediction": "the velocity v (v-prediction)",
                "flow": "the flow velocity eps - x0 (rectified flow / flow matching)"}[m.prediction]
        path = "straight noise path" if m.prediction == "flow" else f"{m.schedule} noise schedule"
        lines = [f"- Sampling uses the EMA denoiser (half-life {c.train.ema_half_life_kimg:g} kimg) with "
                 f"{m.sample_steps} {m.sampler} steps",
                 f"- Loss: mean squared error to {what}, {path}, {m.num_train_timesteps} training timesteps; Adam lr "
                 f"{c.optim.lr_g:g}, betas {list(c.optim.betas)}"]
        if m.num_classes:
            lines.append(f"- Class-conditional ({m.num_classes} classes), labels dropped to the null class with "
                         f"p {m.label_dropout:g} for classifier-free guidance; default guidance scale {m.guidance:g}")
        return lines
