"""``atelier inpaint`` and ``atelier edit`` (diffusion runs)."""

from __future__ import annotations

from pathlib import Path

import click

from atelier import api
from atelier.cli.app import CONTEXT, cli, no_metadata_option

_IMAGE = click.Path(dir_okay=False, path_type=Path)


def _report(result: api.DiffusionResult, what: str) -> None:
    size = f" (fitted from {result.resized_from[0]}x{result.resized_from[1]})" if result.resized_from else ""
    side = result.image.shape[-1]
    click.echo(f"wrote {what} {side}x{side}{size} to {result.path}")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
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
def inpaint(run: Path, image: Path, mask: Path | None, rect: str | None, out: Path, seed: int, steps: int,
            jump_length: int, jump_n_sample: int, class_: int | None, guidance: float | None, device: str,
            no_metadata: bool) -> None:
    """Fill a hole in an image with a diffusion run (RePaint, Lugmayr et al. 2022).

    The image is read as the model's channels and fitted to its square (the mask the same way); the pixels
    outside the hole are the input's.

    \b
    Examples:
      atelier inpaint runs/mnist-diffusion --image digit.png --mask hole.png --out repaired.png
      atelier inpaint runs/mnist-diffusion --image digit.png --rect 8,8,20,20 --out repaired.png --seed 3
    """
    result = api.inpaint(run, image, out, mask=mask, rect=rect, seed=seed, steps=steps, jump_length=jump_length,
                         jump_n_sample=jump_n_sample, class_=class_, guidance=guidance, device=device,
                         strip_metadata=no_metadata)
    _report(result, f"the inpainted image ({int(result.mask.sum()) if result.mask is not None else 0} px filled)")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
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
def edit(run: Path, image: Path, strength: float, out: Path, seed: int, steps: int | None, sampler: str | None,
         class_: int | None, guidance: float | None, device: str, no_metadata: bool) -> None:
    """Edit an image into the model's domain (SDEdit, Meng et al. 2022): noise it part-way, denoise it.

    \b
    Examples:
      atelier edit runs/mnist-diffusion --image sketch.png --strength 0.5 --out edited.png
      atelier edit runs/mnist-diffusion --image sketch.png --strength 0.7 --class 3 --guidance 2 --out three.png
    """
    result = api.sdedit(run, image, out, strength=strength, seed=seed, steps=steps, sampler=sampler, class_=class_,
                      guidance=guidance, device=device, strip_metadata=no_metadata)
    _report(result, "the edited image")
