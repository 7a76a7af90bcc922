"""The registry of model families: how each one is trained (its task) and loaded (its model class).

One line per family. A new family is a model file (``atelier/models/<family>.py``: config class and
networks), a task file (``atelier/tasks/<family>.py``) and one :func:`register` line here (or in a user's
own code: a test registers a toy family this way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from atelier.errors import ConfigError, RunError
from atelier.loaded import DiffusionModel, Generator, LoadedModel, Segmenter, Stylizer, Translator
from atelier.models import get as get_model
from atelier.runs import Run
from atelier.tasks.diffusion import DiffusionTask
from atelier.tasks.gan import GANTask
from atelier.tasks.pix2pix import Pix2PixTask
from atelier.tasks.segmenter import SegmenterTask
from atelier.tasks.style import StyleTask
from atelier.tasks.stylegan2 import StyleGAN2Task
from atelier.tasks.vae import VAETask
from atelier.training.task import Task

__all__ = ["Family", "get", "load", "register", "registered"]


@dataclass(frozen=True)
class Family:
    name: str                     # the model registry's name (``model.name`` in a config)
    task: type[Task]              # how it trains
    loaded: type[LoadedModel]     # what atelier.load returns
    slots: tuple[str, ...]        # checkpoint slots the loaded model reads, first found wins ("G_ema", "G")
    raw_slots: tuple[str, ...] = ()  # with which="raw" (a GAN's G without its EMA); empty: same as slots

    @property
    def kind(self) -> str:
        """What a trained model of this family does: "generator", "translator", "stylizer" or "segmenter"."""
        return self.loaded.kind


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    get_model(family.name)  # the model file must be registered first (its config class and networks)
    _FAMILIES[family.name] = family
    return family


register(Family("dcgan", GANTask, Generator, slots=("G_ema", "G"), raw_slots=("G",)))
register(Family("resnet", GANTask, Generator, slots=("G_ema", "G"), raw_slots=("G",)))
register(Family("stylegan2", StyleGAN2Task, Generator, slots=("G_ema", "G"), raw_slots=("G",)))
register(Family("vae", VAETask, Generator, slots=("decoder", "G")))
register(Family("pix2pix", Pix2PixTask, Translator, slots=("G",)))
register(Family("fast-style", StyleTask, Stylizer, slots=("net",)))
register(Family("diffusion", DiffusionTask, DiffusionModel, slots=("unet_ema", "unet"), raw_slots=("unet",)))
register(Family("segmenter", SegmenterTask, Segmenter, slots=("net",)))


def registered() -> list[str]:
    return sorted(_FAMILIES)


def get(name: str) -> Family:
    if name not in _FAMILIES:
        raise ConfigError(f"model.name: unknown model {name!r}; choose one of: {', '.join(registered())}")
    return _FAMILIES[name]


def load(run_dir: str | Path | Run, which: str = "ema", device: str = "cpu") -> LoadedModel:
    """A run folder's latest model, ready to use: a :class:`~atelier.loaded.Generator` (a GAN's EMA generator
    by default, ``which="raw"`` for its G; a VAE's decoder), a :class:`~atelier.loaded.Translator` (pix2pix,
    called on an image), a :class:`~atelier.loaded.Stylizer` (a fast style network, called on a photo) or a
    :class:`~atelier.loaded.Segmenter` (``segment(photo)`` -> class indices)."""
    if which not in ("ema", "raw"):
        raise ValueError(f"which must be 'ema' or 'raw', got {which!r}")
    run = run_dir if isinstance(run_dir, Run) else Run(run_dir)
    cfg = run.config()
    family = get(cfg.model["name"])
    slots: Sequence[str] = family.raw_slots if which == "raw" and family.raw_slots else family.slots
    if not run.latest_checkpoint():
        raise RunError(f"{run.path} has no checkpoint yet; train it first (`atelier train --run-dir {run.path}`)")
    return family.loaded.from_run(run, cfg, slots, device=device)
