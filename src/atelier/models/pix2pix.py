"""pix2pix: Isola, Zhu, Zhou & Efros, "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR 2017 (arXiv:1611.07004).

    G: U-Net. Encoder C64-C128-C256-C512-C512-C512-C512-C512 (4x4 convs, stride 2, BatchNorm except on
       the first, LeakyReLU 0.2) down to 1x1 at 256 px; the decoder mirrors it with transposed convs,
       ReLU, dropout 0.5 on the three innermost decoder blocks (the paper's only source of noise),
       and a skip connection from each encoder level; tanh output.        # (B, C_out, H, W)
    D: 70x70 PatchGAN on the concatenated (input, output) pair: C64-C128-C256-C512 then a 1-channel
       conv; each output logit sees a 70x70 patch of the input.           # (B, 1, H/8 - 2, W/8 - 2)

Width (``ngf``, ``ndf``) and depth follow the resolution and the config, so a CPU-sized model (128 px,
ngf 32) uses the same code as the paper's (256 px, ngf 64). The loss weights live in the model config
because they define this system: adversarial + ``l1_weight`` * L1 (100 in the paper); ``gan_weight: 0``
trains the L1-only U-Net of the paper's ablation.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from atelier.models.registry import ModelSpec, Network, register

__all__ = ["PatchDiscriminator", "Pix2PixConfig", "UNetConfig", "UNetGenerator", "receptive_field"]


def _init(module: nn.Module) -> None:
    # N(0, 0.02) weights and unit-mean BatchNorm scales, as in the paper's code (after DCGAN).
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class UNetConfig(BaseModel):
    """The U-Net's own options, shared by every family built on it (pix2pix, the segmenter)."""

    model_config = ConfigDict(extra="forbid")

    ngf: int = Field(64, ge=1, le=512)
    # Number of stride-2 levels in the U-Net (None: down to 1x1, i.e. log2(resolution)).
    depth: int | None = Field(None, ge=2, le=10)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)


class Pix2PixConfig(UNetConfig):
    ndf: int = Field(64, ge=1, le=512)
    d_layers: int = Field(3, ge=1, le=6)  # 3 -> the 70x70 PatchGAN
    l1_weight: float = Field(100.0, ge=0.0)
    gan_weight: float = Field(1.0, ge=0.0)


class _Down(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not norm)
        self.norm = nn.BatchNorm2d(c_out) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class _Up(nn.Module):
    def __init__(self, c_in: int, c_out: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.conv(torch.relu(x))))


class UNetGenerator(Network):
    """Input image (B, C, H, W) -> output image of the same shape (C = data.channels, in and out).

    A family that reuses the network for another output subclasses it and passes ``out_channels`` (e.g. one
    per class) and ``logits=True`` (no tanh: raw scores for a cross-entropy loss).
    """

    def __init__(self, cfg: UNetConfig, *, resolution: int, channels: int, out_channels: int | None = None,
                 logits: bool = False) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        depth = cfg.depth if cfg.depth is not None else int(math.log2(resolution))
        if resolution % 2**depth:
            raise ValueError(f"data.resolution {resolution} must be divisible by 2**model.depth = {2**depth}")
        in_channels, out_channels = channels, out_channels or channels
        self.out_channels, self.logits = out_channels, logits
        ngf, dropout = cfg.ngf, cfg.dropout
        self.depth = depth
        widths = [min(ngf * 2**i, ngf * 8) for i in range(depth)]           # 64,128,256,512,512,...
        self.down = nn.ModuleList(
            [_Down(in_channels if i == 0 else widths[i - 1], widths[i], norm=0 < i < depth - 1)
             for i in range(depth)])
        ups = []
        for i in reversed(range(depth - 1)):                                # innermost first
            c_in = widths[i + 1] if i == depth - 2 else widths[i + 1] * 2   # innermost has no skip yet
            # Dropout on the three innermost decoder blocks, as in the paper.
            ups.append(_Up(c_in, widths[i], dropout if depth - 2 - i < 3 else 0.0))
        self.up = nn.ModuleList(ups)
        self.out = nn.ConvTranspose2d(widths[0] * 2, out_channels, 4, stride=2, padding=1)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2**self.depth or x.shape[-2] % 2**self.depth:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be divisible by {2**self.depth}")
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else nn.functional.leaky_relu(x, 0.2))      # (B, w_i, H/2^(i+1), ...)
            skips.append(x)
        x = skips.pop()                                                      # bottleneck
        for up in self.up:
            x = torch.cat([up(x), skips.pop()], dim=1)                       # (B, 2 w_i, ...)
        x = self.out(torch.relu(x))                                          # (B, C_out, H, W)
        return x if self.logits else torch.tanh(x)


class PatchDiscriminator(Network):
    """The (input, output) pair stacked on channels (B, 2C, H, W) -> patch logits."""

    def __init__(self, cfg: Pix2PixConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        in_channels, ndf, n_layers = 2 * channels, cfg.ndf, cfg.d_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = ndf
        for i in range(1, n_layers + 1):
            c_out = min(ndf * 2**i, ndf * 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(c, c_out, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2)]
            c = c_out
        layers.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        _init(self)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        return (torch.rand(batch, 2 * self.channels, self.resolution, self.resolution, generator=g) * 2 - 1,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)                                                   # (B, 1, h, w) patch logits


def receptive_field(n_layers: int) -> int:
    """Receptive field of one PatchGAN output: 4x4 kernels, ``n_layers`` stride-2 convs, then two stride 1."""
    strides = [2] * n_layers + [1, 1]
    rf = 1
    for s in reversed(strides):
        rf = rf * s + (4 - s)
    return rf


register(ModelSpec(name="pix2pix", config=Pix2PixConfig, networks={"G": UNetGenerator, "D": PatchDiscriminator}))
