"""Convolutional VAE: Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (arXiv:1312.6114),
with the KL weight beta of Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", ICLR 2017.

    Encoder q(z|x): x (B, C, res, res) -> [Conv 4x4 s2 -> LeakyReLU] x n -> flatten
                    -> Linear -> (mu, logvar)                                    # (B, z_dim) each
    Decoder p(x|z): z (B, z_dim) -> Linear -> ReLU -> (B, c0, s, s)
                    -> [ConvT 4x4 s2 -> ReLU] x (n-1) -> ConvT 4x4 s2 -> logits  # (B, C, res, res)

Resolution 28 or 32 takes two stride-2 steps (7 or 8 px at the bottom), 64 takes three, as the DCGAN
file does. The decoder is the run's generator "G": called on z ~ N(0, I) it returns the mean of
p(x|z) in [-1, 1], so ``atelier.load``, ``sample``, ``evaluate`` and interpolation treat a VAE like
any other generator. The encoder sits in the trainer's second network slot "D" (the network that
reads images); nothing adversarial happens there.

Likelihoods (``likelihood``):
  * ``bernoulli`` (Kingma & Welling's MNIST model): pixels in [0, 1] are the Bernoulli means' targets,
    reconstruction = BCE-with-logits summed over pixels; the image is 2 sigmoid(logits) - 1.
  * ``gaussian``: N(x; mean, sigma^2) with a fixed ``sigma`` on the [-1, 1] scale, mean = the image.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from atelier.models.layers import check_channels, resolution_plan
from atelier.models.registry import ModelSpec, Network, register

__all__ = ["Decoder", "Encoder", "VAEConfig", "elbo_terms", "kl_divergence", "reconstruction_nll"]


# (bottom size, number of stride-2 steps) per supported resolution
PLANS = {28: (7, 2), 32: (8, 2), 64: (8, 3)}


class VAEConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    z_dim: int = Field(16, ge=1, le=4096)
    # Channels of the first encoder layer (and the decoder's last hidden layer); they double per step.
    width: int = Field(32, ge=1, le=1024)
    # KL weight: 1 is the ELBO of Kingma & Welling; > 1 is beta-VAE (more disentangled, blurrier).
    beta: float = Field(1.0, ge=0.0)
    # beta ramps linearly from 0 over this many thousand images (KL annealing, Bowman et al. 2016); 0: off.
    beta_warmup_kimg: float = Field(0.0, ge=0.0)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    # Standard deviation of the Gaussian likelihood, on the [-1, 1] pixel scale (unused for bernoulli).
    sigma: float = Field(0.1, gt=0.0)


class Encoder(Network):
    """q(z|x): images in [-1, 1] -> (mu, logvar), each (B, z_dim)."""

    def __init__(self, cfg: VAEConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        check_channels(channels, (1, 3))
        start, n = resolution_plan("vae", PLANS, resolution)
        z_dim, width = cfg.z_dim, cfg.width
        layers: list[nn.Module] = []
        c_in, c = channels, width
        for _ in range(n):
            # 4x4 stride 2 padding 1 halves 28 -> 14 -> 7 and 32 -> 16 -> 8 exactly.
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in, c = c, c * 2
        self.features = nn.Sequential(*layers)                      # (B, c_in, start, start)
        self.fc = nn.Linear(c_in * start * start, 2 * z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1:] != (self.channels, self.resolution, self.resolution):
            raise ValueError(f"expected images of shape (B, {self.channels}, {self.resolution}, {self.resolution}), "
                             f"got {tuple(x.shape)}")
        h = self.fc(self.features(x).flatten(1))                    # (B, 2 z_dim)
        mu, logvar = h.float().chunk(2, dim=1)
        # Bounded so exp(logvar) can neither overflow nor vanish early in training.
        return mu, logvar.clamp(-30.0, 20.0)


class Decoder(Network):
    """p(x|z): the run's generator. ``forward(z)`` is the mean image in [-1, 1]; ``logits(z)`` the raw output."""

    def __init__(self, cfg: VAEConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        check_channels(channels, (1, 3))
        start, n = resolution_plan("vae", PLANS, resolution)
        z_dim, width, likelihood = cfg.z_dim, cfg.width, cfg.likelihood
        self.z_dim, self.start, self.likelihood = z_dim, start, likelihood
        self.c0 = width * 2 ** (n - 1)                              # the encoder's deepest width
        self.fc = nn.Sequential(nn.Linear(z_dim, self.c0 * start * start), nn.ReLU())
        layers: list[nn.Module] = []
        c = self.c0
        for i in range(n):
            last = i == n - 1
            out = channels if last else c // 2
            layers.append(nn.ConvTranspose2d(c, out, 4, stride=2, padding=1))   # doubles the size exactly
            if not last:
                layers.append(nn.ReLU())
            c = out
        self.net = nn.Sequential(*layers)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        x = self.fc(z).view(-1, self.c0, self.start, self.start)   # (B, c0, s, s)
        first = self.net[0]
        assert isinstance(first, nn.ConvTranspose2d)
        if first.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)                                          # (B, C, res, res)

    def to_image(self, logits: torch.Tensor) -> torch.Tensor:
        # bernoulli: 2 sigmoid(l) - 1 = tanh(l / 2), the mean on the [-1, 1] scale; gaussian: the mean itself.
        return torch.tanh(logits / 2) if self.likelihood == "bernoulli" else torch.tanh(logits)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, self.z_dim, generator=torch.Generator().manual_seed(0)),)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_image(self.logits(z))                        # (B, C, res, res) in [-1, 1]


def reconstruction_nll(decoder: Decoder, logits: torch.Tensor, x: torch.Tensor, sigma: float = 0.1) -> torch.Tensor:
    """-log p(x|z) per image in nats, (B,). ``x`` is in [-1, 1]."""
    logits, x = logits.float(), x.float()
    if decoder.likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="none")
    else:
        # The log(2 pi sigma^2) term is constant, but keeping it makes the ELBO a bound in nats.
        mean = decoder.to_image(logits)
        nll = (x - mean) ** 2 / (2 * sigma**2) + 0.5 * math.log(2 * math.pi * sigma**2)
    return nll.flatten(1).sum(1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image in nats, (B,) (Kingma & Welling 2014, appendix B)."""
    return 0.5 * (mu.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float()).sum(1)


def elbo_terms(encoder: Encoder, decoder: Decoder, x: torch.Tensor, beta: float,
               sigma: float = 0.1) -> dict[str, torch.Tensor]:
    """One reparameterised pass (z = mu + sigma * eps, eps from the global generator) -> named terms.

    ``loss`` = mean over the batch of recon + beta * KL (what is minimised); ``elbo`` = -(recon + KL),
    the bound itself (beta = 1), so runs with different beta stay comparable.
    """
    mu, logvar = encoder(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()           # (B, z_dim)
    logits = decoder.logits(z)
    recon = reconstruction_nll(decoder, logits, x, sigma)
    kl = kl_divergence(mu, logvar)
    return {"loss": (recon + beta * kl).mean(), "recon": recon.mean().detach(), "kl": kl.mean().detach(),
            "elbo": -(recon + kl).mean().detach(), "logits": logits}


# The decoder turns latents into images (it is what the run samples); the encoder reads images.
register(ModelSpec(name="vae", config=VAEConfig, networks={"decoder": Decoder, "encoder": Encoder}))
