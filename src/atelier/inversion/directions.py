"""Directions in a generator's latent space that change one thing about its images, found without labels.

* ``sefa``: Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs", CVPR 2021. The first layer that
  reads the latent is an affine map ``y = A w + b``; the unit directions ``n`` that change ``y`` most maximise
  ``|A n|^2``: the eigenvectors of ``A^T A`` with the largest eigenvalues. For a StyleGAN2-type generator ``A``
  stacks every synthesis layer's style affine (its modulation weights, with their equalized-lr gain) and the
  directions live in w; for DCGAN / ResNet / a VAE decoder ``A`` is the first linear layer's weight on z.
  Orthonormal by construction.
* ``pca``: Härkönen, Hertzmann, Lehtinen & Paris, "GANSpace: Discovering Interpretable GAN Controls", NeurIPS 2020.
  With a mapping network: the principal axes of sampled w (orthonormal). Without one, GANSpace's recipe for
  BigGAN: PCA of the first layer's activations over sampled z (2,000; a randomized low-rank PCA, 20 components
  unless asked), each component carried back to z by a least-squares regression of z on the PCA coordinates (unit
  length, not orthogonal in general). That first layer is linear in z here, so these span nearly the same
  directions as SeFa's; GANSpace's choice of a deeper layer is not made.
* ``class``: for a class-conditional StyleGAN-type run, the mean w of each class minus the mean w of all classes
  (amount 1 moves an image's w by exactly that difference).

An amount is in standard deviations of the sampled latents along the direction (1 for z, whose prior is N(0, I);
the measured spread for w), so ``--amount -2..2`` means the same for every method and model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from atelier.errors import AtelierError
from atelier.inversion.project import dim, has_mapping, mapping

__all__ = ["METHODS", "Directions", "class_directions", "combine", "find_directions", "first_linear", "move", "pca",
           "sefa"]

METHODS = ("sefa", "pca", "class")


@dataclass
class Directions:
    method: str
    space: str                 # "w" (added to every layer of a w+ latent) or "z"
    vectors: torch.Tensor      # (K, D), one direction per row, strongest first
    scales: torch.Tensor       # (K,): latent units per amount of 1
    values: torch.Tensor       # (K,): eigenvalues (sefa), explained variances (pca), class index (class)
    orthonormal: bool

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def check(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise AtelierError(f"direction {index} is out of range: the {self.method} directions of this model are "
                               f"0..{len(self) - 1}")


def first_linear(net: nn.Module) -> nn.Linear:
    """The first fully connected layer that reads z (DCGAN's / ResNet's ``fc``, a VAE decoder's first Linear)."""
    z_dim = dim(net, "z_dim")
    for m in net.modules():
        if isinstance(m, nn.Linear) and m.in_features >= z_dim:
            return m
    raise AtelierError(f"{type(net).__name__} has no fully connected layer on z: no closed-form (SeFa) directions")


def _sampled_w(net: nn.Module, n: int, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    dev = next(net.parameters()).device
    z = torch.randn(n, dim(net, "z_dim"), generator=torch.Generator().manual_seed(seed)).to(dev)
    classes = int(getattr(net, "num_classes", 0) or 0)
    if labels is None and classes:
        labels = torch.arange(n) % classes
    with torch.no_grad():
        return mapping(net, z, None if labels is None else labels.to(dev))[:, 0].float().cpu()


def _spread(vectors: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Standard deviation of the samples along each direction (1 for z, whose prior is N(0, I))."""
    if w is None:
        return vectors.norm(dim=1)
    return ((w - w.mean(0)) @ vectors.t()).std(0)


def sefa(net: nn.Module, k: int | None = None, n: int = 2000, seed: int = 0) -> Directions:
    """SeFa directions (see the module docstring); ``n`` sampled w measure each direction's spread."""
    if has_mapping(net):
        weights = [m.weight.detach().float() * float(getattr(m, "w_gain", 1.0))
                   for name, m in net.named_modules() if name.endswith("affine") and hasattr(m, "weight")]
        if not weights:
            raise AtelierError(f"{type(net).__name__} has no style affines: no SeFa directions")
        A = torch.cat(weights)                                              # (sum of in-channels, w_dim)
        space, w = "w", _sampled_w(net, n, seed)
    else:
        z_dim = dim(net, "z_dim")
        A = first_linear(net).weight.detach().float()[:, :z_dim]            # (out, z_dim): the z columns
        space, w = "z", None
    values, vecs = torch.linalg.eigh(A.t().cpu().double() @ A.cpu().double())   # ascending
    values, vecs = values.flip(0).float(), vecs.flip(1).t().float()         # (D,), (D, D) rows strongest first
    k = len(values) if k is None else min(k, len(values))
    vecs, values = vecs[:k], values[:k]
    return Directions("sefa", space, vecs, _spread(vecs, w), values, orthonormal=True)


def pca(net: nn.Module, k: int | None = None, n: int = 10_000, seed: int = 0) -> Directions:
    """GANSpace directions (see the module docstring) from ``n`` seeded samples."""
    if has_mapping(net):
        w = _sampled_w(net, n, seed)                                        # (n, w_dim)
        _, s, v = torch.linalg.svd(w - w.mean(0), full_matrices=False)     # rows of v: principal axes
        k = v.shape[0] if k is None else min(k, v.shape[0])
        vecs, var = v[:k], s[:k].square() / (n - 1)
        return Directions("pca", "w", vecs, var.sqrt(), var, orthonormal=True)
    z_dim = dim(net, "z_dim")
    dev = next(net.parameters()).device
    n = min(n, 2000)  # the first layer's activations are wide (12,544 for the MNIST DCGAN): a low-rank PCA of 2k
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    fc = first_linear(net)
    with torch.no_grad():
        zin = z if fc.in_features == z_dim else torch.cat([z, torch.zeros(n, fc.in_features - z_dim)], 1)
        act = fc(zin.to(dev)).float().cpu()                                 # (n, features)
    k = min(k or 20, z_dim)
    g = torch.random.fork_rng(devices=[])  # pca_lowrank draws a random projection: leave the global stream alone
    with g:
        torch.manual_seed(seed)
        _, s, v = torch.pca_lowrank(act, q=min(k + 10, *act.shape), center=True)   # v: (features, q)
    act = act - act.mean(0)
    coords = act @ v[:, :k]                                                 # (n, k) PCA coordinates
    u = torch.linalg.lstsq(coords, z).solution                              # (k, z_dim): z ~ coords @ u
    vecs = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return Directions("pca", "z", vecs, _spread(vecs, None), s[:k].square() / (n - 1), orthonormal=False)


def class_directions(net: nn.Module, n_per_class: int = 500, seed: int = 0) -> Directions:
    """Class-mean differences of w for a class-conditional StyleGAN-type generator (one direction per class)."""
    classes = int(getattr(net, "num_classes", 0) or 0)
    if not has_mapping(net) or not classes:
        raise AtelierError("class directions need a class-conditional generator with a mapping network "
                           "(model stylegan2 with model.num_classes > 0); use sefa or pca")
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    w = _sampled_w(net, len(labels), seed, labels).view(classes, n_per_class, -1)
    means = w.mean(1)                                                       # (K, w_dim)
    vecs = means - means.mean(0)
    return Directions("class", "w", vecs, torch.ones(classes), torch.arange(classes).float(), orthonormal=False)


def find_directions(net: nn.Module, method: str = "sefa", k: int | None = None, seed: int = 0) -> Directions:
    if method == "sefa":
        return sefa(net, k, seed=seed)
    if method == "pca":
        return pca(net, k, seed=seed)
    if method == "class":
        d = class_directions(net, seed=seed)
        return d if k is None else Directions(d.method, d.space, d.vectors[:k], d.scales[:k], d.values[:k], False)
    raise AtelierError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def move(latent: torch.Tensor, directions: Directions, index: int, amounts: torch.Tensor) -> torch.Tensor:
    """``latent`` (D,) or w+ (L, D) moved along direction ``index`` by each amount: (T, D) or (T, L, D)."""
    directions.check(index)
    step = directions.vectors[index] * directions.scales[index]            # (D,)
    if latent.shape[-1] != step.shape[0]:
        raise AtelierError(f"the latent has {latent.shape[-1]} values per vector; the {directions.space} directions "
                           f"have {step.shape[0]}")
    a = amounts.float().view(-1, *([1] * latent.ndim))                     # (T, 1) or (T, 1, 1)
    return latent.float()[None] + a * step


def combine(latent: torch.Tensor, directions: Directions, amounts: Sequence[float]) -> torch.Tensor:
    """``latent`` (D,) or w+ (L, D) moved along several directions at once: direction i by ``amounts[i]`` (the
    studio's sliders); amounts of 0 leave it, and one non-zero amount is :func:`move` by that amount."""
    if len(amounts) > len(directions):
        raise AtelierError(f"{len(amounts)} amounts given; the {directions.method} directions of this model are "
                           f"{len(directions)}")
    a = torch.tensor([float(x) for x in amounts], dtype=torch.float32)
    step = (a[:, None] * directions.vectors[: len(a)] * directions.scales[: len(a), None]).sum(0)   # (D,)
    if latent.shape[-1] != step.shape[0]:
        raise AtelierError(f"the latent has {latent.shape[-1]} values per vector; the {directions.space} directions "
                           f"have {step.shape[0]}")
    return latent.float() + step
