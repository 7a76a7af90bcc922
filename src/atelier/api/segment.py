"""The *segment* workflow and the scores built on it: label maps of photos, a segmenter's accuracy and mIoU on
held-out pairs, and the FCN-score of a label -> photo translator (Isola et al. 2017, sec. 4.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atelier import families
from atelier.config import DataConfig
from atelier.data.paired import load_paired
from atelier.errors import AtelierError, DataError, RunError
from atelier.imageio import save_image
from atelier.images import IMAGE_SUFFIXES, image_format
from atelier.loaded import LoadedModel, Segmenter, Translator
from atelier.metrics.segmentation import confusion_matrix, segmentation_scores
from atelier.provenance import log_no_metadata
from atelier.runs import Run
from atelier.training.card import refresh_quality

__all__ = ["evaluate_segmentation", "fcn_score", "load_segmenter", "segment", "segmentation_image"]

SCORES = ("pixel_acc", "class_acc", "miou")


def load_segmenter(model: str | Path | LoadedModel, device: str = "cpu") -> Segmenter:
    """A segmenter run folder (or an already loaded one) -> its :class:`~atelier.loaded.Segmenter`."""
    if isinstance(model, LoadedModel):
        loaded = model
    else:
        if not Path(model).is_dir():
            raise RunError(f"segmenter run folder not found: {model}")
        loaded = families.load(model, device=device)
    if not isinstance(loaded, Segmenter):
        raise RunError(f"{loaded.run_dir} is a {loaded.cfg.model['name']} ({loaded.kind}) run, not a segmenter "
                       "(train one with configs/facades-seg.yaml)")
    return loaded


def segmentation_image(model: Segmenter, image: Any, overlay: bool = False, alpha: float = 0.5) -> Image.Image:
    """The label map of ``image`` as an 8-bit palette image (its pixel values are the class indices, its colours
    the palette's), or with ``overlay`` the label colours blended over the photo (RGB)."""
    index = model.segment(image)
    if overlay:
        return model.overlay(image, index, alpha=alpha)
    out = Image.fromarray(index, mode="P")
    out.putpalette([v for c in model.palette.colors for v in c])
    return out


def segment(run: str | Path | Segmenter, input: str | Path, out: str | Path, *, overlay: bool = False,
            alpha: float = 0.5, device: str = "cpu", strip_metadata: bool = False) -> list[Path]:
    """Segment an image into a label-map file, or a folder of images into a folder of label maps (PNG).

    Label maps are written without the invisible watermark, whose noise would change their exact palette
    colours (the metadata says so); overlays are pictures and carry it.
    """
    model = load_segmenter(run, device=device)
    src, dst = Path(input), Path(out)
    if src.is_dir():
        if dst.suffix:
            raise AtelierError("a folder input needs a folder output (no file extension)")
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{src} holds no images to segment")
        pairs = [(p, dst / f"{p.stem}.png") for p in files]
    elif not src.exists():
        raise DataError(f"input not found: {src}")
    else:
        if not overlay and image_format(dst) != "PNG":
            raise AtelierError(f"{dst}: write label maps as .png (a lossy format would change their colours); "
                               "--overlay pictures may be .jpg")
        pairs = [(src, dst)]
    paths = []
    for p, target in pairs:
        img = segmentation_image(model, p, overlay=overlay, alpha=alpha)
        fields = model.metadata(source=p.name, output="overlay" if overlay else "label map",
                                classes=",".join(model.classes))
        if not overlay:
            fields["watermark"] = "none (a label map keeps its exact palette colours)"
        paths.append(save_image(img, target, fields, watermark=overlay, strip_metadata=strip_metadata))
    if strip_metadata and model.run_dir is not None:
        log_no_metadata(model.run_dir, model.step, [dst], len(paths), "segment")
    return paths


def _source(data: DataConfig, split: str, run: Path) -> str:
    source = {"test": data.eval_source, "train": data.source}.get(split, split)
    if source is None:
        raise DataError(f"{run} has no data.eval_source for the test split; pass a folder of pairs")
    return source


def _record(run: Run, result: dict[str, Any], metrics: dict[str, str], extra: dict[str, Any]) -> None:
    run.append_records([{**result, **extra, "metric": name, "value": result[key]} for name, key in metrics.items()])
    refresh_quality(run)


def evaluate_segmentation(run_dir: str | Path | Segmenter, split: str = "test", limit: int | None = None,
                          record: bool = True, batch_size: int = 16, device: str = "cpu") -> dict[str, Any]:
    """Pixel accuracy, mean class accuracy, mIoU and per-class IoU of a segmenter on a split of pairs (``test``:
    data.eval_source, ``train``, or a folder), at the training resolution (labels resized by nearest)."""
    model = load_segmenter(run_dir, device=device)
    d = model.cfg.data
    assert model.run is not None and d.paired is not None
    source = _source(d, split, model.run.path)
    ds = load_paired(source, d.paired, d.direction, d.channels, d.resolution, limit=limit, palette=model.palette)
    k, C = len(model.palette), d.channels
    conf = np.zeros((k, k), dtype=np.int64)
    for chunk in ds.images.split(batch_size):
        conf += confusion_matrix(model.predict_batch(chunk[:, :C]), chunk[:, C], k)
    scores = segmentation_scores(conf, model.classes)
    result = {"event": "eval", "step": model.step, "run": str(model.run.path), "split": split, "source": source,
              "pairs": len(ds), "resolution": d.resolution, "checkpoint_sha256": model.weights_sha256, **scores}
    if record:
        _record(model.run, result, {m: m for m in SCORES}, {})
    return result


def fcn_score(translator_run: str | Path | Translator, segmenter_run: str | Path | Segmenter, split: str = "test",
              limit: int | None = None, record: bool = True, batch_size: int = 16,
              device: str = "cpu") -> dict[str, Any]:
    """The FCN-score of a label map -> photo translator (Isola et al. 2017): segment its photos made from the
    test label maps with a segmenter trained on real photos, and score them against those label maps; the
    same segmenter on the real photos is the ceiling. Both at the translator's resolution."""
    tr = translator_run if isinstance(translator_run, LoadedModel) else families.load(translator_run, device=device)
    if not isinstance(tr, Translator):
        raise RunError(f"{tr.run_dir} is a {tr.cfg.model['name']} ({tr.kind}) run; the FCN-score scores a "
                       "label map -> photo translation run")
    seg = load_segmenter(segmenter_run, device=device)
    t = tr.cfg.data
    assert tr.run is not None and t.paired is not None
    if seg.channels != t.channels:
        raise RunError(f"the segmenter reads {seg.channels}-channel photos, the translator makes {t.channels}")
    source = _source(t, split, tr.run.path)
    inputs = load_paired(source, t.paired, t.direction, t.channels, t.resolution, limit=limit)
    # The same files read the other way round: the real photo (the translator's target) and the class indices
    # of the label map it was made from (the translator's input).
    flipped = "AtoB" if t.direction == "BtoA" else "BtoA"
    truth = load_paired(source, t.paired, flipped, t.channels, t.resolution, limit=limit, palette=seg.palette)
    if inputs.names != truth.names:
        raise DataError(f"{source}: the pairs changed while they were read; try again")
    k, C, size = len(seg.palette), t.channels, (t.resolution, t.resolution)
    conf_fake, conf_real = np.zeros((k, k), dtype=np.int64), np.zeros((k, k), dtype=np.int64)
    for x, y in zip(inputs.images.split(batch_size), truth.images.split(batch_size), strict=True):
        fake = tr.translate_batch(x[:, :C])                                # uint8 (n, C, R, R)
        labels = y[:, C]
        conf_fake += confusion_matrix(seg.predict_batch(fake, size), labels, k)
        conf_real += confusion_matrix(seg.predict_batch(y[:, :C], size), labels, k)
    fake_scores, real_scores = segmentation_scores(conf_fake), segmentation_scores(conf_real)
    result: dict[str, Any] = {"event": "eval", "step": tr.step, "run": str(tr.run.path), "split": split,
                              "source": source, "pairs": len(inputs), "resolution": t.resolution,
                              "segmenter": str(seg.run_dir), "segmenter_step": seg.step,
                              "segmenter_sha256": seg.weights_sha256}
    result.update({f"fcn_{m}": fake_scores[m] for m in SCORES})
    result.update({f"fcn_real_{m}": real_scores[m] for m in SCORES})
    if record:
        evaluator = f"segmenter {Path(str(seg.run_dir)).name}"
        _record(tr.run, result, {f"fcn_{m}": f"fcn_{m}" for m in SCORES}, {"evaluator": evaluator, "generator": "G"})
        _record(tr.run, result, {f"fcn_{m}": f"fcn_real_{m}" for m in SCORES},
                {"evaluator": evaluator, "generator": "real photos"})
    return result
