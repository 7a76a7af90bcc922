"""``atelier data info`` and ``atelier data fetch``."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from atelier import api
from atelier.api.data import data_grid, open_data
from atelier.cli.app import CONTEXT, SubGroup, cli, no_metadata_option, note_no_metadata


@cli.group(cls=SubGroup, context_settings=CONTEXT)
def data() -> None:
    """Inspect, prepare and fetch data sources."""


def ascii_preview(images: torch.Tensor, width: int = 4) -> str:
    """A terminal preview of a few images (2 pixels per character row)."""
    shades = " .:-=+*#%@"
    arrs = []
    for img in images[:width]:
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
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="Channels to read as (default: 1 for the MNIST family, else the images' own, else 3).")
@click.option("--resolution", type=click.IntRange(8, 1024), default=None,
              help="Square size to read at (default: 28 for the MNIST family, else the images' own, else 64).")
@click.option("--grid", "grid_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also save a grid of the first 64 images.")
@no_metadata_option(run=False)
def data_info(source: str, channels: str | None, resolution: int | None, grid_out: Path | None,
              no_metadata: bool) -> None:
    """Show count, size, channels, classes, licence and a few examples of a data source.

    \b
    Examples:
      atelier data info mnist
      atelier data info fashion-mnist:test --grid fashion.png
      atelier data info photos/ --resolution 64
    """
    ds = open_data(source, int(channels) if channels else None, resolution)
    click.echo(f"source:     {ds.name}")
    click.echo(f"images:     {len(ds):,}")
    click.echo(f"size:       {ds.resolution}x{ds.resolution} (as read), {ds.channels} channel(s), uint8")
    if ds.labels is not None:
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
    click.echo(ascii_preview(ds.images[:4]))
    if grid_out is not None:
        data_grid(ds, grid_out, strip_metadata=no_metadata)
        if no_metadata:
            note_no_metadata(1)
        click.echo(f"wrote a grid of {min(64, len(ds))} examples to {grid_out}")


@data.command("fetch", context_settings=CONTEXT)
@click.argument("name", type=click.Choice(["mnist", "fashion-mnist"]))
@click.option("--mirror", help="Base URL of a mirror holding <name>/<file> (default: the public mirrors).")
def data_fetch(name: str, mirror: str | None) -> None:
    """Download a named dataset's files (sha256-checked) into atelier's cache, unless present locally."""
    for path in api.fetch_data(name, mirror=mirror):
        click.echo(f"ok  {path}")
