"""DCGAN: Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016 (arXiv:1511.06434).

The default configuration is exactly the TensorFlow DCGAN tutorial's MNIST model (the source
document's system with its two bugs fixed: the dense layer has 7*7*256 units, and D outputs a logit):

    G: z(100) -> Dense(7*7*256, no bias) -> BN -> LeakyReLU -> reshape (256, 7, 7)
       -> ConvT(128, 5x5, s1) -> BN -> LeakyReLU -> ConvT(64, 5x5, s2) -> BN -> LeakyReLU
       -> ConvT(1, 5x5, s2) -> tanh                                            # (B, 1, 28, 28)
    D: Conv(64, 5x5, s2) -> LeakyReLU -> Dropout(0.3) -> Conv(128, 5x5, s2) -> LeakyReLU
       -> Dropout(0.3) -> flatten -> Dense(1)                                  # (B, 1) logit

Resolution 28 or 32 starts from res/4 with two upsamplings; 64 starts from 8 with three. Keras'
defaults are kept where they change the maths: Glorot-uniform kernels, zero biases, BatchNorm with
eps = 1e-3 and momentum 0.99 (PyTorch's momentum = 1 - Keras' momentum).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from atelier.models import ModelSpec, register

__all__ = ["DCGANConfig", "Discriminator", "Generator"]

_BN = {"eps": 1e-3, "momentum": 0.01}


def _plan(resolution: int) -> tuple[int, int]:
    """(start size, number of stride-2 upsamplings) for a supported output resolution."""
    plans = {28: (7, 2), 32: (8, 2), 64: (8, 3)}
    if resolution not in plans:
        raise ValueError(f"dcgan supports resolutions {sorted(plans)}, got {resolution}")
    return plans[resolution]


def _glorot(module: nn.Module) -> None:
    # Keras initialises kernels with Glorot-uniform and biases with zeros; PyTorch's default
    # (Kaiming-uniform, a=sqrt(5)) differs, and the tutorial's training dynamics assume Keras'.
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DCGANConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    z_dim: int = Field(100, ge=1, le=4096)
    # Channels of the last hidden layer; earlier layers double it (64 -> 128 -> 256 at 28 px).
    width: int = Field(64, ge=1, le=1024)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    # The issue and the source document state 0.2 (Keras' LeakyReLU default would be 0.3).
    negative_slope: float = Field(0.2, ge=0.0, lt=1.0)


class Generator(nn.Module):
    def __init__(self, *, resolution: int = 28, channels: int = 1, z_dim: int = 100, width: int = 64,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        start, n_up = _plan(resolution)
        self.config: dict[str, Any] = dict(resolution=resolution, channels=channels, z_dim=z_dim, width=width,
                                           negative_slope=negative_slope)
        self.z_dim, self.start = z_dim, start
        c0 = width * 2**n_up  # 256 for the tutorial
        self.c0 = c0
        self.fc = nn.Linear(z_dim, c0 * start * start, bias=False)
        self.bn0 = nn.BatchNorm1d(c0 * start * start, **_BN)
        layers: list[nn.Module] = [
            nn.LeakyReLU(negative_slope),
            # (B, c0, s, s) -> (B, c0/2, s, s): the tutorial's stride-1 transposed conv.
            nn.ConvTranspose2d(c0, c0 // 2, 5, stride=1, padding=2, bias=False),
            nn.BatchNorm2d(c0 // 2, **_BN),
            nn.LeakyReLU(negative_slope),
        ]
        c = c0 // 2
        for i in range(n_up):
            last = i == n_up - 1
            out = channels if last else c // 2
            # "same" padding with stride 2: padding 2 + output_padding 1 doubles the size exactly.
            layers.append(nn.ConvTranspose2d(c, out, 5, stride=2, padding=2, output_padding=1, bias=False))
            if not last:
                layers += [nn.BatchNorm2d(out, **_BN), nn.LeakyReLU(negative_slope)]
            c = out
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        _glorot(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        x = self.bn0(self.fc(z))                                   # (B, c0*s*s)
        x = x.view(-1, self.c0, self.start, self.start)            # (B, c0, s, s)
        # Keep the activation layout the conv weights use (channels_last when the model was converted).
        if self.net[1].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)                                         # (B, C, res, res) in [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, *, resolution: int = 28, channels: int = 1, width: int = 64, dropout: float = 0.3,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        start, n_down = _plan(resolution)
        self.config: dict[str, Any] = dict(resolution=resolution, channels=channels, width=width,
                                           dropout=dropout, negative_slope=negative_slope)
        layers: list[nn.Module] = []
        c_in, c, size = channels, width, resolution
        for _ in range(n_down):
            layers += [nn.Conv2d(c_in, c, 5, stride=2, padding=2), nn.LeakyReLU(negative_slope),
                       nn.Dropout(dropout)]
            c_in, c, size = c, c * 2, (size + 1) // 2
        self.features = nn.Sequential(*layers)                     # (B, c_in, start, start)
        self.fc = nn.Linear(c_in * size * size, 1)
        _glorot(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))               # (B, 1) logits


def _build(*, resolution: int, channels: int, z_dim: int, width: int, dropout: float,
           negative_slope: float) -> dict[str, nn.Module]:
    return {
        "G": Generator(resolution=resolution, channels=channels, z_dim=z_dim, width=width,
                       negative_slope=negative_slope),
        "D": Discriminator(resolution=resolution, channels=channels, width=width, dropout=dropout,
                           negative_slope=negative_slope),
    }


register(ModelSpec(name="dcgan", config=DCGANConfig, build=_build,
                   networks={"G": Generator, "D": Discriminator}))
