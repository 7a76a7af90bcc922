"""The VAE trainer: the GAN loop of :mod:`atelier.training.gan` with one ELBO step.

One step on a batch x (Kingma & Welling 2014; beta from Higgins et al. 2017):

    mu, logvar = E(x); z = mu + exp(logvar / 2) * eps; logits = G(z)
    loss = mean_B [ -log p(x|z) + beta * KL(q(z|x) || N(0, I)) ]      one backward, E and G both step

The decoder G has its optimiser ``opt_g`` (lr ``optim.lr_g``) and the encoder, in the trainer's "D"
slot, has ``opt_d`` (lr ``optim.lr_d``); Adam is per-parameter, so two Adams with one lr are one Adam
over both networks. metrics.jsonl gets the ELBO terms (recon, kl, beta, elbo; nats per image).
Progress grids show held-out images and their reconstructions in row pairs, then samples of G from
fixed latents. Checkpoints, exact resume, signals and the model card are the GAN trainer's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from atelier.config import AugmentConfig, LossConfig, RunConfig
from atelier.data import ImageDataset, open_source, parse_spec
from atelier.device import autocast
from atelier.errors import ConfigError
from atelier.images import make_grid
from atelier.models.vae import elbo_terms
from atelier.training.gan import GANTrainer, _grid_scale
from atelier.training.logging import RunLogger

__all__ = ["VAETrainer"]


class _Joint:
    """Several optimisers stepped as one, for one loss that trains several networks."""

    def __init__(self, *opts: torch.optim.Optimizer) -> None:
        self.opts = opts

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.opts for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.opts:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.opts:
            opt.step()


class VAETrainer(GANTrainer):
    uses_ema = False  # the VAE is sampled from its decoder itself (atelier.load reads "G" for non-GAN kinds)
    grid_title = "Held-out test images and their reconstructions (row pairs), then samples from fixed latents"

    def __init__(self, cfg: RunConfig, run_dir: str | Path, dataset: ImageDataset | None = None,
                 progress: bool | None = None) -> None:
        # The loss and augment sections configure a GAN's discriminator; say so rather than ignore them.
        changed = [f"{section}.{k}" for section, default in (("loss", LossConfig()), ("augment", AugmentConfig()))
                   for k, v in getattr(cfg, section).model_dump().items() if v != getattr(default, k)]
        if changed:
            raise ConfigError(f"a VAE trains on the ELBO, with no discriminator: {', '.join(changed)} does not apply "
                              "(leave the loss and augment sections out; set model.beta / model.likelihood)")
        super().__init__(cfg, run_dir, dataset=dataset, progress=progress)

    @property
    def E(self) -> torch.nn.Module:
        """The encoder q(z|x) (kept in the GAN trainer's "D" slot, so checkpoints and resume are shared)."""
        return self.D

    def beta(self) -> float:
        """The KL weight now: model.beta, ramped up linearly over model.beta_warmup_kimg."""
        m = self.cfg.model
        warmup = float(m["beta_warmup_kimg"]) * 1000
        ramp = min(1.0, self.images_seen / warmup) if warmup > 0 else 1.0
        return float(m["beta"]) * ramp

    def describe_objective(self, metrics: dict[str, float]) -> tuple[str, str]:
        m, o, nan = self.cfg.model, self.cfg.optim, float("nan")
        warm = f", warmed up over {m['beta_warmup_kimg']:g} kimg" if m["beta_warmup_kimg"] else ""
        return (f"negative ELBO with beta {m['beta']:g}{warm} ({m['likelihood']} likelihood; encoder in slot D); "
                f"Adam lr decoder {o.lr_g:g}, encoder {o.lr_d:g}, betas {list(o.betas)}",
                f"ELBO {metrics.get('elbo', nan):.2f} nats/image (reconstruction {metrics.get('recon', nan):.2f}, "
                f"KL {metrics.get('kl', nan):.2f})")

    def _setup_samples(self) -> None:
        cfg = self.cfg
        self.z_dim = int(cfg.model["z_dim"])
        n = cfg.log.grid
        # Grid rows: pairs of (held-out images, their reconstructions), then rows of samples.
        self.pair_rows = max(1, n // 4)
        sample_rows = max(1, n - 2 * self.pair_rows)
        g = torch.Generator().manual_seed(cfg.seed + 2_718_281)
        self.fixed_z = torch.randn(sample_rows * n, self.z_dim, generator=g).to(self.device)
        d = cfg.data
        held_out = d.eval_source
        if held_out is None and parse_spec(d.source)[1] is not None:
            held_out = f"{parse_spec(d.source)[0]}:test"  # mnist -> mnist:test
        k = self.pair_rows * n
        if held_out is not None:
            images = open_source(held_out, channels=d.channels, resolution=d.resolution, limit=k).images
        else:  # no held-out split: the first training images
            images = self.dataset.images[:k]
        self.fixed_real = (images.float() / 127.5 - 1).to(self.device)

    def train_step(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        B = real.shape[0]
        real = real.to(self.device, non_blocking=True)
        if self.cfg.train.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        beta = self.beta()
        with autocast(self.device, self.precision):
            terms = elbo_terms(self.E, self.G, real, beta, sigma=float(self.cfg.model["sigma"]))
        self._optimize(terms["loss"], _Joint(self.opt_g, self.opt_d))  # type: ignore[arg-type]

        self.step += 1
        self._count_images(B)
        loss = terms["loss"].item()
        # loss_g / loss_d are the names the shared loop prints and plots; a VAE has no adversary.
        return {"loss_g": loss, "loss_d": 0.0, "recon": float(terms["recon"]), "kl": float(terms["kl"]),
                "beta": beta, "elbo": float(terms["elbo"])}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the decoder's mean at the posterior mean, in [-1, 1]."""
        mu, _ = self.E(images)
        return self.G(mu).float()

    @torch.no_grad()
    def write_grid(self, logger: RunLogger | None = None) -> Path:
        n = self.cfg.log.grid
        real = self.fixed_real
        recon = self.reconstruct(real)
        rows = []
        for i in range(self.pair_rows):
            rows += [real[i * n : (i + 1) * n], recon[i * n : (i + 1) * n]]
        images = torch.cat(rows + [self.G(self.fixed_z).float()])
        grid = make_grid(images, nrow=n, scale=_grid_scale(self.cfg.data.resolution))
        return self._save_grid(grid, logger, generator="G", layout="held-out|reconstruction row pairs, then samples")
