"""The studio serves a user's own foundation model: GET /api/foundation, POST /api/t2i (tiny random SD 1.x-shaped
pipeline from tests/tiny_sd.py)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra")
pytest.importorskip("diffusers", reason="the diffusion extra")
pytest.importorskip("transformers", reason="the diffusion extra")

from fastapi.testclient import TestClient  # noqa: E402

import tiny_sd  # noqa: E402
from atelier.provenance import read_metadata  # noqa: E402
from atelier.serve import create_app  # noqa: E402
from atelier.serve.gate import Limits  # noqa: E402


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-foundation")
    return tiny_sd.build_folder(root)


@pytest.fixture
def client(sd, tmp_path):
    (tmp_path / "runs").mkdir()
    with TestClient(create_app(tmp_path / "runs", foundation=[sd], limits=Limits(max_output_pixels=64 * 64 * 4))) as c:
        yield c


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img)


def _decode(data_url: str) -> bytes:
    return base64.b64decode(data_url.split(",", 1)[1])


def test_foundation_models_are_listed_with_their_controls(client, sd):
    models = client.get("/api/foundation").json()["models"]
    assert len(models) == 1
    m = models[0]
    assert (m["name"], m["kind"], m["capabilities"], m["layout"]) == ("tiny-sd", "foundation", ["t2i"], "folder")
    assert m["default_size"] == [64, 64] and m["size_multiple"] == 8 and m["default_sampler"] == "DDIMScheduler"
    assert "dpm++" in m["samplers"] and len(m["weights_sha256"]) == 64


def test_t2i_returns_images_with_provenance_and_the_gallery_remakes_them(client, tmp_path):
    body = {"model": "tiny-sd", "prompt": "a cat", "negative": "blurry", "steps": 2, "guidance": 5,
            "sampler": "euler", "seed": 4, "n": 2, "format": "json", "save": True}
    r = client.post("/api/t2i", json=body)
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    assert [im["seed"] for im in images] == [4, 5]
    png = _decode(images[1]["image"])
    (tmp_path / "x.png").write_bytes(png)
    meta = read_metadata(tmp_path / "x.png")
    assert (meta["atelier:prompt"], meta["atelier:negative_prompt"], meta["atelier:seed"],
            meta["atelier:sampler"], meta["atelier:workflow"]) == ("a cat", "blurry", "5", "euler", "studio-t2i")
    record = client.get(f"/api/gallery/{images[1]['gallery_id']}").json()
    settings = record["settings"]
    assert settings["endpoint"] == "/api/t2i" and settings["body"]["seed"] == 5 and settings["body"]["n"] == 1
    again = client.post(settings["endpoint"], json=settings["body"])       # reopen: the same image
    assert again.status_code == 200 and again.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(_pixels(again.content), _pixels(png))


def test_t2i_png_grid_and_sizes(client):
    r = client.post("/api/t2i", json={"model": "tiny-sd", "prompt": "a fox", "steps": 2, "n": 2, "width": 32,
                                      "height": 48})
    assert r.status_code == 200 and r.headers["x-atelier-seed"] == "0,1"
    assert _pixels(r.content).shape == (48 + 4, 2 * 32 + 6, 3)               # a grid of two, 2 px gaps


@pytest.mark.parametrize(("body", "status", "pattern"), [
    ({"model": "nope", "prompt": "x"}, 404, "no foundation model named 'nope'; available: tiny-sd"),
    ({"model": "tiny-sd", "prompt": "x", "width": 60}, 400, "multiples of 8"),
    ({"model": "tiny-sd", "prompt": "x", "n": 5}, 400, "pixels per request"),
    ({"model": "tiny-sd", "prompt": ""}, 422, "at least 1 character"),
    ({"model": "tiny-sd", "prompt": "x", "sampler": "lms"}, 422, "Input should be"),
    ({"model": "tiny-sd", "prompt": "x", "colour": 1}, 422, "Extra inputs"),
])
def test_t2i_rejects_bad_requests(client, body, status, pattern):
    r = client.post("/api/t2i", json={**body, "steps": 1})
    assert r.status_code == status and pattern in r.text, r.text


def test_no_foundation_routes_without_models(tmp_path):
    (tmp_path / "runs").mkdir()
    with TestClient(create_app(tmp_path / "runs")) as c:
        assert c.get("/api/foundation").status_code == 404
