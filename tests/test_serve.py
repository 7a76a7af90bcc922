"""The studio's HTTP API: every endpoint and error path, limits, concurrency, a schema fuzz pass, the page."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402

from atelier.loaded import Stylizer  # noqa: E402
from atelier.models import Network  # noqa: E402
from atelier.serve import background, create_app  # noqa: E402
from atelier.serve.app import STATIC, Gate, Limits  # noqa: E402
from atelier.serve.registry import ModelStore  # noqa: E402

MODEL = "tiny-dcgan"


@pytest.fixture(scope="module")
def client(tiny_run):
    with TestClient(create_app(tiny_run.parent)) as c:
        yield c


@pytest.fixture(scope="module")
def generator(tiny_run):
    import atelier

    return atelier.load(tiny_run)


def _png(resp) -> tuple[np.ndarray, dict[str, str]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return _decode(resp.content)


def _decode(data: bytes) -> tuple[np.ndarray, dict[str, str]]:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img), dict(img.text)


def _data_url(url: str) -> tuple[np.ndarray, dict[str, str]]:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return _decode(base64.b64decode(url[len(prefix):]))


def _detail(resp, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    detail = resp.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


# ----------------------------------------------------------------------------------------- listing
def test_models_lists_capabilities_card_and_limits(client):
    data = client.get("/api/models").json()
    (m,) = data["models"]
    assert m["name"] == MODEL and m["kind"] == "generator" and m["capabilities"] == ["generate"]
    assert m["conditional"] is False
    assert m["resolution"] == 28 and m["channels"] == 1 and m["z_dim"] == 16 and m["step"] == 6
    assert m["classes"] is None and "# Model card" in m["card"]
    assert data["limits"]["max_batch"] == 64 and data["verify"] is True
    assert client.get(f"/api/models/{MODEL}").json()["name"] == MODEL
    assert "available: tiny-dcgan" in _detail(client.get("/api/models/nope"), 404)
    assert client.get("/api/health").json()["models"] == 1


# -------------------------------------------------------------------------------------- generation
def test_generate_png_grid_carries_provenance_and_seeds(client):
    resp = client.post("/api/generate", json={"model": MODEL, "seeds": [3, 17, 42, 5]})
    pixels, meta = _png(resp)
    assert pixels.shape == (2 + 2 * 30, 2 + 2 * 30)  # a 2x2 grid of 28 px images, padded by 2
    assert resp.headers["x-atelier-seed"] == "3,17,42,5"
    assert meta["DigitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert meta["atelier:workflow"] == "studio-generate" and meta["atelier:seed"] == "3,17,42,5"
    assert meta["atelier:run"] == MODEL and meta["atelier:truncation"] == "1.0"
    assert "trainedAlgorithmicMedia" in meta["XML:com.adobe.xmp"]


def test_generate_json_matches_the_python_api(client, generator):
    data = client.post("/api/generate", json={"model": MODEL, "n": 3, "seed": 10, "format": "json"}).json()
    assert [im["seed"] for im in data["images"]] == [10, 11, 12]
    expected = generator.sample(seeds=[10, 11, 12])
    for im, ref in zip(data["images"], expected, strict=True):
        pixels, meta = _data_url(im["image"])
        assert np.array_equal(pixels, ref[0].numpy())  # the same seed is the same picture everywhere
        assert meta["atelier:seed"] == str(im["seed"])
    single, _ = _png(client.post("/api/generate", json={"model": MODEL, "seeds": [11], "scale": 4}))
    # 112 px: the image carries the QIM watermark (64-127 px), an imperceptible difference
    from atelier.provenance.watermark import psnr

    assert single.shape == (112, 112) and psnr(single[::4, ::4], expected[1][0].numpy()) >= 38.0


def test_truncation_zero_gives_the_mean_image_for_every_seed(client):
    data = client.post("/api/generate", json={"model": MODEL, "n": 4, "truncation": 0.0, "format": "json"}).json()
    first = _data_url(data["images"][0]["image"])[0]
    assert all(np.array_equal(_data_url(im["image"])[0], first) for im in data["images"][1:])
    varied = client.post("/api/generate", json={"model": MODEL, "n": 4, "format": "json"}).json()
    assert not np.array_equal(_data_url(varied["images"][0]["image"])[0], _data_url(varied["images"][1]["image"])[0])


def test_variations_and_interpolation(client, generator):
    base = generator.sample(seeds=[7])[0, 0].numpy()
    data = client.post("/api/variations", json={"model": MODEL, "seed": 7, "n": 3, "strength": 0.0,
                                                "format": "json"}).json()
    assert [im["variation"] for im in data["images"]] == [0, 1, 2]
    assert all(np.array_equal(_data_url(im["image"])[0], base) for im in data["images"])
    pixels, meta = _png(client.post("/api/variations", json={"model": MODEL, "seed": 7, "n": 4, "strength": 0.5}))
    assert meta["atelier:workflow"] == "studio-variations" and meta["atelier:strength"] == "0.5"

    ends = generator.sample(seeds=[3, 17])
    data = client.post("/api/interpolate", json={"model": MODEL, "seed_a": 3, "seed_b": 17, "frames": 5,
                                                 "mode": "lerp", "format": "json"}).json()
    frames = [_data_url(im["image"])[0] for im in data["images"]]
    assert len(frames) == 5 and np.array_equal(frames[0], ends[0, 0].numpy())
    assert np.array_equal(frames[-1], ends[1, 0].numpy())
    strip, meta = _png(client.post("/api/interpolate", json={"model": MODEL, "seed_a": 3, "seed_b": 17, "frames": 6}))
    assert strip.shape == (32, 2 + 6 * 30) and meta["atelier:mode"] == "slerp"


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("body, status, pattern", [
    ({"model": "nope", "n": 2}, 404, "no model named 'nope'"),
    ({"model": MODEL, "n": 65}, 422, "less than or equal to 64"),
    ({"model": MODEL, "seeds": list(range(65))}, 422, "at most 64"),
    ({"model": MODEL, "seeds": []}, 422, "at least 1"),
    ({"model": MODEL, "seeds": [-1]}, 422, "greater than or equal to 0"),
    ({"model": MODEL, "seeds": [2**31]}, 422, "less than or equal"),
    ({"model": MODEL, "truncation": 3}, 422, "truncation"),
    ({"model": MODEL, "truncation": "NaN"}, 422, "finite number"),
    ({"model": MODEL, "label": 1}, 400, "has no classes"),
    ({"model": MODEL, "colour": "red"}, 422, "Extra inputs are not permitted"),
    ({"model": MODEL, "format": "tiff"}, 422, "format"),
    ({"model": MODEL, "scale": 17}, 422, "scale"),
    ({"n": 2}, 422, "model"),
    ([1, 2], 422, "valid dictionary"),
])
def test_generate_rejects_bad_requests_with_4xx(client, body, status, pattern):
    assert re.search(pattern, _detail(client.post("/api/generate", json=body), status))


def test_malformed_bodies_and_other_endpoints_errors(client):
    bad_json = client.post("/api/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    assert client.post("/api/generate", content=b"model=x", headers={"content-type": "text/plain"}).status_code == 422
    assert "seed_b" in _detail(client.post("/api/interpolate", json={"model": MODEL, "seed_a": 1}), 422)
    assert "frames" in _detail(client.post("/api/interpolate", json={"model": MODEL, "seed_a": 1, "seed_b": 2,
                                                                      "frames": 1}), 422)
    assert "mode" in _detail(client.post("/api/interpolate", json={"model": MODEL, "seed_a": 1, "seed_b": 2,
                                                                    "mode": "cubic"}), 422)
    assert "strength" in _detail(client.post("/api/variations", json={"model": MODEL, "seed": 1, "strength": -1}), 422)
    assert client.get("/api/generate").status_code == 405
    assert client.get("/api/nothing-here").status_code == 404


def test_server_limits_are_enforced(tiny_run):
    limits = Limits(max_batch=4, max_frames=3, max_upload_bytes=4096, max_output_pixels=100_000)
    with TestClient(create_app(tiny_run.parent, limits=limits)) as c:
        assert "at most 4 per request" in _detail(c.post("/api/generate", json={"model": MODEL, "n": 5}), 400)
        assert "at most 4 per request" in _detail(c.post("/api/variations", json={"model": MODEL, "seed": 1,
                                                                                   "n": 8}), 400)
        assert "at most 3 per request" in _detail(c.post("/api/interpolate", json={"model": MODEL, "seed_a": 1,
                                                                                    "seed_b": 2, "frames": 4}), 400)
        big = c.post("/api/generate", content=b" " * 5000, headers={"content-type": "application/json"})
        assert big.status_code == 413
        assert c.post("/api/generate", json={"model": MODEL, "n": 4}).status_code == 200
        assert "this server returns at most 100,000" in _detail(c.post("/api/generate", json={
            "model": MODEL, "n": 4, "scale": 6}), 400)


def test_image_tools_and_verify_say_when_they_are_not_available(client, monkeypatch):
    from atelier import provenance

    monkeypatch.delattr(provenance, "verify_image")
    png = _png_bytes(np.zeros((8, 8), np.uint8))
    for endpoint in ("stylize", "translate"):
        resp = client.post(f"/api/{endpoint}", data={"model": MODEL}, files={"file": ("a.png", png, "image/png")})
        assert f"no model of this kind is loaded: {endpoint}" in _detail(resp, 404)
        assert client.post(f"/api/{endpoint}", data={"model": MODEL}).status_code == 422  # no file
    resp = client.post("/api/verify", files={"file": ("a.png", png, "image/png")})
    assert "provenance verification is not available in this build" in _detail(resp, 404)


def test_gate_answers_429_when_the_line_is_full():
    import threading

    from fastapi import HTTPException

    gate = Gate(Limits(max_concurrent=1, max_waiting=0))
    with pytest.raises(HTTPException) as exc:
        gate.run(lambda: 1)
    assert exc.value.status_code == 429 and "busy" in exc.value.detail
    gate = Gate(Limits(max_concurrent=1, max_waiting=4, wait_seconds=0.1))
    release = threading.Event()
    blocker = threading.Thread(target=gate.run, args=(release.wait,))
    blocker.start()
    time.sleep(0.05)
    with pytest.raises(HTTPException) as exc:  # the one worker is busy: a queued request gives up with 429
        gate.run(lambda: 1)
    assert exc.value.status_code == 429 and exc.value.headers["Retry-After"] == "1"
    release.set()
    blocker.join()
    assert gate.run(lambda: 42) == 42


# -------------------------------------------------------------------- a registered image-to-image kind
def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG file whose header claims a huge image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class _ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ToyNet(Network):
    def __init__(self, cfg: _ToyConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        self.gain = torch.nn.Parameter(torch.ones(()))


class _Invert(Stylizer):
    """Stands in for a style network: a new kind of model in the studio is a loaded-model class."""

    def __call__(self, image, size=None):
        return 255 - np.asarray(image)


def _toy_stylizer_run(run_dir: Path) -> Path:
    from atelier import families
    from atelier.checkpoint import CheckpointManager
    from atelier.models import ModelSpec, register
    from atelier.runs import Run, load_config

    register(ModelSpec(name="toy-invert", config=_ToyConfig, networks={"net": _ToyNet}))
    families.register(families.Family("toy-invert", families.get("fast-style").task, _Invert, slots=("net",)))
    cfg = load_config(None, {"model.name": "toy-invert", "data.channels": 3, "data.resolution": 32})
    Run(run_dir).write_config(cfg)
    net = _ToyNet(_ToyConfig(), resolution=32, channels=3)
    CheckpointManager(run_dir / "checkpoints").save(1, {"net": net.state_dict()})
    return run_dir


def test_a_registered_kind_gets_the_upload_endpoints(tiny_run, tmp_path):
    store = ModelStore(tiny_run.parent)
    store.add("wave", _toy_stylizer_run(tmp_path / "wave"))
    with TestClient(create_app(store, limits=Limits(max_upload_bytes=200_000, max_upload_pixels=512 * 512))) as c:
        listed = {m["name"]: m for m in c.get("/api/models").json()["models"]}
        assert listed["wave"]["capabilities"] == ["stylize"]
        img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
        pixels, meta = _png(c.post("/api/stylize", data={"model": "wave"},
                                   files={"file": ("photo.png", _png_bytes(img), "image/png")}))
        assert np.array_equal(pixels, 255 - img)
        assert meta["atelier:workflow"] == "studio-stylize" and meta["atelier:source"] == "photo.png"
        assert meta["DigitalSourceType"].endswith("trainedAlgorithmicMedia")

        def upload(data: bytes, model: str = "wave"):
            return c.post("/api/stylize", data={"model": model}, files={"file": ("x.png", data, "image/png")})

        assert "not a readable image" in _detail(upload(b"this is not an image"), 400)
        assert "decompression bomb" in _detail(upload(_bomb_png()), 400)
        assert "1000x1000 = 1,000,000 pixels; the limit is 262,144" in _detail(upload(_bomb_png(1000, 1000)), 400)
        assert "the upload is empty" in _detail(upload(b""), 400)
        assert upload(b"\0" * 300_000).status_code == 413
        assert "no stylize model named 'tiny-dcgan'" in _detail(upload(_png_bytes(img), MODEL), 404)
        assert "does not generate" in _detail(c.post("/api/generate", json={"model": "wave", "n": 1}), 400)
        assert "no model of this kind is loaded: translate" in _detail(
            c.post("/api/translate", data={"model": "wave"}, files={"file": ("x.png", _png_bytes(img))}), 404)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_conditional_gan_is_served_with_its_classes(tiny_cgan_run, backend):
    import atelier

    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    g = atelier.load(tiny_cgan_run)
    with TestClient(create_app(tiny_cgan_run.parent, backend=backend)) as c:
        info = c.get("/api/models/tiny-cgan").json()
        assert info["kind"] == "generator" and info["conditional"] and info["classes"] == [str(i) for i in range(10)]
        pixels, meta = _png(c.post("/api/generate", json={"model": "tiny-cgan", "seeds": [5], "label": 7}))
        assert meta["atelier:label"] == "7"
        expected = g.sample(seeds=[5], labels=7)[0, 0].numpy()
        assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1  # the label reached the generator
        other, _ = _png(c.post("/api/generate", json={"model": "tiny-cgan", "seeds": [5], "label": 2}))
        assert not np.array_equal(other, pixels)
        assert "out of range" in _detail(c.post("/api/generate", json={"model": "tiny-cgan", "n": 2, "label": 10}),
                                         400)


def test_verify_reports_metadata_and_watermark_of_a_served_image(client):
    from atelier.provenance.watermark import MIN_SIZE

    scale = -(-MIN_SIZE // 28)  # large enough to carry the invisible watermark
    image = client.post("/api/generate", json={"model": MODEL, "seeds": [1], "scale": scale}).content
    with Image.open(io.BytesIO(image)) as img:
        claimed = img.text["atelier:watermark"]
    report = client.post("/api/verify", files={"file": ("seed1.png", image, "image/png")}).json()
    assert report["recognised"] is True and report["image"] == "seed1.png"
    assert report["metadata"]["atelier:seed"] == "1"
    assert report["watermark"]["detected"] is True and report["watermark"]["matches_metadata"] is True
    assert report["watermark"]["run"] == MODEL and claimed != "none"
    small = client.post("/api/generate", json={"model": MODEL, "seeds": [1]}).content  # 28 px: metadata only
    with Image.open(io.BytesIO(small)) as img:
        assert img.text["atelier:watermark"].startswith("none")
    assert "not a readable image" in _detail(client.post("/api/verify", files={"file": ("x.png", b"junk")}), 400)
    assert client.post("/api/verify", files={"file": ("../../x\0.png", b"junk")}).status_code == 400


def test_translate_endpoint_with_a_pix2pix_run(tmp_path, tiny_p2p):  # noqa: F811
    import atelier

    atelier.train(None, tmp_path / "runs" / "p2p", tiny_p2p, progress=False)
    photo = np.asarray(Image.open(tmp_path / "test" / "0.png").convert("RGB"))[:, :32]
    with TestClient(create_app(tmp_path / "runs")) as c:
        (m,) = c.get("/api/models").json()["models"]
        assert m["kind"] == "translator" and m["capabilities"] == ["translate"]
        pixels, meta = _png(c.post("/api/translate", data={"model": "p2p"},
                                   files={"file": ("facade.png", _png_bytes(photo), "image/png")}))
        assert pixels.shape == photo.shape  # the upload's size
        expected = np.asarray(atelier.load(tmp_path / "runs" / "p2p")(photo))
        assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1
        assert meta["atelier:workflow"] == "studio-translate" and meta["atelier:source"] == "facade.png"
        assert "does not generate" in _detail(c.post("/api/generate", json={"model": "p2p", "n": 1}), 400)
    out = tmp_path / "p2p.onnx"
    from atelier.api import export

    assert export(tmp_path / "runs" / "p2p", out=out).max_abs_diff <= 1e-4


# ---------------------------------------------------------------------------------- ONNX backend
def test_onnx_backend_generates_the_same_images(tiny_run, client):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    body = {"model": MODEL, "seeds": [0, 1, 2, 3], "format": "json"}
    with TestClient(create_app(tiny_run.parent, backend="onnx")) as c:
        assert c.get(f"/api/models/{MODEL}").json()["backend"] == "onnx"
        got = c.post("/api/generate", json=body).json()["images"]
    ref = client.post("/api/generate", json=body).json()["images"]
    for a, b in zip(got, ref, strict=True):
        pa, meta = _data_url(a["image"])
        assert np.abs(pa.astype(int) - _data_url(b["image"])[0].astype(int)).max() <= 1
        assert meta["atelier:backend"] == "onnx"


# ------------------------------------------------------------------------------ loopback, real server
@pytest.fixture(scope="module")
def server(tiny_run):
    with background(create_app(tiny_run.parent)) as url:
        yield url


def test_fifty_concurrent_generate_requests_all_succeed(server):
    import urllib.request

    def one(i: int) -> tuple[int, bytes]:
        body = json.dumps({"model": MODEL, "n": 4, "seed": i}).encode()
        req = urllib.request.Request(f"{server}/api/generate", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    assert [status for status, _ in results] == [200] * 50
    assert len({body for _, body in results}) > 1  # different seeds, different grids
    with Image.open(io.BytesIO(results[0][1])) as img:
        assert img.text["atelier:seed"] == "0,1,2,3"


def _fuzz(op, mode, server: str, budget: float, failures: list[str]) -> int:
    """Send up to 12 generated requests for one operation; record every 5xx. Returns how many were sent."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    sent = 0

    @settings(max_examples=12, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def check(case):
        nonlocal sent
        if time.monotonic() > budget:
            return
        if mode == GenerationMode.POSITIVE and isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = MODEL  # reach the generation code, not only the 404
        resp = case.call(base_url=server, timeout=30)
        sent += 1
        if resp.status_code >= 500:
            failures.append(f"{op.method.upper()} {op.path} {case.body!r:.200} -> {resp.status_code}")

    try:
        check()
    except Unsatisfiable:  # no invalid request exists for an operation without parameters (GET /api/models)
        pass
    return sent


@pytest.mark.slow
def test_schema_fuzz_never_yields_a_5xx(server):
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    budget = time.monotonic() + 40  # bounded in time as well as in count
    failures: list[str] = []
    sent = 0
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += _fuzz(result.ok(), mode, server, budget, failures)
    print(f"schema fuzz: {sent} requests")
    assert sent >= 40, sent
    assert not failures, failures


# ------------------------------------------------------------------------------------------ the page
def test_page_and_static_files_work_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/studio.js">' in page.text
    for name in ("studio.js", "studio.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        # No CDN, no web fonts: the only URL is the SVG namespace of the inline favicon.
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path.name, urls)
        assert "@import" not in text and "fonts.googleapis" not in text
        if path.suffix == ".css":  # a stray brace silently drops the rule after it
            assert text.count("{") == text.count("}"), path.name
    assert client.get("/docs").status_code == 200
    assert "/api/generate" in client.get("/openapi.json").json()["paths"]


def test_cli_serve_help_defaults_to_loopback_and_errors(tmp_path):
    from click.testing import CliRunner

    from atelier.cli import cli

    out = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "127.0.0.1" in out and "7860" in out and "--backend" in out
    res = CliRunner().invoke(cli, ["serve", "--runs", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "error: runs folder not found" in res.output


def test_missing_extra_is_one_clear_line():
    from atelier.errors import MissingExtraError
    from atelier.utils import require_extra

    with pytest.raises(MissingExtraError, match=r"install it with: pip install 'atelier\[serve\]'"):
        require_extra("atelier_no_such_module", "serve", "the studio")


def test_a_run_that_cannot_load_is_listed_with_its_error(tiny_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "good")
    shutil.copytree(tiny_run, runs / "broken")
    for ckpt in (runs / "broken" / "checkpoints").glob("step-*"):
        ckpt.write_bytes(b"truncated")
    with TestClient(create_app(runs)) as c:
        listed = {m["name"]: m for m in c.get("/api/models").json()["models"]}
        assert listed["good"]["capabilities"] == ["generate"]
        assert listed["broken"]["capabilities"] == [] and listed["broken"]["error"]
        assert c.post("/api/generate", json={"model": "broken", "n": 1}).status_code == 400



def test_a_trained_fast_style_run_is_served_for_stylize(tmp_path):
    from conftest import small_photo as _photo
    from conftest import tiny_style_run as _tiny_run

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        _photo(photos / f"{i}.png", 40)
    style = _photo(tmp_path / "style.png", 40)
    _tiny_run(tmp_path / "runs" / "wave", photos, style, steps=2)
    store = ModelStore(tmp_path / "runs")
    with TestClient(create_app(store)) as c:
        listed = {m["name"]: m for m in c.get("/api/models").json()["models"]}
        assert listed["wave"]["capabilities"] == ["stylize"], listed
        img = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
        pixels, meta = _png(c.post("/api/stylize", data={"model": "wave"},
                                   files={"file": ("photo.png", _png_bytes(img), "image/png")}))
        assert pixels.shape[:2] == (24, 40)  # the upload's own size
        assert meta["DigitalSourceType"].endswith("trainedAlgorithmicMedia")
