"""Exponential moving average of the generator's weights (Karras et al. 2018; Yazıcı et al. 2019).

The half-life is counted in images, so the average covers the same amount of training whatever the
batch size (StyleGAN2-ADA's ``ema_kimg``). Float buffers (BatchNorm running statistics) are
averaged with the same rate, so the EMA network's normalisation matches its averaged weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    def __init__(self, model: nn.Module, half_life_kimg: float, rampup: float | None = 0.05) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.half_life_kimg = half_life_kimg
        self.rampup = rampup

    def beta(self, batch_size: int, images_seen: int) -> float:
        if self.half_life_kimg <= 0:
            return 0.0
        half_life = self.half_life_kimg * 1000
        if self.rampup is not None:
            # Early on, the half-life is at most rampup * images seen, so the init is forgotten quickly.
            half_life = min(half_life, images_seen * self.rampup)
        return 0.5 ** (batch_size / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, batch_size: int, images_seen: int) -> None:
        beta = self.beta(batch_size, images_seen)
        for p_ema, p in zip(self.model.parameters(), model.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1.0 - beta)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            if b.dtype.is_floating_point:
                b_ema.lerp_(b, 1.0 - beta)
            else:
                b_ema.copy_(b)
