"""``atelier evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from atelier import api
from atelier.api.evaluate import format_table
from atelier.cli.app import CONTEXT, cli
from atelier.cli.segment import format_fcn, format_segmentation
from atelier.device import resolve_device
from atelier.metrics.evaluate import parse_metrics


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path), required=False)
@click.option("--real", "real", metavar="SOURCE",
              help="Score this image set instead of a run: mnist:train, a folder, a .zip or an .npz.")
@click.option("--ref", metavar="SOURCE", help="Reference set (default for a run: the test split of its dataset).")
@click.option("--metrics", "metric_names", default="fid,kid", show_default=True,
              help="Comma-separated: fid, kid, is, pr (precision/recall, k=3), cas (classification accuracy "
                   "score: class-conditional runs, or a labelled --real set), ppl (perceptual path length of a "
                   "GAN run, in the evaluator's conv features), memorisation (share of samples nearer a training "
                   "image than the training images are to each other).")
@click.option("--n", "n", type=click.IntRange(10, 1_000_000), default=10_000, show_default=True,
              help="Images generated (a run) or drawn at random (--real).")
@click.option("--evaluator", type=click.Choice(["auto", "digits", "fashion", "emoji", "random-cnn", "inception"]),
              default="auto", show_default=True,
              help="Feature network; auto: digits for MNIST, fashion for Fashion-MNIST, else random-cnn (a fixed "
                   "random CNN, no weights needed). emoji: the emoji-group classifier; inception: needs its weights.")
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Local FID Inception weights (.pth or .safetensors).")
@click.option("--download", is_flag=True, help="Download the Inception weights (sha256-checked) if missing.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the latents / the random subset / KID and IS subsets.")
@click.option("--raw", is_flag=True, help="Score the raw generator instead of its EMA.")
@click.option("--truncation", "psi", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="StyleGAN-type runs: score samples truncated towards the average w (1 = off).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--no-record", is_flag=True, help="Do not append the records to the run's metrics.jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON instead of a table.")
@click.option("--split", default="test", show_default=True,
              help="Translation runs: test (data.eval_source), train, or a folder of pairs.")
@click.option("--baseline", type=click.Choice(["identity"]),
              help="Translation runs: score the input passed through unchanged instead of the model.")
@click.option("--limit", type=click.IntRange(min=1),
              help="Translation and segmentation runs: score the first N pairs of the split only.")
@click.option("--segmenter", type=click.Path(file_okay=False, path_type=Path), metavar="RUN",
              help="Translation runs (label map -> photo): add the FCN-score, segmenting the model's photos with "
                   "this segmenter run and the real photos as the ceiling.")
def evaluate(run: Path | None, real: str | None, ref: str | None, metric_names: str, n: int, evaluator: str,
             inception_weights: Path | None, download: bool, seed: int, raw: bool, psi: float, device: str,
             batch_size: int, no_record: bool, as_json: bool, split: str, baseline: str | None, limit: int | None,
             segmenter: Path | None) -> None:
    """Measure FID / KID / IS / precision-recall of a run's generator, or of any image set.

    Every record names its evaluator (and its weights' sha256), reference set and size, sample
    count, generator, checkpoint step and seed. For a run it is appended to metrics.jsonl and listed in
    the model card.

    \b
    Examples:
      atelier evaluate runs/mnist-dcgan --metrics fid,kid,is,pr --n 10000
      atelier evaluate runs/mnist-dcgan --ref mnist:test --evaluator digits --json
      atelier evaluate --real mnist:train --ref mnist:test          # the floor real data allows
      atelier evaluate --real samples/ --ref fashion-mnist:test --evaluator fashion
      atelier evaluate --real photos/ --ref ref_photos/ --evaluator inception --inception-weights pt_inception.pth
      atelier evaluate runs/facades --split test                     # pix2pix: L1 / PSNR / SSIM per pair
      atelier evaluate runs/facades --split test --baseline identity
      atelier evaluate runs/facades --segmenter runs/facades-seg     # + FCN-score (real photos: the ceiling)
      atelier evaluate runs/facades-seg                              # segmenter: pixel/class accuracy, mIoU
    """
    if (run is None) == (real is None):
        raise click.UsageError("give a RUN folder or --real SOURCE (one of the two)")
    if real is not None and ref is None:
        raise click.UsageError("--real needs --ref (e.g. --ref mnist:test)")
    if segmenter is not None and real is not None:
        raise click.UsageError("--segmenter scores a translation RUN (the FCN-score), not --real images")
    extra: dict = {"segmenter": segmenter} if segmenter is not None else {}
    if limit is not None:
        extra["limit"] = limit
    if psi != 1.0:
        extra["truncation"] = psi
    records = api.evaluate(run, real=real, ref=ref, metrics=parse_metrics(metric_names), n=n, evaluator=evaluator,
                           inception_weights=inception_weights, seed=seed, batch_size=batch_size,
                           device=str(resolve_device(device)), download=download, which="raw" if raw else "ema",
                           record=not no_record, split=split, baseline=baseline, **extra)
    if as_json:
        click.echo(json.dumps(records if len(records) != 1 or "metric" in records[0] else records[0], indent=2))
        return
    r0 = records[0]
    if "miou" in r0:
        click.echo(format_segmentation(r0, split))
        return
    if "pairs" in r0:
        click.echo(f"{r0['generator']} on {r0['pairs']} {split} pairs (step {r0['step']}): "
                   f"L1 {r0['l1']:.4f}  PSNR {r0['psnr']:.2f} dB  SSIM {r0['ssim']:.4f}")
        if "fcn_miou" in r0:
            click.echo(format_fcn(r0))
        return
    click.echo(format_table(records))
    if run is not None and not no_record:
        click.echo(f"\nappended {len(records)} record(s) to {run / 'metrics.jsonl'}")
