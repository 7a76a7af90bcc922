"""``atelier stylize`` (optimisation, or one pass of a trained fast network) and ``atelier translate``."""

from __future__ import annotations

from pathlib import Path

import click

from atelier import api
from atelier.cli.app import CONTEXT, cli, no_metadata_option, note_no_metadata
from atelier.style.features import build_features


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
@no_metadata_option()
def stylize(content, styles, model, out, size, steps, style_weight, content_weight, tv_weight, style_scale,
            preserve_color, init, features, vgg_weights, optimizer, lr, seed, device, no_metadata) -> None:
    """Restyle a photo after paintings (Gatys optimisation), or with a trained fast network (--model).

    \b
    Examples:
      atelier stylize --content photo.jpg --style starry_night.jpg --out out.png --size 256
      atelier stylize --content photo.jpg --style a.jpg:0.7 --style b.jpg:0.3 --out blend.png
      atelier stylize --content photo.jpg --style wave.jpg --preserve-color --out out.jpg
      atelier stylize --content photo.jpg --style wave.jpg --features vgg19 --vgg-weights vgg19-dcbb9e9d.pth --out o.png
      atelier stylize --model runs/wave --content photo.jpg --out wave.png
    """
    if model is not None:
        if styles:
            raise click.UsageError("--model restyles with a trained network: leave out --style")
        r = api.stylize_fast(model, content, out, size=size, device=device, strip_metadata=no_metadata)
        click.echo(f"wrote {out} ({r.image.width}x{r.image.height}, one forward pass, {r.seconds * 1000:.0f} ms) "
                   f"with {model}")
        return
    if not styles:
        raise click.UsageError("give --style IMAGE (repeatable), or --model RUN for a trained fast network")
    api.check_style_inputs(content, list(styles), out)  # a bad file is the only line printed
    net = build_features(features, vgg_weights, seed=seed)
    click.echo(f"features: {net.describe()}" + (" (VGG-19 weights not found: pass --vgg-weights to use them)"
                                                 if features == "auto" and net.name == "random" else ""))
    result = api.stylize(content, list(styles), size=size or 512, steps=steps, style_weight=style_weight,
                         content_weight=content_weight, tv_weight=tv_weight, style_scale=style_scale,
                         preserve_color=preserve_color, init=init, features=net, optimizer=optimizer, lr=lr,
                         seed=seed, device=device)
    result.save(out, {"steps": steps, "seed": seed}, strip_metadata=no_metadata)
    if no_metadata:
        note_no_metadata(1)
    fmt = "  ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
    click.echo(f"losses: {fmt}  (start: total {result.initial_losses['total']:.4g})")
    click.echo(f"wrote {out} ({result.image.width}x{result.image.height}) in {result.seconds:.1f} s")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--input", "input_", required=True, type=click.Path(path_type=Path),
              help="An image, or a folder of images.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output image (.png/.jpg) for one input, or a folder for a folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option()
def translate(run: Path, input_: Path, out: Path, device: str, no_metadata: bool) -> None:
    """Translate images with a trained pix2pix run (e.g. facade label maps -> photos).

    The input is resized to the model's resolution, translated, and resized back to its own size.

    \b
    Examples:
      atelier translate runs/facades --input labels.png --out photo.png
      atelier translate runs/facades --input labels/ --out photos/
    """
    paths = api.translate(run, input_, out, device=device, strip_metadata=no_metadata)
    click.echo(f"wrote {len(paths)} image(s) to {out}")
