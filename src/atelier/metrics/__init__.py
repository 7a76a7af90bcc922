"""Quality metrics (FID, KID, IS, precision/recall) over pluggable evaluator networks.

    from atelier.metrics import evaluate_source, load_evaluator
    records = atelier.evaluate("runs/mnist-dcgan", metrics=["fid", "kid"], n=10_000)   # (the workflow: atelier.api)
    floor = evaluate_source("mnist:train", ref="mnist:test", n=10_000)            # real vs real

Evaluators: ``digits`` / ``fashion`` (atelier's own MNIST-family CNNs, shipped with the package) and
``inception`` (the standard FID network, from a local weights file). Every record names the evaluator
and its weights' sha256. Reference features are cached per dataset split, evaluator and preprocessing.
"""

from __future__ import annotations

from atelier.metrics.evaluate import (
    METRICS,
    default_ref,
    evaluate_images,
    evaluate_source,
    format_table,
    parse_metrics,
)
from atelier.metrics.evaluators import EVALUATORS, Evaluator, auto_evaluator, load_evaluator
from atelier.metrics.maths import fid, inception_score, kid, precision_recall
from atelier.metrics.reference import read_images, reference_features

__all__ = [
    "EVALUATORS",
    "METRICS",
    "Evaluator",
    "auto_evaluator",
    "default_ref",
    "evaluate_images",
    "evaluate_source",
    "fid",
    "format_table",
    "inception_score",
    "kid",
    "load_evaluator",
    "parse_metrics",
    "precision_recall",
    "read_images",
    "reference_features",
]
