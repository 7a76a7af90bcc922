"""``atelier train``, ``atelier demo`` and ``atelier train-style``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from atelier import api, distributed
from atelier.api.train import DEMO_MINUTES, DEMO_STEPS, demo_overrides
from atelier.cli.app import CONTEXT, cli
from atelier.config import parse_set
from atelier.errors import ConfigError
from atelier.training.budget import format_duration, parse_count
from atelier.training.result import TrainResult


def _count(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_count(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a number of images such as 500k or 2M") from None


def budget_overrides(steps: int | None, minutes: float | None, images: int | None) -> dict[str, Any]:
    """``--minutes`` / ``--images`` alone train for that long (no step limit); with ``--steps``, the first wins."""
    out: dict[str, Any] = {}
    if steps is not None:
        out["train.steps"] = steps
    if minutes is not None:
        out["train.minutes"] = minutes
    if images is not None:
        out["train.images"] = images
    if (minutes is not None or images is not None) and steps is None:
        out["train.steps"] = None
    return out


def report(result: TrainResult, dry_run: bool = False) -> None:
    if not distributed.is_main():
        return  # under torchrun, rank 0 reports for all processes
    if result.nothing_to_do:
        click.echo(f"{result.run_dir} is already at step {result.step:,} ({result.images_seen / 1000:,.1f} kimg, "
                   f"{result.seconds / 60:.1f} min of training), past the budget asked for: nothing to train. "
                   "Give a larger --steps, --minutes or --images to continue it.")
        return
    rate = result.images_seen / result.seconds if result.seconds else 0.0
    state = "interrupted at" if result.interrupted else "finished"
    click.echo(f"{state} step {result.step:,} ({result.images_seen / 1000:,.1f} kimg, "
               f"{format_duration(result.seconds)} of training, {rate:,.0f} images/s)")
    if dry_run:
        return
    click.echo(f"run folder:   {result.run_dir}")
    for label, path in (("sample grid:", result.grid), ("loss plot:", result.loss_plot),
                        ("model card:", result.model_card)):
        if path is not None:
            click.echo(f"{label:13} {path}")
    if result.interrupted:
        click.echo("checkpoint written; run the same command again to resume")


def run_train(config: Path | dict | None, run_dir: Path, overrides: dict[str, Any],
              dry_run: bool) -> TrainResult | None:
    if dry_run:
        d = api.dry_run(config, run_dir, overrides)
        if distributed.is_main():
            cfg = d.config
            click.echo(f"dry run ok: model {cfg.model['name']}, data {cfg.data.source}, "
                       f"batch {min(cfg.train.batch_size, 8)}, device {cfg.train.device}")
            report(d.result, dry_run=True)
            click.echo(f"would write into {run_dir}: {', '.join(d.written)}")
        return None
    cfg, resuming = api.prepare(config, run_dir, overrides)
    if resuming and distributed.is_main():
        click.echo(f"resuming {run_dir} from step {api.resume_step(run_dir):,} (budget: {api.describe_budget(cfg)})")
    result = api.train(config, run_dir, overrides)
    report(result)
    if result.interrupted:
        sys.exit(130)
    return result


def train_options(f):
    options = [
        click.option("--data", help="Data source: mnist, fashion-mnist[:split], a folder, a .zip or an .npz."),
        click.option("--steps", type=click.IntRange(min=1), help="Budget: training steps."),
        click.option("--minutes", type=click.FloatRange(min=0, min_open=True),
                     help="Budget: minutes of training (summed over resumes)."),
        click.option("--images", callback=_count, metavar="N", help="Budget: images seen, e.g. 500k or 2M."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Images per step (all processes together)."),
        click.option("--seed", type=click.IntRange(min=0), help="Random seed (weights, noise, data order)."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), help="Steps between checkpoints."),
        click.option("--sample-every", type=click.IntRange(min=1), help="Steps between sample grids."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any config key, e.g. --set model.width=32 (repeatable)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]),
                     help="fp32, bf16 autocast, or fp16 autocast with loss scaling (CUDA only)."),
        click.option("--dry-run", is_flag=True, help="Run 2 steps on 8 images in a temporary folder."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command(context_settings=CONTEXT)
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config (default: the built-in MNIST DCGAN, same as configs/mnist-dcgan.yaml).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: runs/<config name>). An existing one is resumed.")
@train_options
def train(config, run_dir, data, steps, minutes, images, batch_size, seed, checkpoint_every, sample_every, sets,
          device, precision, dry_run) -> None:
    """Train a model, or resume the run folder where it stopped.

    \b
    Examples:
      atelier train --config configs/mnist-dcgan.yaml --run-dir runs/mnist-dcgan
      atelier train --config configs/mnist-dcgan.yaml --data fashion-mnist --minutes 30
      atelier train --run-dir runs/mnist-dcgan --steps 4000     # resume and train further
      atelier train --run-dir runs/mnist-dcgan --images 2M      # ... or for a budget of images seen
      atelier train --config configs/mnist-dcgan.yaml --set model.width=32 --dry-run
      atelier train --data my-sprites/ --run-dir runs/sprites    # no config: a recipe chosen from the data
      torchrun --standalone --nproc_per_node=2 -m atelier train --run-dir runs/ddp   # 2 processes (DDP)
    """
    from_data = config is None and data is not None and Path(data).exists()
    if run_dir is None:
        run_dir = Path("runs") / (config.stem if config else Path(data).name if from_data else "mnist-dcgan")
    overrides = parse_set(sets)
    if from_data and api.resume_step(run_dir) is None:
        # A folder (or .zip / .npz) and no config: the recipe is chosen from the data, and each choice is said.
        user = {**overrides, **({"train.batch_size": batch_size} if batch_size is not None else {}),
                **budget_overrides(steps, minutes, images)}
        picked, reasons = api.recipe(data, device=device or "auto", user=user)
        mine = {k: v for k, v in overrides.items() if k not in picked or picked[k] != v}
        if distributed.is_main():
            click.echo(f"no --config: a recipe chosen from {data}:")
            for line in reasons:
                click.echo(f"  {line}")
            if mine:
                click.echo("  your --set on top of it: " + ", ".join(
                    f"{k}={v}" + (f" (recipe: {picked[k]})" if k in picked else "") for k, v in mine.items()))
        overrides = {**picked, **overrides}
    for key, value in (("data.source", data), ("train.batch_size", batch_size), ("seed", seed),
                       ("log.checkpoint_every", checkpoint_every), ("log.sample_every", sample_every),
                       ("train.device", device), ("train.precision", precision)):
        if value is not None:
            overrides[key] = value
    overrides.update(budget_overrides(steps, minutes, images))
    run_train(config, run_dir, overrides, dry_run)


@cli.command(context_settings=CONTEXT)
@click.argument("parent", type=click.Path(file_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The new run folder (an existing one is resumed).")
@click.option("--freeze-d", type=click.IntRange(min=0),
              help="FreezeD: keep D's first K blocks (fromRGB counts as one) fixed [default: 2].")
@train_options
def finetune(parent, run_dir, freeze_d, data, steps, minutes, images, batch_size, seed, checkpoint_every,
             sample_every, sets, device, precision, dry_run) -> None:
    """Fine-tune a trained StyleGAN2-type run on a new folder of a few dozen images.

    Starts from PARENT's latest weights (G, D, EMA and w average), with FreezeD and ADA; the new run's config
    and model card name the parent checkpoint. Default budget: 500 steps.

    \b
    Examples:
      atelier finetune runs/emoji-stylegan --data my-icons/ --run-dir runs/my-icons --minutes 10
      atelier finetune runs/emoji-stylegan --data my-icons/ --run-dir runs/my-icons --freeze-d 3 --steps 800
    """
    if data is None and not (run_dir.is_dir() and any(run_dir.glob("checkpoints/*"))):
        raise click.UsageError("give --data FOLDER: the images to fine-tune on")
    if dry_run:
        raise click.UsageError("--dry-run is not available for finetune; try a small --steps")
    overrides = parse_set(sets)
    for key, value in (("train.batch_size", batch_size), ("seed", seed), ("log.checkpoint_every", checkpoint_every),
                       ("log.sample_every", sample_every), ("train.device", device),
                       ("train.precision", precision)):
        if value is not None:
            overrides[key] = value
    overrides.update(budget_overrides(steps, minutes, images))
    result = api.finetune(parent, data, run_dir, freeze_d=freeze_d, overrides=overrides)
    report(result)
    for r in result.evaluations:
        if r["metric"] == "memorisation":
            click.echo(f"memorisation: {r['value']:.0%} of {r['n_samples']} samples lie nearer a training image than "
                       f"the {r['n_train']} training images lie to each other (about 50% is as novel as they are; "
                       "near 100%: copies)")
    if result.interrupted:
        sys.exit(130)


@cli.command("train-style", context_settings=CONTEXT)
@click.option("--style", "styles", multiple=True, metavar="IMAGE[:WEIGHT]", help="Style image(s).")
@click.option("--content-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of photos.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder; an existing one is resumed.")
@click.option("--size", type=click.IntRange(32, 1024), help="Training crop size [default: 256].")
@click.option("--steps", type=click.IntRange(min=1), help="Total training steps [default: 600].")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), help="Budget: minutes of training.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Crops per step [default: 4].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate [default: 3e-3].")
@click.option("--style-weight", type=click.FloatRange(min=0))
@click.option("--content-weight", type=click.FloatRange(min=0))
@click.option("--style-scale", type=click.FloatRange(min=0, max=8, min_open=True),
              help="Style image's long side relative to --size [default: 2, about the photos' scale].")
@click.option("--features", type=click.Choice(["auto", "vgg19", "random"]), help="Feature network [auto].")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), help="VGG-19 weights file.")
@click.option("--width", type=click.IntRange(1, 256), help="Network width (Johnson: 32) [default: 16].")
@click.option("--arch", type=click.Choice(["lean", "johnson"]),
              help="Network layout: lean (~5x faster at the same width) or Johnson's [default: lean].")
@click.option("--seed", type=click.IntRange(min=0))
@click.option("--sample-every", type=click.IntRange(min=1), help="Steps between sample grids [100].")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Steps between checkpoints [100].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
def train_style(styles, content_dir, run_dir, size, steps, minutes, batch_size, lr, style_weight, content_weight,
                style_scale, features, vgg_weights, width, arch, seed, sample_every, checkpoint_every,
                device) -> None:
    """Train a fast feed-forward style network (Johnson et al. 2016) into a run folder, or resume it.

    \b
    Examples:
      atelier train-style --style great_wave.jpg --content-dir photos/ --run-dir runs/wave --steps 600
      # a usable network in ~10 CPU-minutes (see the manual's style page):
      atelier train-style --style starry_night.jpg --content-dir photos/ --run-dir runs/starry --size 128 \\
          --batch-size 2 --steps 1600 --content-weight 0.05
      atelier train-style --run-dir runs/wave --steps 1200        # resume and train further
      atelier stylize --model runs/wave --content photo.jpg --out wave.png
    """
    overrides: dict[str, Any] = {}
    for key, value in (("data.resolution", size), ("train.batch_size", batch_size), ("optim.lr_g", lr),
                       ("model.style_weight", style_weight), ("model.content_weight", content_weight),
                       ("model.style_scale", style_scale), ("model.width", width), ("model.arch", arch),
                       ("seed", seed), ("log.sample_every", sample_every), ("log.checkpoint_every", checkpoint_every),
                       ("train.device", device)):
        if value is not None:
            overrides[key] = value
    overrides.update(budget_overrides(steps, minutes, None))
    result = api.train_style(run_dir, style=list(styles) or None, content_dir=content_dir, features=features,
                             vgg_weights=vgg_weights, overrides=overrides)
    report(result)
    m = result.metrics
    if m and "loss_style" in m:
        click.echo(f"losses: style {m['loss_style']:.4g}  content {m['loss_content']:.4g}  tv {m['loss_tv']:.4g}")
    if result.interrupted:
        sys.exit(130)


@cli.command(context_settings=CONTEXT)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Where the demo run is written.")
@click.option("--steps", type=click.IntRange(min=1), default=DEMO_STEPS, show_default=True,
              help=f"Training steps at batch 64 ({DEMO_MINUTES} on a 2-core CPU).")
@click.option("--dry-run", is_flag=True, help="Run 2 steps on 8 images in a temporary folder.")
def demo(run_dir: Path, steps: int, dry_run: bool) -> None:
    """Train the DCGAN on MNIST for a few minutes and show where the results are.

    Uses the built-in config (the TensorFlow tutorial's DCGAN, as configs/mnist-dcgan.yaml) at batch 64 with
    learning rates 4e-4, the recipe measured to give recognisable digits of every class soonest; running it
    again resumes the same run folder.
    """
    if steps == 0:
        raise ConfigError("--steps must be positive")
    click.echo(f"atelier demo: DCGAN on MNIST for {steps} steps ({DEMO_MINUTES} on a 2-core CPU) -> {run_dir}")
    t0 = time.perf_counter()
    result = run_train(None, run_dir, demo_overrides(steps), dry_run)
    if result is None:
        return
    click.echo(f"the demo took {format_duration(time.perf_counter() - t0)}")
    click.echo(f"next: atelier sample {run_dir} --n 64 --seed 0 --out grid.png")
    click.echo(f"or open it in the studio: atelier serve --runs {run_dir.parent}  (then http://127.0.0.1:7860)")
