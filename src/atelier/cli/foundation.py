"""``atelier t2i``, ``atelier img2img`` and ``atelier sd-inpaint``: a user's own Stable Diffusion-family checkpoint."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from atelier import api
from atelier.cli.app import CONTEXT, cli, no_metadata_option, note_no_metadata
from atelier.foundation import SAMPLERS, FoundationModel, Settings, parse_size, read_sheet

_SAMPLERS = ("default", *SAMPLERS)


def model_options(f):
    """--model and its loading levers, shared by the three commands."""
    options = [
        click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
                     help="A diffusers folder (model_index.json, unet/, vae/, ...) or a single .safetensors file."),
        click.option("--config", "config", type=click.Path(file_okay=False, path_type=Path),
                     help="Single files only: a diffusers folder of the same family for the configs and tokenizer."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--dtype", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
                     show_default=True, help="auto = fp16 on a GPU, fp32 on a CPU."),
        click.option("--attention-slicing", is_flag=True, help="Compute attention in slices: less memory, slower."),
        click.option("--vae-tiling", is_flag=True, help="Decode the image tile by tile (large images, less memory)."),
        click.option("--cpu-offload", is_flag=True,
                     help="Keep sub-models on the CPU until they run (small GPUs; needs accelerate)."),
    ]
    return functools.reduce(lambda g, opt: opt(g), reversed(options), f)


def prompt_options(f):
    options = [
        click.option("--negative", default="", help="Negative prompt: what to steer away from."),
        click.option("--steps", type=click.IntRange(1, 1000), default=25, show_default=True),
        click.option("--guidance", type=click.FloatRange(0.0, 50.0), default=6.0, show_default=True,
                     help="Classifier-free guidance scale (1 = off)."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Seed of the first image; image i uses seed + i."),
        click.option("--n", "n", type=click.IntRange(1, 256), default=1, show_default=True, help="Images per prompt."),
        click.option("--sampler", type=click.Choice(_SAMPLERS), default="default", show_default=True,
                     help="default = the scheduler the checkpoint ships with."),
        click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), required=True),
    ]
    return functools.reduce(lambda g, opt: opt(g), reversed(options), f)


def _load(model_path: Path, config: Path | None, device: str, dtype: str, attention_slicing: bool,
          vae_tiling: bool, cpu_offload: bool) -> FoundationModel:
    m = api.load_foundation(model_path, config=config, device=device, dtype=dtype,
                            attention_slicing=attention_slicing, vae_tiling=vae_tiling, cpu_offload=cpu_offload,
                            progress_bar=sys.stderr.isatty())
    return m


def _progress(m: FoundationModel) -> Callable[[int, int, Path | None], None]:
    def show(done: int, total: int, path: Path | None) -> None:
        if done == 0:   # every input checked: say what runs, before the (slow) first image
            click.echo(f"{m.name}: {m.info.label}, {m.info.layout}, {' + '.join(m.levers)} on {m.device.type}, "
                       f"sha256 {m.sha256[:16]}...; {total} image(s)", err=True)
            if m.device.type == "cpu":
                click.echo("note: running on the CPU: it works, but a full-size model takes a long time per image "
                           "(a GPU with --dtype fp16 is the usual choice)", err=True)
        else:
            click.echo(f"[{done}/{total}] {path}")
    return show


def _finish(result: api.FoundationImages, out_dir: Path, no_metadata: bool) -> None:
    click.echo(f"wrote {len(result.paths)} image(s) to {out_dir}")
    if no_metadata:
        note_no_metadata(len(result.paths))


@cli.command(context_settings=CONTEXT)
@model_options
@click.option("--prompt", help="What to draw.")
@click.option("--prompts", "sheet", type=click.Path(dir_okay=False, path_type=Path),
              help="A CSV prompt sheet: one row per prompt, settings per row (columns: prompt, negative, steps, "
                   "guidance, seed, size, sampler, n, name).")
@click.option("--size", help="WIDTHxHEIGHT, e.g. 512x512 (default: the model's native size).")
@prompt_options
@no_metadata_option(run=False)
def t2i(model_path: Path, prompt: str | None, sheet: Path | None, size: str | None, out_dir: Path,
        no_metadata: bool, **kw: Any) -> None:
    """Text to image with your own Stable Diffusion 1.x / 2.x / SDXL checkpoint, offline.

    Every image records its prompt, settings, seed and the checkpoint's sha256, and carries atelier's
    watermark. A prompt sheet's blank cells take the command line's values; the whole sheet is checked before
    the first image is made.

    \b
    Examples:
      atelier t2i --model models/sd15 --prompt "a red fox in snow, watercolour" --seed 0 --n 4 --out-dir out/
      atelier t2i --model sd15.safetensors --config models/sd15 --prompt "a lighthouse" --out-dir out/
      atelier t2i --model models/sdxl --prompts sheet.csv --steps 30 --sampler dpm++ --out-dir batch/
    """
    if (prompt is None) == (sheet is None):
        raise click.UsageError("give --prompt TEXT or --prompts SHEET.csv (one of them)")
    load = {k: kw.pop(k) for k in ("config", "device", "dtype", "attention_slicing", "vae_tiling", "cpu_offload")}
    defaults = Settings(prompt=prompt or "", size=parse_size(size) if size else None, **kw)
    rows = read_sheet(sheet, defaults, _SAMPLERS) if sheet is not None else [defaults]
    m = _load(model_path, **load)
    result = api.t2i(m, rows, out_dir, strip_metadata=no_metadata, progress=_progress(m))
    _finish(result, out_dir, no_metadata)


@cli.command(context_settings=CONTEXT)
@model_options
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The image to vary.")
@click.option("--prompt", required=True, help="What the result should show.")
@click.option("--strength", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.6, show_default=True,
              help="How far from the image: 0 keeps it, 1 ignores it.")
@prompt_options
@no_metadata_option(run=False)
def img2img(model_path: Path, image: Path, prompt: str, strength: float, out_dir: Path, no_metadata: bool,
            **kw: Any) -> None:
    """Image to image with your own Stable Diffusion-family checkpoint: redraw IMAGE toward the prompt.

    \b
    Examples:
      atelier img2img --model models/sd15 --image sketch.png --prompt "oil painting of a harbour" --out-dir out/
      atelier img2img --model models/sd15 --image photo.jpg --prompt "winter" --strength 0.4 --n 4 --out-dir out/
    """
    load = {k: kw.pop(k) for k in ("config", "device", "dtype", "attention_slicing", "vae_tiling", "cpu_offload")}
    settings = Settings(prompt=prompt, **kw)
    settings.check()
    m = _load(model_path, **load)
    result = api.img2img(m, image, settings, out_dir, strength=strength, strip_metadata=no_metadata,
                         progress=_progress(m))
    _finish(result, out_dir, no_metadata)


@cli.command("sd-inpaint", context_settings=CONTEXT)
@model_options
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--mask", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Same size as the image: white = repaint, black = keep.")
@click.option("--prompt", required=True, help="What to paint in the masked area.")
@click.option("--strength", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0, show_default=True,
              help="1 repaints the masked area from noise; lower keeps more of what is there.")
@click.option("--no-paste-back", is_flag=True,
              help="Keep the model's own pixels outside the mask (default: the original's, exactly).")
@prompt_options
@no_metadata_option(run=False)
def sd_inpaint(model_path: Path, image: Path, mask: Path, prompt: str, strength: float, no_paste_back: bool,
               out_dir: Path, no_metadata: bool, **kw: Any) -> None:
    """Inpainting with your own Stable Diffusion-family checkpoint: repaint the white part of MASK.

    A dedicated inpainting checkpoint sees the mask; a plain one blends its latents with the image outside the
    mask. The original pixels are pasted back outside the mask unless --no-paste-back.

    \b
    Examples:
      atelier sd-inpaint --model models/sd15-inpainting --image room.png --mask window.png \\
          --prompt "a round window with a sea view" --n 4 --out-dir out/
    """
    load = {k: kw.pop(k) for k in ("config", "device", "dtype", "attention_slicing", "vae_tiling", "cpu_offload")}
    settings = Settings(prompt=prompt, **kw)
    settings.check()
    m = _load(model_path, **load)
    result = api.sd_inpaint(m, image, mask, settings, out_dir, strength=strength, keep_unmasked=not no_paste_back,
                            strip_metadata=no_metadata, progress=_progress(m))
    _finish(result, out_dir, no_metadata)
