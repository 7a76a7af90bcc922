"""The ``atelier`` command line: argument parsing only; the work happens in :mod:`atelier.api`.

A user mistake prints one ``error: ...`` line and exits with status 2; ``--debug`` (or
``ATELIER_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import click

from atelier.errors import AtelierError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


class AtelierGroup(click.Group):
    """Turns AtelierError into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug")) or os.environ.get("ATELIER_DEBUG") == "1"
        try:
            with warnings.catch_warnings():
                if not debug:
                    # atelier's own warnings (skipped files, fallbacks) as one plain line each.
                    warnings.simplefilter("always", UserWarning)
                    warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except AtelierError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=AtelierGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="atelier")
def cli(debug: bool) -> None:
    """atelier: train, sample and label image generators.

    \b
    Quick start:
      atelier demo                                  # train a DCGAN on MNIST for a few minutes
      atelier train --config configs/mnist-dcgan.yaml --run-dir runs/mnist-dcgan
      atelier sample runs/mnist-dcgan --n 64 --seed 0 --out grid.png
      atelier data info mnist
    """


# ---------------------------------------------------------------------------------------------- train
def _train_overrides(data, steps, batch_size, seed, checkpoint_every, sample_every, device, precision,
                     sets) -> dict[str, Any]:
    from atelier.config import parse_set

    overrides = parse_set(sets)
    for key, value in (("data.source", data), ("train.steps", steps), ("train.batch_size", batch_size),
                       ("seed", seed), ("log.checkpoint_every", checkpoint_every),
                       ("log.sample_every", sample_every), ("train.device", device),
                       ("train.precision", precision)):
        if value is not None:
            overrides[key] = value
    return overrides


def _report(result, dry_run: bool = False) -> None:
    rate = result.images_seen / result.seconds if result.seconds else 0.0
    state = "interrupted at" if result.interrupted else "finished"
    click.echo(f"{state} step {result.step:,} ({result.images_seen / 1000:,.1f} kimg, "
               f"{result.seconds:.1f} s of training, {rate:,.0f} images/s)")
    if dry_run:
        return
    click.echo(f"run folder:   {result.run_dir}")
    for label, path in (("sample grid:", result.grid), ("loss plot:", result.loss_plot),
                        ("model card:", result.model_card)):
        if path is not None:
            click.echo(f"{label:13} {path}")
    if result.interrupted:
        click.echo("checkpoint written; run the same command again to resume")


def _run_train(config, run_dir: Path, overrides: dict[str, Any], dry_run: bool) -> None:
    from atelier import api

    if dry_run:
        # Two steps on 8 images, everything written into a temporary folder that is then removed.
        tmp = Path(tempfile.mkdtemp(prefix="atelier-dry-run-"))
        try:
            cfg, _ = api.prepare_run(config, Path(tmp / "none"), overrides)
            overrides = {**overrides, "data.limit": 8, "train.steps": 2,
                         "train.batch_size": min(cfg.train.batch_size, 8), "log.every": 1,
                         "log.sample_every": 2, "log.checkpoint_every": 2, "log.tensorboard": False}
            result = api.train(config, tmp / "run", overrides, progress=False)
            written = sorted(p.relative_to(tmp / "run").as_posix() for p in (tmp / "run").rglob("*") if p.is_file())
            click.echo(f"dry run ok: model {cfg.model['name']}, data {cfg.data.source}, "
                       f"batch {min(cfg.train.batch_size, 8)}, device {cfg.train.device}")
            _report(result, dry_run=True)
            click.echo(f"would write into {run_dir}: {', '.join(written)}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    result = api.train(config, run_dir, overrides)
    _report(result)
    if result.interrupted:
        sys.exit(130)


def _common_train_options(f):
    options = [
        click.option("--data", help="Data source: mnist, fashion-mnist[:split], a folder, a .zip or an .npz."),
        click.option("--steps", type=click.IntRange(min=1), help="Total training steps."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Images per step."),
        click.option("--seed", type=click.IntRange(min=0), help="Random seed (weights, noise, data order)."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), help="Steps between checkpoints."),
        click.option("--sample-every", type=click.IntRange(min=1), help="Steps between sample grids."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any config key, e.g. --set model.width=32 (repeatable)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train."),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), help="fp32, or bf16 autocast."),
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
@_common_train_options
def train(config, run_dir, data, steps, batch_size, seed, checkpoint_every, sample_every, sets, device,
          precision, dry_run) -> None:
    """Train a model, or resume the run folder where it stopped.

    \b
    Examples:
      atelier train --config configs/mnist-dcgan.yaml --run-dir runs/mnist-dcgan
      atelier train --config configs/mnist-dcgan.yaml --data fashion-mnist --steps 5000
      atelier train --run-dir runs/mnist-dcgan --steps 4000     # resume and train further
      atelier train --config configs/mnist-dcgan.yaml --set model.width=32 --dry-run
    """
    if run_dir is None:
        run_dir = Path("runs") / (config.stem if config else "mnist-dcgan")
    if config is None and not (run_dir / "config.yaml").is_file():
        config = None  # the built-in defaults
    overrides = _train_overrides(data, steps, batch_size, seed, checkpoint_every, sample_every, device,
                                 precision, sets)
    _run_train(config, run_dir, overrides, dry_run)


@cli.command(context_settings=CONTEXT)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Where the demo run is written.")
@click.option("--steps", type=click.IntRange(min=1), default=600, show_default=True,
              help="Training steps at batch 256 (about 3-4 minutes on a 2-core CPU).")
@click.option("--dry-run", is_flag=True, help="Run 2 steps on 8 images in a temporary folder.")
def demo(run_dir: Path, steps: int, dry_run: bool) -> None:
    """Train the DCGAN on MNIST for a few minutes and show where the results are.

    Uses the built-in config (the TensorFlow tutorial's DCGAN, as configs/mnist-dcgan.yaml); running
    it again resumes the same run folder.
    """
    click.echo(f"atelier demo: DCGAN on MNIST for {steps} steps -> {run_dir}")
    _run_train(None, run_dir, {"train.steps": steps, "log.sample_every": 100, "log.checkpoint_every": 200},
               dry_run)
    if not dry_run:
        click.echo(f"next: atelier sample {run_dir} --n 64 --seed 0 --out grid.png")


# --------------------------------------------------------------------------------------------- sample
def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            if dash:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{text!r}: use numbers and ranges like 0-63 or 3,17,42") from None
    if not seeds:
        raise click.BadParameter("no seeds given")
    return seeds


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=click.IntRange(1, 100_000), default=64, show_default=True, help="How many images.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the latents.")
@click.option("--seeds", help="One image per seed instead of --n/--seed, e.g. 0-63 or 3,17,42.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write one grid image (.png/.jpg).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), help="Write one PNG per image.")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
def sample(run: Path, n: int, seed: int, seeds: str | None, out: Path | None, out_dir: Path | None, raw: bool,
           device: str) -> None:
    """Generate images from a trained run (the EMA generator by default).

    \b
    Examples:
      atelier sample runs/mnist-dcgan --n 64 --seed 0 --out grid.png
      atelier sample runs/mnist-dcgan --n 100 --out-dir samples/
      atelier sample runs/mnist-dcgan --seeds 0-15 --out seeds.png
    """
    import atelier
    from atelier.imageio import make_grid, save_image, save_images

    if out is None and out_dir is None:
        raise click.UsageError("give --out GRID.png or --out-dir FOLDER")
    g = atelier.load(run, which="raw" if raw else "ema", device=device)
    seed_list = _parse_seeds(seeds) if seeds else None
    images = g.sample(n, seed=seed, seeds=seed_list)
    meta = g.metadata(seed=seeds if seeds else seed, n=len(images))
    if out is not None:
        res = g.cfg.data.resolution
        save_image(make_grid(images, scale=3 if res <= 32 else 1), out, meta)
        click.echo(f"wrote a grid of {len(images)} images to {out}")
    if out_dir is not None:
        names = [f"seed{s:06d}.png" for s in seed_list] if seed_list else None
        paths = save_images(images, out_dir, stem=f"seed{seed}", metadata=meta, names=names)
        click.echo(f"wrote {len(paths)} images to {out_dir}")


# ----------------------------------------------------------------------------------------------- data
@cli.group(context_settings=CONTEXT)
def data() -> None:
    """Inspect and fetch data sources."""


def _ascii_preview(images, width: int = 4) -> str:
    """A terminal preview of a few images (2 pixels per character row)."""
    import numpy as np

    shades = " .:-=+*#%@"
    arrs = []
    for img in images[:width]:
        a = img.float().mean(0).numpy()  # (H, W) grayscale
        step = max(1, a.shape[0] // 14)
        a = a[::step * 2, ::step][: 14, : 28]
        arrs.append(a)
    rows = []
    for r in range(max(a.shape[0] for a in arrs)):
        line = []
        for a in arrs:
            if r < a.shape[0]:
                idx = np.clip((a[r] / 256 * len(shades)).astype(int), 0, len(shades) - 1)
                line.append("".join(shades[i] for i in idx))
        rows.append("   ".join(line))
    return "\n".join(rows)


@data.command("info", context_settings=CONTEXT)
@click.argument("source")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="Channels to read as (default: 1 for the MNIST family, else 3).")
@click.option("--resolution", type=click.IntRange(8, 1024), default=None, help="Square size to read at.")
@click.option("--grid", "grid_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also save a grid of the first 64 images.")
def data_info(source: str, channels: str | None, resolution: int | None, grid_out: Path | None) -> None:
    """Show count, size, channels, classes, licence and a few examples of a data source.

    \b
    Examples:
      atelier data info mnist
      atelier data info fashion-mnist:test --grid fashion.png
      atelier data info photos/ --resolution 64
    """
    from atelier.data import open_source, parse_spec
    from atelier.imageio import make_grid, save_image
    from atelier.provenance import COMPOSITE_SOURCE_TYPE

    name, split = parse_spec(source)
    ch = int(channels) if channels else (1 if split is not None else 3)
    res = (resolution or 28) if split is not None else (resolution or 64)
    ds = open_source(source, channels=ch, resolution=res)
    click.echo(f"source:     {ds.name}")
    click.echo(f"images:     {len(ds):,}")
    click.echo(f"size:       {ds.resolution}x{ds.resolution} (as read), {ds.channels} channel(s), uint8")
    if ds.labels is not None:
        import torch

        counts = torch.bincount(ds.labels).tolist()
        names = ds.classes or tuple(str(i) for i in range(len(counts)))
        shown = ", ".join(f"{names[i] if i < len(names) else i}: {c}" for i, c in enumerate(counts))
        click.echo(f"classes:    {len(counts)} ({shown})")
    else:
        click.echo("classes:    none (unlabelled)")
    click.echo(f"licence:    {ds.license}")
    if ds.skipped:
        click.echo(f"skipped:    {len(ds.skipped)} unreadable file(s)")
    click.echo("examples:")
    click.echo(_ascii_preview(ds.images[:4]))
    if grid_out is not None:
        save_image(make_grid(ds.images[:64], scale=2 if ds.resolution <= 32 else 1), grid_out,
                   {"workflow": "data-info", "source": ds.name, "DigitalSourceType": COMPOSITE_SOURCE_TYPE})
        click.echo(f"wrote a grid of {min(64, len(ds))} examples to {grid_out}")


@data.command("fetch", context_settings=CONTEXT)
@click.argument("name", type=click.Choice(["mnist", "fashion-mnist"]))
@click.option("--mirror", help="Base URL of a mirror holding <name>/<file> (default: the public mirrors).")
def data_fetch(name: str, mirror: str | None) -> None:
    """Download a named dataset's files (sha256-checked) into atelier's cache, unless present locally."""
    from atelier.data.mnist import fetch

    for path in fetch(name, mirror=mirror):
        click.echo(f"ok  {path}")


# ---- style ----
def _stylize_fast(model: Path, content: Path, out: Path, size: int | None, device: str) -> None:
    import time

    from atelier.errors import RunError
    from atelier.style.fast import load_style_run

    if not model.is_dir():
        raise RunError(f"--model {model}: run folder not found")
    runner = load_style_run(model, device=device)

    t0 = time.perf_counter()
    image = runner(content, size=size)
    ms = (time.perf_counter() - t0) * 1000
    from atelier.imageio import save_image

    save_image(image, out, runner.metadata(content=content.name))
    click.echo(f"wrote {out} ({image.width}x{image.height}, one forward pass, {ms:.0f} ms) with {model}")


@cli.command(context_settings=CONTEXT)
@click.option("--content", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The photo.")
@click.option("--style", "styles", multiple=True, metavar="IMAGE[:WEIGHT]",
              help="Style image, optionally with a blend weight (repeatable).")
@click.option("--model", type=click.Path(path_type=Path), help="A train-style run folder: one forward pass.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output .png/.jpg.")
@click.option("--size", type=click.IntRange(16, 4096), default=None,
              help="Long side of the output [default: 512; with --model the photo's own size].")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True, help="Optimisation steps.")
@click.option("--style-weight", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--content-weight", type=click.FloatRange(min=0), default=0.2, show_default=True)
@click.option("--tv-weight", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Total-variation (smoothness) weight.")
@click.option("--style-scale", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Style image size relative to --size (smaller: finer brush strokes).")
@click.option("--preserve-color", is_flag=True, help="Keep the photo's colours (luminance-only transfer).")
@click.option("--init", type=click.Choice(["content", "noise"]), default="content", show_default=True)
@click.option("--features", type=click.Choice(["auto", "vgg19", "random"]), default="auto", show_default=True,
              help="auto: VGG-19 when its weights are found, else the weights-free random network.")
@click.option("--vgg-weights", type=click.Path(dir_okay=False, path_type=Path),
              help="VGG-19 weights file (torchvision's vgg19-dcbb9e9d.pth or a .safetensors).")
@click.option("--optimizer", type=click.Choice(["adam", "lbfgs"]), default="adam", show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Step size [adam 0.03, lbfgs 1].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def stylize(content, styles, model, out, size, steps, style_weight, content_weight, tv_weight, style_scale,
            preserve_color, init, features, vgg_weights, optimizer, lr, seed, device) -> None:
    """Restyle a photo after paintings (Gatys optimisation), or with a trained fast network (--model).

    \b
    Examples:
      atelier stylize --content photo.jpg --style starry_night.jpg --out out.png --size 256
      atelier stylize --content photo.jpg --style a.jpg:0.7 --style b.jpg:0.3 --out blend.png
      atelier stylize --content photo.jpg --style wave.jpg --preserve-color --out out.jpg
      atelier stylize --content photo.jpg --style wave.jpg --features vgg19 --vgg-weights vgg19-dcbb9e9d.pth --out o.png
      atelier stylize --model runs/wave --content photo.jpg --out wave.png
    """
    from atelier.imageio import _format_for
    from atelier.style.features import build_features

    _format_for(out)  # a bad output name fails before minutes of work
    if model is not None:
        if styles:
            raise click.UsageError("--model restyles with a trained network: leave out --style")
        _stylize_fast(model, content, out, size, device)
        return
    if not styles:
        raise click.UsageError("give --style IMAGE (repeatable), or --model RUN for a trained fast network")
    from atelier.style.gatys import image_to_tensor, parse_style_spec
    from atelier.style.gatys import stylize as run_stylize

    # Check every input file before announcing anything, so a bad file is the only line printed.
    for path, what in [(content, "content image")] + [(parse_style_spec(s)[0], "style image") for s in styles]:
        image_to_tensor(path, 16, what=what)
    net = build_features(features, vgg_weights, seed=seed)
    click.echo(f"features: {net.describe()}" + (" (VGG-19 weights not found: pass --vgg-weights to use them)"
                                                 if features == "auto" and net.name == "random" else ""))
    result = run_stylize(content, list(styles), size=size or 512, steps=steps, style_weight=style_weight,
                         content_weight=content_weight, tv_weight=tv_weight, style_scale=style_scale,
                         preserve_color=preserve_color, init=init, features=net, optimizer=optimizer, lr=lr,
                         seed=seed, device=device)
    result.save(out, {"content": content.name, "style": ", ".join(styles), "steps": steps, "seed": seed})
    fmt = "  ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
    click.echo(f"losses: {fmt}  (start: total {result.initial_losses['total']:.4g})")
    click.echo(f"wrote {out} ({result.image.width}x{result.image.height}) in {result.seconds:.1f} s")


@cli.command("train-style", context_settings=CONTEXT)
@click.option("--style", "styles", multiple=True, metavar="IMAGE[:WEIGHT]", help="Style image(s).")
@click.option("--content-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of photos.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder; an existing one is resumed.")
@click.option("--size", type=click.IntRange(32, 2048), help="Training crop size [default: 256].")
@click.option("--steps", type=click.IntRange(min=1), help="Total training steps [default: 600].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Crops per step [default: 4].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate [default: 3e-3].")
@click.option("--style-weight", type=click.FloatRange(min=0))
@click.option("--content-weight", type=click.FloatRange(min=0))
@click.option("--features", type=click.Choice(["auto", "vgg19", "random"]), help="Feature network [auto].")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), help="VGG-19 weights file.")
@click.option("--width", type=click.IntRange(1, 256), help="Network width (Johnson: 32) [default: 16].")
@click.option("--seed", type=click.IntRange(min=0))
@click.option("--sample-every", type=click.IntRange(min=1), help="Steps between sample grids [100].")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Steps between checkpoints [100].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
def train_style(styles, content_dir, run_dir, size, steps, batch_size, lr, style_weight, content_weight, features,
                vgg_weights, width, seed, sample_every, checkpoint_every, device) -> None:
    """Train a fast feed-forward style network (Johnson et al. 2016) into a run folder, or resume it.

    \b
    Examples:
      atelier train-style --style great_wave.jpg --content-dir photos/ --run-dir runs/wave --steps 600
      atelier train-style --run-dir runs/wave --steps 1200        # resume and train further
      atelier stylize --model runs/wave --content photo.jpg --out wave.png
    """
    from atelier.training.style import train_style as run_train

    log = None
    if sample_every or checkpoint_every:
        log = {"sample_every": sample_every or 100, "checkpoint_every": checkpoint_every or 100}
    result = run_train(run_dir, style=list(styles) or None, content_dir=str(content_dir) if content_dir else None,
                       size=size, steps=steps, batch_size=batch_size, lr=lr, style_weight=style_weight,
                       content_weight=content_weight, features=features, vgg_weights=vgg_weights,
                       model={"width": width} if width else None, seed=seed, device=device, log=log)
    state = "interrupted at" if result.interrupted else "finished"
    m = result.metrics
    click.echo(f"{state} step {result.step} in {result.seconds:.1f} s of training; features: {result.features}")
    if m:
        click.echo(f"losses: style {m['loss_style']:.4g}  content {m['loss_content']:.4g}  tv {m['loss_tv']:.4g}")
    click.echo(f"run folder:   {result.run_dir}")
    if result.grid:
        click.echo(f"sample grid:  {result.grid}")
    if result.model_dir:
        click.echo(f"network:      {result.model_dir} (config.json + model.safetensors)")
    if result.interrupted:
        sys.exit(130)


def main() -> None:
    cli(prog_name="atelier")


if __name__ == "__main__":
    main()
