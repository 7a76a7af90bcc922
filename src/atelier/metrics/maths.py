"""Metric maths over feature matrices (evaluator outputs), seeded wherever it samples.

* FID (Heusel et al. 2017): Frechet distance of Gaussians fitted to the two feature sets
  (torchmetrics' ``FrechetInceptionDistance`` over float64 sums).
* KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel, averaged over random
  subsets (torchmetrics' ``KernelInceptionDistance``).
* IS (Salimans et al. 2016): exp(E KL(p(y|x) || p(y))) over splits (torchmetrics' ``InceptionScore``).
* Precision/recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
  Generative Models"): each set's manifold is the union of balls reaching each point's k-th nearest
  neighbour; precision = share of generated points inside the real manifold, recall = share of real
  points inside the generated one. torchmetrics has none, so it is written here (tests check it
  against SciPy).

torchmetrics draws its KID/IS subsets from the global torch generator; those draws run inside a
forked RNG seeded with ``seed``, so a score is reproducible and training's random stream untouched.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["fid", "inception_score", "kid", "precision_recall"]


class _Precomputed(nn.Module):
    """Identity 'feature extractor': the features were already computed by an evaluator."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _quiet(cls, *args, **kwargs):
    # KID and IS warn at construction that they keep every feature in memory: we know, and pass them.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        return cls(*args, **kwargs)


def _check(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(real)} and {len(fake)}")


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to ``real`` and ``fake`` features ``(N, D)``."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check(real, fake)
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    # Tiny negative values are rounding of an exact zero (a set against itself).
    return max(float(metric.compute()), 0.0)


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Unbiased KID: (mean, std) of MMD^2 over ``subsets`` random subsets of ``subset_size`` per set."""
    from torchmetrics.image.kid import KernelInceptionDistance

    _check(real, fake)
    size = min(subset_size, len(real), len(fake))
    metric = _quiet(KernelInceptionDistance, feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of exp(E_x KL(p(y|x) || p(y))) over ``splits`` random splits of the logits ``(N, K)``."""
    from torchmetrics.image.inception import InceptionScore

    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"need (N, K) logits with N >= splits ({splits}), got {tuple(logits.shape)}")
    metric = _quiet(InceptionScore, feature=_Precomputed(logits.shape[1]), splits=splits)
    metric.update(logits.double())
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")  # the std of a single split
        mean, std = metric.compute()
    return float(mean), float(std) if splits > 1 else 0.0


def _kth_radius(x: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row ``(N,)``."""
    out = []
    for chunk in x.split(block):
        d = torch.cdist(chunk, x)
        # The k+1 smallest include the point itself (distance 0), so the (k+1)-th is the k-th neighbour.
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def _covered(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor, block: int) -> torch.Tensor:
    """For each query row: is it inside any ball (ref_j, radii_j)?"""
    out = []
    for chunk in query.split(block):
        out.append((torch.cdist(chunk, ref) <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, block: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls (k=3 as the paper)."""
    _check(real, fake)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    real, fake = real.float(), fake.float()
    precision = _covered(fake, real, _kth_radius(real, k, block), block).double().mean()
    recall = _covered(real, fake, _kth_radius(fake, k, block), block).double().mean()
    return float(precision), float(recall)
