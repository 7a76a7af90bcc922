"""Adversarial losses as objects with explicit D and G terms, and the gradient regularisers of D.

Each loss returns a dict of named scalar terms; ``"loss"`` is the one to backpropagate and the rest
are logged. Logits are cast to fp32 first so that bf16 autocast never computes the loss itself in
reduced precision. The regularisers (:func:`gradient_penalty`, :func:`r1_penalty`) run D outside
autocast: they differentiate through D twice, and their small squared norms need fp32.
:func:`path_length_penalty` is G's lazy regulariser (StyleGAN2); call it outside autocast too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from atelier.config import RunConfig

__all__ = [
    "AdversarialLoss",
    "HingeLoss",
    "LeastSquaresLoss",
    "NonSaturatingLoss",
    "WassersteinLoss",
    "check_critic",
    "get_loss",
    "gradient_penalty",
    "path_length_penalty",
    "r1_penalty",
]

Terms = dict[str, torch.Tensor]


class AdversarialLoss:
    """D's loss on (real, fake) logits and G's loss on fake logits."""

    name = ""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Terms:
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        loss_real, loss_fake = self._d_terms(real_logits, fake_logits)
        return {"loss": loss_real + loss_fake, "d_real": real_logits.mean().detach(),
                "d_fake": fake_logits.mean().detach()}

    def _d_terms(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> Terms:
        raise NotImplementedError


class NonSaturatingLoss(AdversarialLoss):
    """The original GAN loss with the non-saturating generator objective (Goodfellow et al. 2014).

    D minimises BCE(real -> 1) + BCE(fake -> 0); G minimises BCE(fake -> 1) = softplus(-D(G(z))),
    which keeps strong gradients early in training when D rejects every fake. ``d_real``/``d_fake``
    are logged as probabilities.
    """

    name = "nonsaturating"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Terms:
        terms = super().d_loss(real_logits, fake_logits)
        terms["d_real"] = torch.sigmoid(real_logits.detach().float()).mean()
        terms["d_fake"] = torch.sigmoid(fake_logits.detach().float()).mean()
        return terms

    def _d_terms(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.softplus(-real).mean(), F.softplus(fake).mean()   # BCE-with-logits against 1 and 0

    def g_loss(self, fake_logits: torch.Tensor) -> Terms:
        return {"loss": F.softplus(-fake_logits.float()).mean()}


class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D minimises relu(1 - D(x)) + relu(1 + D(G(z))),
    G minimises -D(G(z)). The margin stops D from pushing logits it already classifies well."""

    name = "hinge"

    def _d_terms(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.relu(1.0 - real).mean(), F.relu(1.0 + fake).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> Terms:
        return {"loss": -fake_logits.float().mean()}


class WassersteinLoss(AdversarialLoss):
    """Wasserstein loss (Arjovsky et al. 2017): the critic maximises D(x) - D(G(z)).

    Only meaningful with a Lipschitz constraint on the critic: a gradient penalty (``loss.gp_weight``,
    WGAN-GP, Gulrajani et al. 2017) or spectral normalisation. The logged ``w_distance`` is the
    critic's estimate of the Wasserstein-1 distance.
    """

    name = "wasserstein"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Terms:
        terms = super().d_loss(real_logits, fake_logits)
        terms["w_distance"] = (terms["d_real"] - terms["d_fake"]).detach()
        return terms

    def _d_terms(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return -real.mean(), fake.mean()

    def g_loss(self, fake_logits: torch.Tensor) -> Terms:
        return {"loss": -fake_logits.float().mean()}


class LeastSquaresLoss(AdversarialLoss):
    """Least-squares GAN (Mao et al. 2017), a-b-c = 0-1-1: D minimises ½(D(x) - 1)² + ½D(G(z))²,
    G minimises ½(D(G(z)) - 1)². Penalising correctly classified samples far from the boundary keeps
    gradients alive where the sigmoid loss saturates."""

    name = "lsgan"

    def _d_terms(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 0.5 * (real - 1.0).square().mean(), 0.5 * fake.square().mean()

    def g_loss(self, fake_logits: torch.Tensor) -> Terms:
        return {"loss": 0.5 * (fake_logits.float() - 1.0).square().mean()}


LOSSES: dict[str, type[AdversarialLoss]] = {
    cls.name: cls for cls in (NonSaturatingLoss, HingeLoss, WassersteinLoss, LeastSquaresLoss)
}


def get_loss(name: str) -> AdversarialLoss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]()


def _input_grad_norm2(critic: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Per-sample squared L2 norm of d critic(x).sum() / dx, kept in the graph (create_graph)."""
    x = x.detach().float().requires_grad_(True)
    out = critic(x).float()
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1).square().sum(1)                       # (B,)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     target: float = 1.0) -> torch.Tensor:
    """WGAN-GP's two-sided penalty E[(||grad D(x_hat)|| - target)^2] (Gulrajani et al. 2017).

    ``x_hat`` lies on the segment between a real and a fake image, with the mixing weight drawn
    uniformly per sample (from the global generator, so a resumed run draws the same weights).
    """
    eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)
    x_hat = torch.lerp(real.detach().float(), fake.detach().float(), eps)
    norm = (_input_grad_norm2(critic, x_hat) + 1e-12).sqrt()
    return (norm - target).square().mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad D(x_real)||^2], the gradient on real data only.

    The trainer weights it by gamma / 2 and, when lazy (StyleGAN2), runs it every k steps with the
    weight multiplied by k so that its average strength is unchanged.
    """
    return _input_grad_norm2(critic, real).mean()


def path_length_penalty(G: Any, z: torch.Tensor, y: torch.Tensor | None, pl_mean: torch.Tensor, *,
                        decay: float = 0.01, batch_shrink: int = 2,
                        noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2's path length regularisation (Karras et al. 2020, sec. 3.2): ``(penalty, new_pl_mean)``.

    For images g(w) and a random image-space direction u ~ N(0, I) / sqrt(H W), the length of the
    Jacobian-vector product ``|J_w^T u|`` (through every w layer, averaged over layers) should be the same
    for every w: penalty = E[(|J_w^T u| - a)^2], with ``a`` the running mean of the lengths
    (``pl_mean`` lerped by ``decay``; the new value is returned for the caller to keep). A smooth, evenly
    scaled mapping from w to images is what makes truncation, interpolation and projection behave.

    ``G`` needs ``mapping(z, y) -> ws (B, L, w_dim)`` and ``synthesis(ws, noise_mode=) -> images`` (the
    stylegan2 Generator). It runs on the first ``B // batch_shrink`` latents (the paper's batch shrink 2).
    The caller weights it (paper: 2) and, lazily, runs it every k steps with the weight multiplied by k.
    """
    n = max(1, z.shape[0] // batch_shrink)
    ws = G.mapping(z[:n], None if y is None else y[:n])                  # (n, L, w_dim)
    if not ws.requires_grad:  # G frozen (fine-tuning): the Jacobian is still defined
        ws = ws.detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode=noise_mode)                          # (n, C, H, W), raw output
    img = img.to(torch.promote_types(img.dtype, torch.float32))           # at least fp32 (bf16 G)
    u = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * u).sum(), ws, create_graph=True)
    lengths = grad.to(img.dtype).square().sum(2).mean(1).sqrt()          # (n,)
    new_mean = pl_mean.detach().lerp(lengths.mean().detach().to(pl_mean.dtype), decay)
    return (lengths - new_mean).square().mean(), new_mean


def check_critic(cfg: RunConfig) -> None:
    """A Wasserstein critic must be Lipschitz (Arjovsky et al. 2017): a gradient penalty or spectral norm."""
    if cfg.loss.name == "wasserstein" and not cfg.loss.gp_weight and not cfg.model.get("spectral_norm_d"):
        raise ValueError("loss.name wasserstein needs a Lipschitz critic: set loss.gp_weight (10 for WGAN-GP) or "
                         "model.spectral_norm_d: true; an unconstrained critic diverges")
    if cfg.loss.class_weight and (not cfg.model.get("num_classes")
                                  or cfg.model.get("d_conditioning", "projection") != "projection"):
        raise ValueError("loss.class_weight trains the class scores of a projection discriminator: it needs "
                         "model.num_classes > 0 (and model.d_conditioning: projection for dcgan)")
