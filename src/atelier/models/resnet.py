"""A ResNet GAN backbone in the style of SNGAN: Miyato, Kataoka, Koyama & Yoshida, "Spectral
Normalization for Generative Adversarial Networks", ICLR 2018 (arXiv:1802.05957), whose CIFAR
networks follow Gulrajani et al. 2017 (WGAN-GP, appendix F).

    G: z -> Linear(s*s*ch) -> [GBlock up x2] * n -> BN -> ReLU -> Conv3x3(C) -> tanh
       GBlock: BN -> ReLU -> up -> Conv3x3 -> BN -> ReLU -> Conv3x3, + (up -> Conv1x1) shortcut
    D: DBlock0 (optimised first block, down) -> [DBlock down] * (n - 1) -> DBlock -> DBlock
       -> ReLU -> global sum pool -> Linear(1) (+ class projection)
       DBlock: ReLU -> Conv3x3 -> ReLU -> Conv3x3 -> (avgpool), + (Conv1x1 -> avgpool) shortcut

Spectral normalisation on every layer of D is on by default (the paper's setting, with the hinge
loss). Class-conditional G uses conditional batch norm in every block; D adds a projection term
(Miyato & Koyama 2018). ``attention`` inserts SAGAN self-attention at that feature resolution.
Widths are constant across blocks (``width``; SNGAN's CIFAR G uses 256, D 128: the default 64 keeps a
CPU step affordable). Resolutions 28 (start 7), 32 (start 4) and 64 (start 4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from atelier.losses import check_critic
from atelier.models.layers import (
    ClassProjection,
    ConditionalBatchNorm2d,
    LinearConditionalBatchNorm2d,
    SelfAttention,
    apply_spectral_norm,
    check_attention,
    check_labels,
    resolution_plan,
)
from atelier.models.registry import ModelSpec, Network, register

__all__ = ["ResNetConfig", "ResNetDiscriminator", "ResNetGenerator"]


# (start size, number of stride-2 steps) per supported output resolution
PLANS = {28: (7, 2), 32: (4, 3), 64: (4, 4)}


def _init(module: nn.Module) -> None:
    # SNGAN's reference code: Xavier-uniform, gain sqrt(2) inside residual branches, 1 elsewhere.
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=math.sqrt(2) if ".c1" in name or ".c2" in name else 1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResNetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    z_dim: int = Field(128, ge=1, le=4096)
    width: int = Field(64, ge=4, le=1024)
    num_classes: int = Field(0, ge=0, le=10_000)
    # Conditional G: 0 = a free (scale, shift) per class in every batch norm (SNGAN); > 0 = a shared class
    # embedding of this size, joined to z and mapped linearly to every norm's scale and shift (BigGAN).
    cond_dim: int = Field(0, ge=0, le=4096)
    spectral_norm_d: bool = True
    spectral_norm_g: bool = False
    attention: int | None = Field(None, ge=4)


class _Norm(nn.Module):
    """Batch norm; conditional batch norm (per-class table, or linear in a class embedding) when conditional."""

    def __init__(self, channels: int, num_classes: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.bn: nn.Module
        if num_classes and cond_dim:
            self.bn = LinearConditionalBatchNorm2d(channels, cond_dim)
        elif num_classes:
            self.bn = ConditionalBatchNorm2d(channels, num_classes)
        else:
            self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        # y: class labels (B,) for a per-class table, the class embedding (B, cond_dim) otherwise
        return self.bn(x, y) if y is not None else self.bn(x)


class GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.b1, self.b2 = _Norm(cin, num_classes, cond_dim), _Norm(cout, num_classes, cond_dim)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.sc = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.b1(x, y)), scale_factor=2, mode="nearest")
        h = self.c2(F.relu(self.b2(self.c1(h), y)))
        return h + self.sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.sc: nn.Conv2d | None = nn.Conv2d(cin, cout, 1) if (cin != cout or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The first block sees images, so it starts with a conv rather than a ReLU (SNGAN's "optimized" block).
        h = self.c2(F.relu(self.c1(x if self.first else F.relu(x))))
        s = x
        if self.first and self.sc is not None:  # shortcut: pool then 1x1 conv on the raw image
            s = self.sc(F.avg_pool2d(s, 2))
        elif self.sc is not None:
            s = self.sc(s)
            s = F.avg_pool2d(s, 2) if self.down else s
        if self.down:
            h = F.avg_pool2d(h, 2)
        return h + s


class ResNetGenerator(Network):
    def __init__(self, cfg: ResNetConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        start, n_up = resolution_plan("resnet", PLANS, resolution)
        check_attention(cfg.attention, resolution, (start, n_up))
        z_dim, width, num_classes, attention = cfg.z_dim, cfg.width, cfg.num_classes, cfg.attention
        cond_dim = cfg.cond_dim
        self.z_dim, self.start, self.width, self.num_classes = z_dim, start, width, num_classes
        self.cond_dim = cond_dim if num_classes else 0
        self.attention_at = attention
        # BigGAN's shared class embedding: joined to z at the input and read by every conditional norm.
        self.embed = nn.Embedding(num_classes, self.cond_dim) if self.cond_dim else None
        self.fc = nn.Linear(z_dim + self.cond_dim, start * start * width)
        self.blocks = nn.ModuleList(GBlock(width, width, num_classes, self.cond_dim) for _ in range(n_up))
        self.attn: SelfAttention | None = SelfAttention(width) if attention else None
        self.bn = nn.BatchNorm2d(width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        _init(self)
        for m in self.modules():  # _init's Xavier covers every Linear: the norms must start at the identity
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
        cond: torch.Tensor | None = y                                   # labels (B,) for per-class norms
        if self.embed is not None:
            cond = self.embed(y)                                        # (B, cond_dim)
            z = torch.cat([z, cond], dim=1)                             # (B, z_dim + cond_dim)
        h = self.fc(z).view(-1, self.width, self.start, self.start)     # (B, ch, s, s)
        size = self.start
        for block in self.blocks:
            if size == self.attention_at and self.attn is not None:
                h = self.attn(h)
            h = block(h, cond)                                          # (B, ch, 2s, 2s)
            size *= 2
        return torch.tanh(self.out(F.relu(self.bn(h))))                 # (B, C, res, res)


class ResNetDiscriminator(Network):
    def __init__(self, cfg: ResNetConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        plan = resolution_plan("resnet", PLANS, resolution)
        check_attention(cfg.attention, resolution, plan)
        n_down = plan[1]
        width, attention = cfg.width, cfg.attention
        num_classes = self.num_classes = cfg.num_classes
        blocks: list[nn.Module] = [DBlock(channels, width, down=True, first=True)]
        size = resolution // 2
        if size == attention:
            blocks.append(SelfAttention(width))
        for _ in range(n_down - 1):
            blocks.append(DBlock(width, width, down=True))
            size //= 2
            if size == attention:
                blocks.append(SelfAttention(width))
        blocks += [DBlock(width, width, down=False), DBlock(width, width, down=False)]
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(width, 1)
        self.project = ClassProjection(num_classes, width) if num_classes else None
        _init(self)
        if cfg.spectral_norm_d:
            apply_spectral_norm(self)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        (x,) = super().example_inputs(batch)
        return (x, torch.arange(batch) % self.num_classes) if self.num_classes else (x,)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                scores: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, 1); with ``scores=True`` also every class's projection term (B, K), from the same pass."""
        check_labels(y, self.num_classes, x.shape[0])
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))                      # (B, ch): global sum pooling
        out = self.fc(h)                                                # (B, 1) logit
        if self.project is None:
            if scores:
                raise ValueError("class scores need a class-conditional discriminator (num_classes > 0)")
            return out
        assert y is not None  # check_labels: a conditional D is given labels
        s = self.project.scores(h)                                      # (B, K)
        out = out + s.gather(1, y[:, None])                             # + <embed(y), h>
        return (out, s) if scores else out


register(ModelSpec(name="resnet", config=ResNetConfig, networks={"G": ResNetGenerator, "D": ResNetDiscriminator},
                   check=check_critic))
