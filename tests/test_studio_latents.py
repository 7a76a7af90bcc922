"""The studio's latent tools: truncation in w for a StyleGAN-type model, the style-mixing grid, direction sliders over
a seed's image or a projected upload, and the clear 4xx answers to what they cannot do."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import atelier  # noqa: E402
from atelier.api.sample import mix_cells  # noqa: E402
from atelier.images import make_grid  # noqa: E402
from atelier.inversion import find_directions, move, render  # noqa: E402
from atelier.latent import to_uint8  # noqa: E402
from atelier.serve import create_app  # noqa: E402
from atelier.serve.settings import StudioSettings  # noqa: E402
from test_stylegan2_task import TINY_SG, sprites  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny StyleGAN2 run (RGB) beside the session's tiny DCGAN, in one folder of runs."""
    root = tmp_path_factory.mktemp("latents")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_CACHE", str(root / "cache"))
        atelier.train(None, root / "runs" / "sg", {**TINY_SG, "data.channels": 3, "data.alpha": "composite",
                                                   "data.source": str(sprites(root / "sprites"))}, progress=False)
    return root / "runs"


@pytest.fixture
def studio(runs, tiny_run, tmp_path):
    link = runs / tiny_run.name
    if not link.exists():
        link.symlink_to(tiny_run, target_is_directory=True)
    with TestClient(create_app(runs, settings=StudioSettings(home=tmp_path / "home"))) as c:
        yield c


def _png(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    with Image.open(io.BytesIO(resp.content)) as im:
        return np.asarray(im)


def _chw(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 as a decoded PNG's array: (H, W, C), or (H, W) for one channel."""
    a = image.permute(1, 2, 0).numpy()
    return a[:, :, 0] if a.shape[2] == 1 else a


def test_the_studio_truncates_a_stylegan_in_w_not_by_scaling_z(studio, runs):
    g = atelier.load(runs / "sg")
    z = g.latents(seeds=[3])
    got = _png(studio.post("/api/generate", json={"model": "sg", "seeds": [3], "truncation": 0.5}))
    assert np.array_equal(got, _chw(g.generate(z, psi=0.5)[0]))
    assert not np.array_equal(got, _chw(g.generate(z * 0.5)[0]))  # what scaling z (the old way) would draw
    info = studio.get("/api/models/sg").json()
    assert info["truncation"] and info["mixing"]["default"] == 16 and 16 in info["mixing"]["sizes"]


def test_the_mixing_grid_is_the_cli_grid_and_refuses_a_model_without_mapping(studio, runs, tiny_run):
    g = atelier.load(runs / "sg")
    got = _png(studio.post("/api/mix", json={"model": "sg", "rows": [1, 2], "cols": [7, 8, 9], "crossover": 8}))
    want = np.asarray(make_grid(mix_cells(g, [1, 2], [7, 8, 9], 8), nrow=4)).astype(int)
    other = np.asarray(make_grid(mix_cells(g, [1, 2], [7, 8, 9], 16), nrow=4)).astype(int)
    # The grid is big enough to carry the invisible watermark, which moves pixels by a few levels (2 on average
    # here); another crossover moves them by 24 on average.
    assert got.shape == want.shape and np.abs(got - want).mean() < 4 < 12 < np.abs(got - other).mean()
    resp = studio.post("/api/mix", json={"model": tiny_run.name, "rows": [1], "cols": [2]})
    assert resp.status_code == 400 and "mapping network" in resp.json()["detail"]
    assert studio.post("/api/mix", json={"model": "sg", "rows": [1], "cols": [2], "crossover": 5}).status_code == 400
    assert studio.post("/api/mix", json={"model": "sg", "rows": list(range(9)), "cols": [2]}).status_code == 422


@pytest.mark.parametrize("name", ["sg", "tiny"])
def test_direction_sliders_move_a_seed_image_and_zero_amounts_give_it_back(studio, runs, tiny_run, name):
    name = tiny_run.name if name == "tiny" else name
    g = atelier.load(runs / name)
    listed = studio.get(f"/api/models/{name}/directions", params={"method": "sefa", "k": 3}).json()
    assert [d["index"] for d in listed["directions"]] == [0, 1, 2]
    values = [d["value"] for d in listed["directions"]]
    assert values == sorted(values, reverse=True)  # strongest first
    own = _png(studio.post("/api/directions", json={"model": name, "seed": 5, "amounts": [0, 0, 0]}))
    assert np.array_equal(own, _chw(g.sample(seeds=[5])[0]))
    moved = _png(studio.post("/api/directions", json={"model": name, "seed": 5, "amounts": [0, 2.5]}))
    assert not np.array_equal(moved, own)
    # One slider is atelier edit-latent's move along that direction.
    d = find_directions(g.network, "sefa")
    net = g.network
    if name == "sg":
        lat, space = net.mapping(g.latents(seeds=[5]))[0, 0], "w"
    else:
        lat, space = g.latents(seeds=[5])[0], "z"
    with torch.no_grad():
        want = to_uint8(render(net, move(lat, d, 1, torch.tensor([2.5])), space).clamp(-1, 1))[0]
    assert np.array_equal(moved, _chw(want))


def test_a_projected_upload_comes_back_as_a_latent_the_sliders_move(studio, runs):
    g = atelier.load(runs / "sg")
    target = g.sample(seeds=[11])[0]
    buf = io.BytesIO()
    Image.fromarray(_chw(target)).save(buf, format="PNG")
    resp = studio.post("/api/project", data={"model": "sg", "steps": "20"},
                       files={"file": ("me.png", buf.getvalue(), "image/png")})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["space"] == "w" and len(out["latent"]) == g.network.w_dim and out["steps"] == 20
    assert out["psnr"] > 10 and out["distance"]
    recon = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["reconstruction"].split(",", 1)[1]))))
    again = _png(studio.post("/api/directions", json={"model": "sg", "latent": out["latent"], "amounts": [0]}))
    assert np.array_equal(again, recon)  # the latent alone redraws the reconstruction (no noise maps)


def test_latent_tools_answer_bad_requests_with_a_4xx(studio, runs, tiny_run):
    post = studio.post
    assert post("/api/directions", json={"model": "sg", "amounts": [1]}).status_code == 400        # no seed, no latent
    assert post("/api/directions", json={"model": "sg", "seed": 1, "latent": [0.0] * 8,
                                         "amounts": [1]}).status_code == 400
    assert post("/api/directions", json={"model": "sg", "seed": 1, "amounts": [0] * 9}).status_code == 422
    assert post("/api/directions", json={"model": "sg", "seed": 1, "amounts": [99]}).status_code == 422
    bad = post("/api/directions", json={"model": "sg", "latent": [0.0] * 5, "amounts": [1]})
    assert bad.status_code == 400 and "wrong latent shape" in bad.json()["detail"]
    ragged = post("/api/directions", json={"model": "sg", "latent": [[0.0, 1.0], [2.0]], "amounts": [1]})
    assert ragged.status_code == 400
    assert post("/api/directions", json={"model": "nope", "seed": 1, "amounts": [1]}).status_code == 404
    no_classes = post("/api/directions", json={"model": "sg", "seed": 1, "amounts": [1], "method": "class"})
    assert no_classes.status_code == 400
    big = post("/api/project", data={"model": "sg", "steps": "5000"}, files={"file": ("a.png", b"x", "image/png")})
    assert big.status_code == 422
    corrupt = post("/api/project", data={"model": "sg"}, files={"file": ("a.png", b"not a png", "image/png")})
    assert corrupt.status_code == 400


def test_a_stylegan_walks_linearly_in_w_in_python_the_cli_and_the_studio(studio, runs, tmp_path):
    g = atelier.load(runs / "sg")
    net = g.network
    z = g.latents(seeds=[3, 9])
    frames = g.walk(z, 5, psi=0.8)
    with torch.no_grad():
        ws = net.mapping(z, psi=0.8)
        middle = to_uint8(net.synthesis(ws.mean(0, keepdim=True)))[0]     # halfway in w
        ends = to_uint8(net.synthesis(ws))
    assert frames.shape[0] == 5 and torch.equal(frames[0], ends[0]) and torch.equal(frames[-1], ends[1])
    assert torch.equal(frames[2], middle)
    r = studio.post("/api/interpolate", json={"model": "sg", "seed_a": 3, "seed_b": 9, "frames": 5,
                                              "truncation": 0.8, "format": "json"})
    assert r.status_code == 200, r.text
    third = r.json()["images"][2]["image"]
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(third.split(",", 1)[1]))))
    assert np.array_equal(got, _chw(middle))
    assert studio.post("/api/interpolate", json={"model": "sg", "seed_a": 3, "seed_b": 9,
                                                 "steps": 4}).status_code == 400
    out, n = atelier.interpolate(runs / "sg", [3, 9], tmp_path / "walk.png", frames=5, psi=0.8)
    assert n == 5 and out.is_file()
