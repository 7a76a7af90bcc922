"""``atelier verify`` and ``atelier watermark embed|detect``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from atelier import api
from atelier.cli.app import CONTEXT, SubGroup, cli, no_metadata_option, note_no_metadata


def print_verify(report: dict) -> None:
    wm, c2pa, meta = report["watermark"], report["c2pa"], report["metadata"]
    w, h = report["size"]
    click.echo(f"image:      {report['image']} ({w}x{h})")
    verdict = "recognised as atelier's (AI-generated)" if report["recognised"] else "not recognised as atelier's"
    click.echo(f"verdict:    {verdict}")
    if meta:
        click.echo(f"metadata:   {len(meta)} field(s)")
        for key, value in meta.items():
            click.echo(f"  {key}: {value if len(value) < 100 else value[:97] + '...'}")
    else:
        click.echo("metadata:   none")
    if wm["detected"]:
        run = f", run {wm['run']}" if wm.get("run") else ", no matching run under ./runs"
        scale = (", scale not measured" if wm.get("scale") is None
                 else f", scale {wm['scale']:g}x, rotation {wm.get('rotation') or 0:+.1f} deg")
        click.echo(f"watermark:  detected, payload {wm['payload']} ({wm['method']}, z-score {wm['confidence']}"
                   f"{scale}){run}")
    else:
        note = f"; {wm['note']}" if "note" in wm else ""
        click.echo(f"watermark:  not detected (z-score {wm['confidence']}){note}")
    extra = f" ({', '.join(c2pa['errors'])})" if c2pa.get("errors") else ""
    click.echo(f"c2pa:       {c2pa['status']}{extra}{' - ' + c2pa['detail'] if 'detail' in c2pa else ''}")


@cli.command(context_settings=CONTEXT)
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Folder of run folders to match the watermark's model id against.")
@click.option("--trust-anchors", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="PEM file of CA certificates a C2PA signature must chain to to count as trusted.")
def verify(image: Path, as_json: bool, runs_dir: Path, trust_anchors: Path | None) -> None:
    """Say whether an image was made by atelier: metadata, invisible watermark, C2PA manifest.

    Exit status: 0 when the image is recognised as atelier's, 1 when not, 2 on a user error.

    \b
    Examples:
      atelier verify grid.png
      atelier verify edited.jpg --json
      atelier verify signed.png --trust-anchors my-ca.pem
    """
    report = api.verify(image, runs_dir=runs_dir, trust_anchors=trust_anchors)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_verify(report)
    sys.exit(0 if report["recognised"] else 1)


@cli.group(cls=SubGroup, context_settings=CONTEXT)
def watermark() -> None:
    """Embed or detect atelier's invisible watermark in any image."""


@watermark.command("embed", context_settings=CONTEXT)
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file (.png, .jpg or .webp).")
@click.option("--id", "model_id", default="atelier", show_default=True,
              help="Model or run id the payload is derived from (a run folder name matches it in verify).")
@no_metadata_option(run=False)
def watermark_embed(image: Path, out: Path, model_id: str, no_metadata: bool) -> None:
    """Mark an image from elsewhere (e.g. an edited export) with atelier's invisible watermark.

    \b
    Examples:
      atelier watermark embed edited.png --out marked.png --id mnist-dcgan
      atelier watermark embed photo.jpg --out marked.jpg --no-metadata
    """
    payload = api.watermark_embed(image, out, model_id=model_id, strip_metadata=no_metadata)
    if no_metadata:
        note_no_metadata(1)
    click.echo(f"wrote {out} (payload {payload:08x} for id {model_id!r})")


@watermark.command("detect", context_settings=CONTEXT)
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def watermark_detect(image: Path, as_json: bool) -> None:
    """Look for atelier's watermark; exit 0 when found, 1 when not.

    \b
    Examples:
      atelier watermark detect marked.jpg && echo "made with atelier"
    """
    found = api.watermark_detect(image)
    if as_json:
        click.echo(json.dumps(found.to_dict()))
    elif found.detected:
        click.echo(f"watermark found: payload {found.id32:08x} ({found.method}, z-score {found.confidence:.1f})")
    else:
        click.echo(f"no atelier watermark (z-score {found.confidence:.1f})")
    sys.exit(0 if found.detected else 1)
