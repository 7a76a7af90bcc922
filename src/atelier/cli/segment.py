"""``atelier segment`` and ``atelier edit-region``, and how segmentation scores are printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from atelier import api
from atelier.cli.app import CONTEXT, cli, no_metadata_option, note_no_metadata

__all__ = ["format_fcn", "format_segmentation"]


def format_segmentation(r: dict[str, Any], split: str) -> str:
    lines = [f"segmenter on {r['pairs']} {split} pairs at {r['resolution']} px (step {r['step']}): pixel accuracy "
             f"{r['pixel_acc']:.4f}  mean class accuracy {r['class_acc']:.4f}  mIoU {r['miou']:.4f}",
             "IoU per class:"]
    lines += [f"  {k.removeprefix('iou/'):<12} {v:.4f}" for k, v in r.items() if k.startswith("iou/")]
    return "\n".join(lines)


def format_fcn(r: dict[str, Any]) -> str:
    def row(name: str, prefix: str) -> str:
        return (f"  {name:<12} pixel accuracy {r[prefix + 'pixel_acc']:.4f}  class accuracy "
                f"{r[prefix + 'class_acc']:.4f}  mIoU {r[prefix + 'miou']:.4f}")

    return "\n".join([f"FCN-score (segmenter {Path(r['segmenter']).name}, step {r['segmenter_step']}):",
                      row("G", "fcn_"), row("real photos", "fcn_real_")])


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--input", "input_", required=True, type=click.Path(path_type=Path),
              help="A photo, or a folder of photos.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output .png for one input (a label map in the palette's colours), or a folder for a folder.")
@click.option("--overlay", is_flag=True, help="Blend the label colours over the photo instead.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="With --overlay: the labels' weight in the blend.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option()
def segment(run: Path, input_: Path, out: Path, overlay: bool, alpha: float, device: str, no_metadata: bool) -> None:
    """Label every pixel of a photo with a trained segmenter run (e.g. the facades' 12 classes).

    The label map has the photo's size; it is an 8-bit palette PNG whose pixel values are the class indices and
    whose colours are the palette's (for the facades: the data set's own colours).

    \b
    Examples:
      atelier segment runs/facades-seg --input photo.jpg --out labels.png
      atelier segment runs/facades-seg --input photo.jpg --out overlay.png --overlay
      atelier segment runs/facades-seg --input photos/ --out labels/
    """
    model = api.load_segmenter(run, device=device)
    paths = api.segment(model, input_, out, overlay=overlay, alpha=alpha, strip_metadata=no_metadata)
    click.echo(f"wrote {len(paths)} {'overlay' if overlay else 'label map'}(s) to {out} "
               f"(classes: {', '.join(model.classes)})")
    if no_metadata:
        note_no_metadata(len(paths))


@cli.command(name="edit-region", context_settings=CONTEXT)
@click.option("--image", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The image to edit.")
@click.option("--mask", "brush", type=click.Path(dir_okay=False, path_type=Path),
              help="A mask image of the same size: non-zero (or, with alpha, painted) pixels are edited.")
@click.option("--rect", metavar="X0,Y0,X1,Y1", help="Edit this rectangle (pixels; X1 and Y1 excluded).")
@click.option("--segmenter", type=click.Path(file_okay=False, path_type=Path), metavar="RUN",
              help="Edit the pixels this segmenter run labels as --classes.")
@click.option("--classes", metavar="NAMES", help="With --segmenter: comma-separated class names, e.g. window,door.")
@click.option("--invert", is_flag=True, help="Edit everything outside the mask instead.")
@click.option("--style-model", type=click.Path(file_okay=False, path_type=Path), metavar="RUN",
              help="Restyle the region with this fast style network (a train-style run).")
@click.option("--translate-model", type=click.Path(file_okay=False, path_type=Path), metavar="RUN",
              help="Replace the region with this pix2pix run's translation.")
@click.option("--translate-input", type=click.Path(dir_okay=False, path_type=Path),
              help="With --translate-model: translate this image (same size) instead of --image, e.g. an edited "
                   "label map of the photo.")
@click.option("--inpaint-model", type=click.Path(file_okay=False, path_type=Path), metavar="RUN",
              help="Regenerate the region with this diffusion run (RePaint): new content that fits around it.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="With --inpaint-model: the seed.")
@click.option("--steps", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="With --inpaint-model: RePaint's noise levels.")
@click.option("--feather", type=click.IntRange(0, 256), default=4, show_default=True,
              help="Fade the edit in over this many pixels inside the mask's edge (0: hard edge).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output image (.png keeps the outside exact).")
@click.option("--save-mask", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the mask used (white = edited) to this PNG.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option(run=False)
def edit_region(image: Path, brush: Path | None, rect: str | None, segmenter: Path | None, classes: str | None,
                invert: bool, style_model: Path | None, translate_model: Path | None, translate_input: Path | None,
                inpaint_model: Path | None, seed: int, steps: int, feather: int, out: Path, save_mask: Path | None,
                device: str, no_metadata: bool) -> None:
    """Edit one region of an image with a trained model; every pixel outside the mask stays exactly as it was.

    The mask is a brush image (--mask), a rectangle (--rect) or classes of a segmenter (--segmenter --classes);
    the edit restyles the region (--style-model), translates it (--translate-model) or regenerates it with a
    diffusion model (--inpaint-model). The output records the edit, the models and their weights' sha256, and the
    mask's source, and is labelled IPTC compositeWithTrainedAlgorithmicMedia.

    \b
    Examples:
      atelier edit-region --image photo.png --rect 40,30,200,120 --style-model runs/wave --out out.png
      atelier edit-region --image facade.png --segmenter runs/facades-seg --classes window \\
          --style-model runs/wave --out windows.png
      atelier edit-region --image facade.png --mask brush.png --translate-model runs/facades \\
          --translate-input edited-labels.png --out new-door.png
      atelier edit-region --image sprite.png --rect 16,16,48,48 --inpaint-model runs/emoji-diffusion \\
          --seed 3 --out new-middle.png
    """
    chosen = [(k, m) for k, m in (("restyle", style_model), ("translate", translate_model),
                                  ("inpaint", inpaint_model)) if m is not None]
    if len(chosen) != 1:
        raise click.UsageError("choose one edit: --style-model RUN, --translate-model RUN or --inpaint-model RUN")
    if sum(x is not None for x in (brush, rect, segmenter)) != 1:
        raise click.UsageError("give one mask: --mask IMAGE, --rect X0,Y0,X1,Y1, or --segmenter RUN --classes NAMES")
    if (segmenter is None) != (classes is None):
        raise click.UsageError("--segmenter and --classes go together")
    if translate_input is not None and translate_model is None:
        raise click.UsageError("--translate-input goes with --translate-model")
    kind, model = chosen[0]
    options: dict[str, Any] = {"source": translate_input} if translate_input is not None else {}
    if kind == "inpaint":
        options.update(seed=seed, steps=steps)
    result = api.edit_region(image, kind=kind, model=model, brush=brush, rect=rect, segmenter=segmenter,
                             classes=classes, invert=invert, feather_px=feather, device=device, options=options)
    result.save(out, strip_metadata=no_metadata)
    if save_mask is not None:
        result.save_mask(save_mask)
    if no_metadata:
        note_no_metadata(1)
    click.echo(f"wrote {out} ({result.image.width}x{result.image.height}): {kind} of {result.mask.fraction:.1%} of "
               f"the pixels ({result.mask.source['mask']}), {result.seconds:.2f} s")
