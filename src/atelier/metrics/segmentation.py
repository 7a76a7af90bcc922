"""Segmentation scores from a confusion matrix: pixel accuracy, mean class accuracy and mean IoU.

The definitions of Long, Shelhamer & Darrell ("Fully Convolutional Networks for Semantic Segmentation", CVPR
2015, sec. 5), which the pix2pix paper's FCN-score reports too. With ``n[i, j]`` the pixels of true class i
predicted as j and ``t_i = sum_j n[i, j]``:

    pixel accuracy       sum_i n[i, i] / sum_i t_i
    mean class accuracy  mean over classes with t_i > 0 of n[i, i] / t_i
    mean IoU             mean over classes with t_i + sum_j n[j, i] > 0 of n[i, i] / (t_i + sum_j n[j, i] - n[i, i])

A class that is neither in the truth nor predicted has no IoU and is left out of the mean; one that is only
predicted has IoU 0 (its false positives count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["confusion_matrix", "segmentation_scores"]


def confusion_matrix(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                     num_classes: int) -> np.ndarray:
    """int64 ``(K, K)``: rows are the true classes, columns the predicted ones (any matching shapes)."""
    p = torch.as_tensor(pred).reshape(-1).long()
    t = torch.as_tensor(target).reshape(-1).long()
    if p.shape != t.shape:
        raise ValueError(f"prediction and target differ in size: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if len(t) and (int(t.min()) < 0 or int(t.max()) >= num_classes or int(p.min()) < 0
                   or int(p.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes).numpy()


def segmentation_scores(conf: np.ndarray, classes: Sequence[str] | None = None) -> dict[str, float]:
    """``pixel_acc``, ``class_acc``, ``miou`` and ``iou/<class>`` (classes without an IoU are left out)."""
    conf = np.asarray(conf, dtype=np.float64)
    hits = np.diag(conf)
    truth, predicted = conf.sum(1), conf.sum(0)
    union = truth + predicted - hits
    total = conf.sum()
    if total == 0:
        raise ValueError("the confusion matrix is empty: no pixels were scored")
    present, seen = truth > 0, union > 0
    iou = np.divide(hits, union, out=np.zeros_like(hits), where=seen)
    scores = {"pixel_acc": float(hits.sum() / total),
              "class_acc": float((hits[present] / truth[present]).mean()),
              "miou": float(iou[seen].mean())}
    names = list(classes) if classes is not None else [str(i) for i in range(len(conf))]
    scores.update({f"iou/{names[i]}": float(iou[i]) for i in range(len(conf)) if seen[i]})
    return scores
