"""Does a generator copy its training images? The share of samples closer to a training image than real images
of the same kind are to one another.

For each sample, the pixel distance (L2 over [0, 1] values) to its nearest training image; for each training
image, the distance to its nearest *other* training image (leave-one-out: how close a new real picture of this
kind lands to the rest, the "held-out distance" when a folder of a few dozen images has no held-out split). The
share of samples nearer to the training set than the median leave-one-out distance is about 50% for samples as
novel as the training images are among themselves, and near 100% for a generator that reproduces its training
set (``benchmarks/little_data.py`` measures the same against MNIST's test split).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["memorisation"]


@torch.no_grad()
def memorisation(samples: torch.Tensor, train: torch.Tensor) -> dict[str, Any]:
    """uint8 ``(N, C, H, W)`` samples and ``(M, C, H, W)`` training images (M >= 2) -> a record:
    ``value`` (the share), ``threshold`` (the median leave-one-out distance), ``median_sample_distance``."""
    if train.shape[0] < 2:
        raise ValueError("memorisation needs at least 2 training images")
    if samples.shape[1:] != train.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape[1:])} and training images {tuple(train.shape[1:])} differ")
    t = train.flatten(1).float() / 255
    s = samples.flatten(1).float() / 255
    nearest = torch.cat([torch.cdist(chunk, t).min(1).values for chunk in s.split(500)])        # (N,)
    loo = []
    for i in range(0, len(t), 500):
        d = torch.cdist(t[i:i + 500], t)
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")            # not itself
        loo.append(d.min(1).values)
    threshold = float(torch.cat(loo).median())
    return {"metric": "memorisation", "value": float((nearest < threshold).float().mean()), "std": None,
            "threshold": round(threshold, 4), "median_sample_distance": round(float(nearest.median()), 4),
            "n_samples": int(samples.shape[0]), "n_train": int(train.shape[0]),
            "distance": "pixel L2 over [0, 1]; threshold: median distance of a training image to its nearest other"}
