"""The *evaluate* workflow: score a run's generator, or any image set, against a reference set.

Each metric becomes one record carrying its full protocol, so a number can always be read back with
what it means::

    {"event": "eval", "step": 2000, "metric": "fid", "value": 3.21, "std": null,
     "evaluator": "digits", "evaluator_sha256": "...", "resize": "...", "ref": "mnist:test", "n_ref": 10000,
     "source": "mnist-dcgan", "n_generated": 10000, "generator": "ema", "checkpoint_step": 2000, "seed": 0, ...}

Run evaluations are appended to the run's ``metrics.jsonl`` (``"event": "eval"`` tells them from the
training lines). Generated samples, real subsets and KID/IS subsets all come from ``seed``: the same
seed and evaluator give the same number.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from atelier.data import open_source, parse_spec
from atelier.errors import ConfigError, DataError
from atelier.metrics import maths
from atelier.metrics.cas import cas, describe
from atelier.metrics.evaluators import Evaluator, auto_evaluator, load_evaluator
from atelier.metrics.reference import read_images, reference_features
from atelier.version import __version__

if TYPE_CHECKING:
    from atelier.config import DataConfig

__all__ = ["METRICS", "RUN_ONLY", "check_metrics", "default_ref", "evaluate_images", "evaluate_source", "format_table",
           "parse_metrics", "resolve_evaluator", "stamp"]

# "cas" (classification accuracy score, atelier.metrics.cas) trains a classifier on labelled images:
# a class-conditional run's samples, or a labelled set given with --real.
# "ppl" (perceptual path length, atelier.inversion.path_length) walks a generator's latent space, and
# "memorisation" (atelier.metrics.memorisation) compares samples with the run's own training images: runs only.
METRICS = ("fid", "kid", "is", "pr", "cas", "ppl", "memorisation")
RUN_ONLY = ("cas", "ppl", "memorisation")
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS, PR_K = 100, 1000, 10, 3


def parse_metrics(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ConfigError(f"unknown metric(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def default_ref(source: str) -> str:
    """The held-out split of a named training set (``mnist`` -> ``mnist:test``)."""

    name, split = parse_spec(source)
    if split is None:
        raise DataError(f"no default reference set for {source}: give one with --ref (e.g. a folder of real "
                        "images the model was not trained on)")
    return f"{name}:test"


def resolve_evaluator(evaluator: str | Evaluator, dataset: str, weights: str | Path | None, device: str,
                       download: bool) -> Evaluator:
    if isinstance(evaluator, Evaluator):
        return evaluator
    name = auto_evaluator(dataset) if evaluator == "auto" else evaluator
    return load_evaluator(name, weights=weights if name == "inception" else None, device=device, download=download)


def check_metrics(metrics: Sequence[str], evaluator: Evaluator) -> None:
    """Refuse a metric the evaluator cannot give (the Inception Score needs a classifier head)."""
    if "is" in metrics and not evaluator.spec.logits:
        raise ConfigError(f"the {evaluator.name} evaluator has no classifier head, so no Inception Score: leave is "
                          "out of --metrics (fid, kid and pr work), or pick a classifier evaluator")
    if "ppl" in metrics and evaluator.name == "inception":
        raise ConfigError("ppl compares images in the conv features of one of atelier's own evaluators (digits, "
                          "fashion, emoji, random-cnn), not Inception: pick one with --evaluator")


def evaluate_images(images: torch.Tensor, *, ref: str, evaluator: Evaluator, metrics: Sequence[str] = ("fid",),
                    seed: int = 0, what: str = "the images", batch_size: int = 500, use_cache: bool = True,
                    timings: dict[str, float] | None = None, like: DataConfig | None = None) -> list[dict[str, Any]]:
    """Score uint8 ``(N, C, H, W)`` images against ``ref``; one record per metric (protocol included).
    ``like``: read a folder ``ref`` as that data section reads training data (see :func:`read_images`)."""
    # CAS needs labels (atelier.metrics.cas), PPL a generator, memorisation the training images: not these images.
    metrics = tuple(m for m in parse_metrics(metrics) if m not in RUN_ONLY)
    if not metrics:
        return []
    check_metrics(metrics, evaluator)
    t0 = time.perf_counter()
    fake = evaluator(images, batch_size=batch_size, what=what)
    t1 = time.perf_counter()
    real, ref_info = reference_features(ref, evaluator, batch_size=batch_size, use_cache=use_cache, like=like)
    t2 = time.perf_counter()
    base = {"event": "eval", **evaluator.protocol(), "ref": ref_info["ref"], "n_ref": ref_info["n_ref"],
            "seed": seed}
    out = []
    for metric in metrics:
        if metric == "fid":
            out.append({"metric": "fid", "value": maths.fid(real, fake.features), "std": None})
        elif metric == "kid":
            mean, std = maths.kid(real, fake.features, KID_SUBSETS, KID_SUBSET_SIZE, seed=seed)
            size = min(KID_SUBSET_SIZE, len(real), len(fake.features))
            out.append({"metric": "kid", "value": mean, "std": std, "kid_subsets": KID_SUBSETS,
                        "kid_subset_size": size})
        elif metric == "is":
            mean, std = maths.inception_score(fake.logits, IS_SPLITS, seed=seed)
            out.append({"metric": "is", "value": mean, "std": std, "is_splits": IS_SPLITS})
        elif metric == "pr":
            precision, recall = maths.precision_recall(real, fake.features, k=PR_K)
            out.append({"metric": "precision", "value": precision, "std": None, "pr_k": PR_K})
            out.append({"metric": "recall", "value": recall, "std": None, "pr_k": PR_K})
    if timings is not None:
        timings.update(features=t1 - t0, reference=t2 - t1, statistics=time.perf_counter() - t2,
                       reference_cached=float(ref_info["cached"]))
    return [{**base, **r} for r in out]


def stamp(records: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:

    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return [{**r, **fields, "time": now, "atelier": __version__} for r in records]


def evaluate_source(source: str, *, ref: str, metrics: Sequence[str] = ("fid", "kid"), n: int | None = None,
                    evaluator: str | Evaluator = "auto", inception_weights: str | Path | None = None,
                    seed: int = 0, batch_size: int = 500, device: str = "cpu",
                    download: bool = False) -> list[dict[str, Any]]:
    """Score a set of real (or any) images, e.g. ``mnist:train`` vs ``mnist:test``: the dataset's floor."""

    metrics = parse_metrics(metrics)
    dataset = ref if parse_spec(ref)[1] is not None else source
    ev = resolve_evaluator(evaluator, dataset, inception_weights, device, download)
    check_metrics(metrics, ev)
    data = read_images(source, ev, n=n, seed=seed)
    records = evaluate_images(data.images, ref=ref, evaluator=ev, metrics=metrics, seed=seed, what=source,
                              batch_size=batch_size)
    if "cas" in metrics:
        records.append(_cas_of_source(source, ev, n=n, seed=seed))
    return stamp(records, source=source, n_images=len(data.images), n_source=data.total)


def _cas_of_source(source: str, ev: Evaluator, n: int | None, seed: int) -> dict[str, Any]:
    """CAS of a labelled image set (e.g. an ``atelier synth`` .npz): the same random subset as the other metrics."""

    ds = open_source(source, channels=1, resolution=ev.spec.resolution or 28)
    if ds.labels is None:
        raise DataError(f"{source} has no labels; cas trains a classifier on labelled images (an .npz with "
                        "'labels', or a folder per class)")
    images, labels = ds.images, ds.labels
    if n is not None and n < len(images):
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        images, labels = images[idx], labels[idx]
    return cas(images, labels, ev, seed=seed)


def format_table(records: list[dict[str, Any]]) -> str:
    """A plain-text table of records, with the protocol they share above it."""
    if not records:
        return "(no records)"
    r0 = next((r for r in records if "ref" in r), records[0])  # a PPL record has no reference set
    n = r0.get("n_generated", r0.get("n_images"))
    if "generator" in r0:
        head = (f"{r0['source']}: step {r0['checkpoint_step']:,}, {r0['generator']} generator, {n:,} samples "
                f"(seed {r0['seed']})")
    else:
        head = f"{r0['source']}: {n:,} of {r0['n_source']:,} images (seed {r0['seed']})"
    lines = [head, *([f"reference: {r0['ref']} ({r0['n_ref']:,} images)"] if "ref" in r0 else []),
             f"evaluator: {r0['evaluator']} (weights sha256 {r0['evaluator_sha256'][:16]}...; "
             f"{r0.get('resize', 'its conv features')})", "", f"{'metric':<10} {'value':>12} {'std':>10}  notes"]
    for r in records:
        notes = {"kid": f"{r.get('kid_subsets')} subsets of {r.get('kid_subset_size')}",
                 "is": f"{r.get('is_splits')} splits", "precision": f"k={r.get('pr_k')}",
                 "recall": f"k={r.get('pr_k')}"}.get(r["metric"], "")
        if r["metric"] == "class_agreement":
            notes = (f"of {r['n']} samples asked for a class; worst class {r['worst_class']}: "
                     f"{r['worst_agreement']:.1%}; chance {r['chance']:.0%}")
        if r["metric"] == "memorisation":
            notes = (f"of {r['n_samples']} samples nearer a training image than {r['threshold']:g} (the median "
                     f"leave-one-out distance of {r['n_train']} training images)")
        if r["metric"] == "ppl":
            notes = f"{r['ppl_samples']} pairs, {r['space']}, eps {r['eps']:g}; {r['ppl_distance']}"
        if r["metric"] == "cas":

            notes = describe(r)
        std = f"{r['std']:.6g}" if r.get("std") is not None else ""
        lines.append(f"{r['metric']:<10} {r['value']:>12.6g} {std:>10}  {notes}")
    return "\n".join(lines)
