"""Segmentation: palette quantisation, scores, the segmenter family, `atelier segment` and the FCN-score."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from atelier.errors import ConfigError, DataError
from atelier.labelmaps import CMP_FACADES, get_palette
from atelier.metrics.segmentation import confusion_matrix, segmentation_scores
from conftest import DATA_REASON, TINY_SEG, data_available, one_line_error, run_cli

FACADES = Path(os.environ.get("ATELIER_DATA", "")) / "facades"
needs_facades = pytest.mark.skipif(not data_available("facades"), reason=DATA_REASON)



def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ------------------------------------------------------------------------------------------ the palette
def test_cmp_palette_has_twelve_distinct_classes_far_apart():
    pal = CMP_FACADES.array.astype(int)
    assert len(CMP_FACADES) == 12 and CMP_FACADES.classes[0] == "background" and "window" in CMP_FACADES.classes
    gaps = np.sqrt(((pal[:, None] - pal[None]) ** 2).sum(-1)) + np.eye(12) * 1e9
    assert gaps.min() > 55                     # the documented smallest gap (58): noise up to ~29 quantises right


def test_quantize_recovers_a_noisy_label_map():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 12, (40, 50)).astype(np.uint8)
    noisy = CMP_FACADES.colorize(truth).astype(int) + rng.integers(-16, 17, (40, 50, 3))
    idx, dist = CMP_FACADES.nearest(np.clip(noisy, 0, 255).astype(np.uint8))
    assert (idx == truth).all()
    assert dist.max() <= np.sqrt(3) * 16 + 1e-4
    # A colour halfway between two classes goes to one of those two, never to a third.
    mid = ((CMP_FACADES.array[1].astype(int) + CMP_FACADES.array[2]) // 2).astype(np.uint8)
    assert CMP_FACADES.quantize(mid[None, None])[0, 0] in (1, 2)


@needs_facades
def test_quantize_real_jpeg_label_maps():
    """On the shared facades: the palette's colours are the centres of the label maps' colour clusters, and a
    label map drawn in exact palette colours survives the data set's own JPEG settings (its quantisation tables,
    4:2:0 chroma)."""
    files = sorted((FACADES / "test").glob("*.jpg"))[:8]
    assert files
    agree, total = 0, 0
    per_class: dict[int, list[np.ndarray]] = {k: [] for k in range(12)}
    for f in files:
        with Image.open(f) as src:
            pair, qtables = np.asarray(src.convert("RGB")), src.quantization
            sampling = JpegImagePlugin.get_sampling(src)
        labels = pair[:, 256:]
        idx = CMP_FACADES.quantize(labels)
        # Interior pixels (all 24 neighbours within 2 px share the class): their median colour per class.
        h, w = idx.shape
        same = np.ones((h - 4, w - 4), dtype=bool)
        for dy in range(5):
            for dx in range(5):
                same &= idx[dy:h - 4 + dy, dx:w - 4 + dx] == idx[2:-2, 2:-2]
        inner, colours = idx[2:-2, 2:-2][same], labels[2:-2, 2:-2][same].astype(float)
        for k in range(12):
            per_class[k].append(colours[inner == k])
        assert len(np.unique(idx)) >= 4                                   # facade, background, window, ...
        # Re-encode the quantised map with the file's own JPEG settings and read it back.
        drawn = np.concatenate([pair[:, :256], CMP_FACADES.colorize(idx)], axis=1)
        buf = io.BytesIO()
        Image.fromarray(drawn).save(buf, "JPEG", qtables=qtables, subsampling=sampling)
        again = CMP_FACADES.quantize(_read(buf)[:, 256:])
        agree, total = agree + int((again == idx).sum()), total + idx.size
    assert agree / total > 0.98
    medians = {k: np.median(np.concatenate(v), axis=0) for k, v in per_class.items() if sum(map(len, v)) > 200}
    assert len(medians) >= 8
    for k, m in medians.items():
        assert np.abs(m - CMP_FACADES.colors[k]).max() <= 8, (CMP_FACADES.classes[k], m)   # gaps: >= 58


def test_custom_palettes_and_their_errors():
    pal = get_palette(["sky=#0000ff", "wall=white", "door=#ff0000"])
    assert pal.classes == ("sky", "wall", "door") and pal.colors[1] == (255, 255, 255)
    assert pal.spec() == ["sky=#0000ff", "wall=#ffffff", "door=#ff0000"]
    assert get_palette("cmp-facades").spec() == "cmp-facades"
    assert pal.indices(["Door", " sky"]) == [2, 0]
    with pytest.raises(DataError, match="unknown class 'roof'.*sky, wall, door"):
        pal.indices(["roof"])
    with pytest.raises(ConfigError, match="unknown palette"):
        get_palette("nope")
    with pytest.raises(ConfigError, match="name=#rrggbb"):
        get_palette(["sky"])
    with pytest.raises(ConfigError, match="share a colour"):
        get_palette(["a=#000000", "b=black"])


# ------------------------------------------------------------------------------------------ the scores
def test_scores_against_a_hand_computed_confusion_matrix():
    # Truth and prediction over 10 pixels, 4 classes (class 3 never occurs; class 2 is only predicted).
    target = torch.tensor([0, 0, 0, 0, 1, 1, 1, 0, 1, 1])
    pred = torch.tensor([0, 0, 1, 0, 1, 1, 0, 2, 1, 1])
    conf = confusion_matrix(pred, target, 4)
    expected = np.array([[3, 1, 1, 0],     # truth 0: 3 right, 1 as class 1, 1 as class 2
                         [1, 4, 0, 0],     # truth 1: 4 right, 1 as class 0
                         [0, 0, 0, 0],
                         [0, 0, 0, 0]])
    assert (conf == expected).all()
    s = segmentation_scores(conf, ["a", "b", "c", "d"])
    assert s["pixel_acc"] == pytest.approx(7 / 10)
    assert s["class_acc"] == pytest.approx((3 / 5 + 4 / 5) / 2)          # over the classes in the truth
    iou_a, iou_b, iou_c = 3 / (5 + 4 - 3), 4 / (5 + 5 - 4), 0.0           # c: predicted only -> IoU 0
    assert s["miou"] == pytest.approx((iou_a + iou_b + iou_c) / 3)         # d: absent everywhere -> left out
    assert s["iou/a"] == pytest.approx(iou_a) and s["iou/c"] == 0.0 and "iou/d" not in s
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(torch.tensor([4]), torch.tensor([0]), 4)


# ------------------------------------------------------------------------------------------ data
def _label_pairs(folder: Path, n: int = 4, size: int = 40) -> Path:
    """Photo | label map pairs (JPEG) where the photo's red channel is 20 x the class: the two halves' agreement
    after crops and flips is checkable pixel by pixel."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        idx = np.zeros((size, size), np.uint8)
        for _ in range(6):
            y, x = rng.integers(0, size - 10, 2)
            idx[y:y + 10, x:x + rng.integers(4, 12)] = rng.integers(1, 12)
        photo = np.stack([idx * 20, np.full_like(idx, 90), np.full_like(idx, 30)], axis=-1)
        Image.fromarray(np.concatenate([photo, CMP_FACADES.colorize(idx)], axis=1)).save(folder / f"{i}.png")
    return folder


def test_paired_label_maps_stay_aligned_through_crops_and_flips(tmp_path):
    from atelier.data import BatchLoader
    from atelier.data.paired import load_paired
    from atelier.tasks.segmenter import labels_of

    pairs = str(_label_pairs(tmp_path / "pairs"))
    ds = load_paired(pairs, "side_by_side", "AtoB", 3, 40, palette=CMP_FACADES)
    assert ds.images.shape == (4, 4, 40, 40)
    assert (ds.images[:, 0] == ds.images[:, 3] * 20).all()           # PNG pairs: quantised exactly
    # Label maps are resized by nearest neighbour (a blend of two classes would be a third one).
    big = load_paired(pairs, "side_by_side", "AtoB", 3, 80, palette=CMP_FACADES).images[:, 3]
    assert (big == ds.images[:, 3].repeat_interleave(2, 1).repeat_interleave(2, 2)).all()
    batch, _ = BatchLoader(ds, batch_size=4, seed=1, hflip=True, crop=24).next()
    red = ((batch[:, 0] + 1) * 127.5).round().long()
    assert (red == labels_of(batch[:, 3]) * 20).all()


# ------------------------------------------------------------------------------------------ the family
@pytest.fixture(scope="session")
def seg_run(tmp_path_factory) -> Path:
    if not data_available("facades"):
        pytest.skip(DATA_REASON)
    import atelier

    run = tmp_path_factory.mktemp("seg") / "facades-seg"
    atelier.train("configs/facades-seg.yaml", run, dict(TINY_SEG), progress=False)
    return run


def test_the_config_trains_and_loads_as_a_segmenter(seg_run, tmp_path):
    import atelier

    model = atelier.load(seg_run)
    assert isinstance(model, atelier.Segmenter) and model.classes == CMP_FACADES.classes
    assert model.network.out_channels == 12
    photo = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    index = model.segment(photo)
    assert index.shape == (50, 70) and index.dtype == np.uint8 and index.max() < 12
    assert model.mask(photo, ["window", "door"]).shape == (50, 70)
    assert (seg_run / "samples" / "grid-0000003.png").is_file()
    assert "Classes (12, palette `cmp-facades`)" in (seg_run / "model_card.md").read_text()


def test_evaluate_records_segmentation_scores(seg_run, tmp_path):
    import shutil

    run = Path(shutil.copytree(seg_run, tmp_path / "seg"))
    result = run_cli("evaluate", run, "--limit", "6", "--json")
    r = json.loads(result.output)
    assert r["pairs"] == 6 and 0 <= r["miou"] <= r["pixel_acc"] <= 1 and 0 <= r["class_acc"] <= 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = {x["metric"]: x["value"] for x in records if x.get("event") == "eval"}
    assert evals == {"pixel_acc": r["pixel_acc"], "class_acc": r["class_acc"], "miou": r["miou"]}
    assert "MIOU" in (run / "model_card.md").read_text()
    out = run_cli("evaluate", run, "--limit", "2", "--no-record").output
    assert "mIoU" in out and "window" in out


@needs_facades
def test_segment_cli_writes_a_palette_label_map_at_the_photo_size(seg_run, tmp_path):
    from atelier.provenance import read_metadata

    photo = tmp_path / "photo.png"
    Image.fromarray(_read(FACADES / "test" / "1.jpg")[:, :200]).save(photo)  # 200x256, the photo half
    run_cli("segment", seg_run, "--input", photo, "--out", tmp_path / "labels.png")
    with Image.open(tmp_path / "labels.png") as labels:
        labels.load()
    assert labels.size == (200, 256) and labels.mode == "P"
    assert np.asarray(labels).max() < 12
    colours = {tuple(c) for c in np.asarray(labels.convert("RGB")).reshape(-1, 3)}
    assert colours <= set(CMP_FACADES.colors)
    meta = read_metadata(tmp_path / "labels.png")
    assert meta["atelier:workflow"] == "segment" and meta["atelier:watermark"].startswith("none")
    run_cli("segment", seg_run, "--input", photo, "--out", tmp_path / "overlay.jpg", "--overlay")
    assert _read(tmp_path / "overlay.jpg").shape == (256, 200, 3)
    one_line_error(run_cli("segment", seg_run, "--input", photo, "--out", tmp_path / "l.jpg", ok=False),
                   r"label maps as \.png")


@needs_facades
def test_fcn_score_of_a_pix2pix_run(seg_run, tmp_path):
    import atelier

    p2p = tmp_path / "p2p"
    atelier.train("configs/facades-pix2pix.yaml", p2p, {**TINY_SEG, "model.ndf": 4, "train.steps": 2},
                  progress=False)
    r = json.loads(run_cli("evaluate", p2p, "--segmenter", seg_run, "--limit", "4", "--json").output)
    assert r["pairs"] == 4 and "l1" in r
    for prefix in ("fcn_", "fcn_real_"):
        assert 0 <= r[prefix + "miou"] <= r[prefix + "pixel_acc"] <= 1
    records = [json.loads(line) for line in (p2p / "metrics.jsonl").read_text().splitlines()]
    fcn = [(x["metric"], x["generator"]) for x in records if x.get("metric", "").startswith("fcn_")]
    assert ("fcn_miou", "G") in fcn and ("fcn_miou", "real photos") in fcn
    text = run_cli("evaluate", p2p, "--segmenter", seg_run, "--limit", "2", "--no-record").output
    assert "FCN-score" in text and "real photos" in text
    one_line_error(run_cli("evaluate", seg_run, "--segmenter", seg_run, ok=False), "translation run")


def test_segmenter_config_needs_a_palette():
    from atelier.runs import resolve_config

    with pytest.raises(ConfigError, match="model.palette"):
        resolve_config({"model": {"name": "segmenter"}, "data": {"channels": 3, "resolution": 32}})
    with pytest.raises(ConfigError, match="unknown palette"):
        resolve_config({"model": {"name": "segmenter", "palette": "x"}, "data": {"channels": 3, "resolution": 32}})
    cfg = resolve_config({"model": {"name": "segmenter", "palette": ["a=#000000", "b=#ffffff"]},
                          "data": {"channels": 3, "resolution": 32}})
    assert cfg.model["palette"] == ["a=#000000", "b=#ffffff"]
