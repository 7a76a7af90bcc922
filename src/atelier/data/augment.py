"""Augmentation for training GANs on little data: DiffAugment and ADA's adaptive probability.

- DiffAugment: Zhao, Liu, Lin, Zhu & Han, "Differentiable Augmentation for Data-Efficient GAN
  Training", NeurIPS 2020 (arXiv:2006.10738). The same random, differentiable transforms are applied
  to real and fake images every time D sees them (in D's step and in G's step), so D cannot overfit
  the few real images and G's gradient flows through the transform.
- ADA: Karras et al., "Training Generative Adversarial Networks with Limited Data", NeurIPS 2020
  (arXiv:2006.06676). Each image is augmented with probability p, and p follows an overfitting
  heuristic r_t = E[sign(D(real))]: up when r_t is above a target (D too sure of reals), down otherwise.

The transforms are written with plain tensor ops rather than kornia's: DiffAugment's operations are
integer translation with zero fill, a fixed-size cutout and three colour jitters on images in
[-1, 1]; each is a few lines, exact to the paper, runs in-graph on any device, and draws its random
numbers from the global torch generator, which the trainer checkpoints (so resumes are exact).
``p`` and the ADA statistics are part of the checkpoint too (StyleGAN2-ADA's resume restarts p).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from atelier.config import AugmentConfig
from atelier.distributed import all_mean

__all__ = ["Augment", "brightness", "contrast", "cutout", "saturation", "translation"]


def _uniform(x: torch.Tensor) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_uniform(x) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y (integer pixels), filling with zeros."""
    B, _, H, W = x.shape
    sy, sx = int(H * ratio + 0.5), int(W * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (B, 1, 1), device=x.device)
    tx = torch.randint(-sx, sx + 1, (B, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(H, device=x.device), torch.arange(W, device=x.device), indexing="ij")
    # Index into a copy padded by one pixel of zeros: out-of-range reads land on the padding.
    iy = (gy.unsqueeze(0) + ty + 1).clamp(0, H + 1)                   # (B, H, W)
    ix = (gx.unsqueeze(0) + tx + 1).clamp(0, W + 1)
    padded = F.pad(x, (1, 1, 1, 1))                                    # (B, C, H+2, W+2)
    flat = padded.flatten(2)                                           # (B, C, (H+2)(W+2))
    idx = (iy * (W + 2) + ix).flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)
    return flat.gather(2, idx).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` times the image size at a random centre in each image."""
    B, _, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    cy = torch.randint(0, H + (1 - ch % 2), (B, 1, 1), device=x.device)
    cx = torch.randint(0, W + (1 - cw % 2), (B, 1, 1), device=x.device)
    gy = torch.arange(H, device=x.device).view(1, H, 1)
    gx = torch.arange(W, device=x.device).view(1, 1, W)
    y0, x0 = cy - ch // 2, cx - cw // 2                                # may start outside: clipped
    inside = (gy >= y0) & (gy < y0 + ch) & (gx >= x0) & (gx < x0 + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPS = {"color": (brightness, saturation, contrast), "translation": (translation,), "cutout": (cutout,)}


class Augment:
    """DiffAugment's policy applied per image with probability ``p`` (fixed, or adapted as in ADA)."""

    def __init__(self, cfg: AugmentConfig, batch_size: int) -> None:
        self.cfg = cfg
        self.ops = [op for name in cfg.policy.split(",") if name for op in OPS[name]]
        self.p = float(cfg.p)
        self.batch_size = batch_size
        self._sign_sum, self._sign_n, self._steps = 0.0, 0, 0

    @property
    def enabled(self) -> bool:
        return bool(self.ops)

    @property
    def adaptive(self) -> bool:
        return self.cfg.ada_target is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch (real and fake images alike); differentiable with respect to ``x``."""
        if not self.ops or self.p <= 0:
            return x
        for op in self.ops:
            y = op(x)
            if self.p < 1:
                keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
                y = torch.where(keep, y, x)
            x = y
        return x

    def observe(self, real_logits: torch.Tensor) -> None:
        """ADA: accumulate sign(D(real)) and, every ``ada_interval`` steps, move p toward the target."""
        if not self.adaptive:
            return
        self._sign_sum += float(real_logits.detach().float().sign().sum())
        self._sign_n += real_logits.numel()
        self._steps += 1
        if self._steps % self.cfg.ada_interval == 0:
            # Under DDP every rank must move p alike: the statistic is over the global batch (ratio of means
            # over ranks = ratio of sums). In one process all_mean returns its input.
            ada = all_mean({"sum": self._sign_sum, "n": float(self._sign_n)})
            r_t = ada["sum"] / max(ada["n"], 1)
            step = self.batch_size * self.cfg.ada_interval / (self.cfg.ada_kimg * 1000)
            assert self.cfg.ada_target is not None  # adaptive() says so
            direction = 1.0 if r_t > self.cfg.ada_target else -1.0
            self.p = min(max(self.p + direction * step, 0.0), 1.0)
            self._sign_sum, self._sign_n = 0.0, 0

    def stats(self) -> dict[str, float]:
        return {"aug_p": self.p} if self.enabled else {}

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "sign_sum": self._sign_sum, "sign_n": self._sign_n, "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state["p"])
        self._sign_sum, self._sign_n, self._steps = float(state["sign_sum"]), int(state["sign_n"]), int(state["steps"])
