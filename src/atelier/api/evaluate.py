"""The *evaluate* workflow: score a run (FID/KID/IS/PR/CAS for a generator, L1/PSNR/SSIM and optionally the
FCN-score for an image-to-image run, accuracy and mIoU for a segmenter) or any image set, and record the result
in the run's metrics.jsonl and model card."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from atelier import families
from atelier.api.segment import evaluate_segmentation, fcn_score
from atelier.api.synth import synthesize
from atelier.config import RunConfig
from atelier.data import open_source
from atelier.data.paired import load_paired
from atelier.errors import DataError, RunError
from atelier.inversion import ProjectionDistance, path_length
from atelier.latent import proportional_labels
from atelier.loaded import DiffusionModel, Generator, Translator
from atelier.metrics.cas import cas
from atelier.metrics.classes import per_class_agreement, predict_classes
from atelier.metrics.evaluate import (
    RUN_ONLY,
    check_metrics,
    default_ref,
    evaluate_images,
    evaluate_source,
    format_table,
    parse_metrics,
    resolve_evaluator,
    stamp,
)
from atelier.metrics.evaluators import Evaluator
from atelier.metrics.memorisation import memorisation
from atelier.runs import Run
from atelier.training.card import refresh_quality

__all__ = ["cas_run", "class_agreement_run", "evaluate", "evaluate_pairs", "evaluate_run", "evaluate_segmentation",
           "evaluate_source", "evaluate_translation", "fcn_score", "format_table", "reads_classes",
           "training_labels"]


def evaluate(run: str | Path | None = None, *, real: str | None = None, ref: str | None = None,
             **options: Any) -> list[dict[str, Any]]:
    """Score a run folder (whatever its kind) or, with ``real``, any image set against ``ref``.

    A translation run takes ``segmenter=RUN`` to add the FCN-score; a segmenter run is scored by pixel accuracy,
    mean class accuracy and mIoU on its test pairs."""
    if (run is None) == (real is None):
        raise DataError("give a run folder or a set of real images (one of the two)")
    if real is not None:
        if ref is None:
            raise DataError("scoring an image set needs a reference set (ref=..., e.g. mnist:test)")
        keep = ("metrics", "n", "evaluator", "inception_weights", "seed", "batch_size", "device", "download")
        return evaluate_source(real, ref=ref, **{k: v for k, v in options.items() if k in keep})
    assert run is not None
    kind = families.get(Run(run).config().model["name"]).kind
    segmenter = options.pop("segmenter", None)
    if segmenter is not None and kind != "translator":
        raise RunError(f"--segmenter adds the FCN-score to a label -> photo translation run, and {run} is a {kind} run")
    if kind == "translator":
        given = {k: v for k, v in options.items() if k in ("split", "limit", "baseline", "record", "device")}
        return [evaluate_translation(run, segmenter=segmenter, **given)]
    if kind == "segmenter":
        given = {k: v for k, v in options.items() if k in ("split", "limit", "record", "device")}
        return [evaluate_segmentation(run, **given)]
    options.pop("split", None), options.pop("baseline", None), options.pop("limit", None)
    return evaluate_run(run, ref=ref, **options)


def evaluate_run(run_dir: str | Path, *, metrics: Sequence[str] = ("fid", "kid"), n: int = 10_000,
                 ref: str | None = None, evaluator: str | Evaluator = "auto",
                 inception_weights: str | Path | None = None, which: str = "ema", seed: int = 0,
                 batch_size: int = 500, device: str = "cpu", record: bool = True, download: bool = False,
                 use_cache: bool = True, timings: dict[str, float] | None = None,
                 truncation: float = 1.0) -> list[dict[str, Any]]:
    """Generate ``n`` images from the run's latest checkpoint and score them; append to metrics.jsonl and the
    model card's Quality section. ``truncation`` < 1 scores a StyleGAN-type model's truncated samples (a
    truncation sweep: precision should rise and recall fall as psi goes down)."""
    run = Run(run_dir)
    metrics = parse_metrics(metrics)
    g = families.load(run, which=which, device=device)
    if not isinstance(g, Generator):
        raise RunError(f"{run.path} is a {g.cfg.model['name']} ({g.kind}) run: FID/KID/IS/PR score generators; "
                       "`atelier evaluate RUN` scores an image-to-image run by L1/PSNR/SSIM")
    if "cas" in metrics and not g.num_classes:
        raise RunError(f"cas scores class-conditional runs, and {run.name} is unconditional (model.num_classes "
                       "is 0); leave cas out of --metrics (atelier synth labels its images with the classifier "
                       "instead, which CAS would only measure back)")
    g.check_truncation(truncation)
    image_metrics = [m for m in metrics if m not in RUN_ONLY]
    ref = (ref or default_ref(g.cfg.data.source)) if image_metrics else ref
    ev = resolve_evaluator(evaluator, g.cfg.data.source, inception_weights, device, download)
    # Refuse before generating thousands of images the evaluator cannot read.
    ev.check(g.cfg.data.channels, g.cfg.data.resolution, g.cfg.data.resolution, f"run {run.name}")
    check_metrics(metrics, ev)
    if "ppl" in metrics and isinstance(g, DiffusionModel):
        raise RunError("ppl walks a GAN's latent space; a diffusion model's starting noise is not one: leave ppl out")
    records = []
    if image_metrics:
        assert ref is not None
        t0 = time.perf_counter()
        labels, label_mix = training_labels(g, n)
        images = g.sample(n, seed=seed, batch_size=batch_size, psi=truncation, labels=labels)
        assert isinstance(images, torch.Tensor)
        if timings is not None:
            timings["generation"] = time.perf_counter() - t0
        records = evaluate_images(images, ref=ref, evaluator=ev, metrics=metrics, seed=seed,
                                  what=f"run {run.name}", batch_size=batch_size, use_cache=use_cache,
                                  timings=timings, like=g.cfg.data)
        if label_mix:
            records = [{**r, "labels": label_mix} for r in records]
    if "cas" in metrics:
        records.append(cas_run(g, ev, n=n, seed=seed, batch_size=batch_size))
    if "memorisation" in metrics:
        records.append(memorisation_run(g, n=n, seed=seed, batch_size=batch_size))
    if "ppl" in metrics:
        distance = ProjectionDistance(ev.name, g.channels, g.resolution, device=g.device)
        records.append({**path_length(g.network, distance, n=n, seed=seed, psi=truncation, num_classes=g.num_classes),
                        "evaluator": ev.name, "evaluator_sha256": ev.sha256, "seed": seed})
    if g.num_classes and reads_classes(ev, g):
        records.append(class_agreement_run(g, ev, n=min(n, 100 * g.num_classes), seed=seed, batch_size=batch_size))
    records = stamp([{"step": g.step, **r} for r in records], source=str(run.path), n_generated=n,
                    generator="ema" if g.which.endswith("_ema") else "raw", checkpoint_step=g.step,
                    checkpoint_sha256=g.weights_sha256, **({"truncation": truncation} if truncation != 1.0 else {}))
    if record:
        run.append_records(records)
        refresh_quality(run)
    return records


MEMORISATION_TRAIN = 5000  # training images compared (a random subset of a larger set)


def memorisation_run(g: Generator, *, n: int, seed: int = 0, batch_size: int = 500) -> dict[str, Any]:
    """The share of ``n`` samples nearer to a training image than training images are to each other
    (:mod:`atelier.metrics.memorisation`); the training images are read as the run read them."""
    d = g.cfg.data
    train = open_source(d.source, channels=d.channels, resolution=d.resolution, limit=d.limit, alpha=d.alpha,
                        background=d.background).images
    if len(train) > MEMORISATION_TRAIN:
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:MEMORISATION_TRAIN]
        train = train[keep]
    if len(train) < 2:
        raise DataError(f"{d.source}: memorisation needs at least 2 training images")
    samples = g.sample(min(n, 2000), seed=seed, batch_size=batch_size)
    assert isinstance(samples, torch.Tensor)
    return {"event": "eval", **memorisation(samples, train), "source_data": d.source}


def reads_classes(evaluator: Evaluator, g: Generator) -> bool:
    """Whether the evaluator is a classifier of the run's own classes (a domain evaluator trained on the run's
    data set, with one output per class): then it can say whether each sample is of the class asked for."""
    spec = evaluator.spec
    dataset = g.cfg.data.source.split(":")[0]
    return spec.logits and dataset in spec.datasets and spec.num_classes == g.num_classes


def class_agreement_run(g: Generator, evaluator: Evaluator, *, n: int, seed: int = 0,
                        batch_size: int = 500) -> dict[str, Any]:
    """Does a conditional generator give the class it is asked for? ``n`` samples with balanced labels (class k
    for every K-th seed) read by the domain classifier: the share it calls the asked class, overall and for the
    worst class (chance: 1/K)."""
    per = max(1, n // g.num_classes)
    labels = torch.arange(g.num_classes).repeat(per)                   # (K * per,) balanced
    images = g.generate(g.latents(len(labels), seed=seed), labels=labels)
    predicted = predict_classes(images, evaluator, batch_size)
    agreement = float((predicted == labels).float().mean())
    per_class = per_class_agreement(images, labels, evaluator, g.num_classes, batch_size)
    return {"metric": "class_agreement", "value": round(agreement, 4), "worst_class": int(min(
        range(g.num_classes), key=lambda k: per_class[k])), "worst_agreement": round(min(per_class), 4),
        "per_class": [round(a, 4) for a in per_class], "chance": round(1 / g.num_classes, 4), "n": len(labels),
        "seed": seed, "ref": "none (the classifier reads the samples)", "n_ref": 0, **evaluator.protocol()}


def training_labels(g: Generator, n: int) -> tuple[torch.Tensor | None, str]:
    """Labels for ``n`` samples of a conditional generator in its training data's class proportions, and how they
    were drawn. FID, KID and precision/recall compare the samples with a reference set that has the data's class
    mix (StyleGAN2-ADA draws labels from the training set the same way): balanced labels would score a folder
    whose largest class holds 60% of the images against a mix it does not have. Falls back to balanced labels
    when the training data cannot be read (a moved folder). (None, "") for an unconditional generator."""
    if not g.num_classes:
        return None, ""
    d = g.cfg.data
    try:
        ds = open_source(d.source, d.channels, d.resolution, d.limit, alpha=d.alpha, background=d.background)
    except (DataError, OSError):
        return None, "balanced (the training data could not be read for its class mix)"
    if ds.labels is None or not len(ds.labels):
        return None, "balanced (the training data has no labels)"
    counts = torch.bincount(ds.labels.long(), minlength=g.num_classes)[: g.num_classes]
    return proportional_labels(counts, n), "training class mix"


def cas_run(g: Generator, evaluator: Evaluator, *, n: int, seed: int = 0, batch_size: int = 500,
            epochs: int | None = None, real_baseline: bool = False) -> dict[str, Any]:
    """CAS of a class-conditional generator: ``n`` images with balanced labels (as ``atelier synth`` makes)."""

    if not g.num_classes:
        raise RunError(f"CAS scores class-conditional models, and {g.run_dir} is unconditional "
                       "(model.num_classes is 0): train one with --set model.num_classes=10, or measure fid,kid")
    s = synthesize(g, n, seed=seed, batch_size=batch_size, progress=False)
    assert s.labels is not None
    return cas(s.images, s.labels, evaluator, seed=seed, epochs=epochs, real_baseline=real_baseline)


def evaluate_pairs(translator: Translator | None, source: str, cfg: RunConfig, limit: int | None = None,
                   batch_size: int = 16) -> dict[str, float]:
    """Mean L1 (on [0, 1]), PSNR (dB) and SSIM of outputs against targets over a paired set.

    With ``translator=None`` the input itself is scored against the target: the identity baseline.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    d = cfg.data
    ds = load_paired(source, d.paired or "side_by_side", d.direction, d.channels, d.resolution, limit=limit)
    C = d.channels
    l1, psnr, ssim, n = 0.0, 0.0, 0.0, 0
    for chunk in ds.images.split(batch_size):
        x, y = chunk[:, :C], chunk[:, C:]
        out: torch.Tensor = x if translator is None else translator.translate_batch(x)
        a, b = out.float() / 255, y.float() / 255
        l1 += (a - b).abs().mean(dim=(1, 2, 3)).sum().item()
        psnr += peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)).sum().item()
        s = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
        assert isinstance(s, torch.Tensor)  # (N,): no full image or contrast terms were asked for
        ssim += s.sum().item()
        n += len(chunk)
    return {"pairs": n, "l1": l1 / n, "psnr": psnr / n, "ssim": ssim / n}


def evaluate_translation(run_dir: str | Path, split: str = "test", limit: int | None = None,
                         baseline: str | None = None, record: bool = True, segmenter: str | Path | None = None,
                         device: str = "cpu") -> dict[str, Any]:
    """Score a translation run on a split: ``test`` (data.eval_source), ``train`` or a folder path.

    ``baseline="identity"`` scores the input passed through unchanged instead of the model's output;
    ``record=True`` appends one ``"event": "eval"`` record per metric to metrics.jsonl (and the card);
    ``segmenter`` (a segmenter run) adds the FCN-score of the model's outputs and of the real photos
    (:func:`atelier.api.segment.fcn_score`).
    """
    run = Run(run_dir)
    if segmenter is not None and baseline is not None:
        raise DataError("the FCN-score scores the model's photos (and the real ones as the ceiling): leave out "
                        "the identity baseline")
    model = families.load(run, device=device)
    if not isinstance(model, Translator):
        raise DataError(f"{run.path} is not an image-to-image translation run")
    d = model.cfg.data
    source = {"test": d.eval_source, "train": d.source}.get(split, split)
    if source is None:
        raise DataError(f"{run.path} has no data.eval_source for the test split; pass a folder of pairs")
    scores = evaluate_pairs(None if baseline == "identity" else model, source, model.cfg, limit=limit)
    result = {"event": "eval", "step": model.step, "run": str(run.path), "split": split, "source": source,
              "generator": "identity" if baseline == "identity" else "G", "resolution": d.resolution,
              "l1_scale": "[0, 1]", **scores}
    if record:
        run.append_records([{**result, "metric": m, "value": scores[m]} for m in ("l1", "psnr", "ssim")])
        refresh_quality(run)
    if segmenter is not None:
        fcn = fcn_score(model, segmenter, split=split, limit=limit, record=record, device=device)
        result.update({k: v for k, v in fcn.items() if k.startswith("fcn_") or k.startswith("segmenter")})
    return result
