"""The ``atelier`` command line: argument parsing only; the work happens in :mod:`atelier.api`.

A user mistake prints one ``error: ...`` line and exits with status 2; ``--debug`` (or
``ATELIER_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import click

from atelier.errors import AtelierError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


class AtelierGroup(click.Group):
    """Turns AtelierError into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug")) or os.environ.get("ATELIER_DEBUG") == "1"
        try:
            with warnings.catch_warnings():
                if not debug:
                    # atelier's own warnings (skipped files, fallbacks) as one plain line each.
                    warnings.simplefilter("always", UserWarning)
                    warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except AtelierError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=AtelierGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="atelier")
def cli(debug: bool) -> None:
    """atelier: train, sample and label image generators.

    \b
    Quick start:
      atelier demo                                  # train a DCGAN on MNIST for a few minutes
      atelier train --config configs/mnist-dcgan.yaml --run-dir runs/mnist-dcgan
      atelier sample runs/mnist-dcgan --n 64 --seed 0 --out grid.png
      atelier data info mnist
    """


# --no-metadata exists on every command that writes images (issue 7). Commands that use a run folder log it
# there (a {"event": "no-metadata"} line in metrics.jsonl); the others say so on stderr.
no_metadata_option = click.option(
    "--no-metadata", is_flag=True,
    help="Write no metadata (the invisible watermark stays); logged in the run's metrics.jsonl.")


def _log_no_metadata(run: Path | None, step: int, outputs: list[Path], n: int, workflow: str) -> None:
    if run is None:
        click.echo(f"note: {n} image(s) written without metadata (--no-metadata); the watermark stays", err=True)
        return
    from atelier.provenance import log_no_metadata

    log_no_metadata(run, step, outputs, n, workflow=workflow)


# ---------------------------------------------------------------------------------------------- train
def _train_overrides(data, steps, batch_size, seed, checkpoint_every, sample_every, device, precision,
                     sets) -> dict[str, Any]:
    from atelier.config import parse_set

    overrides = parse_set(sets)
    for key, value in (("data.source", data), ("train.steps", steps), ("train.batch_size", batch_size),
                       ("seed", seed), ("log.checkpoint_every", checkpoint_every),
                       ("log.sample_every", sample_every), ("train.device", device),
                       ("train.precision", precision)):
        if value is not None:
            overrides[key] = value
    return overrides


def _report(result, dry_run: bool = False) -> None:
    from atelier.distributed import is_main

    if not is_main():
        return  # under torchrun, rank 0 reports for all processes
    rate = result.images_seen / result.seconds if result.seconds else 0.0
    state = "interrupted at" if result.interrupted else "finished"
    click.echo(f"{state} step {result.step:,} ({result.images_seen / 1000:,.1f} kimg, "
               f"{result.seconds:.1f} s of training, {rate:,.0f} images/s)")
    if dry_run:
        return
    click.echo(f"run folder:   {result.run_dir}")
    for label, path in (("sample grid:", result.grid), ("loss plot:", result.loss_plot),
                        ("model card:", result.model_card)):
        if path is not None:
            click.echo(f"{label:13} {path}")
    if result.interrupted:
        click.echo("checkpoint written; run the same command again to resume")


def _run_train(config, run_dir: Path, overrides: dict[str, Any], dry_run: bool) -> None:
    from atelier import api

    if dry_run:
        # Two steps on 8 images, everything written into a temporary folder that is then removed.
        tmp = Path(tempfile.mkdtemp(prefix="atelier-dry-run-"))
        try:
            cfg, _ = api.prepare_run(config, Path(tmp / "none"), overrides)
            overrides = {**overrides, "data.limit": 8, "train.steps": 2,
                         "train.batch_size": min(cfg.train.batch_size, 8), "log.every": 1,
                         "log.sample_every": 2, "log.checkpoint_every": 2, "log.tensorboard": False}
            result = api.train(config, tmp / "run", overrides, progress=False)
            written = sorted(p.relative_to(tmp / "run").as_posix() for p in (tmp / "run").rglob("*") if p.is_file())
            click.echo(f"dry run ok: model {cfg.model['name']}, data {cfg.data.source}, "
                       f"batch {min(cfg.train.batch_size, 8)}, device {cfg.train.device}")
            _report(result, dry_run=True)
            click.echo(f"would write into {run_dir}: {', '.join(written)}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    result = api.train(config, run_dir, overrides)
    _report(result)
    if result.interrupted:
        sys.exit(130)


def _common_train_options(f):
    options = [
        click.option("--data", help="Data source: mnist, fashion-mnist[:split], a folder, a .zip or an .npz."),
        click.option("--steps", type=click.IntRange(min=1), help="Total training steps."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Images per step."),
        click.option("--seed", type=click.IntRange(min=0), help="Random seed (weights, noise, data order)."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), help="Steps between checkpoints."),
        click.option("--sample-every", type=click.IntRange(min=1), help="Steps between sample grids."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any config key, e.g. --set model.width=32 (repeatable)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]),
                     help="fp32, bf16 autocast, or fp16 autocast with loss scaling (CUDA only)."),
        click.option("--dry-run", is_flag=True, help="Run 2 steps on 8 images in a temporary folder."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command(context_settings=CONTEXT)
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config (default: the built-in MNIST DCGAN, same as configs/mnist-dcgan.yaml).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: runs/<config name>). An existing one is resumed.")
@_common_train_options
def train(config, run_dir, data, steps, batch_size, seed, checkpoint_every, sample_every, sets, device,
          precision, dry_run) -> None:
    """Train a model, or resume the run folder where it stopped.

    \b
    Examples:
      atelier train --config configs/mnist-dcgan.yaml --run-dir runs/mnist-dcgan
      atelier train --config configs/mnist-dcgan.yaml --data fashion-mnist --steps 5000
      atelier train --run-dir runs/mnist-dcgan --steps 4000     # resume and train further
      atelier train --config configs/mnist-dcgan.yaml --set model.width=32 --dry-run
      torchrun --standalone --nproc_per_node=2 -m atelier train --run-dir runs/ddp   # 2 processes (DDP)
    """
    if run_dir is None:
        run_dir = Path("runs") / (config.stem if config else "mnist-dcgan")
    overrides = _train_overrides(data, steps, batch_size, seed, checkpoint_every, sample_every, device,
                                 precision, sets)
    _run_train(config, run_dir, overrides, dry_run)


@cli.command(context_settings=CONTEXT)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Where the demo run is written.")
@click.option("--steps", type=click.IntRange(min=1), default=600, show_default=True,
              help="Training steps at batch 256 (about 6 minutes on a 2-core CPU).")
@click.option("--dry-run", is_flag=True, help="Run 2 steps on 8 images in a temporary folder.")
def demo(run_dir: Path, steps: int, dry_run: bool) -> None:
    """Train the DCGAN on MNIST for a few minutes and show where the results are.

    Uses the built-in config (the TensorFlow tutorial's DCGAN, as configs/mnist-dcgan.yaml); running
    it again resumes the same run folder.
    """
    click.echo(f"atelier demo: DCGAN on MNIST for {steps} steps -> {run_dir}")
    _run_train(None, run_dir, {"train.steps": steps, "log.sample_every": 100, "log.checkpoint_every": 200},
               dry_run)
    if not dry_run:
        click.echo(f"next: atelier sample {run_dir} --n 64 --seed 0 --out grid.png")


# --------------------------------------------------------------------------------------------- sample
def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            if dash:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{text!r}: use numbers and ranges like 0-63 or 3,17,42") from None
    if not seeds:
        raise click.BadParameter("no seeds given")
    return seeds


def _sample_labels(g, class_: int | None, n: int) -> tuple[Any, int | None]:
    """Labels and grid width for ``sample``: one class, or (conditional, no --class) a row per class."""
    import torch

    if class_ is not None:
        if not g.num_classes:
            raise AtelierError("--class needs a class-conditional model (model.num_classes > 0); this one is "
                               "unconditional")
        if class_ >= g.num_classes:
            raise AtelierError(f"--class {class_} is out of range: the model has classes 0..{g.num_classes - 1}")
        return torch.full((n,), class_, dtype=torch.long), None
    if not g.num_classes:
        return None, None
    per = max(1, n // g.num_classes)
    return torch.arange(g.num_classes).repeat_interleave(per), per


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=click.IntRange(1, 100_000), default=64, show_default=True, help="How many images.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the latents.")
@click.option("--seeds", help="One image per seed instead of --n/--seed, e.g. 0-63 or 3,17,42.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write one grid image (.png/.jpg).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), help="Write one PNG per image.")
@click.option("--class", "class_", type=click.IntRange(min=0),
              help="Conditional models: generate this class only (default: one grid row per class).")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option
def sample(run: Path, n: int, seed: int, seeds: str | None, out: Path | None, out_dir: Path | None,
           class_: int | None, raw: bool, device: str, no_metadata: bool) -> None:
    """Generate images from a trained run (the EMA generator by default).

    \b
    Examples:
      atelier sample runs/mnist-dcgan --n 64 --seed 0 --out grid.png
      atelier sample runs/mnist-dcgan --n 100 --out-dir samples/
      atelier sample runs/mnist-dcgan --seeds 0-15 --out seeds.png
      atelier sample runs/mnist-cgan --class 7 --n 64 --out sevens.png
      atelier sample runs/mnist-cgan --n 80 --out per-class.png    # one row per class
    """
    import atelier
    from atelier.imageio import save_image, save_images
    from atelier.images import make_grid

    if out is None and out_dir is None:
        raise click.UsageError("give --out GRID.png or --out-dir FOLDER")
    g = atelier.load(run, which="raw" if raw else "ema", device=device)
    seed_list = _parse_seeds(seeds) if seeds else None
    labels, nrow = _sample_labels(g, class_, len(seed_list) if seed_list else n)
    if seed_list and class_ is None:
        labels, nrow = None, None  # one image per seed: a conditional model cycles through the classes
    elif labels is not None:
        n = len(labels)  # whole rows, one per class
    try:
        images = g.sample(n, seed=seed, seeds=seed_list, labels=labels)
    except ValueError as exc:
        raise AtelierError(str(exc)) from None
    meta = g.metadata(seed=seeds if seeds else seed, n=len(images),
                      **({"class": class_} if class_ is not None else {}))
    if no_metadata:
        _log_no_metadata(run, g.step, [p for p in (out, out_dir) if p is not None], len(images), "sample")
    if out is not None:
        res = g.cfg.data.resolution
        save_image(make_grid(images, nrow=nrow, scale=3 if res <= 32 else 1), out, meta, strip_metadata=no_metadata)
        click.echo(f"wrote a grid of {len(images)} images to {out}")
    if out_dir is not None:
        names = [f"seed{s:06d}.png" for s in seed_list] if seed_list else None
        paths = save_images(images, out_dir, stem=f"seed{seed}", metadata=meta, names=names,
                            strip_metadata=no_metadata)
        click.echo(f"wrote {len(paths)} images to {out_dir}")


# ----------------------------------------------------------------------------------------------- data
@cli.group(context_settings=CONTEXT)
def data() -> None:
    """Inspect and fetch data sources."""


def _ascii_preview(images, width: int = 4) -> str:
    """A terminal preview of a few images (2 pixels per character row)."""
    import numpy as np

    shades = " .:-=+*#%@"
    arrs = []
    for img in images[:width]:
        a = img.float().mean(0).numpy()  # (H, W) grayscale
        step = max(1, a.shape[0] // 14)
        a = a[::step * 2, ::step][: 14, : 28]
        arrs.append(a)
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
@no_metadata_option
def data_info(source: str, channels: str | None, resolution: int | None, grid_out: Path | None,
              no_metadata: bool) -> None:
    """Show count, size, channels, classes, licence and a few examples of a data source.

    \b
    Examples:
      atelier data info mnist
      atelier data info fashion-mnist:test --grid fashion.png
      atelier data info photos/ --resolution 64
    """
    from atelier.data import open_source, parse_spec
    from atelier.imageio import save_image
    from atelier.images import make_grid
    from atelier.provenance import COMPOSITE_SOURCE_TYPE

    name, split = parse_spec(source)
    ch = int(channels) if channels else (1 if split is not None else 3)
    res = (resolution or 28) if split is not None else (resolution or 64)
    if split is None and not (channels and resolution):
        # A folder / zip / npz is read as its own images are (e.g. 28x28 gray from `atelier synth`).
        from atelier.metrics.reference import native_format

        native = native_format(source)
        if native is not None:
            ch = int(channels) if channels else native[0]
            res = resolution or native[1] or 64
    ds = open_source(source, channels=ch, resolution=res)
    click.echo(f"source:     {ds.name}")
    click.echo(f"images:     {len(ds):,}")
    click.echo(f"size:       {ds.resolution}x{ds.resolution} (as read), {ds.channels} channel(s), uint8")
    if ds.labels is not None:
        import torch

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
    click.echo(_ascii_preview(ds.images[:4]))
    if grid_out is not None:
        save_image(make_grid(ds.images[:64], scale=2 if ds.resolution <= 32 else 1), grid_out,
                   {"workflow": "data-info", "source": ds.name, "DigitalSourceType": COMPOSITE_SOURCE_TYPE},
                   strip_metadata=no_metadata)
        if no_metadata:
            _log_no_metadata(None, 0, [grid_out], 1, "data-info")
        click.echo(f"wrote a grid of {min(64, len(ds))} examples to {grid_out}")


@data.command("fetch", context_settings=CONTEXT)
@click.argument("name", type=click.Choice(["mnist", "fashion-mnist"]))
@click.option("--mirror", help="Base URL of a mirror holding <name>/<file> (default: the public mirrors).")
def data_fetch(name: str, mirror: str | None) -> None:
    """Download a named dataset's files (sha256-checked) into atelier's cache, unless present locally."""
    from atelier.data.mnist import fetch

    for path in fetch(name, mirror=mirror):
        click.echo(f"ok  {path}")

# ------------------------------------------------------------------------------------------ translate
@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--input", "input_", required=True, type=click.Path(path_type=Path),
              help="An image, or a folder of images.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output image (.png/.jpg) for one input, or a folder for a folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option
def translate(run: Path, input_: Path, out: Path, device: str, no_metadata: bool) -> None:
    """Translate images with a trained pix2pix run (e.g. facade label maps -> photos).

    The input is resized to the model's resolution, translated, and resized back to its own size.

    \b
    Examples:
      atelier translate runs/facades --input labels.png --out photo.png
      atelier translate runs/facades --input labels/ --out photos/
    """
    import atelier
    from atelier.errors import RunError
    from atelier.translation import Translator

    model = atelier.load(run, device=device)
    if not isinstance(model, Translator):
        raise RunError(f"{run} is a {model.cfg.model['name']} run, not an image-to-image translation run")
    if input_.is_dir() and out.suffix:
        raise click.BadParameter("a folder input needs a folder --out (no file extension)", param_hint="--out")
    paths = model.translate_path(input_, out, strip_metadata=no_metadata)
    if no_metadata:
        _log_no_metadata(run, model.step, [out], len(paths), "translate")
    click.echo(f"wrote {len(paths)} image(s) to {out}")


# ---- provenance ----
def _print_verify(report: dict) -> None:
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
        geo = "scale not measured" if wm["scale"] is None else f"scale {wm['scale']:g}x, {wm['rotation']:g} deg"
        click.echo(f"watermark:  detected, payload {wm['payload']} ({wm['method']}, z-score {wm['confidence']}, "
                   f"{geo}){run}")
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
    import json

    from atelier.provenance import verify_image

    report = verify_image(image, runs_dir=runs_dir, trust_anchors=trust_anchors)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_verify(report)
    sys.exit(0 if report["recognised"] else 1)


@cli.group(context_settings=CONTEXT)
def watermark() -> None:
    """Embed or detect atelier's invisible watermark in any image."""


@watermark.command("embed", context_settings=CONTEXT)
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file (.png, .jpg or .webp).")
@click.option("--id", "model_id", default="atelier", show_default=True,
              help="Model or run id the payload is derived from (a run folder name matches it in verify).")
@no_metadata_option
def watermark_embed(image: Path, out: Path, model_id: str, no_metadata: bool) -> None:
    """Mark an image from elsewhere (e.g. an edited export) with atelier's invisible watermark.

    \b
    Examples:
      atelier watermark embed edited.png --out marked.png --id mnist-dcgan
      atelier watermark embed photo.jpg --out marked.jpg --no-metadata
    """
    from atelier.imageio import save_image
    from atelier.images import load_image
    from atelier.provenance.watermark import MIN_SIZE, model_id_hash

    pixels = load_image(image, channels=3)
    if min(pixels.shape[:2]) < MIN_SIZE:
        raise AtelierError(f"{image} is {pixels.shape[1]}x{pixels.shape[0]}; the watermark needs at least "
                           f"{MIN_SIZE} px a side")
    save_image(pixels, out, {"workflow": "watermark-embed", "model_id": model_id, "source": image.name},
               strip_metadata=no_metadata)
    if no_metadata:
        _log_no_metadata(None, 0, [out], 1, "watermark-embed")
    click.echo(f"wrote {out} (payload {model_id_hash(model_id):08x} for id {model_id!r})")


@watermark.command("detect", context_settings=CONTEXT)
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def watermark_detect(image: Path, as_json: bool) -> None:
    """Look for atelier's watermark; exit 0 when found, 1 when not.

    \b
    Examples:
      atelier watermark detect marked.jpg && echo "made with atelier"
    """
    import json

    from atelier.images import load_image
    from atelier.provenance.watermark import detect

    found = detect(load_image(image, channels=3))
    if as_json:
        click.echo(json.dumps(found.to_dict()))
    elif found.detected:
        click.echo(f"watermark found: payload {found.id32:08x} ({found.method}, z-score {found.confidence:.1f})")
    else:
        click.echo(f"no atelier watermark (z-score {found.confidence:.1f})")
    sys.exit(0 if found.detected else 1)


# ---- studio ----
@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--seeds", required=True, help="Two seeds (or more: a path through each), e.g. 3,17 or 3,17,42.")
@click.option("--frames", type=click.IntRange(2, 1024), default=16, show_default=True,
              help="Frames between each pair of seeds, both ends included.")
@click.option("--mode", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True,
              help="Spherical (keeps the latents' norm; sharper middle frames) or linear interpolation.")
@click.option("--truncation", "psi", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="Truncation psi: pull latents toward the mean (1 = off, 0.7 = more typical images).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A .png/.jpg strip (one row per pair of seeds) or an animated .gif.")
@click.option("--duration-ms", type=click.IntRange(10, 10_000), default=80, show_default=True,
              help="Time per frame of a .gif.")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA.")
@no_metadata_option
def interpolate(run: Path, seeds: str, frames: int, mode: str, psi: float, out: Path, duration_ms: int,
                raw: bool, no_metadata: bool) -> None:
    """Walk the latent space between seeds: a strip of frames or an animated GIF.

    \b
    Examples:
      atelier interpolate runs/mnist-dcgan --seeds 3,17 --frames 16 --out strip.png
      atelier interpolate runs/mnist-dcgan --seeds 3,17,42,3 --frames 24 --out loop.gif
      atelier interpolate runs/mnist-dcgan --seeds 3,17 --mode lerp --truncation 0.7 --out lerp.png
    """
    from PIL import Image

    import atelier
    from atelier.imageio import encode_animation, save_image
    from atelier.images import make_grid
    from atelier.latent import interpolate_path, truncate
    from atelier.utils import atomic_write_bytes

    seed_list = _parse_seeds(seeds)
    if len(seed_list) < 2:
        raise click.BadParameter("give at least two seeds, e.g. 3,17", param_hint="--seeds")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".gif"):
        raise click.BadParameter("use a .png, .jpg, .webp or .gif file name", param_hint="--out")
    g = atelier.load(run, which="raw" if raw else "ema")
    z = truncate(interpolate_path(g.latents(seeds=seed_list), frames, mode), psi)
    images = g.generate(z)
    meta = g.metadata(workflow="interpolate", seeds=",".join(map(str, seed_list)), frames=frames, mode=mode,
                      truncation=psi)
    scale = 3 if g.cfg.data.resolution <= 32 else 1
    if out.suffix.lower() == ".gif":
        big = [im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST) for im in
               (make_grid(img[None], pad=0) for img in images)]
        atomic_write_bytes(out, encode_animation(big, meta, duration_ms=duration_ms, strip_metadata=no_metadata))
        click.echo(f"wrote a {len(images)}-frame animation to {out}")
    else:
        save_image(make_grid(images, nrow=frames, scale=scale), out, meta, strip_metadata=no_metadata)
        click.echo(f"wrote {len(seed_list) - 1} strip(s) of {frames} frames to {out}")
    if no_metadata:
        _log_no_metadata(run, g.step, [out], len(images), "interpolate")


@cli.command("export", context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the model (default: RUN/export/model.onnx).")
@click.option("--no-check", is_flag=True, help="Skip the ONNX Runtime vs PyTorch parity check.")
def export_cmd(run: Path, fmt: str, out: Path | None, no_check: bool) -> None:
    """Export a run's network (generator, style or pix2pix) to ONNX with a dynamic batch axis.

    The exported model is run in ONNX Runtime and compared with PyTorch (max abs difference <= 1e-4).

    \b
    Examples:
      atelier export runs/mnist-dcgan --format onnx
      atelier export runs/mnist-dcgan --out mnist-dcgan.onnx
    """
    from atelier.export import export_run

    result = export_run(run, fmt=fmt, out=out, check=not no_check)
    shapes = ", ".join(f"{k} {tuple(v)}" for k, v in result.inputs.items())
    click.echo(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB; inputs: {shapes}) in {result.seconds:.1f} s")
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
    from atelier.serve import serve as run_server

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host} makes the studio reachable from other machines; it has no login",
                   err=True)
    click.echo(f"atelier studio on http://{host}:{port} (backend {backend}); Ctrl-C to stop")
    run_server(runs, host=host, port=port, backend=backend, device=device)


# ---- evaluate ----
@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path), required=False)
@click.option("--real", "real", metavar="SOURCE",
              help="Score this image set instead of a run: mnist:train, a folder, a .zip or an .npz.")
@click.option("--ref", metavar="SOURCE", help="Reference set (default for a run: the test split of its dataset).")
@click.option("--metrics", "metric_names", default="fid,kid", show_default=True,
              help="Comma-separated: fid, kid, is, pr (precision/recall, k=3), cas (classification accuracy "
                   "score: class-conditional runs, or a labelled --real set).")
@click.option("--n", "n", type=click.IntRange(10, 1_000_000), default=10_000, show_default=True,
              help="Images generated (a run) or drawn at random (--real).")
@click.option("--evaluator", type=click.Choice(["auto", "digits", "fashion", "inception"]), default="auto",
              show_default=True, help="Feature network; auto: digits for MNIST, fashion for Fashion-MNIST, "
                                      "else inception.")
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Local FID Inception weights (.pth or .safetensors).")
@click.option("--download", is_flag=True, help="Download the Inception weights (sha256-checked) if missing.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the latents / the random subset / KID and IS subsets.")
@click.option("--raw", is_flag=True, help="Score the raw generator instead of its EMA.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--no-record", is_flag=True, help="Do not append the records to the run's metrics.jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON instead of a table.")
@click.option("--split", default="test", show_default=True,
              help="Translation runs: test (data.eval_source), train, or a folder of pairs.")
@click.option("--baseline", type=click.Choice(["identity"]),
              help="Translation runs: score the input passed through unchanged instead of the model.")
def evaluate(run: Path | None, real: str | None, ref: str | None, metric_names: str, n: int, evaluator: str,
             inception_weights: Path | None, download: bool, seed: int, raw: bool, device: str, batch_size: int,
             no_record: bool, as_json: bool, split: str, baseline: str | None) -> None:
    """Measure FID / KID / IS / precision-recall of a run's generator, or of any image set.

    Every record names its evaluator (and its weights' sha256), reference set and size, sample
    count, generator, checkpoint step and seed. For a run it is appended to metrics.jsonl.

    \b
    Examples:
      atelier evaluate runs/mnist-dcgan --metrics fid,kid,is,pr --n 10000
      atelier evaluate runs/mnist-dcgan --ref mnist:test --evaluator digits --json
      atelier evaluate --real mnist:train --ref mnist:test          # the floor real data allows
      atelier evaluate --real samples/ --ref fashion-mnist:test --evaluator fashion
      atelier evaluate --real photos/ --ref ref_photos/ --evaluator inception --inception-weights pt_inception.pth
      atelier evaluate runs/facades --split test                     # pix2pix: L1 / PSNR / SSIM per pair
      atelier evaluate runs/facades --split test --baseline identity
    """
    import json

    from atelier.translation import is_translation_run

    if run is not None and is_translation_run(run):
        from atelier.translation import evaluate_run as evaluate_translation

        record = evaluate_translation(run, split=split, baseline=baseline, record=not no_record)
        if as_json:
            click.echo(json.dumps(record, indent=2))
        else:
            click.echo(f"{record['generator']} on {record['pairs']} {split} pairs (step {record['step']}): "
                       f"L1 {record['l1']:.4f}  PSNR {record['psnr']:.2f} dB  SSIM {record['ssim']:.4f}")
        return

    from atelier.device import resolve_device
    from atelier.metrics import evaluate_run, evaluate_source, format_table, parse_metrics

    if (run is None) == (real is None):
        raise click.UsageError("give a RUN folder or --real SOURCE (one of the two)")
    metrics = parse_metrics(metric_names)
    dev = str(resolve_device(device))
    common = {"metrics": metrics, "n": n, "evaluator": evaluator, "inception_weights": inception_weights,
              "seed": seed, "batch_size": batch_size, "device": dev, "download": download}
    if run is not None:
        records = evaluate_run(run, ref=ref, which="raw" if raw else "ema", record=not no_record, **common)
    else:
        if ref is None:
            raise click.UsageError("--real needs --ref (e.g. --ref mnist:test)")
        records = evaluate_source(real, ref=ref, **common)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    click.echo(format_table(records))
    if run is not None and not no_record:
        click.echo(f"\nappended {len(records)} record(s) to {run / 'metrics.jsonl'}")


# ---- style ----
def _stylize_fast(model: Path, content: Path, out: Path, size: int | None, device: str, no_metadata: bool) -> None:
    import time

    from atelier.errors import RunError
    from atelier.style.fast import load_style_run

    if not model.is_dir():
        raise RunError(f"--model {model}: run folder not found")
    runner = load_style_run(model, device=device)

    t0 = time.perf_counter()
    image = runner(content, size=size)
    ms = (time.perf_counter() - t0) * 1000
    from atelier.imageio import save_image

    save_image(image, out, runner.metadata(content=content.name), strip_metadata=no_metadata)
    if no_metadata:
        _log_no_metadata(model, runner.step, [out], 1, "stylize")
    click.echo(f"wrote {out} ({image.width}x{image.height}, one forward pass, {ms:.0f} ms) with {model}")


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
@no_metadata_option
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
    from atelier.images import image_format
    from atelier.style.features import build_features

    image_format(out)  # a bad output name fails before minutes of work
    if model is not None:
        if styles:
            raise click.UsageError("--model restyles with a trained network: leave out --style")
        _stylize_fast(model, content, out, size, device, no_metadata)
        return
    if not styles:
        raise click.UsageError("give --style IMAGE (repeatable), or --model RUN for a trained fast network")
    from atelier.style.gatys import image_to_tensor, parse_style_spec
    from atelier.style.gatys import stylize as run_stylize

    # Check every input file before announcing anything, so a bad file is the only line printed.
    for path, what in [(content, "content image")] + [(parse_style_spec(s)[0], "style image") for s in styles]:
        image_to_tensor(path, 16, what=what)
    net = build_features(features, vgg_weights, seed=seed)
    click.echo(f"features: {net.describe()}" + (" (VGG-19 weights not found: pass --vgg-weights to use them)"
                                                 if features == "auto" and net.name == "random" else ""))
    result = run_stylize(content, list(styles), size=size or 512, steps=steps, style_weight=style_weight,
                         content_weight=content_weight, tv_weight=tv_weight, style_scale=style_scale,
                         preserve_color=preserve_color, init=init, features=net, optimizer=optimizer, lr=lr,
                         seed=seed, device=device)
    result.save(out, {"content": content.name, "style": ", ".join(styles), "steps": steps, "seed": seed},
                strip_metadata=no_metadata)
    if no_metadata:
        _log_no_metadata(None, 0, [out], 1, "stylize")
    fmt = "  ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
    click.echo(f"losses: {fmt}  (start: total {result.initial_losses['total']:.4g})")
    click.echo(f"wrote {out} ({result.image.width}x{result.image.height}) in {result.seconds:.1f} s")


@cli.command("train-style", context_settings=CONTEXT)
@click.option("--style", "styles", multiple=True, metavar="IMAGE[:WEIGHT]", help="Style image(s).")
@click.option("--content-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of photos.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder; an existing one is resumed.")
@click.option("--size", type=click.IntRange(32, 2048), help="Training crop size [default: 256].")
@click.option("--steps", type=click.IntRange(min=1), help="Total training steps [default: 600].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Crops per step [default: 4].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate [default: 3e-3].")
@click.option("--style-weight", type=click.FloatRange(min=0))
@click.option("--content-weight", type=click.FloatRange(min=0))
@click.option("--style-scale", type=click.FloatRange(min=0, max=8, min_open=True),
              help="Style image's long side relative to --size [default: 2, about the photos' scale].")
@click.option("--features", type=click.Choice(["auto", "vgg19", "random"]), help="Feature network [auto].")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), help="VGG-19 weights file.")
@click.option("--width", type=click.IntRange(1, 256), help="Network width (Johnson: 32) [default: 16].")
@click.option("--arch", type=click.Choice(["lean", "johnson"]),
              help="Network layout: lean (~5x faster at the same width) or Johnson's [default: lean].")
@click.option("--seed", type=click.IntRange(min=0))
@click.option("--sample-every", type=click.IntRange(min=1), help="Steps between sample grids [100].")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Steps between checkpoints [100].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
def train_style(styles, content_dir, run_dir, size, steps, batch_size, lr, style_weight, content_weight, style_scale,
                features, vgg_weights, width, arch, seed, sample_every, checkpoint_every, device) -> None:
    """Train a fast feed-forward style network (Johnson et al. 2016) into a run folder, or resume it.

    \b
    Examples:
      atelier train-style --style great_wave.jpg --content-dir photos/ --run-dir runs/wave --steps 600
      # a usable network in ~10 CPU-minutes (see the README's style section):
      atelier train-style --style starry_night.jpg --content-dir photos/ --run-dir runs/starry --size 128 \\
          --batch-size 2 --steps 1600 --content-weight 0.05
      atelier train-style --run-dir runs/wave --steps 1200        # resume and train further
      atelier stylize --model runs/wave --content photo.jpg --out wave.png
    """
    from atelier.training.style import train_style as run_train

    log = None
    if sample_every or checkpoint_every:
        log = {"sample_every": sample_every or 100, "checkpoint_every": checkpoint_every or 100}
    result = run_train(run_dir, style=list(styles) or None, content_dir=str(content_dir) if content_dir else None,
                       size=size, steps=steps, batch_size=batch_size, lr=lr, style_weight=style_weight,
                       content_weight=content_weight, style_scale=style_scale, features=features,
                       vgg_weights=vgg_weights,
                       model={k: v for k, v in (("width", width), ("arch", arch)) if v} or None, seed=seed,
                       device=device, log=log)
    state = "interrupted at" if result.interrupted else "finished"
    m = result.metrics
    click.echo(f"{state} step {result.step} in {result.seconds:.1f} s of training; features: {result.features}")
    if m:
        click.echo(f"losses: style {m['loss_style']:.4g}  content {m['loss_content']:.4g}  tv {m['loss_tv']:.4g}")
    click.echo(f"run folder:   {result.run_dir}")
    if result.grid:
        click.echo(f"sample grid:  {result.grid}")
    if result.model_dir:
        click.echo(f"network:      {result.model_dir} (config.json + model.safetensors)")
    if result.interrupted:
        sys.exit(130)


# ---- synth ----
@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=int, help="How many images (conditional models: balanced over the classes).")
@click.option("--per-class", type=int, help="Images per class instead of --n (unconditional MNIST/Fashion runs: "
                                            "kept by the domain classifier's label).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="A .npz file, or a folder name (one sub-folder of PNGs per class).")
@click.option("--format", "fmt", type=click.Choice(["npz", "folder"]),
              help="Force the output format [default: npz for a .npz path, else folder].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the latents.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=256, show_default=True,
              help="Images generated per forward pass.")
@click.option("--no-labels", is_flag=True, help="Unconditional runs: do not label with the domain classifier.")
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@click.option("--raw", is_flag=True, help="Use the raw generator instead of its EMA (GAN runs).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@no_metadata_option
def synth(run: Path, n: int | None, per_class: int | None, out: Path, fmt: str | None, seed: int, batch_size: int,
          no_labels: bool, force: bool, raw: bool, device: str, no_metadata: bool) -> None:
    """Write a labelled synthetic dataset from a trained run, which atelier's loader reads back.

    Labels: a class-conditional run's own classes (balanced); for an unconditional run trained on MNIST
    or Fashion-MNIST, the domain evaluator's classifier labels each image; otherwise no labels. The
    .npz holds images (uint8 N x H x W [x C]), labels (int64), classes and a provenance JSON string.

    \b
    Examples:
      atelier synth runs/mnist-cgan --per-class 6000 --out synth.npz     # 60,000 balanced images
      atelier synth runs/mnist-vae --n 10000 --out vae.npz --seed 1      # labelled by the digits classifier
      atelier synth runs/mnist-cgan --n 1000 --out synth_digits/         # a folder tree per class of PNGs
      atelier data info synth.npz                                       # read it back
      atelier train --config configs/mnist-dcgan.yaml --data synth.npz  # train on it
    """
    import atelier
    from atelier.synth import check_output, synthesize, write_folder, write_npz

    if n is not None and per_class is not None:
        raise click.UsageError("give --n or --per-class, not both")
    if n is None and per_class is None:
        raise click.UsageError("give --n N (images) or --per-class K (images per class)")
    for name, value in (("--n", n), ("--per-class", per_class)):
        if value is not None and not 1 <= value <= 10_000_000:
            raise click.BadParameter(f"{value} is not between 1 and 10,000,000", param_hint=name)
    out_format = check_output(out, force=force, fmt=fmt)  # before minutes of generation
    g = atelier.load(run, which="raw" if raw else "ema", device=device)
    if not isinstance(g, atelier.Generator):
        from atelier.errors import RunError

        raise RunError(f"{run} is an image-to-image or style run; synth needs a generator run (a GAN or a VAE)")
    s = synthesize(g, n, per_class=per_class, seed=seed, batch_size=batch_size, labels=not no_labels)
    if out_format == "npz":
        path = write_npz(s, out, strip_metadata=no_metadata)
    else:
        path = write_folder(s, out, strip_metadata=no_metadata)
    if no_metadata:
        _log_no_metadata(run, g.step, [path], len(s.images), "synth")
    shape = "x".join(str(v) for v in s.images.shape[1:])
    click.echo(f"wrote {len(s.images):,} images ({shape}) to {path}")
    click.echo(f"labels: {s.label_source}")
    if s.labels is not None:
        counts = s.labels.bincount(minlength=len(s.classes)).tolist()
        click.echo("per class: " + ", ".join(f"{c}: {k}" for c, k in zip(s.classes, counts, strict=False)))
    click.echo(f"read it back: atelier data info {path}")


def main() -> None:
    cli(prog_name="atelier")


if __name__ == "__main__":
    main()
