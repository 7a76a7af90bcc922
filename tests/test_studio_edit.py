"""The studio's region editor (issue 22): POST /api/edit changes only the painted, boxed or segmented region of an
upload, with every kind of edit and every kind of region; bad requests are 4xx with a message."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")  # the studio is the optional extra atelier[serve]

from fastapi.testclient import TestClient  # noqa: E402

import atelier  # noqa: E402
from atelier.api.edit import EDITED_SOURCE_TYPE  # noqa: E402
from atelier.serve import create_app  # noqa: E402
from atelier.serve.settings import StudioSettings  # noqa: E402
from conftest import DATA_REASON, TINY_SEG, data_available, make_pairs, small_photo, tiny_style_run  # noqa: E402


@pytest.fixture(scope="module")
def edit_runs(tmp_path_factory) -> Path:
    """A folder of runs as a team serves it: a style network, a pix2pix run and a facades segmenter."""
    if not data_available("facades"):
        pytest.skip(DATA_REASON)
    root = tmp_path_factory.mktemp("studio-edit")
    runs = root / "runs"
    photos = root / "photos"
    photos.mkdir()
    for name in ("content", "style"):
        small_photo(photos / f"{name}.png", size=48)
    tiny_style_run(runs / "wave", photos, small_photo(root / "style.png", size=48), steps=2)
    train, test = make_pairs(root / "train"), make_pairs(root / "test", n=3, seed=1)
    atelier.train(None, runs / "labels2photo", {
        "data.source": str(train), "data.eval_source": str(test), "data.paired": "side_by_side",
        "data.resolution": 32, "data.channels": 3, "model.name": "pix2pix", "model.ngf": 4, "model.ndf": 4,
        "train.batch_size": 2, "train.steps": 2, "train.device": "cpu", "train.precision": "fp32",
        "train.channels_last": False, "log.every": 1, "log.sample_every": 2, "log.checkpoint_every": 2,
        "log.grid": 2, "log.tensorboard": False}, progress=False)
    atelier.train("configs/facades-seg.yaml", runs / "facades-seg", dict(TINY_SEG), progress=False)
    return runs


@pytest.fixture(scope="module")
def client(edit_runs, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with TestClient(create_app(edit_runs, settings=StudioSettings(home=home))) as c:
        yield c


def _photo(w: int = 64, h: int = 48) -> bytes:
    rng = np.random.default_rng(3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _painted(w: int = 64, h: int = 48, box=(10, 8, 30, 28)) -> tuple[bytes, np.ndarray]:
    """A brush mask as the page paints it: white, opaque strokes on a transparent canvas."""
    rgba = np.zeros((h, w, 4), np.uint8)
    x0, y0, x1, y1 = box
    rgba[y0:y1, x0:x1] = 255
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue(), rgba[..., 3] > 0


def _pixels(data: bytes) -> tuple[np.ndarray, dict[str, str]]:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")), dict(im.text)


def test_the_kinds_list_the_served_models_and_the_segmenters_classes(client):
    r = client.get("/api/edit/kinds").json()
    assert r["kinds"]["restyle"]["models"] == ["wave"] and r["kinds"]["translate"]["models"] == ["labels2photo"]
    seg = r["segmenters"]["facades-seg"]
    assert len(seg["classes"]) == 12 and "window" in seg["classes"] and len(seg["colors"]) == 12


@pytest.mark.parametrize("kind,model", [("restyle", "wave"), ("translate", "labels2photo")])
def test_a_painted_region_changes_and_every_other_pixel_is_the_uploads_own(client, kind, model):
    photo = _photo()
    mask, on = _painted()
    r = client.post("/api/edit", data={"kind": kind, "model": model, "feather": "3"},
                    files={"file": ("photo.png", photo, "image/png"), "mask": ("mask.png", mask, "image/png")})
    assert r.status_code == 200, r.text
    out, meta = _pixels(r.content)
    original, _ = _pixels(photo)
    assert np.array_equal(out[~on], original[~on])                 # outside: bit for bit
    assert (out[on] != original[on]).any()                          # inside: the model's pixels
    assert float(r.headers["X-Atelier-Mask-Fraction"]) == pytest.approx(on.mean(), abs=1e-6)
    assert meta["DigitalSourceType"] == EDITED_SOURCE_TYPE and meta["atelier:workflow"] == "studio-edit"
    assert meta["atelier:source"] == "photo.png" and meta["atelier:mask"].startswith("brush")


def test_a_rectangle_edit_is_kept_in_the_gallery_with_its_settings(client):
    r = client.post("/api/edit", data={"kind": "restyle", "model": "wave", "rect": "0,0,20,20", "save": "true",
                                       "feather": "0"},
                    files={"file": ("photo.png", _photo(), "image/png")})
    assert r.status_code == 200, r.text
    gid = int(r.headers["X-Atelier-Gallery-Ids"])
    rec = client.get(f"/api/gallery/{gid}").json()
    assert rec["workflow"] == "studio-edit" and rec["settings"]["body"]["rect"] == "0,0,20,20"
    assert client.get(f"/api/gallery/{gid}/image.png").content == r.content


def test_classes_of_a_served_segmenter_make_the_region(client):
    classes = client.get("/api/edit/kinds").json()["segmenters"]["facades-seg"]["classes"]
    r = client.post("/api/edit", data={"kind": "restyle", "model": "wave", "segmenter": "facades-seg",
                                       "classes": ",".join(classes)},
                    files={"file": ("photo.png", _photo(), "image/png")})
    assert r.status_code == 200, r.text
    _, meta = _pixels(r.content)
    assert float(r.headers["X-Atelier-Mask-Fraction"]) == 1.0 and "facades-seg" in json.dumps(meta)


@pytest.mark.parametrize("data,files,status,detail", [
    ({"kind": "restyle", "model": "wave"}, {}, 400, "give exactly one region"),
    ({"kind": "restyle", "model": "wave", "rect": "0,0,5,5", "segmenter": "facades-seg", "classes": "window"}, {},
     400, "got rect and segmenter"),
    ({"kind": "paint", "model": "wave", "rect": "0,0,5,5"}, {}, 400, "unknown edit 'paint'"),
    ({"kind": "restyle", "model": "labels2photo", "rect": "0,0,5,5"}, {}, 404, "no stylizer named 'labels2photo'"),
    ({"kind": "restyle", "model": "wave", "segmenter": "wave", "classes": "window"}, {}, 404, "no segmenter"),
    ({"kind": "restyle", "model": "wave", "segmenter": "facades-seg"}, {}, 400, "needs classes"),
    ({"kind": "restyle", "model": "wave", "rect": "50,40,10,10"}, {}, 400, "x0 < x1"),
    ({"kind": "restyle", "model": "wave"}, {"mask": ("m.png", _painted(32, 32)[0], "image/png")}, 400,
     "but the image is 64x48"),
    ({"kind": "restyle", "model": "wave"}, {"mask": ("m.png", b"not a png", "image/png")}, 400, "m.png"),
    ({"kind": "restyle", "model": "wave", "rect": "0,0,5,5", "feather": "500"}, {}, 422, ""),
])
def test_bad_edit_requests_are_4xx_with_a_message(client, data, files, status, detail):
    r = client.post("/api/edit", data=data, files={"file": ("photo.png", _photo(), "image/png"), **files})
    assert r.status_code == status, r.text
    if detail:
        assert detail in r.json()["detail"]
