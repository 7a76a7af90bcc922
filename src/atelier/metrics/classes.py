"""Class-level checks of generated images, read by a domain classifier (the ``digits`` / ``fashion`` evaluator).

* **Class agreement** (conditional models): the share of images generated for class k that the
  classifier calls k. It is the "accuracy" half of CAS (Ravuri & Vinyals 2019) without training a
  classifier, and the check a user makes by eye when asking for sevens; chance is 1/K.
* **Class balance** (unconditional models): the share of each predicted class among samples, and the
  histogram's entropy normalised to [0, 1] (1: all K classes equally often). A generator that drops or
  favours digits shows it here before FID moves much.
* **Intra-class diversity**: the mean pairwise distance between the classifier's features of images of
  one class, divided by the same for real images of that class (1: as varied as the data; near 0: the
  class collapsed to a few images). Intra-class FID (per-class Frechet distance) complements it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ClassBalance", "class_agreement", "class_balance", "intra_class_diversity", "mean_pairwise_distance",
           "per_class_agreement", "predict_classes"]


def _logits_of(classifier: nn.Module | Callable, images: torch.Tensor) -> torch.Tensor:
    """Logits of a batch from an atelier Evaluator (``.logits`` of its output) or a plain classifier."""
    out = classifier(images)
    return getattr(out, "logits", out)


@torch.no_grad()
def predict_classes(images: torch.Tensor, classifier: nn.Module | Callable, batch_size: int = 500) -> torch.Tensor:
    """The classifier's class (argmax) for each uint8 ``(N, C, H, W)`` image: int64 ``(N,)``."""
    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    if isinstance(classifier, nn.Module):
        classifier.eval()
    return torch.cat([_logits_of(classifier, chunk).argmax(1).cpu() for chunk in images.split(batch_size)])


def _check_labels(labels: torch.Tensor, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).long().flatten()
    if labels.numel() != n:
        raise ValueError(f"expected {n} labels (one per image), got {labels.numel()}")
    return labels


def class_agreement(images: torch.Tensor, labels: torch.Tensor, classifier: nn.Module | Callable,
                    batch_size: int = 500) -> float:
    """Share of images whose requested class ``labels[i]`` is the class the classifier assigns them, in [0, 1]."""
    labels = _check_labels(labels, len(images))
    if not len(labels):
        raise ValueError("class agreement needs at least one image")
    return float((predict_classes(images, classifier, batch_size) == labels).float().mean())


def per_class_agreement(images: torch.Tensor, labels: torch.Tensor, classifier: nn.Module | Callable,
                        num_classes: int | None = None, batch_size: int = 500) -> list[float]:
    """Class agreement of each requested class 0..K-1 (NaN for a class with no images)."""
    labels = _check_labels(labels, len(images))
    hits = (predict_classes(images, classifier, batch_size) == labels).float()
    k = num_classes if num_classes is not None else int(labels.max()) + 1
    count = torch.bincount(labels, minlength=k).float()
    right = torch.bincount(labels, weights=hits, minlength=k)
    return [float(r / c) if c else math.nan for r, c in zip(right, count, strict=True)]


@dataclass
class ClassBalance:
    shares: list[float]       # share of each class among the images, sums to 1
    entropy: float            # histogram entropy / log(K), in [0, 1]

    @property
    def min_share(self) -> float:
        return min(self.shares)

    @property
    def max_share(self) -> float:
        return max(self.shares)


def class_balance(images: torch.Tensor, classifier: nn.Module | Callable, num_classes: int = 10,
                  batch_size: int = 500) -> ClassBalance:
    """How evenly the classifier's classes spread over the images (balanced data: entropy 1, shares 1/K)."""
    pred = predict_classes(images, classifier, batch_size)
    shares = torch.bincount(pred, minlength=num_classes).double() / max(len(pred), 1)
    nz = shares[shares > 0]
    entropy = float(-(nz * nz.log()).sum() / math.log(num_classes)) if num_classes > 1 else 1.0
    return ClassBalance([float(s) for s in shares], entropy)


def mean_pairwise_distance(features: torch.Tensor, max_n: int = 1000, seed: int = 0) -> float:
    """Mean Euclidean distance between distinct rows of ``features`` (a seeded subset of ``max_n`` rows)."""
    if len(features) < 2:
        return math.nan
    if len(features) > max_n:
        idx = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:max_n]
        features = features[idx]
    d = torch.cdist(features.double(), features.double())
    n = len(features)
    return float(d.sum() / (n * (n - 1)))


def intra_class_diversity(fake_features: torch.Tensor, fake_labels: torch.Tensor, real_features: torch.Tensor,
                          real_labels: torch.Tensor, num_classes: int, seed: int = 0) -> list[float]:
    """Per class: mean pairwise feature distance of generated images / that of real images (1 = as varied)."""
    out = []
    for k in range(num_classes):
        fake_k, real_k = fake_features[fake_labels == k], real_features[real_labels == k]
        real_d = mean_pairwise_distance(real_k, seed=seed)
        out.append(mean_pairwise_distance(fake_k, seed=seed) / real_d if real_d and not math.isnan(real_d)
                   else math.nan)
    return out
