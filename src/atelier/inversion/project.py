"""Projection (GAN inversion): the latent whose image matches a given image, found by optimisation.

With a mapping network (the StyleGAN2 family), the StyleGAN2 projector's recipe (Karras et al., "Analyzing and
Improving the Image Quality of StyleGAN", CVPR 2020, sec. 5 and appendix D), written from the paper:

* start at the tracked average ``w_avg``, optimise one ``w`` broadcast to every layer (``space="w"``) or one per
  layer (``"w+"``, Abdal et al., "Image2StyleGAN", ICCV 2019: closer fits, less regular latents);
* add Gaussian noise to w during the first 3/4 of the steps, ``0.05 * sigma_w`` ramped quadratically to 0
  (sigma_w: the RMS distance of sampled w to their mean), so the search explores before it settles;
* Adam with the learning rate ramped up over the first 5% and down (cosine) over the last 25%;
* optimise the per-layer noise maps too, each normalised to zero mean and unit variance after every step and
  regularised towards white noise by the squared autocorrelation at one pixel offset over a pyramid of scales
  (weight 1e5), so that they cannot carry the image themselves.

Without a mapping network (DCGAN, ResNet GAN, a VAE's decoder) the search is in ``z``: the best of a few seeded
candidates (and, for a conditional model with no class given, the best class) is refined with the same schedule
under a Gaussian prior penalty ``prior * |z|^2 / (2 D)`` (the negative log-density of N(0, I) per dimension), which
keeps z where the generator was trained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from atelier.errors import AtelierError
from atelier.inversion.distance import ProjectionDistance
from atelier.latent import to_uint8

__all__ = ["SPACES", "Projection", "has_mapping", "latent_stats", "noise_buffers", "project_batch", "project_latent",
           "render"]

SPACES = ("w", "w+", "z")
Space = Literal["w", "w+", "z"]


def has_mapping(net: nn.Module) -> bool:
    """Whether ``net`` has a mapping network and a synthesis network (StyleGAN2-type), i.e. a w space."""
    return all(hasattr(net, a) for a in ("mapping", "synthesis", "w_avg", "num_ws", "w_dim"))


def dim(net: nn.Module, name: str) -> int:
    """An integer attribute of a generator (``z_dim``, ``w_dim``, ``num_ws``)."""
    return int(getattr(net, name))


def mapping(net: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``net.mapping(z, y)`` -> ws (B, num_ws, w_dim) of a generator with a mapping network."""
    out: torch.Tensor = getattr(net, "mapping")(z, y)  # noqa: B009  (a generator's method, not nn.Module's)
    return out


def synthesis(net: nn.Module, ws: torch.Tensor) -> torch.Tensor:
    """``net.synthesis(ws)`` with the generator's fixed noise maps -> raw images (B, C, H, W)."""
    out: torch.Tensor = getattr(net, "synthesis")(ws, noise_mode="const")  # noqa: B009
    return out


def noise_buffers(net: nn.Module) -> dict[str, torch.Tensor]:
    """The generator's fixed per-layer noise maps (``noise_mode="const"``) by state name; {} when it has none."""
    return {name: buf for name, buf in net.named_buffers() if name.endswith("noise_const")}


class _Synthesis(nn.Module):
    """``ws -> image`` as a module, so :func:`torch.func.functional_call` can swap the noise buffers for tensors
    being optimised without touching the generator."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.g = net

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return synthesis(self.g, ws)


def render(net: nn.Module, latent: torch.Tensor, space: str, label: int | torch.Tensor | None = None,
           noise: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Latents -> raw images (B, C, H, W), differentiable. ``latent``: z (B, z_dim), w (B, w_dim) or w+ (B, L, w_dim);
    ``label``: one class for all, or one per latent (B,); ``noise``: replacement noise maps by buffer name (a
    projection's: (1 or B, 1, s, s)), else the generator's own."""
    if space == "z":
        y = (None if label is None else label.to(latent.device) if isinstance(label, torch.Tensor)
             else torch.full((latent.shape[0],), label, dtype=torch.long, device=latent.device))
        if has_mapping(net):
            ws = mapping(net, latent, y)
        else:
            return net(latent, y) if y is not None else net(latent)
    else:
        ws = latent[:, None, :].expand(-1, dim(net, "num_ws"), -1) if space == "w" else latent
    if noise:
        out: torch.Tensor = torch.func.functional_call(_Synthesis(net), {f"g.{k}": v for k, v in noise.items()},
                                                       (ws,), strict=False)
        return out
    return synthesis(net, ws)


@torch.no_grad()
def latent_stats(net: nn.Module, n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_avg (w_dim,), sigma_w): the tracked average (the mean of ``n`` sampled w for an untrained model whose
    average was never tracked) and the RMS distance of sampled w to it."""
    dev = next(net.parameters()).device
    z = torch.randn(n, dim(net, "z_dim"), generator=torch.Generator().manual_seed(seed))
    classes = int(getattr(net, "num_classes", 0) or 0)
    y = (torch.arange(n) % classes).to(dev) if classes else None
    w = mapping(net, z.to(dev), y)[:, 0].float()                            # (n, w_dim)
    tracked = net.get_buffer("w_avg").float()
    w_avg = tracked if bool(tracked.abs().sum() > 0) else w.mean(0)
    return w_avg, (w - w_avg).square().sum(1).mean().sqrt()


def noise_regularizer(noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """StyleGAN2 appendix D: squared autocorrelation at 1-pixel shifts (x and y), summed over a pyramid of each
    noise map down to 8x8 (a 2x2 average times 2 keeps white noise at unit variance); per image of a batch of
    maps (B, 1, s, s), summed over the batch."""
    total = torch.zeros(())
    dims = (1, 2, 3)
    for n in noise.values():
        while True:
            total = total + ((n * n.roll(1, dims=3)).mean(dims).square() + (n * n.roll(1, dims=2)).mean(dims).square()
                             ).sum()
            if n.shape[-1] <= 8 or n.shape[-1] % 2:
                break
            n = F.avg_pool2d(n, 2) * 2
    return total


def _lr(t: float, base: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Learning rate at progress ``t`` in [0, 1): cosine ramp down over the last 25%, linear ramp up (StyleGAN2)."""
    down = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / rampdown) * math.pi)
    return base * down * min(1.0, t / rampup)


@dataclass
class Projection:
    """A projection's result: the latent, its image, the target and the pictures along the way."""

    space: str
    latent: torch.Tensor                      # z (z_dim,), w (w_dim,) or w+ (num_ws, w_dim), float32 on the CPU
    image: torch.Tensor                       # uint8 (C, H, W): the reconstruction
    target: torch.Tensor                      # uint8 (C, H, W): the image as the generator's size and channels
    snapshots: list[tuple[int, torch.Tensor]]  # (step, uint8 (C, H, W)) at a few steps, the start (0) first
    terms: dict[str, float]                   # the distance's final terms (unweighted)
    distance: dict[str, Any]                  # what the distance was (ProjectionDistance.describe)
    steps: int
    seconds: float
    label: int | None = None                  # the class a conditional z-space model was projected with
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # optimised noise maps (by buffer name)
    start: str = ""                           # how the search started, in words


def _candidates(net: nn.Module, targets: torch.Tensor, distance: ProjectionDistance, z_dim: int, n: int,
                classes: list[int | None], seed: int) -> tuple[torch.Tensor, list[int | None]]:
    """Per target, the best of ``n`` seeded z (per class in ``classes``) by the distance: the start of a z-space
    search. Returns z (B, z_dim) and the class of each."""
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed)).to(targets.device)
    B = targets.shape[0]
    best_d = torch.full((B,), math.inf)
    best_z = z[:1].repeat(B, 1)
    best_y: list[int | None] = [None] * B
    with torch.no_grad():
        for y in classes:
            images = render(net, z, "z", y)
            for b in range(B):
                d = distance(images, targets[b:b + 1].expand(n, -1, -1, -1))
                i = int(d.argmin())
                if float(d[i]) < float(best_d[b]):
                    best_d[b], best_z[b], best_y[b] = float(d[i]), z[i], y
    return best_z.clone(), best_y


def project_latent(net: nn.Module, target: torch.Tensor, distance: ProjectionDistance, space: Space = "w",
                   steps: int = 500, lr: float = 0.1, *, seed: int = 0, optimize_noise: bool = True,
                   noise_weight: float = 1e5, prior: float = 1.0, label: int | None = None, num_classes: int = 0,
                   candidates: int = 64, snapshots: int = 6,
                   callback: Callable[[int, float], None] | None = None) -> Projection:
    """Project ``target`` (1, C, H, W) in [-1, 1] into ``net`` (eval mode); see the module docstring.

    ``label``: the class of a conditional z-space model (None: the best class is searched); ``snapshots``: how many
    images along the way (the start and the end included); ``callback(step, loss)`` is called every step."""
    return project_batch(net, target, distance, space, steps, lr, seed=seed, optimize_noise=optimize_noise,
                         noise_weight=noise_weight, prior=prior, label=label, num_classes=num_classes,
                         candidates=candidates, snapshots=snapshots, callback=callback)[0]


def project_batch(net: nn.Module, targets: torch.Tensor, distance: ProjectionDistance, space: Space = "w",
                  steps: int = 500, lr: float = 0.1, *, seed: int = 0, optimize_noise: bool = True,
                  noise_weight: float = 1e5, prior: float = 1.0, label: int | None = None, num_classes: int = 0,
                  candidates: int = 64, snapshots: int = 6,
                  callback: Callable[[int, float], None] | None = None) -> list[Projection]:
    """:func:`project_latent` of several images at once, ``targets`` (B, C, H, W): one latent (and set of noise
    maps) per image, optimised together. Every term of the objective is a sum over the images of a term of one
    image alone and Adam is element-wise, so each image follows its own search (the random exploration noise is
    drawn for the whole batch); a batch is many times faster per image than one image at a time on a CPU.
    ``seconds`` of each result is the batch's time divided by B."""
    if space not in SPACES:
        raise AtelierError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    mapping_net = has_mapping(net)
    if space != "z" and not mapping_net:
        raise AtelierError(f"space {space!r} needs a generator with a mapping network (model stylegan2); this one "
                           f"has none: project into z")
    if steps < 1:
        raise AtelierError(f"steps must be at least 1, got {steps}")
    t0 = time.perf_counter()
    B = targets.shape[0]
    net.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    noise: dict[str, torch.Tensor] = {}
    w_std = torch.zeros(())
    labels: list[int | None] = [label] * B
    if space == "z":
        z_dim = dim(net, "z_dim")
        classes: list[int | None] = ([label] if label is not None else list(range(num_classes))) or [None]
        latent, labels = _candidates(net, targets, distance, z_dim, candidates, classes, seed)
        start = f"the best of {candidates} seeded z" + (f" per class ({len(classes)})" if num_classes else "")
    else:
        w_avg, w_std = latent_stats(net, seed=seed)
        latent = w_avg[None].repeat(B, 1) if space == "w" else w_avg[None, None].repeat(B, dim(net, "num_ws"), 1)
        start = "w_avg"
        if optimize_noise:
            noise = {k: v.detach().float().repeat(B, 1, 1, 1) for k, v in noise_buffers(net).items()}
    y = None if labels[0] is None else torch.tensor(labels, dtype=torch.long)
    latent = latent.float().requires_grad_(True)
    for v in noise.values():
        v.requires_grad_(True)
    opt = torch.optim.Adam([latent, *noise.values()], lr=lr, betas=(0.9, 0.999))
    marks = sorted({round(i * steps / max(1, snapshots - 1)) for i in range(snapshots)} - {steps})
    pics: list[tuple[int, torch.Tensor]] = []
    per_image = tuple(range(1, latent.ndim))                                 # the dims of one image's latent
    for step in range(steps):
        t = step / steps
        for group in opt.param_groups:
            group["lr"] = _lr(t, lr)
        shake = 0.05 * float(w_std) * max(0.0, 1.0 - t / 0.75) ** 2             # 0 in z space
        x = latent + torch.randn(latent.shape, generator=gen).to(latent) * shake if shake else latent
        img = render(net, x, space, y, noise or None)
        if step in marks:
            pics.append((step, to_uint8(img.detach())))
        loss = distance(img, targets).sum()
        if noise:
            loss = loss + noise_weight * noise_regularizer(noise)
        if space == "z":
            loss = loss + prior * latent.square().mean(per_image).sum() / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # keep each noise map white-noise-like: zero mean, unit variance (StyleGAN2)
            for v in noise.values():
                v.sub_(v.mean((1, 2, 3), keepdim=True)).div_(v.square().mean((1, 2, 3), keepdim=True).sqrt()
                                                               .clamp_min(1e-8))
        if callback is not None:
            callback(step, float(loss))
    with torch.no_grad():
        img = render(net, latent, space, y, noise or None)
        terms = distance.terms(img, targets)
    pics.append((steps, to_uint8(img)))
    seconds = (time.perf_counter() - t0) / B
    final, images, goal = latent.detach().float().cpu(), to_uint8(img), to_uint8(targets)
    return [Projection(space=space, latent=final[b], image=images[b], target=goal[b],
                       snapshots=[(k, p[b]) for k, p in pics], terms={k: float(v[b]) for k, v in terms.items()},
                       distance=distance.describe(), steps=steps, seconds=seconds, label=labels[b],
                       noise={k: v[b:b + 1].detach().cpu() for k, v in noise.items()}, start=start)
            for b in range(B)]
