"""Classification Accuracy Score (CAS): Ravuri & Vinyals, "Classification Accuracy Score for Conditional
Generative Models", NeurIPS 2019 (arXiv:1905.10887).

Train a classifier on generated, labelled images only; test it on the real test set. A conditional
model whose class-k images look like real class k, in all their variety, scores close to the same
classifier trained on real data (the *ceiling*); mode dropping or wrong classes pull it down, which
FID alone does not show.

atelier's classifier is the domain evaluator's architecture (:class:`~atelier.metrics.classifier.DigitClassifier`)
trained with the evaluator's own recipe, read from its training report (epochs, batch size, lr,
augmentation: ``metrics/weights/<name>.json``). The ceiling is that report's test accuracy: the same
network and recipe trained on the 60,000 real training images. ``real_baseline=True`` also trains the
recipe on as many real training images as there are generated ones, the like-for-like ceiling.
Training is seeded and does not touch the caller's global torch generator.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from atelier.data import open_source
from atelier.errors import ConfigError, DataError
from atelier.metrics.classifier import accuracy, fit_classifier
from atelier.metrics.evaluators import Evaluator

__all__ = ["cas", "describe", "recipe"]


def _test_split(evaluator: Evaluator) -> str:
    if not evaluator.spec.datasets:
        raise ConfigError(f"CAS needs one of atelier's domain classifiers (digits, fashion), not {evaluator.name}: "
                          "it tests on the real test set the classifier was made for (MNIST or Fashion-MNIST)")
    return f"{evaluator.spec.datasets[0]}:test"


def recipe(evaluator: Evaluator) -> dict[str, Any]:
    """The evaluator's training recipe (its report), as keyword arguments of :func:`fit_classifier`."""
    info = evaluator.info
    if "epochs" not in info:
        raise DataError(f"the {evaluator.name} evaluator at {evaluator.weights} has no training report "
                        f"({Path(str(evaluator.weights)).with_suffix('.json').name}); CAS reads its recipe from it")
    return {"epochs": int(info["epochs"]), "batch_size": int(info["batch_size"]), "lr": float(info["lr"]),
            "hflip": "hflip" in str(info.get("augment", "")), "precision": str(info.get("precision", "bf16"))}


def cas(images: torch.Tensor, labels: torch.Tensor, evaluator: Evaluator, *, seed: int = 0,
        epochs: int | None = None, n_test: int | None = None, real_baseline: bool = False,
        log=None) -> dict[str, Any]:
    """CAS of labelled uint8 ``(N, 1, 28, 28)`` images: train on them, test on the evaluator's real test set.

    Returns one record (``"metric": "cas"``, value = test accuracy in [0, 1]) with the ceiling and the
    protocol: classifier architecture and recipe, training images, test set. ``epochs`` overrides the
    recipe's and ``n_test`` tests on a seeded subset of the test set (quick checks; the record says so).
    """

    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"CAS takes uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (len(images),):
        raise ValueError(f"expected {len(images)} labels, got shape {tuple(labels.shape)}")
    evaluator.check(int(images.shape[1]), int(images.shape[2]), int(images.shape[3]), "the labelled images")
    ref = _test_split(evaluator)
    test = open_source(ref)
    assert test.labels is not None
    if n_test is not None and n_test < len(test.labels):
        keep = torch.randperm(len(test.labels), generator=torch.Generator().manual_seed(seed))[:n_test]
        test.images, test.labels = test.images[keep], test.labels[keep]
    test_labels = test.labels  # (after the subset: the images and labels scored)
    num_classes = int(test.labels.max()) + 1
    labels = labels.long()
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(f"labels must be classes 0..{num_classes - 1} of {ref}, got {int(labels.min())}.."
                        f"{int(labels.max())}")
    params = recipe(evaluator)
    if epochs is not None:
        params["epochs"] = epochs
    if len(images) < params["batch_size"]:
        raise DataError(f"CAS needs at least one batch ({params['batch_size']}) of labelled images, got "
                        f"{len(images)}")

    def score(x: torch.Tensor, y: torch.Tensor) -> float:
        # fit_classifier seeds the global generator (the weight init); keep the caller's stream as it was.
        with torch.random.fork_rng(devices=[]):
            model = fit_classifier(x, y, num_classes=num_classes, seed=seed, **params)
        return accuracy(model, test.images, test_labels)

    t0 = time.perf_counter()
    value = score(images, labels)
    seconds = time.perf_counter() - t0
    ceiling = evaluator.info.get("test_accuracy")
    record: dict[str, Any] = {
        "event": "eval", "metric": "cas", "value": value, "std": None,
        "ceiling": ceiling, "ceiling_from": f"{evaluator.name} evaluator's training report: the same classifier "
        f"and recipe on {evaluator.info.get('train_images', '?')} real training images",
        "classifier": f"{type(evaluator.network).__name__} (the {evaluator.name} evaluator's architecture, "
                      "trained from scratch)",
        **evaluator.protocol(), "recipe": {**params, "augment": "shift+-2" + ("+hflip" if params["hflip"] else "")},
        "n_train": len(images), "train_classes": int(labels.bincount(minlength=num_classes).gt(0).sum()),
        "ref": ref, "n_ref": len(test.labels), "seed": seed, "cas_seconds": round(seconds, 1),
    }
    if epochs is not None:
        record["note"] = f"epochs overridden to {epochs} (the recipe has {evaluator.info['epochs']})"
    if real_baseline:
        real = open_source(ref.replace(":test", ":train"))
        assert real.labels is not None
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(real.labels), generator=g)[: len(images)].sort().values
        record["real_same_n"] = score(real.images[idx], real.labels[idx])
    if log is not None:
        log(f"CAS {value:.4f} (ceiling {ceiling}) from {len(images):,} images in {seconds:.0f} s")
    return record


def describe(record: dict[str, Any]) -> str:
    """The notes column of a CAS row in :func:`atelier.metrics.format_table`."""
    ceiling = record.get("ceiling")
    out = f"ceiling {ceiling:.4f} (real data); " if isinstance(ceiling, float) else ""
    out += f"{record['n_train']:,} training images, {record['recipe']['epochs']} epochs"
    if "real_same_n" in record:
        out += f"; real data, same n: {record['real_same_n']:.4f}"
    return out

