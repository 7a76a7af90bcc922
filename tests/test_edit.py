"""Region edits: masks, feathering, every edit kind keeps the outside bit-identical, provenance, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import atelier
from atelier.api.edit import EDITED_SOURCE_TYPE, EDITS
from atelier.api.masks import Mask, composite, feather, rect_mask, region_mask
from atelier.errors import DataError
from atelier.provenance import read_metadata
from conftest import (
    DATA_REASON,
    TINY_SEG,
    data_available,
    make_pairs,
    one_line_error,
    run_cli,
    small_photo,
    tiny_style_run,
)


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def _photo(tmp_path: Path, size=(60, 44)) -> Path:
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return path


# ------------------------------------------------------------------------------------------ masks and blending
def test_feather_stays_inside_the_mask_and_rises_to_one():
    mask = np.zeros((40, 50), dtype=bool)
    mask[5:35, 10:45] = True
    w = feather(mask, 4)
    assert (w[~mask] == 0).all() and (w[mask] > 0).all() and w.max() == 1.0
    assert w[20, 27] == 1.0                                      # deep inside
    assert 0 < w[20, 10] < w[20, 11] < w[20, 12] < w[20, 13] <= 1.0  # rising from the left edge
    assert w[20, 10] == pytest.approx((1 / 5) ** 2 * (3 - 2 / 5))   # smoothstep(1 / (radius + 1)) at the edge
    assert (feather(mask, 0) == mask).all()
    edge = np.zeros((10, 10), dtype=bool)
    edge[:, :5] = True                                          # the image border is not an edge of the mask
    assert feather(edge, 2)[5, 0] == 1.0 and feather(edge, 2)[5, 4] < 1.0


def test_composite_copies_the_outside_exactly_and_keeps_alpha():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    proposal = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = rect_mask((20, 30), "5,4,25,16").array
    out = composite(image, proposal, feather(mask, 3))
    assert (out[~mask] == image[~mask]).all()
    assert (out[..., 3] == image[..., 3]).all()
    assert (out[8:12, 12:18, :3] == proposal[8:12, 12:18]).all()    # full weight deep inside
    assert not (out[mask, :3] == image[mask, :3]).all()


def test_mask_sources_and_their_errors(tmp_path):
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    assert rect_mask((20, 30), (0, 0, 30, 20)).array.all()
    with pytest.raises(DataError, match="does not fit the 30x20 image"):
        rect_mask((20, 30), "0,0,31,20")
    with pytest.raises(DataError, match="x0,y0,x1,y1"):
        rect_mask((20, 30), "1,2,3")
    brush = np.zeros((20, 30, 4), dtype=np.uint8)
    brush[2:6, 3:9, 3] = 255                                     # painted on a transparent layer
    brush[10:12, 10:12, :3] = 255                                # colour but transparent: not painted
    Image.fromarray(brush).save(tmp_path / "brush.png")
    m = region_mask(image, brush=tmp_path / "brush.png")
    assert m.array.sum() == 24 and m.source["mask"] == "brush brush.png" and len(m.source["mask_sha256"]) == 64
    grey = np.zeros((20, 30), dtype=np.uint8)
    grey[0, 0] = 1                                               # any non-zero pixel is edited
    assert region_mask(image, brush=grey).array.sum() == 1
    assert region_mask(image, brush=grey, invert=True).array.sum() == 599
    with pytest.raises(DataError, match="mask brush.png is 30x20 but the image is 40x20"):
        region_mask(np.zeros((20, 40, 3), np.uint8), brush=tmp_path / "brush.png")
    with pytest.raises(DataError, match="give one mask"):
        region_mask(image)
    with pytest.raises(DataError, match="a brush mask and a rectangle"):
        region_mask(image, brush=grey, rect="0,0,2,2")
    with pytest.raises(DataError, match="selects no pixels"):
        region_mask(image, brush=np.zeros((20, 30), np.uint8))


# ------------------------------------------------------------------------------------------ every edit kind
@pytest.fixture(scope="module")
def edit_models(tmp_path_factory) -> dict[str, Path]:
    """One tiny trained run for each edit kind."""
    root = tmp_path_factory.mktemp("edit-models")
    photos = root / "photos"
    photos.mkdir()
    for name in ("content", "style"):
        small_photo(photos / f"{name}.png", size=48)
    style = small_photo(root / "style.png", size=48)
    tiny_style_run(root / "style-run", photos, style, steps=2)
    train, test = make_pairs(root / "train"), make_pairs(root / "test", n=3, seed=1)
    atelier.train(None, root / "p2p", {
        "data.source": str(train), "data.eval_source": str(test), "data.paired": "side_by_side",
        "data.resolution": 32, "data.channels": 3, "model.name": "pix2pix", "model.ngf": 4, "model.ndf": 4,
        "train.batch_size": 2, "train.steps": 2, "train.device": "cpu", "train.precision": "fp32",
        "train.channels_last": False, "log.every": 1, "log.sample_every": 2, "log.checkpoint_every": 2,
        "log.grid": 2, "log.tensorboard": False}, progress=False)
    return {"restyle": root / "style-run", "translate": root / "p2p"}


def test_every_registered_edit_kind_is_tested(edit_models):
    assert set(EDITS) == set(edit_models)     # a new kind (e.g. inpaint) must bring its model here


@pytest.mark.parametrize("kind", ["restyle", "translate"])
@pytest.mark.parametrize("how", ["rect", "brush", "rgba"])
def test_outside_the_mask_is_bit_identical_after_every_edit(edit_models, tmp_path, kind, how):
    photo = _photo(tmp_path)
    original = _read(photo)
    if how == "rgba":                                             # an image with alpha keeps it exactly
        alpha = np.random.default_rng(1).integers(0, 256, original.shape[:2], dtype=np.uint8)
        Image.fromarray(np.dstack([original, alpha])).save(photo)
        original = _read(photo)
    brush = None
    if how == "brush":
        brush = np.zeros(original.shape[:2], np.uint8)
        brush[10:30, 5:25] = 255
        brush[35:40, 40:58] = 7
    result = atelier.edit_region(photo, kind=kind, model=edit_models[kind], brush=brush,
                                 rect=None if brush is not None else "12,8,50,36", feather_px=3)
    out_path = result.save(tmp_path / "out.png")
    out = _read(out_path)
    mask = result.mask.array
    assert out.shape == original.shape
    assert (out[~mask] == original[~mask]).all()
    assert (out[mask] != original[mask]).any()
    meta = read_metadata(out_path)
    assert meta["DigitalSourceType"] == EDITED_SOURCE_TYPE
    assert meta["atelier:workflow"] == "edit-region" and meta["atelier:edit"] == kind
    assert len(meta["atelier:weights_sha256"]) == 64 and meta["atelier:run"] == edit_models[kind].name
    assert meta["atelier:source"] == "photo.png" and len(meta["atelier:source_sha256"]) == 64
    assert meta["atelier:mask"].startswith("rectangle" if how != "brush" else "brush")


def test_class_masks_from_a_segmenter(edit_models, tmp_path):
    if not data_available("facades"):
        pytest.skip(DATA_REASON)
    seg = tmp_path / "seg"
    atelier.train("configs/facades-seg.yaml", seg, dict(TINY_SEG), progress=False)
    segmenter = atelier.load(seg)
    photo = _photo(tmp_path, size=(64, 64))
    classes = segmenter.segment(photo)
    common = segmenter.classes[int(np.bincount(classes.ravel()).argmax())]
    result = atelier.edit_region(photo, kind="restyle", model=edit_models["restyle"], segmenter=segmenter,
                                 classes=[common])
    assert (result.mask.array == (classes == segmenter.classes.index(common))).all()
    out, original = np.asarray(result.image), _read(photo)
    assert (out[~result.mask.array] == original[~result.mask.array]).all()
    assert result.metadata["mask"] == f"segmenter classes {common}"
    assert result.metadata["mask_segmenter_sha256"] == segmenter.weights_sha256
    with pytest.raises(DataError, match="unknown class 'roof'"):
        atelier.edit_region(photo, kind="restyle", model=edit_models["restyle"], segmenter=segmenter,
                            classes="roof")


def test_translate_from_another_input_and_model_kind_checks(edit_models, tmp_path):
    photo = _photo(tmp_path)
    other = tmp_path / "labels.png"
    Image.fromarray(np.full(_read(photo).shape, 120, np.uint8)).save(other)
    a = atelier.edit_region(photo, kind="translate", model=edit_models["translate"], rect="0,0,30,20",
                            options={"source": other})
    b = atelier.edit_region(photo, kind="translate", model=edit_models["translate"], rect="0,0,30,20")
    assert (np.asarray(a.image) != np.asarray(b.image)).any()
    assert a.metadata["translate_input"] == "labels.png"
    with pytest.raises(atelier.AtelierError, match="a restyle edit needs a stylizer run"):
        atelier.edit_region(photo, kind="restyle", model=edit_models["translate"], rect="0,0,30,20")
    with pytest.raises(DataError, match="unknown edit 'paint'"):
        atelier.edit_region(photo, kind="paint", model=edit_models["translate"], rect="0,0,30,20")
    mask = Mask(np.ones((3, 3), bool))
    with pytest.raises(DataError, match="the mask is 3x3"):
        atelier.edit_region(photo, kind="translate", model=edit_models["translate"], mask=mask)


def test_edit_region_cli(edit_models, tmp_path):
    photo = _photo(tmp_path)
    out = tmp_path / "out.png"
    result = run_cli("edit-region", "--image", photo, "--rect", "10,10,40,30", "--style-model",
                     edit_models["restyle"], "--out", out, "--save-mask", tmp_path / "mask.png", "--feather", "2")
    assert "restyle of" in result.output
    mask = _read(tmp_path / "mask.png") > 0
    assert mask.sum() == 30 * 20
    assert (_read(out)[~mask] == _read(photo)[~mask]).all()
    assert read_metadata(tmp_path / "mask.png")["atelier:mask"] == "rectangle 10,10,40,30"
    one_line_error(run_cli("edit-region", "--image", photo, "--rect", "0,0,5,5", "--out", out, ok=False),
                   "choose one edit")
    one_line_error(run_cli("edit-region", "--image", photo, "--out", out, "--style-model", edit_models["restyle"],
                           ok=False), "give one mask")
    one_line_error(run_cli("edit-region", "--image", photo, "--rect", "0,0,500,5", "--out", out,
                           "--translate-model", edit_models["translate"], ok=False), "does not fit")
    one_line_error(run_cli("edit-region", "--image", photo, "--rect", "0,0,5,5", "--out", out,
                           "--translate-model", edit_models["restyle"], ok=False), "needs a translator run")
