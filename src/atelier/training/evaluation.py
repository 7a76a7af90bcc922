"""FID during training (``eval.every`` / ``eval.n``) and the ``best`` checkpoint.

Every ``eval.every`` steps the EMA generator draws ``eval.n`` images from the same fixed latents, so
successive FIDs differ by the model only. The record goes to metrics.jsonl like a command-line
evaluation (``"event": "eval"``, the same protocol fields); when the FID is the lowest so far, the
full trainer state is written to ``checkpoints/best.safetensors`` beside ``latest``. On resume the
best value so far is read back from metrics.jsonl. Nothing here draws from the global torch
generator, so a run with evaluations trains bit for bit like one without.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from atelier.errors import ConfigError, DataError
from atelier.metrics.evaluate import default_ref, evaluate_images, stamp
from atelier.metrics.evaluators import auto_evaluator, load_evaluator
from atelier.metrics.reference import reference_features

if TYPE_CHECKING:
    from atelier.config import RunConfig
    from atelier.runs import Run

__all__ = ["TrainingEval"]


class TrainingEval:
    def __init__(self, cfg: RunConfig, run: Run, sampler: Callable[[int, int], torch.Tensor] | None,
                 device: Any = "cpu") -> None:
        if sampler is None:
            raise ConfigError(f"eval.every measures FID of a generator; {cfg.model['name']} does not generate from "
                              "noise (set eval.every: 0; `atelier evaluate RUN` scores image-to-image runs)")
        self.sample = sampler
        self.cfg, self.run = cfg, run
        self.every, self.n = cfg.eval.every, cfg.eval.n
        try:
            self.ref = cfg.eval.ref or default_ref(cfg.data.source)
        except DataError:
            raise ConfigError(f"eval.every is set but {cfg.data.source} has no held-out split: set eval.ref to a "
                              "reference set of real images") from None
        name = auto_evaluator(cfg.data.source) if cfg.eval.evaluator == "auto" else cfg.eval.evaluator
        self.evaluator = load_evaluator(name, device=device)
        # Fail at start-up, not after the first N steps, when the evaluator cannot read this model's images.
        self.evaluator.check(cfg.data.channels, cfg.data.resolution, cfg.data.resolution, f"run {run.name}")
        # Computed (or found in the cache) once, up front; a folder is read as the training data is.
        reference_features(self.ref, self.evaluator, like=cfg.data)
        self.best = math.inf

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def resume(self, step: int) -> None:
        """The best FID among evaluations up to ``step`` (the lines a resumed run keeps)."""
        fids = [r["value"] for r in self.run.read_metrics()
                if r.get("event") == "eval" and r.get("metric") == "fid" and r.get("step", 0) <= step
                and r.get("generator") == "ema"]
        self.best = min(fids, default=math.inf)

    def __call__(self, step: int, save_best: Callable[[], Any]) -> dict[str, Any]:
        """FID of the sampler at ``step``; ``save_best()`` writes checkpoints/best.safetensors when it improves."""
        # The sampler draws its latents from its own seeded generator: training's stream is untouched.
        images = self.sample(self.n, self.cfg.seed)
        (record,) = evaluate_images(images, ref=self.ref, evaluator=self.evaluator, metrics=["fid"],
                                    seed=self.cfg.seed, what="the generator's samples", like=self.cfg.data)
        is_best = record["value"] < self.best
        (record,) = stamp([{"step": step, **record}], source=str(self.run.path), n_generated=self.n,
                          generator="ema", checkpoint_step=step, best=is_best)
        if is_best:
            self.best = record["value"]
            save_best()
        self.run.append_records([record])
        return record
