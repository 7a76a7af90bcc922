"""``atelier serve`` (the studio) and ``atelier export``."""

from __future__ import annotations

from pathlib import Path

import click

from atelier import api
from atelier.cli.app import CONTEXT, cli


@cli.command("export", context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the model (default: RUN/export/model.onnx).")
@click.option("--no-check", is_flag=True, help="Skip the ONNX Runtime vs PyTorch parity check.")
def export_cmd(run: Path, fmt: str, out: Path | None, no_check: bool) -> None:
    """Export a run's network (generator, style or pix2pix) to ONNX with a dynamic batch axis (and dynamic
    height and width for the image-to-image networks).

    The exported model is run in ONNX Runtime and compared with PyTorch (max abs difference <= 1e-4), at two
    image sizes where the size may vary.

    \b
    Examples:
      atelier export runs/mnist-dcgan --format onnx
      atelier export runs/mnist-dcgan --out mnist-dcgan.onnx
    """
    result = api.export(run, fmt=fmt, out=out, check=not no_check)
    shapes = ", ".join(f"{k} ({', '.join(map(str, v))})" for k, v in result.inputs.items())
    click.echo(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB; inputs: {shapes}) in {result.seconds:.1f} s")
    if result.sizes:
        click.echo(f"accepts:  {result.sizes}")
    if result.max_abs_diff is not None:
        click.echo(f"parity with PyTorch: max abs difference {result.max_abs_diff:.2e} (limit 1e-4)")


@cli.command(context_settings=CONTEXT)
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="A folder of run folders (or one run folder) to serve.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default is reachable from this machine only.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Run generators in eager PyTorch or in ONNX Runtime (needs atelier[export]).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
def serve(runs: Path, host: str, port: int, backend: str, device: str) -> None:
    """Start the studio: the web page and HTTP API over every trained run in --runs.

    \b
    Examples:
      atelier serve --runs runs/                 # then open http://127.0.0.1:7860
      atelier serve --runs runs/ --backend onnx --port 8000
    API documentation: http://127.0.0.1:7860/docs
    """
    from atelier.serve import serve as run_server  # FastAPI is the optional extra atelier[serve]

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host} makes the studio reachable from other machines; it has no login",
                   err=True)
    click.echo(f"atelier studio on http://{host}:{port} (backend {backend}); Ctrl-C to stop")
    run_server(runs, host=host, port=port, backend=backend, device=device)
