"""``atelier inpaint`` and ``atelier edit``: with a diffusion RUN trained by atelier, or with ``--model PATH``, a
Stable Diffusion-family checkpoint of your own and a prompt (the same workflows as ``atelier sd-inpaint`` and
``atelier img2img``, written to one file)."""

from __future__ import annotations

from pathlib import Path

import click

from atelier import api
from atelier.cli.app import CONTEXT, cli, no_metadata_option
from atelier.errors import ConfigError
from atelier.foundation import Settings
from atelier.imageio import save_image

_IMAGE = click.Path(dir_okay=False, path_type=Path)


def _foundation_option(f):
    """``--model`` (a foundation checkpoint) with ``--prompt`` and ``--negative``: the RUN's alternative."""
    f = click.option("--negative", default="", help="With --model: the negative prompt.")(f)
    f = click.option("--prompt", help="With --model: what the result should show (required there).")(f)
    return click.option("--model", "model_path", type=click.Path(path_type=Path),
                        help="Instead of RUN: your own Stable Diffusion-family checkpoint (a diffusers folder, or "
                             "a single .safetensors file with atelier img2img's --config).")(f)


def _which(run: Path | None, model_path: Path | None, prompt: str | None, command: str) -> None:
    if (run is None) == (model_path is None):
        raise ConfigError(f"atelier {command} needs a diffusion RUN folder, or --model PATH with --prompt "
                          "(your own Stable Diffusion checkpoint); give one of them")
    if model_path is not None and not (prompt or "").strip():
        raise ConfigError(f"atelier {command} --model needs --prompt: what the result should show")
    if run is not None and prompt:
        raise ConfigError("--prompt goes with --model; a diffusion run trained by atelier takes --class instead")


def _write_foundation(result: api.FoundationImages, out: Path, no_metadata: bool) -> None:
    path = save_image(result.images[0], out, result.fields[0], strip_metadata=no_metadata)
    h, w = result.images[0].shape[:2]
    click.echo(f"wrote {w}x{h} by {result.model.name} to {path}")


def _report(result: api.DiffusionResult, what: str) -> None:
    size = f" (fitted from {result.resized_from[0]}x{result.resized_from[1]})" if result.resized_from else ""
    side = result.image.shape[-1]
    click.echo(f"wrote {what} {side}x{side}{size} to {result.path}")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path), required=False)
@_foundation_option
@click.option("--image", required=True, type=_IMAGE, help="The image to repair.")
@click.option("--mask", type=_IMAGE, help="A mask image of the same size: white = fill, black = keep.")
@click.option("--rect", help="Or a rectangle to fill, x0,y0,x1,y1 in the image's pixels (x1, y1 exclusive).")
@click.option("--out", required=True, type=_IMAGE, help="Where to write the result (.png/.jpg/.webp).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--steps", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Noise levels of the chain (denoiser calls: about steps x --resample).")
@click.option("--jump", "jump_length", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="RePaint's jump length: levels between re-noising jumps.")
@click.option("--resample", "jump_n_sample", type=click.IntRange(1, 100), default=4, show_default=True,
              help="RePaint's resampling: times each stretch is denoised (1: no resampling).")
@click.option("--class", "class_", type=click.IntRange(min=0), help="Class-conditional runs: fill with this class.")
@click.option("--guidance", type=click.FloatRange(0.0, 100.0), help="Guidance scale with --class.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option()
def inpaint(run: Path | None, model_path: Path | None, prompt: str | None, negative: str, image: Path,
            mask: Path | None, rect: str | None, out: Path, seed: int, steps: int, jump_length: int,
            jump_n_sample: int, class_: int | None, guidance: float | None, device: str, no_metadata: bool) -> None:
    """Fill a hole in an image with a diffusion run (RePaint, Lugmayr et al. 2022).

    The image is read as the model's channels and fitted to its square (the mask the same way); the pixels
    outside the hole are the input's.

    \b
    Examples:
      atelier inpaint runs/mnist-diffusion --image digit.png --mask hole.png --out repaired.png
      atelier inpaint runs/mnist-diffusion --image digit.png --rect 8,8,20,20 --out repaired.png --seed 3
      atelier inpaint --model models/sd15 --prompt "a round window" --image room.png --mask hole.png --out new.png
    """
    _which(run, model_path, prompt, "inpaint")
    if model_path is not None:
        if mask is None:
            raise ConfigError("atelier inpaint --model needs --mask (white = repaint, the image's size)")
        settings = Settings(prompt=prompt or "", negative=negative, steps=min(steps, 1000), seed=seed,
                            guidance=6.0 if guidance is None else guidance)
        settings.check()
        _write_foundation(api.sd_inpaint(model_path, image, mask, settings), out, no_metadata)
        return
    assert run is not None
    result = api.inpaint(run, image, out, mask=mask, rect=rect, seed=seed, steps=steps, jump_length=jump_length,
                         jump_n_sample=jump_n_sample, class_=class_, guidance=guidance, device=device,
                         strip_metadata=no_metadata)
    _report(result, f"the inpainted image ({int(result.mask.sum()) if result.mask is not None else 0} px filled)")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path), required=False)
@_foundation_option
@click.option("--image", required=True, type=_IMAGE, help="The image to edit (a sketch, a rough or odd image).")
@click.option("--strength", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.6, show_default=True,
              help="How far to noise it: small stays close to the input, 1 starts from noise.")
@click.option("--out", required=True, type=_IMAGE, help="Where to write the result (.png/.jpg/.webp).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--steps", type=click.IntRange(1, 10_000), help="Steps of the full chain [default: the run's].")
@click.option("--sampler", type=click.Choice(["dpm++", "ddim", "euler", "ddpm"]), help="[default: the run's]")
@click.option("--class", "class_", type=click.IntRange(min=0), help="Class-conditional runs: edit towards it.")
@click.option("--guidance", type=click.FloatRange(0.0, 100.0), help="Guidance scale with --class.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option()
def edit(run: Path | None, model_path: Path | None, prompt: str | None, negative: str, image: Path,
         strength: float, out: Path, seed: int, steps: int | None, sampler: str | None, class_: int | None,
         guidance: float | None, device: str, no_metadata: bool) -> None:
    """Edit an image into the model's domain (SDEdit, Meng et al. 2022): noise it part-way, denoise it.

    \b
    Examples:
      atelier edit runs/mnist-diffusion --image sketch.png --strength 0.5 --out edited.png
      atelier edit runs/mnist-diffusion --image sketch.png --strength 0.7 --class 3 --guidance 2 --out three.png
      atelier edit --model models/sd15 --prompt "oil painting of a harbour" --image sketch.png --out harbour.png
    """
    _which(run, model_path, prompt, "edit")
    if model_path is not None:
        settings = Settings(prompt=prompt or "", negative=negative, steps=steps or 25, seed=seed,
                            guidance=6.0 if guidance is None else guidance, sampler=sampler or "default")
        settings.check()
        _write_foundation(api.img2img(model_path, image, settings, strength=strength), out, no_metadata)
        return
    assert run is not None
    result = api.sdedit(run, image, out, strength=strength, seed=seed, steps=steps, sampler=sampler, class_=class_,
                      guidance=guidance, device=device, strip_metadata=no_metadata)
    _report(result, "the edited image")
