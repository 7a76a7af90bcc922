"""``atelier data info``, ``atelier data prepare`` and ``atelier data fetch``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import torch

from atelier import api
from atelier.cli.app import CONTEXT, SubGroup, cli, no_metadata_option, note_no_metadata
from atelier.data.info import NEAR_THRESHOLD, format_report


@cli.group(cls=SubGroup, context_settings=CONTEXT)
def data() -> None:
    """Inspect, prepare and fetch data sources."""


def ascii_preview(images: torch.Tensor, width: int = 4) -> str:
    """A terminal preview of a few images (2 pixels per character row; RGBA as shown over white)."""
    shades = " .:-=+*#%@"
    arrs = []
    for img in images[:width]:
        if img.shape[0] == 4:
            alpha = img[3:].float() / 255
            img = img[:3].float() * alpha + 255 * (1 - alpha)
        a = img.float().mean(0).numpy()  # (H, W) grayscale
        step = max(1, a.shape[0] // 14)
        arrs.append(a[:: step * 2, ::step][:14, :28])
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
@click.option("--channels", type=click.Choice(["1", "3", "4"]), default=None,
              help="Channels to read the examples as (default: 1 for the MNIST family, else the images' own).")
@click.option("--resolution", type=click.IntRange(8, 1024), default=None,
              help="Square size to read the examples at (default: 28 for the MNIST family, else the images' own, "
                   "else 64).")
@click.option("--grid", "grid_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also save a grid of the first 64 images (RGBA over a checkerboard).")
@click.option("--near/--no-near", default=None, help="Search near duplicates (default: when at most 50,000 images).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=NEAR_THRESHOLD, show_default=True,
              help="Near-duplicate threshold: RMS distance of 16x16 thumbnails.")
@click.option("--pairs", type=click.IntRange(0, 10_000), default=10, show_default=True,
              help="Duplicate pairs / groups to list.")
@click.option("--recipe", is_flag=True, help="Also print the training recipe atelier would pick for this data.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@no_metadata_option(run=False)
def data_info(source: str, channels: str | None, resolution: int | None, grid_out: Path | None, near: bool | None,
              threshold: float, pairs: int, recipe: bool, as_json: bool, no_metadata: bool) -> None:
    """Describe a data source: images, sizes, modes, alpha use, colour, classes, exact and near duplicates,
    licence, and a few examples.

    \b
    Examples:
      atelier data info mnist
      atelier data info sprites/ --grid sprites.png --recipe
      atelier data info photos.zip --threshold 0.04 --pairs 50
    """
    report = api.describe_data(source, near=near, threshold=threshold)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(format_report(report, max_pairs=pairs))
    if recipe:
        overrides, reasons = api.recommend_recipe(source, report=report)
        click.echo("recipe:     " + " ".join(f"--set {k}={v}" for k, v in overrides.items() if k != "data.source"))
        for line in reasons:
            click.echo(f"            {line}")
    if as_json:
        return
    ds = api.open_data(source, int(channels) if channels else None, resolution, report=report)
    click.echo(f"size:       {ds.resolution}x{ds.resolution} (as read), {ds.channels} channel(s), uint8"
               + (f"; prepared arrays: {ds.prepared}" if ds.prepared else ""))
    click.echo("examples:")
    click.echo(ascii_preview(ds.images[:4]))
    if grid_out is not None:
        api.data_grid(ds, grid_out, strip_metadata=no_metadata)
        if no_metadata:
            note_no_metadata(1)
        click.echo(f"wrote a grid of {min(64, len(ds))} examples to {grid_out}")


@data.command("prepare", context_settings=CONTEXT)
@click.argument("folder")
@click.option("--resolution", type=click.IntRange(8, 1024), required=True, help="Square size to store.")
@click.option("--channels", type=click.Choice(["1", "3", "4"]), default=None,
              help="1 gray, 3 RGB, 4 RGBA (default: 4 with --alpha keep, else 3).")
@click.option("--alpha", type=click.Choice(["composite", "keep"]), default="composite", show_default=True,
              help="composite: flatten transparency over --background; keep: store RGBA.")
@click.option("--background", default="white", show_default=True,
              help="Colour transparency is composited over: a name or #rrggbb.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The .npz to write (default: <folder>-<resolution>[-rgba].npz here).")
def data_prepare(folder: str, resolution: int, channels: str | None, alpha: str, background: str,
                 out: Path | None) -> None:
    """Decode a folder (or .zip) of images once into a prepared .npz (uint8 arrays, labels from class
    sub-folders, source, content hash, licence note) that trains without decoding a file.

    \b
    Examples:
      atelier data prepare sprites/ --resolution 64 --alpha keep --out sprites64.npz
      atelier train --data sprites64.npz --set data.channels=4 --set data.alpha=keep ...
    """
    path, meta = api.prepare_data(folder, resolution, int(channels) if channels else None, alpha=alpha,
                                  background=background, out=out)
    click.echo(f"wrote {path}: {meta.get('n_images', '?'):,} images, {resolution}x{resolution}x"
               f"{meta.get('channels', channels)} uint8, alpha {meta.get('alpha')}, "
               f"{len(meta.get('classes', []))} class(es), {path.stat().st_size / 1e6:.1f} MB")
    click.echo(f"content sha256 {meta.get('content_sha256')}")
    if meta.get("n_skipped"):
        click.echo(f"skipped {meta['n_skipped']} unreadable file(s) (listed in the file's 'skipped' array)")


@data.command("fetch", context_settings=CONTEXT)
@click.argument("name", type=click.Choice(["mnist", "fashion-mnist"]))
@click.option("--mirror", help="Base URL of a mirror holding <name>/<file> (default: the public mirrors).")
def data_fetch(name: str, mirror: str | None) -> None:
    """Download a named dataset's files (sha256-checked) into atelier's cache, unless present locally."""
    for path in api.fetch_data(name, mirror=mirror):
        click.echo(f"ok  {path}")
