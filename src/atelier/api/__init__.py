"""The public Python API: every workflow atelier has, for a notebook, the CLI and the studio alike.

    import atelier
    g = atelier.load("runs/mnist-dcgan")                    # a Generator (or a Translator / Stylizer)
    images = g.sample(16, seed=0)                            # uint8 (16, C, H, W); same seed, same images
    atelier.train("configs/mnist-dcgan.yaml", "runs/x", {"train.minutes": 5})
    atelier.sample("runs/x", n=64, seed=0).save_grid("grid.png")
    atelier.evaluate("runs/x", metrics=["fid", "kid"], n=10_000)
    m = atelier.load_foundation("models/sd15")              # your own Stable Diffusion checkpoint (diffusion extra)
    atelier.t2i(m, Settings("a red fox in snow", n=4), out_dir="out")   # Settings: atelier.foundation.Settings

The studio's workflows (a job queue and its workers, datasets, the gallery, users) keep their state in a database
through SQLAlchemy (the ``serve`` extra); import them from their modules: ``atelier.api.jobs``,
``atelier.api.worker``, ``atelier.api.newmodel``, ``atelier.api.gallery``, ``atelier.api.users``.
"""

from __future__ import annotations

from atelier.api.data import data_grid, describe_data, open_data, prepare_data, recommend_recipe
from atelier.api.data import fetch as fetch_data
from atelier.api.diffusion import DiffusionResult, inpaint, sdedit
from atelier.api.edit import EDITS, EditResult, RegionEdit, edit_region, register_edit
from atelier.api.evaluate import evaluate, evaluate_segmentation, evaluate_translation, fcn_score
from atelier.api.examples import example_input
from atelier.api.export import export
from atelier.api.finetune import finetune
from atelier.api.foundation import FoundationImages, img2img, load_foundation, t2i
from atelier.api.foundation import inpaint as sd_inpaint
from atelier.api.masks import Mask, feather, region_mask
from atelier.api.progress import run_progress
from atelier.api.project import LatentStrip, ProjectionResult, directions, edit_latent, project, read_latent
from atelier.api.provenance import verify, watermark_detect, watermark_embed
from atelier.api.sample import SampleSet, interpolate, sample, style_mix
from atelier.api.sample import load_generator as sample_generator
from atelier.api.segment import load_segmenter, segment, segmentation_image
from atelier.api.style import check_inputs as check_style_inputs
from atelier.api.style import stylize, stylize_fast
from atelier.api.synth import SynthSet, synthesize
from atelier.api.train import (
    describe_budget,
    dry_run,
    prepare,
    recipe,
    resume_step,
    train,
    train_style,
    training_defaults,
    training_reason,
)
from atelier.api.translate import translate
from atelier.api.uploads import UploadLimits, unpack_zip
from atelier.families import load
from atelier.loaded import DiffusionModel, Generator, LoadedModel, Segmenter, Stylizer, Translator
from atelier.training.result import TrainResult

__all__ = [
    "DiffusionModel",
    "DiffusionResult",
    "EDITS",
    "EditResult",
    "FoundationImages",
    "LatentStrip",
    "Generator",
    "LoadedModel",
    "Mask",
    "ProjectionResult",
    "RegionEdit",
    "SampleSet",
    "Segmenter",
    "Stylizer",
    "SynthSet",
    "TrainResult",
    "Translator",
    "UploadLimits",
    "check_style_inputs",
    "data_grid",
    "describe_budget",
    "describe_data",
    "directions",
    "dry_run",
    "edit_latent",
    "edit_region",
    "evaluate",
    "evaluate_segmentation",
    "evaluate_translation",
    "example_input",
    "export",
    "fcn_score",
    "feather",
    "fetch_data",
    "finetune",
    "img2img",
    "inpaint",
    "interpolate",
    "load",
    "load_foundation",
    "load_segmenter",
    "open_data",
    "prepare",
    "prepare_data",
    "project",
    "recipe",
    "recommend_recipe",
    "read_latent",
    "region_mask",
    "register_edit",
    "resume_step",
    "run_progress",
    "sample",
    "sample_generator",
    "sdedit",
    "sd_inpaint",
    "segment",
    "segmentation_image",
    "style_mix",
    "stylize",
    "stylize_fast",
    "synthesize",
    "t2i",
    "train",
    "train_style",
    "training_defaults",
    "training_reason",
    "translate",
    "unpack_zip",
    "verify",
    "watermark_detect",
    "watermark_embed",
]
