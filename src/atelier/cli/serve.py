"""``atelier serve`` (the studio) and ``atelier export``."""

from __future__ import annotations

from pathlib import Path

import click

from atelier import api
from atelier.cli.app import CONTEXT, cli
from atelier.errors import RunError


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


def studio_options(f):
    """Where the studio keeps its state: shared by ``serve``, ``worker`` and ``user``."""
    options = [
        click.option("--runs", type=click.Path(path_type=Path), default=None,
                     help="A folder of run folders (or one run folder) to serve; new models are trained into it "
                          "[default: runs, created if missing]."),
        click.option("--home", type=click.Path(file_okay=False, path_type=Path),
                     help="The studio's own folder: database, uploads, gallery [default: RUNS/.studio]."),
        click.option("--db", help="Database URL, e.g. postgresql+psycopg://atelier@db/atelier for a team "
                                  "[default: sqlite in --home]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def resolve_studio(runs: Path | None, home: Path | None, db: str | None, data_roots: tuple[Path, ...] = (),
                   token: str | None = None, create: bool = True):
    """(runs folder, settings) with the defaults filled in; the default runs folder is created if missing (and
    ``create``)."""
    from atelier.serve.settings import StudioSettings  # the studio's settings (no FastAPI needed)

    if runs is None:
        runs = Path("runs")
        if create:
            runs.mkdir(parents=True, exist_ok=True)
    elif not runs.is_dir():
        raise RunError(f"runs folder not found: {runs}")
    settings = StudioSettings(home=home, db_url=db, data_roots=tuple(data_roots), token=token)
    return runs, settings.resolved([runs])


@cli.command(context_settings=CONTEXT)
@studio_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default is reachable from this machine only. Any other address needs "
                   "an access token or users.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Run generators in eager PyTorch or in ONNX Runtime (needs atelier[export]).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--data-root", "data_roots", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A server folder designers may pick training pictures from (repeatable).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file holding the access token (default: the ATELIER_TOKEN environment variable).")
@click.option("--no-worker", is_flag=True, help="Start no training worker (run `atelier worker` yourself).")
@click.option("--max-jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Training jobs the started worker runs at once.")
@click.option("--gpus-per-job", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes per job (torchrun) for the started worker.")
@click.option("--foundation", "foundation", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="A Stable Diffusion-family checkpoint to serve for text to image (a diffusers folder or a "
                   ".safetensors file; repeatable; needs atelier[diffusion]).")
@click.option("--foundation-config", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The diffusers folder whose configs single-file --foundation checkpoints use.")
def serve(runs, home, db, host, port, backend, device, data_roots, token_file, no_worker, max_jobs,
          gpus_per_job, foundation, foundation_config) -> None:
    """Start the studio: the web page and HTTP API over every trained run in --runs, training new models from
    uploaded pictures in a worker process.

    \b
    Examples:
      atelier serve                              # then open http://127.0.0.1:7860
      atelier serve --runs runs/ --backend onnx --port 8000
      atelier serve --data-root /srv/pictures    # designers may also train from folders there
      atelier serve --foundation models/sd15     # your own Stable Diffusion checkpoint: POST /api/t2i
      ATELIER_TOKEN=... atelier serve --host 0.0.0.0 --no-worker --db postgresql+psycopg://atelier@db/atelier
    API documentation: http://127.0.0.1:7860/docs
    """
    from atelier.serve import serve as run_server  # FastAPI is the optional extra atelier[serve]

    token = token_file.read_text(encoding="utf-8").strip() if token_file else None
    runs, settings = resolve_studio(runs, home, db, data_roots, token)

    def announce(studio, worker) -> None:
        click.echo(f"atelier studio on http://{host}:{port} (backend {backend}); Ctrl-C to stop")
        click.echo(f"runs: {runs}   studio folder: {studio.settings.home}   database: {_shown(studio.settings.db_url)}")
        if studio.access.required:
            click.echo("sign-in required (access token or users)")
        if worker is not None:
            click.echo(f"training worker: pid {worker.pid}, up to {max_jobs} job(s) at once "
                       f"(log: {studio.settings.home / 'worker.log'})")

    run_server(runs, host=host, port=port, backend=backend, device=device, settings=settings,
               worker=not no_worker, max_jobs=max_jobs, gpus_per_job=gpus_per_job, announce=announce,
               foundation=foundation, foundation_config=foundation_config)


def _shown(url: str | None) -> str:
    """A database URL without its password."""
    if not url:
        return ""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.split(':')[0]}:***@{tail}" if ":" in creds else url
