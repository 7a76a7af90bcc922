"""A new model from a designer's pictures: register the pictures as a dataset (an uploaded zip or a folder on
the server), describe them, recommend a recipe, and turn the recipe (as edited) into a run config to queue.

The recipe is :func:`atelier.api.recommend_recipe`'s; the families offered are every registered family that
trains a generator from a folder of images (:func:`trainable_families`), so a family added to
:mod:`atelier.families` appears in the studio's form with no change to the studio.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import IO, Any

import torch
from sqlalchemy import Engine, insert, select

from atelier import families
from atelier.api.data import data_grid, describe_data, open_data, recommend_recipe
from atelier.api.jobs import budget_overrides, check_budget
from atelier.api.studio_db import NotFound, connect, datasets, now, row_dict
from atelier.api.train import time_budget, training_defaults, training_reason
from atelier.api.uploads import UploadLimits, unpack_zip
from atelier.config import apply_overrides, parse_set
from atelier.data.recipe import recipe_resolution
from atelier.errors import ConfigError
from atelier.runs import resolve_config

__all__ = ["Datasets", "plan_training", "trainable_families"]

_SHOWN_DUPLICATES = 20
# Config keys a designer may add to a recipe ("advanced"): model and training knobs. Keys that name files are
# refused, so a recipe cannot make the server read outside the configured folders.
_EXTRA_OK = ("model.", "train.", "optim.", "loss.", "augment.", "log.", "eval.every", "eval.n", "eval.evaluator",
             "seed", "data.resolution", "data.channels", "data.alpha", "data.background", "data.hflip", "data.limit")
_EXTRA_REFUSED = ("model.name", "model.style", "model.vgg_weights")


def trainable_families() -> list[str]:
    """Registered families that train an image generator from a folder of pictures."""
    return [name for name in families.registered() if families.get(name).kind == "generator"]


def _summary(report: Any) -> dict[str, Any]:
    """What the page shows of a data report (duplicate lists shortened; counts kept whole)."""
    d = report.to_dict()
    d["n_exact_duplicates"] = sum(len(g) - 1 for g in report.exact_duplicates)
    d["n_near_duplicates"] = len(report.near_duplicates)
    d["exact_duplicates"] = d["exact_duplicates"][:_SHOWN_DUPLICATES]
    d["near_duplicates"] = [list(p) for p in d["near_duplicates"][:_SHOWN_DUPLICATES]]
    d["skipped"] = d["skipped"][:_SHOWN_DUPLICATES]
    d["sizes"] = dict(list(d["sizes"].items())[:8])
    d["median_side"] = report.median_side
    return d


class Datasets:
    """The pictures the studio knows: uploads unpacked under ``folder``, and folders picked on the server."""

    def __init__(self, db: str | Engine, folder: str | Path) -> None:
        self.engine = connect(db) if isinstance(db, str) else db
        self.folder = Path(folder)

    def add_upload(self, archive: IO[bytes] | Path, filename: str, limits: UploadLimits | None = None,
                   user: str | None = None) -> dict[str, Any]:
        """Unpack a checked zip (see :func:`atelier.api.uploads.unpack_zip`), describe it, keep it."""
        dataset_id = uuid.uuid4().hex
        images = self.folder / dataset_id / "images"
        try:
            report = unpack_zip(archive, images, limits or UploadLimits())
            return self._add(dataset_id, Path(filename).stem[:100] or "upload", images, "upload", user,
                             left_out=report.left_out)
        except BaseException:
            shutil.rmtree(self.folder / dataset_id, ignore_errors=True)
            raise

    def add_folder(self, path: Path, user: str | None = None) -> dict[str, Any]:
        """Register a folder on the server (the caller has checked that it is under a data root)."""
        dataset_id = uuid.uuid4().hex
        try:
            return self._add(dataset_id, path.name[:100] or "folder", path, "folder", user)
        except BaseException:
            shutil.rmtree(self.folder / dataset_id, ignore_errors=True)
            raise

    def _add(self, dataset_id: str, name: str, path: Path, origin: str, user: str | None,
             left_out: list[str] | None = None) -> dict[str, Any]:
        source = str(path)
        report = describe_data(source)
        overrides, reasons = recommend_recipe(source, report=report)
        sheet = self.folder / dataset_id / "sheet.png"
        ds = open_data(source, report=report, limit=64)
        data_grid(ds, sheet, n=64)
        summary = _summary(report)
        if left_out:
            summary["left_out"] = left_out[:_SHOWN_DUPLICATES]
            summary["n_left_out"] = len(left_out)
        with self.engine.begin() as conn:
            conn.execute(insert(datasets).values(id=dataset_id, name=name, path=source, origin=origin,
                                                 report=summary, user=user, created_at=now(),
                                                 recipe={"overrides": overrides, "reasons": reasons}))
        return self.get(dataset_id)

    def get(self, dataset_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(datasets).where(datasets.c.id == dataset_id)).first()
        if row is None:
            raise NotFound(f"no dataset {dataset_id!r:.40}")
        return row_dict(row)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(datasets).order_by(datasets.c.created_at.desc()).limit(limit)).all()
        return [row_dict(r) for r in rows]

    def sheet(self, dataset_id: str) -> Path:
        """The contact sheet of a dataset (its id was looked up, so the path is the server's own)."""
        self.get(dataset_id)
        return self.folder / dataset_id / "sheet.png"


def plan_training(dataset: dict[str, Any], family: str | None = None, resolution: int | None = None,
                  budget: dict[str, Any] | None = None, extra: str | list[str] | None = None
                  ) -> tuple[dict[str, Any], list[str]]:
    """The resolved run config (a dict) for training on ``dataset`` with the recommended recipe as edited:
    another ``family``, ``resolution`` or ``budget``, and ``extra`` overrides (``"model.width=32"`` lines, as
    ``atelier train --set``). Returns (config, reasons). Raises ConfigError for a recipe that cannot train."""
    recipe = dict(dataset["recipe"]["overrides"])
    reasons = list(dataset["recipe"]["reasons"])
    offered = trainable_families()
    asked = family or recipe.get("model.name")
    if asked not in offered:
        if family is not None:
            raise ConfigError(f"family {family!r:.40} cannot train from a folder of images here; choose one of: "
                              f"{', '.join(offered)}")
        asked = "dcgan" if "dcgan" in offered else offered[0]
    if asked != recipe.get("model.name"):
        # The recommended sizes are the recommended family's knobs: another family starts from its own defaults.
        recipe = {k: v for k, v in recipe.items() if not k.startswith("model.")}
        recipe["model.name"] = asked
        reasons = [r for r in reasons if not r.startswith(("model ", "size "))]
        reasons.append(f"model {asked}" + (" (your choice)" if family is not None else "") +
                       f": its default size; the recommended {dataset['recipe']['overrides'].get('model.name')} is "
                       + ("another family" if family is not None else "not available in this version of atelier"))
    recipe.update(budget_overrides(check_budget(budget or {"minutes": 10})))
    side = dataset["report"].get("median_side")
    if resolution is not None:
        recipe["data.resolution"] = int(resolution)
    elif isinstance(side, int) and side >= 64:
        # Pictures of 64 px and up: the recommended resolution follows the family and budget chosen here (a
        # short CPU budget trains a StyleGAN2-type model at 32 px). Smaller ones keep the recipe's own size.
        res, why = recipe_resolution(side, asked, minutes=time_budget(recipe))
        recipe["data.resolution"] = res
        reasons = [f"resolution {res} px: {why}" if r.startswith("resolution ") else r for r in reasons]
    if extra:
        lines = extra.splitlines() if isinstance(extra, str) else list(extra)
        recipe.update(_check_extra(parse_set([ln.strip() for ln in lines
                                              if ln.strip() and not ln.strip().startswith("#")])))
    recipe["data.source"] = dataset["path"]  # never from the client: the registered dataset's own folder
    # The family's training defaults for the resolution and batch the recipe ends with, under every edit.
    defaults = training_defaults(recipe, gpu=torch.cuda.is_available())
    if defaults:
        recipe = {**defaults, **recipe}
        reasons.append(training_reason(recipe))
    if recipe.get("eval.every"):
        # A folder has no held-out split: FID is measured against the pictures themselves (as StyleGAN's FID
        # against the training set), with atelier's automatic evaluator for the data.
        recipe["eval.ref"] = dataset["path"]
        reasons.append(f"FID every {recipe['eval.every']} steps against your pictures themselves (no held-out set)")
    cfg = resolve_config(apply_overrides({}, recipe), where="the recipe")
    return cfg.to_dict(), reasons


def _check_extra(overrides: dict[str, Any]) -> dict[str, Any]:
    """Extra overrides may tune the model and training, never point at files: the data is the dataset's."""
    for key, value in overrides.items():
        if not key.startswith(_EXTRA_OK) or key in _EXTRA_REFUSED:
            raise ConfigError(f"{key}: not settable from the studio (allowed: {', '.join(_EXTRA_OK)}, except "
                              f"{', '.join(_EXTRA_REFUSED)})")
        if isinstance(value, str) and ("/" in value or "\\" in value):
            raise ConfigError(f"{key}: a path is not accepted here")
    return overrides
