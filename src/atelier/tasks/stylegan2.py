"""The StyleGAN2 task (Karras et al. 2020, arXiv:1912.04958): the non-saturating logistic loss, lazy R1 and lazy
path-length regularisation, style mixing, an EMA of G with its tracked w average, FreezeD and fine-tuning.

One step (images counted as the real images D sees):

    phase D   fake = G(z, y); step D on softplus(D(A(fake))) + softplus(-D(A(real)))
              every loss.r1_every steps: + r1_every * gamma / 2 * |grad D(A(real))|^2 (lazy R1)
    phase G   D frozen: step G on softplus(-D(A(fake))); then the EMA of G
              every model.pl_every steps: a second G step on pl_every * pl_weight * (|J_w^T u| - a)^2

Style mixing (``model.mixing_prob``) and the w average happen inside G's forward in training mode (see
:mod:`atelier.models.stylegan2`). A lazy regulariser's optimiser takes StyleGAN2's correction (paper appendix
B): with c = k / (k + 1), lr * c and betas ** c, so that the Adam moments mean what they would with the
regulariser applied every step.

Fine-tuning (``model.init_from``, written by ``atelier finetune``) starts G, D and the EMA from another run's
checkpoint; ``model.freeze_d: K`` keeps D's first K blocks (the fromRGB layer counts as the first) fixed:
FreezeD, Mo, Cho & Shin, "Freeze the Discriminator: a Simple Baseline for Fine-Tuning GANs", 2020
(arXiv:2002.10964), which with ADA/DiffAugment is the strong baseline for a few dozen images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from atelier import distributed
from atelier.checkpoint import CheckpointManager
from atelier.config import RunConfig
from atelier.data.augment import Augment
from atelier.data.recipe import CPU_MINUTES
from atelier.errors import ConfigError, RunError
from atelier.losses import get_loss, path_length_penalty, r1_penalty
from atelier.models import get as get_model
from atelier.models.stylegan2 import (
    StyleGAN2Config,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    cond_blend,
    set_cond_blend,
    transitional,
)
from atelier.provenance import weights_sha256
from atelier.tasks.common import EMAGeneratorViews, check_labels, loader, open_data
from atelier.training.ema import EMA
from atelier.training.task import Context, Task

__all__ = ["StyleGAN2Task", "frozen_d_modules", "lazy_adam", "recipe_defaults"]


def recipe_defaults(resolution: int, gpu: bool, batch: int | None = None, conditional: bool = False) -> dict[str, Any]:
    """The training settings of a StyleGAN2 recipe chosen from the data (``atelier train --data FOLDER``), as dotted
    config keys: StyleGAN2-ADA's small-data defaults (Adam 0.0025, betas 0 / 0.99; lazy R1 with its gamma formula
    0.0002 * res^2 / batch), batch 32 on a CPU and 64 on a GPU, path length on a GPU only (a second backward
    through G, which a CPU budget spends better on more steps). The widths come from the recipe's size table.
    ``batch``: the user's own batch size, which R1's gamma then follows. A ``conditional`` recipe starts
    unconditional and blends its classes in (transitional conditioning, Shahbazi et al. 2022): on a CPU from 20k
    to 60k images seen (on the emoji folder at 30 CPU-minutes, four seeds: FID 33.5, 52.2, 40.3 and 33.2, mean 39.8,
    against 44.9, 43.9, 69.9 and 39.7, mean 49.6, conditional from the first step); on a GPU from 1M to 2M
    images, the same share of its 5M-image budget (not measured)."""
    batch = batch or (64 if gpu else 32)
    out = {"model.name": "stylegan2", "model.pl_weight": 2.0 if gpu else 0.0, "loss.name": "nonsaturating",
           "loss.r1_gamma": round(0.0002 * resolution**2 / batch, 4), "loss.r1_every": 16, "optim.lr_g": 0.0025,
           "optim.lr_d": 0.0025, "optim.betas": [0.0, 0.99], "train.batch_size": batch, "train.steps": None,
           "train.minutes": None if gpu else CPU_MINUTES, "train.images": 5_000_000 if gpu else None,
           "train.ema_half_life_kimg": 10.0, "log.every": 20, "log.sample_every": 100 if not gpu else 1000,
           "log.checkpoint_every": 500 if not gpu else 2000}
    if conditional:
        out.update({"model.cond_start_kimg": 1000.0 if gpu else 20.0, "model.cond_ramp_kimg": 1000.0 if gpu else 40.0})
    return out


def frozen_d_modules(D: StyleGAN2Discriminator, k: int) -> list[nn.Module]:
    """D's first ``k`` blocks from the image side: fromRGB, then the residual blocks (FreezeD)."""
    blocks: list[nn.Module] = [D.from_rgb, *D.blocks]
    if k > len(blocks):
        raise ConfigError(f"model.freeze_d is {k} but this discriminator has {len(blocks)} blocks (fromRGB and "
                          f"{len(blocks) - 1} residual blocks) before its last layers")
    return blocks[:k]


def lazy_adam(params: Any, lr: float, betas: tuple[float, float], every: int) -> torch.optim.Adam:
    """Adam for a network with a lazy regulariser every ``every`` steps (StyleGAN2 appendix B)."""
    c = every / (every + 1) if every > 1 else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c))


class StyleGAN2Task(EMAGeneratorViews, Task):
    grid_title = "Samples (EMA generator, fixed latents)"

    def __init__(self, cfg: RunConfig, ctx: Context, dataset: Any = None) -> None:
        super().__init__(cfg, ctx)
        self.dataset = dataset if dataset is not None else open_data(cfg)
        self.data = loader(ctx, self.dataset)
        params = dict(cfg.model)
        spec = get_model(params.pop("name"))
        mc = spec.parse(params)
        assert isinstance(mc, StyleGAN2Config)
        self.mc, self.num_classes, self.z_dim = mc, mc.num_classes, mc.z_dim
        check_labels(self.dataset, self.num_classes)
        nets = spec.build(mc, cfg.data.resolution, cfg.data.channels)
        self.parent: dict[str, Any] | None = None
        parent_ema = self._init_from(nets, mc.init_from) if mc.init_from else None
        frozen = frozen_d_modules(nets["D"], mc.freeze_d)  # type: ignore[arg-type]
        for m in frozen:
            m.requires_grad_(False)
        self.G, self.D = ctx.wrap(nets["G"]), ctx.wrap(nets["D"])
        self.networks = {"G": self.G, "D": self.D}
        self.d_params = [p for p in self.D.parameters() if p.requires_grad]
        self.n_frozen = sum(p.numel() for m in frozen for p in m.parameters())
        self.ema = EMA(distributed.unwrap(self.G), cfg.train.ema_half_life_kimg, cfg.train.ema_rampup)
        if parent_ema is not None:
            self.ema.model.load_state_dict(parent_ema)
        self.emas = {"G": self.ema}
        lc, betas = cfg.loss, (cfg.optim.betas[0], cfg.optim.betas[1])
        self.opt_g = lazy_adam(self.G.parameters(), cfg.optim.lr_g, betas, mc.pl_every if mc.pl_weight else 1)
        self.opt_d = lazy_adam(self.d_params, cfg.optim.lr_d, betas, lc.r1_every if lc.r1_gamma else 1)
        self.optimizers = {"opt_g": self.opt_g, "opt_d": self.opt_d}
        self.loss = get_loss(lc.name)
        self.augment = Augment(cfg.augment, cfg.train.batch_size)
        self.pl_mean = torch.zeros((), device=ctx.device)
        g = torch.Generator().manual_seed(cfg.seed + 2_718_281)
        n = cfg.log.grid * (self.num_classes or cfg.log.grid)
        self.fixed_z = torch.randn(n, self.z_dim, generator=g).to(ctx.device)
        self.fixed_y = (torch.arange(self.num_classes).repeat_interleave(cfg.log.grid).to(ctx.device)
                        if self.num_classes else None)

    def _init_from(self, nets: dict[str, nn.Module], path_text: str) -> dict[str, torch.Tensor] | None:
        """Load G, D from a parent checkpoint; returns its EMA generator's state (G's when it has none)."""
        path = Path(path_text)
        if self.ctx.run.latest_checkpoint() is not None:
            # Resuming: the run's own checkpoint replaces every weight (and the parent may have been pruned).
            self.parent = {"checkpoint": str(path), "step": None, "sha256": None}
            return None
        if not path.is_file():
            raise RunError(f"model.init_from: {path} is not a checkpoint file (atelier finetune writes the parent "
                           "run's latest checkpoint there)")
        state = CheckpointManager.read(path)
        try:
            for slot, net in nets.items():
                net.load_state_dict(state[slot])
        except (KeyError, RuntimeError) as exc:
            raise RunError(f"model.init_from: {path} does not fit this model ({str(exc).splitlines()[0]}); "
                           "fine-tune with the parent's model section unchanged") from None
        self.parent = {"checkpoint": str(path), "step": int(state.get("step", 0)),
                       "sha256": weights_sha256(path)}
        return state.get("G_ema", state["G"])

    def _train_d(self, flag: bool) -> None:
        for p in self.d_params:  # the frozen blocks stay frozen
            p.requires_grad_(flag)

    def step(self, real: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        ctx, lc, mc = self.ctx, self.cfg.loss, self.mc
        B = real.shape[0]
        real = ctx.to_device(real)
        z, y_fake = self.noise(B)
        y_real = y_both = None
        if transitional(mc) and not mc.init_from:  # a fine-tune keeps its parent's blend (loaded with its weights)
            blend = cond_blend(mc, ctx.images_seen)
            set_cond_blend(self.G, blend)
            set_cond_blend(self.D, blend)
        if self.num_classes:
            assert labels is not None and y_fake is not None
            y_real = labels.to(ctx.device)
            y_both = torch.cat([y_real, y_fake])

        # ---- phase D ------------------------------------------------------------------------------
        self._train_d(True)
        with ctx.autocast():
            fake = self._g(z, y_fake)                                 # (B, C, H, W), raw output
            both = self.augment(torch.cat([real, fake.detach()]))    # (2B, C, H, W)
            logits = self._d(both, y_both)                            # (2B, 1)
        d_terms = self.loss.d_loss(logits[:B], logits[B:])
        d_total = d_terms["loss"]
        if lc.r1_gamma and (ctx.step - 1) % lc.r1_every == 0:
            # On the augmented reals, as StyleGAN2-ADA: D only ever sees augmented images.
            r1 = r1_penalty(lambda x: self._d(x, y_real), both[:B].detach())
            d_terms["r1"] = r1.detach()
            d_total = d_total + (lc.r1_gamma / 2) * lc.r1_every * r1
        self.augment.observe(logits[:B])
        ctx.optimize(d_total, self.opt_d)
        out = {"loss_d": d_terms["loss"].item()}
        out.update({k: float(v) for k, v in d_terms.items() if k != "loss"})

        # ---- phase G: D frozen --------------------------------------------------------------------
        self._train_d(False)
        with ctx.autocast():
            g_terms = self.loss.g_loss(self._d(self.augment(fake), y_fake))
        ctx.optimize(g_terms["loss"], self.opt_g)
        out["loss_g"] = g_terms["loss"].item()
        if mc.pl_weight and (ctx.step - 1) % mc.pl_every == 0:
            # Outside autocast (second-order terms); through the unwrapped G's mapping and synthesis.
            pl, self.pl_mean = path_length_penalty(distributed.unwrap(self.G), z, y_fake, self.pl_mean)
            ctx.optimize(pl * (mc.pl_weight * mc.pl_every), self.opt_g)
            out["pl"], out["pl_mean"] = pl.detach().item(), self.pl_mean.item()
        self.ema.update(self.G, ctx.global_batch, ctx.images_seen)
        out.update(self.augment.stats())
        return out

    # ------------------------------------------------------------------ state beyond networks and optimisers
    def extra_state(self) -> dict[str, Any]:
        return {"augment": self.augment.state_dict(), "pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "augment" in state:
            self.augment.load_state_dict(state["augment"])
        if "pl_mean" in state:
            self.pl_mean = state["pl_mean"].to(self.ctx.device)

    # ------------------------------------------------------------------ showing it
    def describe(self, metrics: dict[str, float]) -> list[str]:
        c, mc = self.cfg, self.mc
        lc = c.loss
        lines = [f"- Sampling uses the EMA generator (half-life {c.train.ema_half_life_kimg:g} kimg) and its tracked "
                 f"w average for truncation (`atelier sample RUN --truncation 0.7`)",
                 f"- Loss: {lc.name}" + (f", lazy R1 gamma {lc.r1_gamma:g} every {lc.r1_every} steps"
                                         if lc.r1_gamma else "")
                 + (f", lazy path length weight {mc.pl_weight:g} every {mc.pl_every} steps" if mc.pl_weight else "")
                 + f"; style mixing probability {mc.mixing_prob:g}",
                 f"- Adam lr G {c.optim.lr_g:g}, D {c.optim.lr_d:g}, betas {list(c.optim.betas)} (lazy-regulariser "
                 "corrected)"]
        if self.augment.enabled:
            a = c.augment
            how = (f"adaptive p (ADA, target {a.ada_target:g}), final p {self.augment.p:.3f}"
                   if a.ada_target is not None else f"p {a.p:g}")
            lines.append(f"- Augmentation before D: DiffAugment {a.policy}, {how}")
        if transitional(mc):
            g = distributed.unwrap(self.G)
            assert isinstance(g, StyleGAN2Generator)
            blend = g.map.cond_weight
            lines.append(f"- Transitional conditioning (Shahbazi et al. 2022): unconditional until "
                         f"{mc.cond_start_kimg:g} kimg, classes blended in over {mc.cond_ramp_kimg:g} kimg "
                         f"(blend now {float(blend) if blend is not None else 1.0:.2f})")
        if self.parent is not None:
            p = self.parent
            known = f" (step {p['step']:,}, sha256 {p['sha256'][:16]}...)" if p["sha256"] else ""
            lines.append(f"- Fine-tuned from `{p['checkpoint']}`{known}")
        if mc.freeze_d:
            lines.append(f"- FreezeD: D's first {mc.freeze_d} blocks fixed ({self.n_frozen:,} parameters)")
        return lines

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"d": f"{metrics.get('loss_d', 0.0):.3f}", "g": f"{metrics.get('loss_g', 0.0):.3f}"}
