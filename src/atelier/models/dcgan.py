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

Options for the GAN-family work (all off by default, so the default is still exactly the tutorial):
``num_classes`` makes it a conditional GAN (Mirza & Osindero 2014): G takes the class through
conditional batch norm (a per-class scale and shift in every 2-D batch norm), D reads one-hot class
maps beside the image (or, with ``d_conditioning: projection``, adds a class projection, Miyato &
Koyama 2018). In our CPU runs this DCGAN pair collapsed within each class (every latent of a class
gave nearly the same digit); the ResNet backbone (``model.name: resnet``, configs/mnist-cgan.yaml)
keeps the diversity. ``spectral_norm_d`` / ``spectral_norm_g``; ``attention`` inserts a SAGAN
self-attention block at that feature resolution in G and D (see atelier.models.layers).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils import parametrize

from atelier.losses import check_critic
from atelier.models.layers import (
    ClassProjection,
    ConditionalBatchNorm2d,
    Dropout,
    LinearConditionalBatchNorm2d,
    SelfAttention,
    apply_spectral_norm,
    check_attention,
    check_channels,
    check_labels,
    flat_linear,
    resolution_plan,
)
from atelier.models.registry import ModelSpec, Network, register

__all__ = ["DCGANConfig", "Discriminator", "Generator"]

_BN: dict[str, Any] = {"eps": 1e-3, "momentum": 0.01}


# (start size, number of stride-2 upsamplings) per supported output resolution
PLANS = {28: (7, 2), 32: (8, 2), 64: (8, 3)}


def _raw_weight(module: nn.Module) -> torch.Tensor:
    """A layer's stored weight; reading ``.weight`` of a spectral-normalised layer would run a power iteration."""
    if parametrize.is_parametrized(module, "weight"):
        return module.get_parameter("parametrizations.weight.original")
    return module.get_parameter("weight")


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
    num_classes: int = Field(0, ge=0, le=10_000)
    # Conditional G: 0 = a free (scale, shift) per class in every batch norm; > 0 = a shared class embedding
    # of this size, joined to z and mapped linearly to every norm's scale and shift (BigGAN).
    cond_dim: int = Field(0, ge=0, le=4096)
    # How a conditional D reads the class: "input" (one-hot maps concatenated to the image, Mirza &
    # Osindero 2014) or "projection" (<embed(y), pooled features>, Miyato & Koyama 2018).
    d_conditioning: Literal["input", "projection"] = "input"
    spectral_norm_d: bool = False
    spectral_norm_g: bool = False
    attention: int | None = Field(None, ge=4)


class Generator(Network):
    def __init__(self, cfg: DCGANConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        check_channels(channels, (1, 3))
        start, n_up = resolution_plan("dcgan", PLANS, resolution)
        check_attention(cfg.attention, resolution, (start, n_up))
        z_dim, width, negative_slope, num_classes = cfg.z_dim, cfg.width, cfg.negative_slope, cfg.num_classes
        attention = cfg.attention
        cond_dim = cfg.cond_dim
        self.z_dim, self.start, self.num_classes = z_dim, start, num_classes
        self.cond_dim = cond_dim if num_classes else 0
        c0 = width * 2**n_up  # 256 for the tutorial
        self.c0 = c0
        # BigGAN's shared class embedding: joined to z at the input and read by every conditional norm.
        self.embed = nn.Embedding(num_classes, self.cond_dim) if self.cond_dim else None
        self.fc = nn.Linear(z_dim + self.cond_dim, c0 * start * start, bias=False)
        self.bn0 = nn.BatchNorm1d(c0 * start * start, **_BN)

        def bn(ch: int) -> nn.Module:
            # A conditional G takes the class through the scale and shift of every 2-D batch norm.
            if num_classes and self.cond_dim:
                return LinearConditionalBatchNorm2d(ch, self.cond_dim, **_BN)
            return ConditionalBatchNorm2d(ch, num_classes, **_BN) if num_classes else nn.BatchNorm2d(ch, **_BN)

        layers: list[nn.Module] = [
            nn.LeakyReLU(negative_slope),
            # (B, c0, s, s) -> (B, c0/2, s, s): the tutorial's stride-1 transposed conv.
            nn.ConvTranspose2d(c0, c0 // 2, 5, stride=1, padding=2, bias=False),
            bn(c0 // 2),
            nn.LeakyReLU(negative_slope),
        ]
        c, size = c0 // 2, start
        for i in range(n_up):
            if size == attention:
                layers.append(SelfAttention(c))
            last = i == n_up - 1
            out = channels if last else c // 2
            # "same" padding with stride 2: padding 2 + output_padding 1 doubles the size exactly.
            layers.append(nn.ConvTranspose2d(c, out, 5, stride=2, padding=2, output_padding=1, bias=False))
            if not last:
                layers += [bn(out), nn.LeakyReLU(negative_slope)]
            c, size = out, size * 2
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        _glorot(self)
        for m in self.modules():  # _glorot covers every Linear: the conditional norms must start at the identity
            if isinstance(m, LinearConditionalBatchNorm2d):
                m.reset_parameters()
        if cfg.spectral_norm_g:
            apply_spectral_norm(self, skip=(nn.Embedding,))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(batch, self.z_dim, generator=g)
        return (z, torch.arange(batch) % self.num_classes) if self.num_classes else (z,)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        check_labels(y, self.num_classes, z.shape[0])
        cond: torch.Tensor | None = y                              # labels (B,) for per-class norms
        if self.embed is not None:
            cond = self.embed(y)                                   # (B, cond_dim)
            z = torch.cat([z, cond], dim=1)                        # (B, z_dim + cond_dim)
        x = self.bn0(self.fc(z))                                   # (B, c0*s*s)
        x = x.view(-1, self.c0, self.start, self.start)            # (B, c0, s, s)
        # Keep the activation layout the conv weights use (channels_last when the model was converted).
        if _raw_weight(self.net[1]).is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        if y is None:
            return self.net(x)                                     # (B, C, res, res) in [-1, 1]
        for layer in self.net:
            conditional = isinstance(layer, (ConditionalBatchNorm2d, LinearConditionalBatchNorm2d))
            x = layer(x, cond) if conditional else layer(x)
        return x


class Discriminator(Network):
    def __init__(self, cfg: DCGANConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        start, n_down = resolution_plan("dcgan", PLANS, resolution)
        check_attention(cfg.attention, resolution, (start, n_down))
        width, dropout, negative_slope, attention = cfg.width, cfg.dropout, cfg.negative_slope, cfg.attention
        num_classes = self.num_classes = cfg.num_classes
        self.input_labels = bool(num_classes) and cfg.d_conditioning == "input"
        layers: list[nn.Module] = []
        c_in, c, size = channels + (num_classes if self.input_labels else 0), width, resolution
        for _ in range(n_down):
            layers += [nn.Conv2d(c_in, c, 5, stride=2, padding=2), nn.LeakyReLU(negative_slope),
                       Dropout(dropout)]
            c_in, c, size = c, c * 2, (size + 1) // 2
            if size == attention:
                layers.append(SelfAttention(c_in))
        self.features = nn.Sequential(*layers)                     # (B, c_in, start, start)
        self.fc = nn.Linear(c_in * size * size, 1)
        # The class term projects the spatially pooled features (c_in values), as in the projection
        # discriminator, not the flattened map: a per-class template over all 7x7 positions let D reward
        # one prototype per class, and G collapsed to it (every latent of a class gave the same digit).
        self.project = ClassProjection(num_classes, c_in) if num_classes and not self.input_labels else None
        _glorot(self)
        if cfg.spectral_norm_d:
            apply_spectral_norm(self)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        (x,) = super().example_inputs(batch)
        return (x, torch.arange(batch) % self.num_classes) if self.num_classes else (x,)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                scores: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, 1); with ``scores=True`` (projection D) also every class's projection term (B, K)."""
        check_labels(y, self.num_classes, x.shape[0])
        if scores and self.project is None:
            raise ValueError("class scores need a projection discriminator (num_classes > 0, "
                             "d_conditioning: projection)")
        if self.input_labels:  # one-hot class maps as extra input channels: (B, C + K, H, W)
            assert y is not None
            maps = nn.functional.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], dim=1)
        h = self.features(x)                                       # (B, c, s, s)
        out = flat_linear(self.fc, h)                              # (B, 1) logits
        if self.project is None:
            return out
        assert y is not None  # check_labels: a conditional D is given labels
        s = self.project.scores(h.sum(dim=(2, 3)))                 # (B, K): <embed(k), sum-pooled features>
        out = out + s.gather(1, y[:, None])
        return (out, s) if scores else out


register(ModelSpec(name="dcgan", config=DCGANConfig, networks={"G": Generator, "D": Discriminator},
                   check=check_critic))
