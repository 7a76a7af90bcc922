"""The public Python API: every workflow atelier has, for a notebook, the CLI and the studio alike.

    import atelier
    g = atelier.load("runs/mnist-dcgan")                    # a Generator (or a Translator / Stylizer)
    images = g.sample(16, seed=0)                            # uint8 (16, C, H, W); same seed, same images
    atelier.train("configs/mnist-dcgan.yaml", "runs/x", {"train.minutes": 5})
    atelier.sample("runs/x", n=64, seed=0).save_grid("grid.png")
    atelier.evaluate("runs/x", metrics=["fid", "kid"], n=10_000)
"""

from __future__ import annotations

from atelier.api.data import data_grid, describe_data, open_data, prepare_data, recommend_recipe
from atelier.api.data import fetch as fetch_data
from atelier.api.evaluate import evaluate, evaluate_translation
from atelier.api.export import export
from atelier.api.finetune import finetune
from atelier.api.provenance import verify, watermark_detect, watermark_embed
from atelier.api.sample import SampleSet, interpolate, sample, style_mix
from atelier.api.sample import load_generator as sample_generator
from atelier.api.style import check_inputs as check_style_inputs
from atelier.api.style import stylize, stylize_fast
from atelier.api.synth import SynthSet, synthesize
from atelier.api.train import describe_budget, dry_run, prepare, recipe, resume_step, train, train_style
from atelier.api.translate import translate
from atelier.families import load
from atelier.loaded import Generator, LoadedModel, Stylizer, Translator
from atelier.training.result import TrainResult

__all__ = [
    "Generator",
    "LoadedModel",
    "SampleSet",
    "Stylizer",
    "SynthSet",
    "TrainResult",
    "Translator",
    "check_style_inputs",
    "data_grid",
    "describe_budget",
    "describe_data",
    "dry_run",
    "evaluate",
    "evaluate_translation",
    "export",
    "fetch_data",
    "finetune",
    "interpolate",
    "load",
    "open_data",
    "prepare",
    "prepare_data",
    "recipe",
    "recommend_recipe",
    "resume_step",
    "sample",
    "sample_generator",
    "style_mix",
    "stylize",
    "stylize_fast",
    "synthesize",
    "train",
    "train_style",
    "translate",
    "verify",
    "watermark_detect",
    "watermark_embed",
]
