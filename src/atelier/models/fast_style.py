"""Feed-forward style transfer (Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", ECCV).

A fully convolutional image transformation network — strided convs down, residual blocks, nearest-upsample +
conv up — trained against the Gatys losses of one style (see :mod:`atelier.training.style`), then restyles
any photo in one forward pass. Following Ulyanov et al. 2016 ("Instance Normalization: The Missing
Ingredient for Fast Stylization") every norm is an instance norm; following Odena et al. 2016
("Deconvolution and Checkerboard Artifacts") upsampling is nearest-neighbour + conv rather than a
transposed conv. Being fully convolutional, the output has the input's size (inputs are reflect-padded to a
multiple of the total stride and cropped back).

Two layouts (``arch``):

* ``"johnson"`` — the paper's: 9x9 conv at full resolution, two stride-2 convs, residual blocks at 1/4,
  two upsampling blocks, 9x9 conv. 17 GFLOP per 512 px image at width 16, 70% of it in the three
  full-resolution layers; ~0.3 s per 512 px image on a quiet 2-core CPU.
* ``"lean"`` (default) — the same blocks, rearranged for a CPU: the first conv already has stride 2 and a
  third stride-2 conv takes the residual blocks to 1/8 resolution (a 4x larger receptive field per block,
  which suits brush strokes), and the only full-resolution layer is a 3x3 conv with 3 output channels.
  ~3.6 GFLOP per 512 px image (5x fewer), ~5x faster, under 100 ms at 512 px on this CPU.

Unlike Johnson's net, the output is a residual, ``x + f(x)`` (clamped to [0, 1] only when saved), with
the last conv initialised near zero: an untrained network is the identity, so a few CPU-minutes of
training already give a sensible stylisation instead of grey noise. (A residual in logit space,
``sigmoid(logit(x) + f(x))``, was tried first: it saturates in dark areas, where the network then
learned to paint glowing blobs.)

At inference on a CPU with native bf16 (AVX512-BF16 / AMX), the loaded stylizer runs under bf16 autocast:
~1.5x faster, and the 8-bit output differs from fp32 by about one grey level (see the README's table).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from atelier.models.layers import check_channels
from atelier.models.registry import ModelSpec, Network, register

__all__ = ["FastStyleConfig", "TransformerNet"]


class FastStyleConfig(BaseModel):
    """The network and the objective it is trained on (the Gatys losses of one or more style images)."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(16, ge=1, le=256)
    res_blocks: int = Field(3, ge=0, le=16)
    arch: Literal["lean", "johnson"] = "lean"   # runs from before the field are "johnson"
    style: list[str] = Field(default_factory=list)  # "path" or "path:weight"
    # Style image's long side relative to the training crop (data.resolution). The crops are cut from photos
    # scaled to 1.25 x size on their short side (~2 x size on the long one), so at 1.0 the painting is shrunk
    # ~2x against the photos and its brush strokes fall below the features' finest scale: the network learned
    # a colour tint. At 2.0 painting and photos have about the same scale, as in `atelier stylize`.
    style_scale: float = Field(2.0, gt=0, le=8)
    style_weight: float = Field(1.0, ge=0)
    content_weight: float = Field(0.2, ge=0)
    tv_weight: float = Field(0.01, ge=0)
    # "auto" is resolved to one of these before a run starts, so a resumed run keeps its feature network.
    features: Literal["vgg19", "random"] = "random"
    vgg_weights: str | None = None
    # How many content photos are held out of training and shown in the sample grid.
    holdout: int = Field(1, ge=0)


class ConvLayer(nn.Module):
    """Reflection pad + conv (+ instance norm + ReLU): reflection avoids dark borders on the output."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, norm: bool = True,
                 relu: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)
        self.norm = nn.InstanceNorm2d(c_out, affine=True) if norm else nn.Identity()
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.pad(x))))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with instance norm and an identity skip (Johnson et al.'s supplementary, after He et al.)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvLayer(c, c, 3), ConvLayer(c, c, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.conv = ConvLayer(c_in, c_out, 3, norm=norm, relu=relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransformerNet(Network):
    """Image (B, 3, H, W) in [0, 1] -> stylised image of the same shape (clamp to [0, 1] for display).

    ``model.width`` is the first layer's channels (Johnson: 32; 16 runs ~4x faster on a CPU); ``model.arch``
    picks the layout (see the module docstring). Fully convolutional: any size in, the same size out
    (``resolution`` is the training crop size, recorded only).
    """

    def __init__(self, cfg: FastStyleConfig, *, resolution: int, channels: int = 3) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        check_channels(channels, (3,))
        width, res_blocks, arch = cfg.width, cfg.res_blocks, cfg.arch
        w = width
        if arch == "johnson":
            self.stride = 4
            self.down = nn.Sequential(
                ConvLayer(3, w, 9),                        # (B, w, H, W)
                ConvLayer(w, 2 * w, 3, stride=2),          # (B, 2w, H/2, W/2)
                ConvLayer(2 * w, 4 * w, 3, stride=2),      # (B, 4w, H/4, W/4)
            )
            self.res = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(res_blocks)])
            self.up = nn.Sequential(
                UpsampleLayer(4 * w, 2 * w),               # (B, 2w, H/2, W/2)
                UpsampleLayer(2 * w, w),                   # (B, w, H, W)
                ConvLayer(w, 3, 9, norm=False, relu=False),  # (B, 3, H, W): the residual
            )
            last = self.up[-1].conv
        else:
            self.stride = 8
            self.down = nn.Sequential(
                ConvLayer(3, w, 5, stride=2),              # (B, w, H/2, W/2)
                ConvLayer(w, 2 * w, 3, stride=2),          # (B, 2w, H/4, W/4)
                ConvLayer(2 * w, 4 * w, 3, stride=2),      # (B, 4w, H/8, W/8)
            )
            self.res = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(res_blocks)])
            self.up = nn.Sequential(
                UpsampleLayer(4 * w, 2 * w),               # (B, 2w, H/4, W/4)
                UpsampleLayer(2 * w, w),                   # (B, w, H/2, W/2)
                UpsampleLayer(w, 3, norm=False, relu=False),  # (B, 3, H, W): the residual
            )
            last = self.up[-1].get_submodule("conv.conv")
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        # Start near the identity (see the module docstring).
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        # Photos in [0, 1], not a multiple of the network's stride (it pads inside).
        return (torch.rand(batch, 3, 37, 53, generator=torch.Generator().manual_seed(0)),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Pad to a multiple of the total stride, and to at least 2 cells at the bottom of the network (the
        # 3x3 reflection pads there need 2); crop back at the end.
        s = self.stride
        ph, pw = max((-h) % s, 2 * s - h), max((-w) % s, 2 * s - w)
        xp = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate") if ph or pw else x
        y = self.up(self.res(self.down(xp)))[..., :h, :w]
        return x + y.to(x.dtype)  # unbounded while training, so no pixel's gradient is cut off by a clamp



def _legacy(config: dict) -> dict:
    # Networks saved before ``arch`` existed are Johnson's layout.
    return {"arch": "johnson", **{k: v for k, v in config.items() if k in ("width", "res_blocks", "arch")}}


register(ModelSpec(name="fast-style", config=FastStyleConfig, networks={"net": TransformerNet}, legacy_config=_legacy))
