"""Colour and RGBA data: reading with alpha kept or composited, prepared .npz datasets, the dataset cache,
data info and the recipe chosen from the data."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import atelier.data.files as files_module
from atelier.cli import cli
from atelier.config import validate_config
from atelier.data import data_info, open_source, prepare_dataset, recommend_recipe
from atelier.data.info import format_report
from atelier.data.prepare import prepared_meta
from atelier.errors import ConfigError, DataError
from atelier.images import load_image
from atelier.runs import load_config
from conftest import REPO


def _sprite(size: int = 32, colour=(200, 40, 10), seed: int = 0) -> Image.Image:
    """An opaque disc with a soft edge on a fully transparent background (colour under it: green)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size))
    r = np.hypot(yy - size / 2 + rng.uniform(-2, 2), xx - size / 2 + rng.uniform(-2, 2))
    alpha = np.clip((size * 0.35 - r) * 60, 0, 255).astype(np.uint8)
    rgb = np.where(alpha[..., None] > 0, np.array(colour, np.uint8), np.array([0, 255, 0], np.uint8))
    return Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8))


def test_rgba_keep_composite_and_opaque_alpha(tmp_path):
    half = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    half.save(tmp_path / "half.png")
    keep = load_image(tmp_path / "half.png", channels=4)
    assert keep.shape == (8, 8, 4) and (keep[..., 3] == 128).all() and (keep[..., 0] == 255).all()
    white = load_image(tmp_path / "half.png", channels=3)
    black = load_image(tmp_path / "half.png", channels=3, background="#000000")
    # Over white: 255 * a + 255 * (1 - a) = 255 red, 127 green; over black: 128 red, 0 green (not just dropped alpha).
    assert tuple(white[0, 0]) == (255, 127, 127) and tuple(black[0, 0]) == (128, 0, 0)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "rgb.png")
    opaque = load_image(tmp_path / "rgb.png", channels=4)
    assert (opaque[..., 3] == 255).all() and tuple(opaque[0, 0, :3]) == (1, 2, 3)
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.paste(0, (0, 0, 4, 8))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    p4 = load_image(tmp_path / "pal.png", channels=4)
    assert (p4[:, :4, 3] == 0).all() and (p4[:, 4:, 3] == 255).all() and tuple(p4[0, 5, :3]) == (10, 200, 30)
    assert tuple(load_image(tmp_path / "pal.png", channels=3)[0, 0]) == (255, 255, 255)  # transparent -> background
    with pytest.raises(DataError, match="unknown colour 'nope'"):
        load_image(tmp_path / "half.png", channels=3, background="nope")


def test_folder_composite_vs_keep(tmp_path):
    _sprite(seed=0).save(tmp_path / "a.png")
    Image.new("RGB", (32, 32), (9, 9, 200)).save(tmp_path / "b.png")
    keep = open_source(str(tmp_path), channels=4, resolution=16, alpha="keep")
    assert keep.images.shape == (2, 4, 16, 16)
    assert keep.images[0, 3, 0, 0] == 0 and keep.images[0, 3, 8, 8] == 255 and (keep.images[1, 3] == 255).all()
    flat = open_source(str(tmp_path), channels=3, resolution=16, background="#102030")
    assert flat.images.shape == (2, 3, 16, 16)
    assert flat.images[0, :, 0, 0].tolist() == [16, 32, 48]          # transparent corner -> the background colour
    assert flat.images[0, :, 8, 8].tolist() == [200, 40, 10]         # opaque centre keeps its colour
    # Pillow resizes RGBA with premultiplied alpha: the green under the transparent pixels never bleeds in.
    assert int(keep.images[0, 1][keep.images[0, 3] > 64].max()) < 60
    with pytest.raises(DataError, match="alpha 'keep' does not go with 3 channel"):
        open_source(str(tmp_path), channels=3, resolution=16, alpha="keep")
    with zipfile.ZipFile(tmp_path.parent / f"{tmp_path.name}.zip", "w") as zf:
        for name in ("a.png", "b.png"):
            zf.write(tmp_path / name, f"sprites/{name}")
    zipped = tmp_path.parent / f"{tmp_path.name}.zip"
    assert torch.equal(open_source(str(zipped), channels=4, resolution=16).images, keep.images)
    assert torch.equal(open_source(str(zipped), channels=3, resolution=16, background="#102030").images, flat.images)


def test_config_alpha_channels_and_background():
    # The data section on its own (config schema): RGBA needs alpha: keep and the other way round.
    cfg = validate_config({"data": {"channels": 4, "alpha": "keep", "background": "#abcdef"}})
    assert cfg.data.channels == 4 and cfg.data.alpha == "keep"
    for bad, msg in (({"data.channels": 4}, "set data.alpha: keep"), ({"data.alpha": "keep", "data.channels": 3},
                     "set data.channels: 4"), ({"data.background": "mauve-ish"}, "unknown colour"),
                     ({"data.background": "#ff000080"}, "must be opaque")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, bad)
    # A whole run config also checks the model can take 4 channels (the MNIST DCGAN cannot).
    with pytest.raises(ConfigError, match="data.channels must be one of"):
        load_config(None, {"data.channels": 4, "data.alpha": "keep"})


def test_npz_rgba_read_as_rgb_is_composited(tmp_path):
    rgba = np.zeros((2, 4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0
    rgba[1, ..., 3] = 255
    rgba[0, 0, 0] = (100, 50, 0, 128)
    np.savez(tmp_path / "s.npz", images=rgba)
    rgb = open_source(str(tmp_path / "s.npz"), channels=3, resolution=4).images
    assert rgb[0, :, 1, 1].tolist() == [255, 255, 255] and rgb[1, :, 1, 1].tolist() == [200, 0, 0]
    assert rgb[0, :, 0, 0].tolist() == [177, 152, 127]  # 100 * 128/255 + 255 * 127/255, ... (not alpha dropped)
    back = open_source(str(tmp_path / "s.npz"), channels=4, resolution=4).images
    assert torch.equal(back, torch.from_numpy(rgba).permute(0, 3, 1, 2))
    np.savez(tmp_path / "rgb.npz", images=rgba[..., :3])
    assert (open_source(str(tmp_path / "rgb.npz"), channels=4, resolution=4).images[:, 3] == 255).all()


def _class_folder(root, n=3):
    for cls, colour in (("cats", (200, 40, 10)), ("dogs", (10, 40, 200))):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _sprite(colour=colour, seed=i).save(root / cls / f"{i}.png")
    (root / "LICENSE.txt").write_text("CC BY 4.0, The Sprite Team\nmore text\n")


def test_prepared_npz_equals_the_folder_read(tmp_path):
    root = tmp_path / "sprites"
    _class_folder(root)
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n nope")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable file\(s\): dogs/broken.png"):
        out = prepare_dataset(root, 16, 4, alpha="keep", out=tmp_path / "s16.npz")
    with pytest.warns(UserWarning, match="broken.png"):
        folder = open_source(str(root), channels=4, resolution=16, cache=False)
    npz = open_source(str(out), channels=4, resolution=16)
    assert torch.equal(npz.images, folder.images) and torch.equal(npz.labels, folder.labels)
    assert npz.classes == folder.classes == ("cats", "dogs") and npz.names == folder.names
    assert npz.license == folder.license == "CC BY 4.0, The Sprite Team (from LICENSE.txt)"
    meta = prepared_meta(out)
    assert meta["resolution"] == 16 and meta["channels"] == 4 and meta["alpha"] == "keep"
    assert meta["source"] == str(root.resolve()) and meta["n_skipped"] == 1 and len(meta["content_sha256"]) == 64
    with np.load(out) as z:
        assert z["images"].shape == (6, 16, 16, 4) and z["images"].dtype == np.uint8 and list(z["skipped"]) == [
            "dogs/broken.png"]
    # The content hash follows the bytes, not the time stamps.
    with pytest.warns(UserWarning, match="broken.png"):
        again = prepare_dataset(root, 16, 4, out=tmp_path / "again.npz")
    assert prepared_meta(again)["content_sha256"] == meta["content_sha256"]
    with pytest.raises(DataError, match="an .npz file"), pytest.warns(UserWarning):
        prepare_dataset(root, 16, 3, out=tmp_path / "x.zip")


def test_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    root = tmp_path / "sprites"
    _class_folder(root)
    decodes = []
    real = files_module.load_image
    monkeypatch.setattr(files_module, "load_image", lambda *a, **k: decodes.append(1) or real(*a, **k))
    first = open_source(str(root), channels=4, resolution=16)
    assert len(decodes) == 6 and first.prepared and os.path.isfile(first.prepared)
    stamp = os.stat(first.prepared).st_mtime_ns
    second = open_source(str(root), channels=4, resolution=16)
    assert len(decodes) == 6 and torch.equal(second.images, first.images)       # no decode: the cache
    assert os.stat(first.prepared).st_mtime_ns == stamp
    other = open_source(str(root), channels=3, resolution=16)                  # other read options: own entry
    assert len(decodes) == 12 and other.prepared != first.prepared
    _sprite(colour=(0, 255, 0), seed=0).save(root / "cats" / "0.png")           # a changed file
    third = open_source(str(root), channels=4, resolution=16)
    assert len(decodes) == 18 and not torch.equal(third.images, first.images)
    assert third.images[0, 1, 8, 8] == 255 and third.prepared == first.prepared
    (root / "cats" / "new.png").write_bytes((root / "cats" / "1.png").read_bytes())   # an added file
    assert len(open_source(str(root), channels=4, resolution=16)) == 7 and len(decodes) == 25
    open_source(str(root), channels=4, resolution=16, cache=False)
    assert len(decodes) == 32
    (root / "cats" / "bad.png").write_bytes(b"")
    for _ in range(2):  # the warning comes with every open, from the cache too
        with pytest.warns(UserWarning, match="cats/bad.png"):
            open_source(str(root), channels=4, resolution=16)


def _info_folder(root):
    rng = np.random.default_rng(1)
    (root / "photos").mkdir(parents=True)
    (root / "sprites").mkdir()
    for i in range(5):  # smooth random pictures: far from each other
        small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((48, 40), Image.Resampling.BICUBIC).save(root / "photos" / f"p{i}.png")
    # An exact duplicate (same pixels, another format) and a near duplicate (JPEG re-encode).
    Image.open(root / "photos" / "p0.png").save(root / "photos" / "p0-copy.bmp")
    buf = io.BytesIO()
    Image.open(root / "photos" / "p1.png").save(buf, "JPEG", quality=90)
    (root / "photos" / "p1-reencoded.jpg").write_bytes(buf.getvalue())
    _sprite(size=48).save(root / "sprites" / "rgba.png")
    pal = _sprite(size=48, colour=(10, 10, 250), seed=3).convert("RGB").quantize(8)
    pal.save(root / "sprites" / "palette.png", transparency=0)
    (root / "sprites" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def test_data_info_finds_duplicates_alpha_and_classes(tmp_path):
    root = tmp_path / "mixed"
    _info_folder(root)
    r = data_info(str(root))
    assert r.n_files == 10 and r.n_images == 9 and r.skipped == ["sprites/corrupt.png"]
    assert r.classes == {"photos": 7, "sprites": 2}  # readable images per class folder
    assert r.sizes == {"48x40": 7, "48x48": 2} and r.short_side == (40, 40, 48)
    assert r.modes["P"] == 1 and r.modes["RGBA"] == 1 and r.modes["RGB"] == 7
    assert r.with_alpha_channel == 2 and r.with_transparency == 2 and r.fully_opaque == 7
    assert r.exact_duplicates == [["photos/p0-copy.bmp", "photos/p0.png"]]
    near = {(a, b) for a, b, _ in r.near_duplicates}
    assert near == {("photos/p1-reencoded.jpg", "photos/p1.png")}, r.near_duplicates
    text = format_report(r)
    assert "exact dups: 1 group(s)" in text and "photos/p1-reencoded.jpg ~ photos/p1.png" in text
    assert "classes:    2 (photos: 7, sprites: 2)" in text and "transparency used by 2 (22.2%)" in text
    # A stricter threshold drops the re-encode; a prepared .npz of the folder is described the same way.
    assert data_info(str(root), threshold=0.001).near_duplicates == []
    with pytest.warns(UserWarning):
        out = prepare_dataset(root, 32, 4, out=tmp_path / "m.npz")
    rn = data_info(str(out))
    assert rn.kind == "npz" and rn.n_images == 9 and rn.classes == {"photos": 7, "sprites": 2}
    assert [sorted(g) for g in rn.exact_duplicates] == [["photos/p0-copy.bmp", "photos/p0.png"]]


def test_recipe_follows_the_data(tmp_path):
    sprites = tmp_path / "sprites"
    for cls in ("a", "b"):
        (sprites / cls).mkdir(parents=True)
        for i in range(12):
            _sprite(size=128, seed=i, colour=(20 * i, 100, 200 if cls == "a" else 20)).save(sprites / cls / f"{i}.png")
    cpu, why = recommend_recipe(str(sprites), device="cpu", minutes=120)
    assert cpu["data.resolution"] == 64 and cpu["data.channels"] == 4 and cpu["data.alpha"] == "keep"
    assert cpu["model.name"] == "stylegan2" and cpu["model.num_classes"] == 2 and cpu["augment.ada_target"] > 0
    assert cpu["model.width"] < 32 and any("CPU budget caps it at 64" in r for r in why)
    assert recommend_recipe(str(sprites), device="gpu")[0]["data.resolution"] == 128
    # A short CPU time budget (the default 30 minutes) trains at 32 px; a step or image budget keeps 64.
    short, why = recommend_recipe(str(sprites), device="cpu")
    assert short["data.resolution"] == 32 and any("a CPU budget of 30 minutes trains at 32 px" in r for r in why)
    assert recommend_recipe(str(sprites), device="cpu", minutes=None)[0]["data.resolution"] == 64
    assert recommend_recipe(str(sprites), device="gpu", minutes=10)[0]["data.resolution"] == 128
    # A folder of a few thousand: the medium widths on a GPU, the small ones (measured faster to quality) on a CPU.
    big = dataclasses.replace(data_info(str(sprites)), n_images=3_641)
    on_cpu, why_cpu = recommend_recipe(str(sprites), device="cpu", report=big)
    on_gpu, _ = recommend_recipe(str(sprites), device="gpu", report=big)
    assert (on_cpu["model.width"], on_cpu["model.width_max"]) == (16, 128)
    assert (on_gpu["model.width"], on_gpu["model.width_max"]) == (32, 256)
    assert any("would take the medium size; a CPU budget keeps the small one" in r for r in why_cpu)
    gray = tmp_path / "gray"
    gray.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(gray / f"{i}.png")
    g, why = recommend_recipe(str(gray), device="cpu")
    assert g["data.resolution"] == 28 and g["data.channels"] == 1 and g["model.name"] == "dcgan"
    assert "model.num_classes" not in g and any("no class sub-folders" in r for r in why)
    cfg = load_config(None, g)  # a recipe for an existing family is a valid config as it stands
    assert cfg.data.source == str(gray) and cfg.augment.ada_target == 0.6
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (40, 300, 3), dtype=np.uint8)).save(photos / f"{i}.jpg")
    rgb, _ = recommend_recipe(str(photos), device="cpu")
    assert rgb["data.resolution"] == 32 and rgb["data.channels"] == 3 and rgb["data.alpha"] == "composite"


def test_cli_data_prepare_and_info(tmp_path):
    root = tmp_path / "sprites"
    _class_folder(root)
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "prepare", str(root), "--resolution", "16", "--alpha", "keep",
                              "--out", str(tmp_path / "s.npz")])
    assert res.exit_code == 0, res.output
    assert "6 images, 16x16x4 uint8, alpha keep, 2 class(es)" in res.output
    res = runner.invoke(cli, ["data", "info", str(root), "--grid", str(tmp_path / "g.png"), "--recipe"])
    assert res.exit_code == 0, res.output
    assert "classes:    2 (cats: 3, dogs: 3)" in res.output and "sizes:      32x32: 6" in res.output
    assert "size:       32x32 (as read), 4 channel(s)" in res.output and "--set data.alpha=keep" in res.output
    with Image.open(tmp_path / "g.png") as grid:
        assert grid.mode == "RGB"  # RGBA examples drawn over a checkerboard
    js = json.loads(runner.invoke(cli, ["data", "info", str(tmp_path / "s.npz"), "--json"]).output)
    assert js["n_images"] == 6 and js["transparency_share"] == 1.0
    res = runner.invoke(cli, ["data", "prepare", str(root), "--resolution", "16", "--background", "nope"])
    assert res.exit_code == 2 and res.output.startswith("error: unknown colour 'nope'")


@pytest.mark.skipif(not (Path(os.environ.get("ATELIER_DATA", "")) / "style").is_dir(),
                    reason="shared style paintings (ATELIER_DATA/style) not present")
def test_make_tiles_builds_a_class_folder_with_its_licence(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tiles", REPO / "scripts" / "make_tiles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["style", "--out", str(tmp_path / "tiles"), "--side", "128"]) == 0
    r = data_info(str(tmp_path / "tiles"))
    assert len(r.classes) == 7 and r.sizes == {"64x64": r.n_images} and r.n_images >= 7 * 2
    assert r.license.startswith("Reproductions of paintings") and r.fully_opaque == r.n_images
