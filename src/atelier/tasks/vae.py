"""The VAE task: one ELBO step per batch (Kingma & Welling 2014; beta from Higgins et al. 2017).

    mu, logvar = encoder(x); z = mu + exp(logvar / 2) * eps; logits = decoder(z)
    loss = mean_B [ -log p(x|z) + beta * KL(q(z|x) || N(0, I)) ]      one backward, both networks step

The decoder has optimiser ``opt_decoder`` (lr ``optim.lr_g``: it is the run's generator) and the encoder
``opt_encoder`` (lr ``optim.lr_d``); Adam is per-parameter, so two Adams with one lr are one Adam over both.
metrics.jsonl gets the ELBO terms (nats per image). Progress grids show held-out images and their
reconstructions in row pairs, then samples of the decoder from fixed latents.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from atelier.config import AugmentConfig, LossConfig, RunConfig
from atelier.data import open_data as read_data
from atelier.data import parse_spec
from atelier.errors import ConfigError
from atelier.images import make_grid
from atelier.latent import generate, latents
from atelier.models import get as get_model
from atelier.models.vae import elbo_terms
from atelier.tasks.common import grid_scale, loader, open_data
from atelier.training.task import Context, Grid, Task

__all__ = ["VAETask"]


class VAETask(Task):
    grid_title = "Held-out test images and their reconstructions (row pairs), then samples from fixed latents"

    def __init__(self, cfg: RunConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        # The loss and augment sections configure a GAN's discriminator; say so rather than ignore them.
        changed = [f"{section}.{k}" for section, default in (("loss", LossConfig()), ("augment", AugmentConfig()))
                   for k, v in getattr(cfg, section).model_dump().items() if v != getattr(default, k)]
        if changed:
            raise ConfigError(f"a VAE trains on the ELBO, with no discriminator: {', '.join(changed)} does not apply "
                              "(leave the loss and augment sections out; set model.beta / model.likelihood)")
        self.dataset = open_data(cfg)
        self.data = loader(ctx, self.dataset)
        params = dict(cfg.model)
        spec = get_model(params.pop("name"))
        nets = spec.build(spec.parse(params), cfg.data.resolution, cfg.data.channels)
        self.decoder, self.encoder = ctx.wrap(nets["decoder"]), ctx.wrap(nets["encoder"])
        self.networks = {"decoder": self.decoder, "encoder": self.encoder}
        o = cfg.optim
        self.opt_decoder = torch.optim.Adam(self.decoder.parameters(), lr=o.lr_g, betas=o.betas)
        self.opt_encoder = torch.optim.Adam(self.encoder.parameters(), lr=o.lr_d, betas=o.betas)
        self.optimizers = {"opt_decoder": self.opt_decoder, "opt_encoder": self.opt_encoder}
        self.z_dim = int(cfg.model["z_dim"])
        self._setup_grid()

    def beta(self) -> float:
        """The KL weight now: model.beta, ramped up linearly over model.beta_warmup_kimg."""
        m = self.cfg.model
        warmup = float(m["beta_warmup_kimg"]) * 1000
        ramp = min(1.0, self.ctx.images_seen / warmup) if warmup > 0 else 1.0
        return float(m["beta"]) * ramp

    def step(self, real: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        real = self.ctx.to_device(real)
        beta = self.beta()
        with self.ctx.autocast():
            # (the networks may be DDP-wrapped; elbo_terms only calls them)
            terms = elbo_terms(self.encoder, self.decoder, real, beta,  # type: ignore[arg-type]
                               sigma=float(self.cfg.model["sigma"]))
        self.ctx.optimize(terms["loss"], self.opt_decoder, self.opt_encoder)
        return {"loss": terms["loss"].item(), "recon": float(terms["recon"]), "kl": float(terms["kl"]),
                "beta": beta, "elbo": float(terms["elbo"])}

    # ------------------------------------------------------------------ showing it
    def _setup_grid(self) -> None:
        cfg = self.cfg
        n = cfg.log.grid
        # Grid rows: pairs of (held-out images, their reconstructions), then rows of samples.
        self.pair_rows = max(1, n // 4)
        sample_rows = max(1, n - 2 * self.pair_rows)
        g = torch.Generator().manual_seed(cfg.seed + 2_718_281)
        self.fixed_z = torch.randn(sample_rows * n, self.z_dim, generator=g).to(self.ctx.device)
        d = cfg.data
        held_out = d.eval_source
        if held_out is None and parse_spec(d.source)[1] is not None:
            held_out = f"{parse_spec(d.source)[0]}:test"  # mnist -> mnist:test
        k = self.pair_rows * n
        if held_out is not None:
            images = read_data(d, source=held_out, limit=k).images
        else:  # no held-out split: the first training images
            assert self.dataset is not None
            images = self.dataset.images[:k]
        self.fixed_real = (images.float() / 127.5 - 1).to(self.ctx.device)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the decoder's mean at the posterior mean, in [-1, 1]."""
        mu, _ = self.encoder(images)
        return self.decoder(mu).float()

    @torch.no_grad()
    def grid(self) -> Grid:
        n = self.cfg.log.grid
        real = self.fixed_real
        recon = self.reconstruct(real)
        rows = []
        for i in range(self.pair_rows):
            rows += [real[i * n : (i + 1) * n], recon[i * n : (i + 1) * n]]
        images = torch.cat(rows + [self.decoder(self.fixed_z).float()])
        return Grid(make_grid(images, nrow=n, scale=grid_scale(self.cfg.data.resolution)),
                    {"generator": "decoder", "layout": "held-out|reconstruction row pairs, then samples"})

    def sampler(self) -> Callable[[int, int], torch.Tensor]:
        return lambda n, seed: generate(self.decoder, latents(self.z_dim, n, seed))

    def describe(self, metrics: dict[str, float]) -> list[str]:
        m, o, nan = self.cfg.model, self.cfg.optim, float("nan")
        warm = f", warmed up over {m['beta_warmup_kimg']:g} kimg" if m["beta_warmup_kimg"] else ""
        return ["- Sampling uses the decoder on latents drawn from N(0, I)",
                f"- Loss: negative ELBO with beta {m['beta']:g}{warm} ({m['likelihood']} likelihood); "
                f"Adam lr decoder {o.lr_g:g}, encoder {o.lr_d:g}, betas {list(o.betas)}",
                f"- Last ELBO {metrics.get('elbo', nan):.2f} nats/image (reconstruction "
                f"{metrics.get('recon', nan):.2f}, KL {metrics.get('kl', nan):.2f})"]

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"elbo": f"{metrics.get('elbo', 0.0):.1f}", "kl": f"{metrics.get('kl', 0.0):.1f}"}
