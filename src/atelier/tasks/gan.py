"""The GAN task: explicit D and G phases, EMA of G, DiffAugment/ADA, penalties (WGAN-GP, lazy R1).

One step (images counted as the real images D sees):

    phase D   fake = G(z, y); logits = D(A([real, fake.detach()]), y); step D on d_loss + penalties
    phase G   every n_critic steps, D frozen: step G on g_loss(D(A(fake), y)); then EMA of G

``A`` is the augmentation (DiffAugment / ADA, identity when off), ``y`` the class labels of a conditional
model (real labels for reals, uniformly drawn ones for fakes). G runs forward once per step and its output
feeds both phases, as in pytorch/examples' DCGAN; the G phase sees the freshly updated D. Everything random
draws from the global torch generator, which the loop checkpoints with the data position and the
augmentation probability, so a resumed run continues bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch

from atelier import distributed
from atelier.config import RunConfig
from atelier.data.augment import Augment
from atelier.losses import get_loss, gradient_penalty, r1_penalty
from atelier.models import get as get_model
from atelier.tasks.common import EMAGeneratorViews, check_labels, loader, open_data
from atelier.training.ema import EMA
from atelier.training.task import Context, Task

__all__ = ["GANTask", "loss_text"]


def loss_text(cfg: RunConfig) -> str:
    lc = cfg.loss
    parts: list[str] = [lc.name]
    if lc.gp_weight:
        parts.append(f"gradient penalty {lc.gp_weight:g}")
    if lc.r1_gamma:
        parts.append(f"R1 gamma {lc.r1_gamma:g} every {lc.r1_every} steps")
    if lc.n_critic > 1:
        parts.append(f"{lc.n_critic} D steps per G step")
    return ", ".join(parts)


class GANTask(EMAGeneratorViews, Task):
    grid_title = "Samples (EMA generator, fixed latents)"

    def __init__(self, cfg: RunConfig, ctx: Context, dataset: Any = None) -> None:
        super().__init__(cfg, ctx)
        self.dataset = dataset if dataset is not None else open_data(cfg)
        self.data = loader(ctx, self.dataset)
        self.num_classes = int(cfg.model.get("num_classes", 0) or 0)
        check_labels(self.dataset, self.num_classes)
        params = dict(cfg.model)
        spec = get_model(params.pop("name"))
        nets = spec.build(spec.parse(params), cfg.data.resolution, cfg.data.channels)
        self.G, self.D = ctx.wrap(nets["G"]), ctx.wrap(nets["D"])
        self.networks = {"G": self.G, "D": self.D}
        self.ema = EMA(distributed.unwrap(self.G), cfg.train.ema_half_life_kimg, cfg.train.ema_rampup)
        self.emas = {"G": self.ema}
        betas = cfg.optim.betas
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.optim.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.optim.lr_d, betas=betas)
        self.optimizers = {"opt_g": self.opt_g, "opt_d": self.opt_d}
        self.loss = get_loss(cfg.loss.name)
        self.augment = Augment(cfg.augment, cfg.train.batch_size)
        self.z_dim = int(cfg.model["z_dim"])
        # The progress grids always show the same latents, so changes over time are the model's. A conditional
        # model's grid has one row per class (log.grid images each).
        g = torch.Generator().manual_seed(cfg.seed + 2_718_281)
        n = cfg.log.grid * (self.num_classes or cfg.log.grid)
        self.fixed_z = torch.randn(n, self.z_dim, generator=g).to(ctx.device)
        self.fixed_y = (torch.arange(self.num_classes).repeat_interleave(cfg.log.grid).to(ctx.device)
                        if self.num_classes else None)
        self._last_g = 0.0  # G's loss, from the last step that trained G (n_critic > 1)

    def step(self, real: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        ctx, lc = self.ctx, self.cfg.loss
        B = real.shape[0]
        real = ctx.to_device(real)
        z, y_fake = self.noise(B)
        y_real = y_both = None
        if self.num_classes:
            assert labels is not None and y_fake is not None
            y_real = labels.to(ctx.device)
            y_both = torch.cat([y_real, y_fake])
        g_step = ctx.step % lc.n_critic == 0

        # ---- phase D: push D(real) up and D(G(z)) down ----------------------------------------------
        self.D.requires_grad_(True)
        with ctx.autocast(), torch.set_grad_enabled(g_step):
            fake = self._g(z, y_fake)                                 # (B, C, H, W)
        with ctx.autocast():
            # One D forward over real and fake together: D has no batch statistics, so this is the same maths
            # as two calls, in one larger (faster) convolution.
            both = self.augment(torch.cat([real, fake.detach()]))    # (2B, C, H, W)
            if lc.class_weight:  # and the projection's class scores (2B, K), from the same forward pass
                logits, scores = self.D(both, y_both, scores=True)
            else:
                logits = self._d(both, y_both)                        # (2B, 1)
        d_terms = self.loss.d_loss(logits[:B], logits[B:])
        d_total = d_terms["loss"]
        if lc.class_weight:  # D learns the classes from the real images' labels (atelier.models.layers)
            assert y_real is not None  # loss.class_weight needs a conditional model (checked with the config)
            cls = torch.nn.functional.cross_entropy(scores[:B].float(), y_real)
            d_terms["cls"] = cls.detach()
            d_total = d_total + lc.class_weight * cls
        if lc.gp_weight:
            gp = gradient_penalty(lambda x: self._d(x, y_real), both[:B], both[B:])
            d_terms["gp"] = gp.detach()
            d_total = d_total + lc.gp_weight * gp
        if lc.r1_gamma and (ctx.step - 1) % lc.r1_every == 0:
            r1 = r1_penalty(lambda x: self._d(x, y_real), both[:B])
            d_terms["r1"] = r1.detach()
            d_total = d_total + (lc.r1_gamma / 2) * lc.r1_every * r1   # lazy: k times the weight, every k steps
        self.augment.observe(logits[:B])
        ctx.optimize(d_total, self.opt_d)
        out = {"loss_d": d_terms["loss"].item()}
        out.update({k: float(v) for k, v in d_terms.items() if k != "loss"})

        # ---- phase G: push the updated D(G(z)) up, D frozen ------------------------------------------
        if g_step:
            self.D.requires_grad_(False)
            with ctx.autocast():
                fake_logits = self._d(self.augment(fake), y_fake)
            g_terms = self.loss.g_loss(fake_logits)
            ctx.optimize(g_terms["loss"], self.opt_g)
            self._last_g = g_terms["loss"].item()
            # G moved after n_critic global batches: the EMA's half-life counts those images.
            self.ema.update(self.G, ctx.global_batch * lc.n_critic, ctx.images_seen)
        out["loss_g"] = self._last_g
        out.update(self.augment.stats())
        return out

    # ------------------------------------------------------------------ state beyond networks and optimisers
    def extra_state(self) -> dict[str, Any]:
        return {"augment": self.augment.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "augment" in state:
            self.augment.load_state_dict(state["augment"])

    # ------------------------------------------------------------------ showing it
    def describe(self, metrics: dict[str, float]) -> list[str]:
        c = self.cfg
        lines = [f"- Sampling uses the EMA generator (half-life {c.train.ema_half_life_kimg:g} kimg)",
                 f"- Loss: {loss_text(c)}; Adam lr G {c.optim.lr_g:g}, D {c.optim.lr_d:g}, betas {list(c.optim.betas)}"]
        a = c.augment
        if self.augment.enabled:
            how = (f"adaptive p (ADA, target {a.ada_target:g}), final p {self.augment.p:.3f}"
                   if a.ada_target is not None else f"p {a.p:g}")
            lines.append(f"- Augmentation before D: DiffAugment {a.policy}, {how}")
        return lines

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"d": f"{metrics.get('loss_d', 0.0):.3f}", "g": f"{metrics.get('loss_g', 0.0):.3f}"}
