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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atelier.errors import ConfigError, DataError
from atelier.metrics.evaluate import _stamp, append_records, default_ref, evaluate_images
from atelier.metrics.evaluators import auto_evaluator, load_evaluator
from atelier.metrics.reference import reference_features
from atelier.training.logging import read_metrics

if TYPE_CHECKING:
    from atelier.config import RunConfig
    from atelier.training.gan import GANTrainer

__all__ = ["TrainingEval"]


class TrainingEval:
    def __init__(self, cfg: RunConfig, run_dir: Path, device: Any = "cpu") -> None:
        from atelier.models import get

        if get(cfg.model["name"]).kind != "gan":
            raise ConfigError(f"eval.every measures FID of an unconditional generator; {cfg.model['name']} is not "
                              "one (set eval.every: 0; translation runs are scored by atelier.translation)")
        self.cfg = cfg
        self.every, self.n = cfg.eval.every, cfg.eval.n
        try:
            self.ref = cfg.eval.ref or default_ref(cfg.data.source)
        except DataError:
            raise ConfigError(f"eval.every is set but {cfg.data.source} has no held-out split: set eval.ref to a "
                              "reference set of real images") from None
        name = auto_evaluator(cfg.data.source) if cfg.eval.evaluator == "auto" else cfg.eval.evaluator
        self.evaluator = load_evaluator(name, device=device)
        # Fail at start-up, not after the first N steps, when the evaluator cannot read this model's images.
        self.evaluator.check(cfg.data.channels, cfg.data.resolution, cfg.data.resolution, f"run {run_dir.name}")
        # Computed (or found in the cache) once, up front; a folder is read as the training data is.
        reference_features(self.ref, self.evaluator, like=cfg.data)
        self.metrics_path = run_dir / "metrics.jsonl"
        self.best = math.inf

    def due(self, step: int, total: int) -> bool:
        return self.every > 0 and (step % self.every == 0 or step == total)

    def resume(self, step: int) -> None:
        """The best FID among evaluations up to ``step`` (the lines a resumed run keeps)."""
        fids = [r["value"] for r in read_metrics(self.metrics_path)
                if r.get("event") == "eval" and r.get("metric") == "fid" and r.get("step", 0) <= step
                and r.get("generator") == "ema"]
        self.best = min(fids, default=math.inf)

    def __call__(self, trainer: GANTrainer) -> dict[str, Any]:
        from atelier.api import Generator

        g = Generator(trainer.ema.model, self.cfg, trainer.run_dir, trainer.step, "ema")
        images = g.sample(self.n, seed=self.cfg.seed)
        (record,) = evaluate_images(images, ref=self.ref, evaluator=self.evaluator, metrics=["fid"],
                                    seed=self.cfg.seed, what="the generator's samples", like=self.cfg.data)
        is_best = record["value"] < self.best
        (record,) = _stamp([{"step": trainer.step, **record}], source=str(trainer.run_dir), n_generated=self.n,
                           generator="ema", checkpoint_step=trainer.step, best=is_best)
        if is_best:
            self.best = record["value"]
            trainer.ckpt.save_best(trainer.step, trainer.state_dict())
        append_records(self.metrics_path, [record])
        return record
