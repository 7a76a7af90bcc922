"""``atelier project`` (an image into a generator's latent space) and ``atelier edit-latent`` (a latent moved along a
discovered direction)."""

from __future__ import annotations

from pathlib import Path

import click

from atelier import api
from atelier.api.project import parse_amounts
from atelier.cli.app import CONTEXT, cli, no_metadata_option, note_no_metadata
from atelier.inversion import FEATURES, METHODS

__all__: list[str] = []


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--image", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The image to project.")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Writes latent.npy, reconstruction.png, progress.png and projection.json here.")
@click.option("--space", type=click.Choice(["w", "w+", "z"]), default=None,
              help="Latent space: w (one w for every layer) or w+ (one per layer) for a StyleGAN-type model; z for "
                   "any model. [default: w with a mapping network, else z]")
@click.option("--steps", type=click.IntRange(1, 100_000), default=500, show_default=True)
@click.option("--features", type=click.Choice(FEATURES), default="auto", show_default=True,
              help="The feature network in the distance: auto = the data set's domain evaluator if it reads these "
                   "images (digits for MNIST), else random-cnn; none = pixels and MS-SSIM only.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True)
@click.option("--no-noise", is_flag=True, help="Keep the generator's own noise maps (StyleGAN-type models).")
@click.option("--class", "class_", type=int, default=None,
              help="A conditional z-space model's class (default: the best-matching class is searched).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option()
def project(run: Path, image: Path, out_dir: Path, space: str | None, steps: int, features: str, lr: float,
            no_noise: bool, class_: int | None, seed: int, raw: bool, device: str, no_metadata: bool) -> None:
    """Find the latent whose image matches IMAGE (GAN inversion), for editing with `atelier edit-latent`.

    No LPIPS here (it needs ImageNet weights): the distance is pixel MSE + MS-SSIM + the LPIPS-style distance of a
    no-download network's features, and the output says which.

    \b
    Examples:
      atelier project runs/emoji-stylegan --image face.png --out-dir proj/ --space w+ --steps 500
      atelier project runs/mnist-dcgan --image digit.png --out-dir proj/ --steps 200
      atelier edit-latent runs/mnist-dcgan --latent proj/latent.npy --direction 0 --amount -2..2 --out strip.png
    """
    if not image.is_file():
        raise click.UsageError(f"--image {image}: no such file")
    result = api.project(run, image, out_dir, space, steps, features=features, lr=lr, seed=seed,  # type: ignore[arg-type]
                         noise=not no_noise, class_=class_, which="raw" if raw else "ema", device=device,
                         strip_metadata=no_metadata)
    r = result.record
    click.echo(f"projected {image.name} into {r['space']} ({r['steps']} steps, {r['seconds']:.1f} s, start: "
               f"{r['start']}): PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.4f}"
               + (f"  class {r['class']}" if "class" in r else ""))
    click.echo(f"distance: {r['distance']}")
    click.echo(f"wrote {', '.join(p.name for p in result.paths.values())} to {out_dir}")
    if no_metadata:
        note_no_metadata(2)


@cli.command(name="edit-latent", context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--latent", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A latent .npy (atelier project's latent.npy, or any w / w+ / z of the right shape).")
@click.option("--direction", required=True, type=click.IntRange(min=0), help="Which direction (0 = the strongest).")
@click.option("--amount", default="-2..2", show_default=True,
              help="A range LO..HI (--frames steps) or a list like -3,0,3; in standard deviations of the sampled "
                   "latents along the direction.")
@click.option("--frames", type=click.IntRange(2, 64), default=5, show_default=True)
@click.option("--method", type=click.Choice(METHODS), default="sefa", show_default=True,
              help="sefa (closed form, Shen & Zhou 2021), pca (GANSpace, Härkönen et al. 2020) or class (class-mean "
                   "differences of a conditional StyleGAN-type run).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The strip (.png).")
@click.option("--noise", type=click.Path(dir_okay=False, path_type=Path),
              help="A projection's noise.npz (StyleGAN-type models), so amount 0 is its reconstruction.")
@click.option("--class", "class_", type=int, default=None, help="A conditional z-space model's class.")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA.")
@no_metadata_option()
def edit_latent(run: Path, latent: Path, direction: int, amount: str, frames: int, method: str, out: Path,
                noise: Path | None, class_: int | None, raw: bool, no_metadata: bool) -> None:
    """Move a latent along a discovered direction and write the images as a strip (amount 0 = the latent's own).

    \b
    Examples:
      atelier edit-latent runs/emoji-stylegan --latent proj/latent.npy --direction 3 --amount -2..2 --out strip.png
      atelier edit-latent runs/mnist-dcgan --latent proj/latent.npy --direction 0 --amount -3,0,3 --method pca \\
          --out strip.png
    """
    amounts = parse_amounts(amount, frames)
    strip = api.edit_latent(run, latent, direction, amounts, method, out, class_=class_, noise=noise,
                            which="raw" if raw else "ema", strip_metadata=no_metadata)
    d = strip.directions
    click.echo(f"wrote {out}: {len(amounts)} frames along {d.method} direction {direction} of {len(d)} "
               f"({d.space}; amounts {', '.join(f'{a:g}' for a in amounts)})")
    if no_metadata:
        note_no_metadata(1)
