"""Building blocks shared by the GAN backbones: self-attention, conditional batch norm, class
projection, spectral normalisation, the resolution plan and attention check of every backbone, and two
CPU speed levers (a dropout whose mask is cheap to draw, a channels_last-friendly flatten + linear).

- Self-attention: Zhang, Goodfellow, Metaxas & Odena, "Self-Attention Generative Adversarial
  Networks", ICML 2019 (arXiv:1805.08318).
- Conditional batch norm: de Vries et al. 2017; Dumoulin et al. 2017 (as used by Miyato & Koyama).
- Projection discriminator: Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018.
- Spectral normalisation: Miyato, Kataoka, Koyama & Yoshida, ICLR 2018 (PyTorch's parametrization).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["ClassProjection", "ConditionalBatchNorm2d", "Dropout", "LinearConditionalBatchNorm2d", "SelfAttention",
           "apply_spectral_norm", "check_attention", "check_channels", "flat_linear", "resolution_plan"]


def resolution_plan(family: str, plans: dict[int, tuple[int, int]], resolution: int) -> tuple[int, int]:
    """(start size, number of stride-2 steps) of a backbone family at a supported output resolution."""
    if resolution not in plans:
        raise ValueError(f"data.resolution must be one of {sorted(plans)} for model {family}, got {resolution}")
    return plans[resolution]


def check_channels(channels: int, allowed: tuple[int, ...]) -> None:
    if channels not in allowed:
        raise ValueError(f"data.channels must be one of {list(allowed)} for this model, got {channels}")


def check_attention(attention: int | None, resolution: int, plan: tuple[int, int]) -> None:
    """A self-attention block can sit at any feature resolution inside the network (not the output)."""
    start, n = plan
    sizes = [start * 2**i for i in range(n)]
    if attention is not None and attention not in sizes:
        raise ValueError(f"model.attention must be one of the feature resolutions {sizes} at data.resolution "
                         f"{resolution} (or null), got {attention}")


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the same maths (each element kept with probability 1 - p and scaled by
    1 / (1 - p)) whose mask, on CPU, comes from 16-bit lanes of full-range ``int64`` random draws.

    PyTorch's CPU dropout draws one ``bernoulli_`` sample per element; that took 28% of a DCGAN
    training step on a 2-core CPU (``benchmarks/train_speed.py --compare --profile``). Four 16-bit
    lanes per 64-bit draw, compared against a threshold, is 3.9x faster for the same mask
    distribution (p is resolved to 1/65536). Other devices keep PyTorch's fused kernel. Masks come
    from the default generator, so seeding and checkpointed RNG state cover them as before.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p in (0, 1) or x.device.type != "cpu":
            return super().forward(x)
        n = x.numel()
        lanes = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None).view(torch.int16)
        # The mask takes x's layout (channels_last included; empty_like gives dense strides even for a
        # sliced x): a mask in another memory format made every multiply, forward and backward, a strided
        # one (1.6x slower for D's first activation).
        keep = torch.empty_like(x, dtype=torch.bool)
        torch.ge(lanes[:n].as_strided(keep.shape, keep.stride()), -32768 + round(self.p * 65536), out=keep)
        # bool -> uint8 is a free view; uint8 -> float converts 10x faster than bool -> float does.
        mask = keep.view(torch.uint8).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * mask   # one scaled mask: cheapest forward + backward


def flat_linear(fc: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """``fc(h.flatten(1))`` for a (B, C, H, W) map, without copying a channels_last ``h`` to NCHW order.

    The weight's columns (C, H, W order, the layout of its checkpoints) are permuted to H, W, C instead,
    the same sums over a view of h. Flattening a channels_last map copied it, and the copy's NCHW-ordered
    gradient made every backward op below it (the dropout mask, leaky ReLU) a strided one.
    """
    if h.is_contiguous() or not h.is_contiguous(memory_format=torch.channels_last):
        return fc(h.flatten(1))
    B, C, H, W = h.shape
    weight = fc.weight.view(-1, C, H, W).permute(0, 2, 3, 1).reshape(fc.weight.shape[0], -1)
    return nn.functional.linear(h.permute(0, 2, 3, 1).reshape(B, -1), weight, fc.bias)


class SelfAttention(nn.Module):
    """SAGAN's attention block: every position attends to every other one, and a learned gate
    ``gamma`` (initialised to 0) lets the network start local and add global structure as it learns.

    Queries and keys use C/8 channels; values C/2 projected back to C (the BigGAN variant), and keys
    and values are max-pooled 2x2 to cut the attention matrix by 4 (as in SAGAN's reference code).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.q = nn.Conv2d(channels, max(channels // 8, 1), 1, bias=False)
        self.k = nn.Conv2d(channels, max(channels // 8, 1), 1, bias=False)
        self.v = nn.Conv2d(channels, max(channels // 2, 1), 1, bias=False)
        self.out = nn.Conv2d(max(channels // 2, 1), channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q = self.q(x).flatten(2)                                         # (B, c8, HW)
        pool = H % 2 == 0 and W % 2 == 0
        kv_in = nn.functional.max_pool2d(x, 2) if pool else x
        k = self.k(kv_in).flatten(2)                                     # (B, c8, HW')
        v = self.v(kv_in).flatten(2)                                     # (B, c2, HW')
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)              # (B, HW, HW')
        o = (v @ attn.transpose(1, 2)).view(B, -1, H, W)                 # (B, c2, H, W)
        return x + self.gamma * self.out(o)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are looked up per class (initialised to the identity)."""

    def __init__(self, channels: int, num_classes: int, **bn_kwargs) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False, **bn_kwargs)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class LinearConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are linear maps of a conditioning vector (BigGAN's shared class
    embedding, Brock, Donahue & Simonyan 2019): ``bn(x) * (1 + W_g c) + W_b c``, starting at the identity.

    Why not one free (scale, shift) per class: Adam moves each parameter by at most about ``lr`` per step,
    so a per-class table drifts from the identity by <= 1e-4 per step at a generator lr of 1e-4 (0.02
    after 240 steps, measured), far too little to tell ten digits apart in a short run. Here every scale
    is a sum over ``cond_dim`` weights times the embedding's entries, so it can move ~cond_dim times faster,
    and classes share what they have in common.
    """

    def __init__(self, channels: int, cond_dim: int, **bn_kwargs) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False, **bn_kwargs)
        self.gain = nn.Linear(cond_dim, channels, bias=False)
        self.bias = nn.Linear(cond_dim, channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x (B, C, H, W); c (B, cond_dim)
        return self.bn(x) * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


class ClassProjection(nn.Module):
    """The projection discriminator's class term: <embed(y), phi(x)> added to D's unconditional logit."""

    def __init__(self, num_classes: int, features: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, features)
        nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.embed(y) * h).sum(1, keepdim=True)                 # (B, 1)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """The class term for every class at once, (B, K): a linear classifier on D's pooled features.

        Trained with cross-entropy on real images (``loss.class_weight``), it teaches D what each class
        looks like from the labels directly, instead of only through the adversarial loss.
        """
        return h @ self.embed.weight.t().to(h.dtype)                   # (B, ch) @ (ch, K) -> (B, K)


def apply_spectral_norm(module: nn.Module, skip: tuple[type[nn.Module], ...] = ()) -> nn.Module:
    """Spectral-normalise every conv, linear and embedding weight of ``module`` (in place).

    ``skip`` names layer types to leave alone (G's class embeddings), and the per-class gains of
    conditional batch norm are never normalised (they are scales, not a linear map).
    """
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)
    inside_cbn = {id(m) for cbn in module.modules()
                  if isinstance(cbn, (ConditionalBatchNorm2d, LinearConditionalBatchNorm2d)) for m in cbn.modules()}
    for m in list(module.modules()):
        if isinstance(m, kinds) and not isinstance(m, skip) and id(m) not in inside_cbn:
            spectral_norm(m)
    return module


def check_labels(y: torch.Tensor | None, num_classes: int, batch: int) -> None:
    """Conditional networks need one label per image; unconditional ones take none."""
    if num_classes and y is None:
        raise ValueError(f"this network is class-conditional ({num_classes} classes): pass labels y")
    if not num_classes and y is not None:
        raise ValueError("this network is unconditional; it takes no labels")
    if y is not None and (y.ndim != 1 or y.shape[0] != batch):
        raise ValueError(f"expected labels of shape ({batch},), got {tuple(y.shape)}")
