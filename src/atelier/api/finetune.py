"""The *finetune* workflow: adapt a trained StyleGAN2-type run to a new folder of a few dozen images.

The new run starts from the parent's latest checkpoint (G, D, the EMA generator and its tracked w average),
keeps D's first ``freeze_d`` blocks fixed (FreezeD, Mo et al. 2020, arXiv:2002.10964) and augments what D
sees with DiffAugment under ADA's adaptive probability (Karras et al. 2020, arXiv:2006.06676; Zhao et al.
2020): the two together are the strong, simple baseline for adapting a GAN to 10-100 images. The parent's
checkpoint file is recorded in the new run's config (``model.init_from``) and model card. When it finishes, a
memorisation check (the share of samples nearer a training image than the training images are to each other)
is recorded in metrics.jsonl and the card: a few dozen images are easy to copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atelier.api.evaluate import evaluate_run
from atelier.api.train import train
from atelier.data.files import list_folder
from atelier.errors import AtelierError, RunError
from atelier.models import get as get_model
from atelier.runs import Run
from atelier.training.loop import Trainer
from atelier.training.result import TrainResult

__all__ = ["DEFAULT_FREEZE_D", "DEFAULT_STEPS", "finetune"]

# fromRGB and the first residual block: D's highest-resolution layers, the generic edge and texture detectors
# that FreezeD keeps from the large parent dataset.
DEFAULT_FREEZE_D = 2
DEFAULT_STEPS = 500
MEMORISATION_SAMPLES = 500
ADA = {"policy": "color,translation,cutout", "p": 0.0, "ada_target": 0.6}


def finetune(parent: str | Path, data: str | Path, run_dir: str | Path, *, freeze_d: int | None = None,
             overrides: dict[str, Any] | None = None, progress: bool | None = None,
             callback: Callable[[Trainer], None] | None = None) -> TrainResult:
    """Fine-tune the StyleGAN2-type run ``parent`` on the images of ``data`` into a new run folder ``run_dir``
    (resumed when it already holds a checkpoint). ``overrides``: dotted config keys, e.g. ``{"train.steps": 800}``
    (default: 500 steps, the parent's batch, ADA, ``freeze_d`` 2)."""
    target = Run(run_dir)
    if target.exists() and target.latest_checkpoint() is not None:
        return check_memorisation(train(None, target.path, overrides, progress=progress, callback=callback))
    prun = Run(parent)
    if not (prun.exists() and prun.config_path.is_file()):
        raise RunError(f"{parent} is not a run folder (no config.yaml)")
    cfg = prun.config()
    name = cfg.model["name"]
    if "init_from" not in get_model(name).config.model_fields:  # the families whose task starts from a parent
        raise AtelierError(f"fine-tuning starts from a StyleGAN2-type run (model stylegan2); {parent} is a {name} "
                           "run")
    ckpt = prun.require_checkpoint()
    base = cfg.to_dict()
    base["data"].update(source=str(data), eval_source=None, limit=None)
    base["model"].update(init_from=str(ckpt.resolve()), freeze_d=DEFAULT_FREEZE_D if freeze_d is None else freeze_d)
    if not base["augment"].get("policy"):
        base["augment"].update(ADA)
    base["train"].update(steps=DEFAULT_STEPS, minutes=None, images=None)
    base["eval"]["every"] = 0
    count = len(list_folder(Path(data))) if Path(data).is_dir() else None
    if count is not None and 0 < count < base["train"]["batch_size"]:
        # A few dozen pictures are the point of fine-tuning: the parent's batch would not fit them.
        base["train"]["batch_size"] = 1 << (count.bit_length() - 1)            # the largest power of two <= count
        warnings.warn(f"{data} holds {count} images: fine-tuning at batch {base['train']['batch_size']} (the "
                      f"parent's {cfg.train.batch_size} would not fit)", UserWarning, stacklevel=2)
    return check_memorisation(train(base, target.path, overrides, progress=progress, callback=callback))


def check_memorisation(result: TrainResult) -> TrainResult:
    """After a finished fine-tuning, the share of samples that sit nearer a training image than the training
    images sit to each other (:mod:`atelier.metrics.memorisation`), recorded in metrics.jsonl and the card."""
    if result.step > 0 and not result.interrupted and not result.nothing_to_do:
        result.evaluations = evaluate_run(result.run_dir, metrics=["memorisation"], n=MEMORISATION_SAMPLES)
    return result
