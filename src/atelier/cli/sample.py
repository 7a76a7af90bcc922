"""``atelier sample``, ``atelier interpolate`` and ``atelier synth``."""

from __future__ import annotations

from pathlib import Path

import click

from atelier import api
from atelier.api.sample import parse_seeds
from atelier.api.synth import check_output, write_folder, write_npz
from atelier.cli.app import CONTEXT, cli, no_metadata_option
from atelier.provenance import log_no_metadata


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=click.IntRange(1, 100_000), default=64, show_default=True, help="How many images.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the latents.")
@click.option("--seeds", help="One image per seed instead of --n/--seed, e.g. 0-63 or 3,17,42.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write one grid image (.png/.jpg).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), help="Write one PNG per image.")
@click.option("--class", "class_", type=click.IntRange(min=0),
              help="Conditional models: generate this class only (default: one grid row per class).")
@click.option("--truncation", "psi", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="StyleGAN-type models: pull the styles toward the average w (1 = off, 0.7 = more typical).")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--steps", type=click.IntRange(1, 100_000), help="Diffusion runs: sampler steps [default: the run's].")
@click.option("--sampler", type=click.Choice(["dpm++", "ddim", "euler", "ddpm"]),
              help="Diffusion runs: the sampler [default: the run's; flow models take euler or dpm++].")
@click.option("--guidance", type=click.FloatRange(0.0, 100.0),
              help="Class-conditional diffusion runs: classifier-free guidance scale (0: unconditional, "
                   "1: conditional only) [default: the run's].")
@no_metadata_option()
def sample(run: Path, n: int, seed: int, seeds: str | None, out: Path | None, out_dir: Path | None,
           class_: int | None, psi: float, raw: bool, device: str, steps: int | None, sampler: str | None,
           guidance: float | None, no_metadata: bool) -> None:
    """Generate images from a trained run (the EMA generator by default).

    Every image's metadata names what regenerates exactly it: its seed (and, with --n, its index among that
    seed's latents) and its class.

    \b
    Examples:
      atelier sample runs/mnist-dcgan --n 64 --seed 0 --out grid.png
      atelier sample runs/mnist-dcgan --n 100 --out-dir samples/
      atelier sample runs/mnist-dcgan --seeds 0-15 --out-dir seeds/
      atelier sample runs/mnist-cgan --class 7 --n 64 --out sevens.png
      atelier sample runs/mnist-cgan --n 80 --out per-class.png    # one row per class
      atelier sample runs/mnist-diffusion --steps 20 --sampler dpm++ --guidance 3 --out grid.png
      atelier sample runs/emoji-stylegan --n 64 --truncation 0.7 --out typical.png
    """
    if out is None and out_dir is None:
        raise click.UsageError("give --out GRID.png or --out-dir FOLDER")
    s = api.sample(run, n=n, seed=seed, seeds=parse_seeds(seeds) if seeds else None, class_=class_,
                   which="raw" if raw else "ema", device=device, truncation=psi, steps=steps, sampler=sampler,
                   guidance=guidance)
    if out is not None:
        s.save_grid(out, strip_metadata=no_metadata)
        click.echo(f"wrote a grid of {len(s.images)} images to {out}")
    if out_dir is not None:
        paths = s.save_each(out_dir, strip_metadata=no_metadata)
        click.echo(f"wrote {len(paths)} images to {out_dir}")
    if no_metadata:
        log_no_metadata(run, s.generator.step, [p for p in (out, out_dir) if p is not None], len(s.images), "sample")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--seeds", required=True, help="Two seeds (or more: a path through each), e.g. 3,17 or 3,17,42.")
@click.option("--frames", type=click.IntRange(2, 1024), default=16, show_default=True,
              help="Frames between each pair of seeds, both ends included.")
@click.option("--mode", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True,
              help="Spherical (keeps the latents' norm; sharper middle frames) or linear interpolation.")
@click.option("--truncation", "psi", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="Truncation psi: pull latents toward the mean (1 = off, 0.7 = more typical images).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A .png/.jpg strip (one row per pair of seeds) or an animated .gif.")
@click.option("--duration-ms", type=click.IntRange(10, 10_000), default=80, show_default=True,
              help="Time per frame of a .gif.")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA.")
@no_metadata_option()
def interpolate(run: Path, seeds: str, frames: int, mode: str, psi: float, out: Path, duration_ms: int,
                raw: bool, no_metadata: bool) -> None:
    """Walk the latent space between seeds: a strip of frames or an animated GIF.

    \b
    Examples:
      atelier interpolate runs/mnist-dcgan --seeds 3,17 --frames 16 --out strip.png
      atelier interpolate runs/mnist-dcgan --seeds 3,17,42,3 --frames 24 --out loop.gif
      atelier interpolate runs/mnist-dcgan --seeds 3,17 --mode lerp --truncation 0.7 --out lerp.png
    """
    seed_list = parse_seeds(seeds)
    if len(seed_list) < 2:
        raise click.BadParameter("give at least two seeds, e.g. 3,17", param_hint="--seeds")
    path, count = api.interpolate(run, seed_list, out, frames=frames, mode=mode, psi=psi,  # type: ignore[arg-type]
                                  duration_ms=duration_ms, which="raw" if raw else "ema", strip_metadata=no_metadata)
    if path.suffix.lower() == ".gif":
        click.echo(f"wrote a {count}-frame animation to {path}")
    else:
        click.echo(f"wrote {len(seed_list) - 1} strip(s) of {frames} frames to {path}")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--rows", required=True, help="Seeds giving the coarse styles (shape, layout), e.g. 0-3.")
@click.option("--cols", required=True, help="Seeds giving the fine styles (colour, detail), e.g. 10-15.")
@click.option("--crossover", type=click.IntRange(min=4),
              help="Feature size (px) from which the column's styles take over [default: 16].")
@click.option("--truncation", "psi", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="Pull the styles toward the average w (1 = off).")
@click.option("--class", "class_", type=click.IntRange(min=0), help="Conditional models: the class of every image.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The grid (.png).")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA.")
@no_metadata_option()
def mix(run: Path, rows: str, cols: str, crossover: int | None, psi: float, class_: int | None, out: Path,
        raw: bool, no_metadata: bool) -> None:
    """A style-mixing grid of a StyleGAN-type run: the top row and left column are the seeds' own images; each
    cell takes the coarse styles of its row and the fine styles of its column.

    \b
    Examples:
      atelier mix runs/emoji-stylegan --rows 0-3 --cols 10-15 --out mix.png
      atelier mix runs/emoji-stylegan --rows 0-3 --cols 10-15 --crossover 32 --truncation 0.8 --out mix32.png
    """
    path = api.style_mix(run, parse_seeds(rows), parse_seeds(cols), out, crossover=crossover, truncation=psi,
                         class_=class_, which="raw" if raw else "ema", strip_metadata=no_metadata)
    click.echo(f"wrote a style-mixing grid to {path}")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=click.IntRange(1, 10_000_000),
              help="How many images (conditional models: balanced over the classes).")
@click.option("--per-class", type=click.IntRange(1, 10_000_000),
              help="Images per class instead of --n (unconditional MNIST/Fashion runs: kept by the domain "
                   "classifier's label).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="A .npz file, or a folder name (one sub-folder of PNGs per class).")
@click.option("--format", "fmt", type=click.Choice(["npz", "folder"]),
              help="Force the output format [default: npz for a .npz path, else folder].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the latents.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=256, show_default=True,
              help="Images generated per forward pass.")
@click.option("--no-labels", is_flag=True, help="Unconditional runs: do not label with the domain classifier.")
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA (GAN runs).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option()
def synth(run: Path, n: int | None, per_class: int | None, out: Path, fmt: str | None, seed: int, batch_size: int,
          no_labels: bool, force: bool, raw: bool, device: str, no_metadata: bool) -> None:
    """Write a labelled synthetic dataset from a trained run, which atelier's loader reads back.

    Labels: a class-conditional run's own classes (balanced); for an unconditional run trained on MNIST
    or Fashion-MNIST, the domain evaluator's classifier labels each image; otherwise no labels. The
    .npz holds images (uint8 N x H x W [x C]), labels (int64), classes and a provenance JSON string.

    \b
    Examples:
      atelier synth runs/mnist-cgan --per-class 6000 --out synth.npz     # 60,000 balanced images
      atelier synth runs/mnist-vae --n 10000 --out vae.npz --seed 1      # labelled by the digits classifier
      atelier synth runs/mnist-cgan --n 1000 --out synth_digits/         # a folder tree per class of PNGs
      atelier data info synth.npz                                       # read it back
      atelier train --config configs/mnist-dcgan.yaml --data synth.npz  # train on it
    """
    if n is not None and per_class is not None:
        raise click.UsageError("give --n or --per-class, not both")
    if n is None and per_class is None:
        raise click.UsageError("give --n N (images) or --per-class K (images per class)")
    out_format = check_output(out, force=force, fmt=fmt)  # before minutes of generation
    g = api.sample_generator(run, which="raw" if raw else "ema", device=device)
    s = api.synthesize(g, n, per_class=per_class, seed=seed, batch_size=batch_size, labels=not no_labels)
    path = (write_npz if out_format == "npz" else write_folder)(s, out, strip_metadata=no_metadata)
    if no_metadata:
        log_no_metadata(run, g.step, [path], len(s.images), "synth")
    shape = "x".join(str(v) for v in s.images.shape[1:])
    click.echo(f"wrote {len(s.images):,} images ({shape}) to {path}")
    click.echo(f"labels: {s.label_source}")
    if s.labels is not None:
        counts = s.labels.bincount(minlength=len(s.classes)).tolist()
        click.echo("per class: " + ", ".join(f"{c}: {k}" for c, k in zip(s.classes, counts, strict=False)))
    click.echo(f"read it back: atelier data info {path}")
