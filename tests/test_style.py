"""Neural style transfer: Gatys optimisation, the fast network and its trainer, feature networks, bad input."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import atelier
from atelier.api import train_style
from atelier.cli import cli
from atelier.errors import ImageError, RunError
from atelier.loaded import Stylizer
from atelier.models import load_pretrained
from atelier.models.fast_style import FastStyleConfig, TransformerNet
from atelier.style.features import RandomFeatures, VGG19Features, build_features
from atelier.style.gatys import PerceptualLoss, image_to_tensor, rgb_to_yuv, stylize
from atelier.weights import WeightsError, resolve_weights
from conftest import DATA_REASON, SHARED_DATA, small_photo, tiny_style_run

CONTENT = SHARED_DATA / "content"
STYLE = SHARED_DATA / "style"
needs_data = pytest.mark.skipif(not (CONTENT / "chelsea.png").is_file(), reason=DATA_REASON)


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    return small_photo(tmp_path / "content.png"), small_photo(tmp_path / "style.png")


# ------------------------------------------------------------------------------------------- Gatys
def test_style_and_content_losses_fall(pair):
    content, style = pair
    net = RandomFeatures(channels=16)
    runs = {}
    for name, weights in (("style", dict(content_weight=0.0)), ("content", dict(style_weight=0.0)), ("both", {})):
        runs[name] = stylize(content, style, size=32, steps=15, init="noise", features=net, progress=False,
                             seed=0, **weights)
    # Each term alone is driven down from noise, and together the weighted total falls.
    assert runs["style"].losses["style"] < 0.3 * runs["style"].initial_losses["style"]
    assert runs["content"].losses["content"] < 0.3 * runs["content"].initial_losses["content"]
    both = runs["both"]
    assert both.losses["total"] < 0.5 * both.initial_losses["total"]
    assert both.losses["style"] < 0.5 * both.initial_losses["style"]
    assert both.image.size == (32, 21)


def test_lbfgs_also_lowers_the_loss(pair):
    content, style = pair
    r = stylize(content, style, size=24, steps=4, optimizer="lbfgs", features=RandomFeatures(channels=16),
                progress=False)
    assert r.losses["total"] < 0.7 * r.initial_losses["total"]


def test_preserve_color_keeps_the_content_colours(pair):
    content, style = pair
    kwargs = dict(size=48, steps=15, features=RandomFeatures(channels=16), progress=False, style_weight=5.0)
    c = rgb_to_yuv(image_to_tensor(content, 48))[0, 1:].flatten(1)
    plain = rgb_to_yuv(image_to_tensor(stylize(content, style, **kwargs).image))[0, 1:].flatten(1)
    kept = rgb_to_yuv(image_to_tensor(stylize(content, style, preserve_color=True, **kwargs).image))[0, 1:].flatten(1)

    def gap(x):  # distance of the colour channels' mean and std from the content's
        return float((x.mean(1) - c.mean(1)).abs().sum() + (x.std(1) - c.std(1)).abs().sum())

    assert gap(kept) < 0.02  # only 8-bit rounding away
    assert gap(plain) > 3 * gap(kept)


def test_multiple_styles_blend_gram_targets():
    net = RandomFeatures(channels=8, levels=2)
    a, b = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    mixed = PerceptualLoss(net, [(a, 0.25), (b, 0.75)])
    only_a, only_b = PerceptualLoss(net, [(a, 1.0)]), PerceptualLoss(net, [(b, 1.0)])
    for key in ("gram_s0", "mean_s1"):
        expect = 0.25 * getattr(only_a, key) + 0.75 * getattr(only_b, key)
        assert torch.allclose(getattr(mixed, key), expect, atol=1e-6)


def test_random_features_are_seeded_and_never_stored():
    a, b, c = RandomFeatures(seed=3), RandomFeatures(seed=3), RandomFeatures(seed=4)
    x = torch.rand(1, 3, 40, 40)
    assert torch.equal(a(x)["s1"], b(x)["s1"]) and not torch.equal(a(x)["s1"], c(x)["s1"])
    assert a.state_dict() == {}


# ------------------------------------------------------------------------------------------- VGG-19
def _fake_torchvision_vgg(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    full = VGG19Features(last="pool5")
    state = {k: v.clone() for k, v in full.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's file also holds the classifier
    torch.save(state, path)
    return state


def test_vgg19_loads_torchvision_layout_pth_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = _fake_torchvision_vgg(tmp_path / "vgg19-dcbb9e9d.pth")
    net = build_features("vgg19", tmp_path / "vgg19-dcbb9e9d.pth")
    assert torch.equal(net.features[28].weight, state["features.28.weight"])  # conv5_1
    feats = net(torch.rand(1, 3, 32, 32))
    assert set(feats) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "relu4_2"}
    assert feats["relu4_2"].shape == (1, 512, 4, 4)
    save_file({k: v for k, v in state.items() if k.startswith("features")}, str(tmp_path / "v.safetensors"))
    assert torch.equal(build_features("vgg19", tmp_path / "v.safetensors").features[0].weight,
                       state["features.0.weight"])
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="not a VGG-19 state dict"):
        build_features("vgg19", tmp_path / "bad.pth")


def test_features_auto_and_missing_vgg_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_WEIGHTS", str(tmp_path))
    assert build_features("auto").name == "random"
    with pytest.raises(WeightsError, match=r"download.pytorch.org/models/vgg19-dcbb9e9d.pth.*--vgg-weights"):
        build_features("vgg19")
    _fake_torchvision_vgg(tmp_path / "vgg19-dcbb9e9d.pth")
    assert build_features("auto").name == "vgg19"


def test_vgg19_download_checks_sha256(server, tmp_path, monkeypatch):  # noqa: F811
    import atelier.weights as weights

    root, url = server
    payload = b"not really vgg, but checked like it"
    (root / "vgg19-dcbb9e9d.pth").write_bytes(payload)
    entry = weights.WEIGHTS["vgg19"]
    monkeypatch.delenv("ATELIER_OFFLINE", raising=False)
    fake = weights.NamedWeights(entry.name, entry.filename, f"{url}/vgg19-dcbb9e9d.pth",
                                hashlib.sha256(payload).hexdigest(), entry.description)
    monkeypatch.setitem(weights.WEIGHTS, "vgg19", fake)
    got = resolve_weights("vgg19", download_ok=True)
    assert got.read_bytes() == payload and "cache" in str(got)
    assert entry.sha256 is not None and entry.sha256.startswith("dcbb9e9d")  # the real entry: name = sha prefix


# ---------------------------------------------------------------------------------------- fast network
@pytest.mark.parametrize("arch", ["lean", "johnson"])
@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 64, 48), (1, 3, 5, 9)])
def test_transformer_output_size_follows_input(shape, arch):
    torch.manual_seed(0)
    net = _net(width=4, res_blocks=1, arch=arch)
    with torch.no_grad():
        y = net(torch.rand(shape))
    assert y.shape == shape
    assert _stylizer(net)(Image.new("RGB", (45, 31), (90, 120, 200))).size == (45, 31)


def _net(**options) -> TransformerNet:
    return TransformerNet(FastStyleConfig(**options), resolution=32)


def _stylizer(net: TransformerNet, precision: str = "auto") -> Stylizer:
    from atelier.runs import load_config

    cfg = load_config(None, {"model.name": "fast-style", "model.style": ["s.jpg"], "data.channels": 3})
    return Stylizer(net, cfg, None, 0, "net").set_precision(precision)


def test_transformer_save_load_round_trip(tmp_path):
    from atelier.models import save_pretrained

    torch.manual_seed(1)
    net = _net(width=4, res_blocks=2)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    save_pretrained(net, tmp_path / "m")
    back = load_pretrained(tmp_path / "m")
    x = torch.rand(1, 3, 24, 20)
    assert back.config == net.config and torch.equal(back(x), net.eval()(x))
    with pytest.raises(RunError, match="not a saved atelier model"):
        load_pretrained(tmp_path)


def test_networks_saved_before_arch_existed_load_as_johnson(tmp_path):
    import json

    from atelier.models import save_pretrained

    torch.manual_seed(2)
    old = _net(width=4, res_blocks=1, arch="johnson")
    save_pretrained(old, tmp_path / "m")
    # What a network saved before the lean layout (and before networks recorded their family) holds.
    legacy = {"class": "TransformerNet", "module": "atelier.style.fast", "config": {"width": 4, "res_blocks": 1}}
    (tmp_path / "m" / "config.json").write_text(json.dumps(legacy))
    back = load_pretrained(tmp_path / "m")
    assert back.config["config"]["arch"] == "johnson"
    x = torch.rand(1, 3, 24, 20)
    assert torch.equal(back(x), old.eval()(x))


def test_bf16_inference_stays_close_to_fp32():
    torch.manual_seed(3)
    net = _net(width=8, res_blocks=2)
    for p in net.parameters():
        p.data.normal_(0, 0.2)
    x = torch.rand(1, 3, 64, 48)
    fp32, bf16 = _stylizer(net, precision="fp32"), _stylizer(net, precision="bf16")
    assert not fp32.bf16 and bf16.bf16 and bf16.metadata()["precision"] == "bf16"
    a, b = fp32.stylize_tensor(x), bf16.stylize_tensor(x)
    assert b.dtype == torch.float32 and a.shape == b.shape
    assert 0 < float((a - b).abs().mean()) < 2 / 255  # bf16 did run, and moved pixels by under 2 grey levels
    with pytest.raises(ValueError, match="precision"):
        _stylizer(net, precision="fp16")


def test_gram_backward_matches_autograd():
    from atelier.style.gatys import gram

    f = torch.rand(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 5, 5, dtype=torch.float64)
    for centered in (False, True):
        (got,) = torch.autograd.grad((gram(f, centered) * w).sum(), f)
        flat = f.reshape(2, 5, 12)
        flat = flat - flat.mean(2, keepdim=True) if centered else flat
        (want,) = torch.autograd.grad((flat @ flat.transpose(1, 2) / 12 * w).sum(), f)
        assert torch.allclose(got, want)


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"]
    for i, name in enumerate(names):
        src = CONTENT / name
        if src.is_file():
            with Image.open(src) as im:
                im.convert("RGB").resize((72, 56), Image.Resampling.LANCZOS).save(folder / f"{i}.png")
        else:
            small_photo(folder / f"{i}.png", 72)
    return folder


def test_trained_fast_net_restyles_a_held_outsmall_photo(tmp_path, photos, pair):
    _, style = pair
    result = tiny_style_run(tmp_path / "run", photos, style, steps=25, batch_size=4)
    assert (tmp_path / "run" / "model_card.md").is_file() and (tmp_path / "run" / "loss.png").is_file()
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())[-1] == "grid-0000025.png"
    rows = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if line]
    assert len(rows) == 25
    model = atelier.load(tmp_path / "run")
    assert isinstance(model, Stylizer) and model.step == 25
    # photos/0.png is held out of training (holdout=1 takes the first file).
    held = image_to_tensor(photos / "0.png")
    # The style image at the size the trainer used: size 32 x style_scale 2 (the default).
    loss = PerceptualLoss(RandomFeatures(seed=0), [(image_to_tensor(style, 64), 1.0)])
    with torch.no_grad():
        before = float(loss.style_loss(loss.net(held)))
        after = float(loss.style_loss(loss.net(model.stylize_tensor(held))))
    assert after < 0.4 * before, (before, after)  # measured: 2.97 -> 0.71
    assert result.metrics["loss_style"] > 0
    assert model(photos / "0.png").size == (72, 56)


def test_train_style_resume_is_exact(tmp_path, photos, pair):
    _, style = pair
    tiny_style_run(tmp_path / "a", photos, style, steps=4)
    tiny_style_run(tmp_path / "b", photos, style, steps=2)
    tiny_style_run(tmp_path / "b", photos, style, steps=4)  # resumes from step 2
    a = atelier.load(tmp_path / "a").network.state_dict()
    b = atelier.load(tmp_path / "b").network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(atelier.AtelierError, match="different config: train.batch_size=3"):
        tiny_style_run(tmp_path / "b", photos, style, steps=6, batch_size=3)


def test_runs_trained_before_arch_existed_load_and_resume(tmp_path, photos, pair):
    import yaml

    run = tmp_path / "old"
    train_style(run, style=[str(pair[1])], content_dir=str(photos), progress=False, features="random",
                overrides={"data.resolution": 32, "train.steps": 2, "train.batch_size": 1, "model.style_scale": 1.0,
                           "model.width": 4, "model.res_blocks": 1, "model.arch": "johnson",
                           "log.checkpoint_every": 1, "log.tensorboard": False})
    # What a train-style run folder from before the one training loop (and before `arch` and `style_scale`)
    # holds: a config of its own kind.
    legacy = {"kind": "fast-style", "style": [str(pair[1])], "content_dir": str(photos), "size": 32, "steps": 2,
              "batch_size": 1, "lr": 3e-3, "features": "random", "seed": 0, "device": "auto",
              "model": {"width": 4, "res_blocks": 1}, "log": {"checkpoint_every": 1, "tensorboard": False}}
    (run / "config.yaml").write_text(yaml.safe_dump(legacy))
    assert atelier.load(run).network.cfg.arch == "johnson"
    assert atelier.train(None, run, {"train.steps": 3}, progress=False).step == 3


# ------------------------------------------------------------------------------------------------ CLI
def _cli(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(result, pattern: str) -> None:
    import re

    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(pattern, lines[0]), lines[0]


def test_cli_stylize_and_fast_model(tmp_path, pair, photos):
    content, style = pair
    out = _cli("stylize", "--content", content, "--style", f"{style}:0.6", "--style", f"{content}:0.4",
               "--out", tmp_path / "o.png", "--size", 32, "--steps", 3)
    assert out.exit_code == 0, out.output
    assert "features: weights-free random multi-scale network" in out.output and "losses: style" in out.output
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (32, 21)
    r = _cli("train-style", "--style", style, "--content-dir", photos, "--run-dir", tmp_path / "run", "--size", 32,
             "--steps", 2, "--batch-size", 1, "--width", 4)
    assert r.exit_code == 0 and "model card:" in r.output and "losses: style" in r.output, r.output
    r = _cli("stylize", "--model", tmp_path / "run", "--content", content, "--out", tmp_path / "f.jpg")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "f.jpg") as im:
        assert im.size == (48, 32)


def _huge_png_header(path: Path, w: int, h: int) -> Path:
    """A PNG that claims w x h pixels (valid header, no real pixel data): must be refused before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return path


def test_cli_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, pair):
    content, style = pair
    out = tmp_path / "out.png"
    (tmp_path / "notes.txt").write_text("not an image")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    cases = [
        (("--content", tmp_path / "missing.jpg", "--style", style), "image not found"),
        (("--content", tmp_path / "notes.txt", "--style", style), "not a readable image"),
        (("--content", content, "--style", tmp_path / "dot.png"), r"1x1; style transfer needs at least 16"),
        (("--content", _huge_png_header(tmp_path / "huge.png", 20000, 20000), "--style", style),
         "huge.png is too large to decode safely|20000x20000 = 400,000,000 pixels; the limit is"),
        (("--model", tmp_path, "--content", content), "not an atelier run folder"),
        (("--model", tmp_path / "nope", "--content", content), "run folder not found"),
    ]
    for args, pattern in cases:
        _one_line_error(_cli("stylize", *args, "--out", out, "--size", 24, "--steps", 1), pattern)
        assert not out.exists()
    r = _cli("train-style", "--style", style, "--content-dir", tmp_path / "none", "--run-dir", tmp_path / "r")
    _one_line_error(r, "content folder not found")
    assert not (tmp_path / "r").exists()


def test_gan_run_folder_is_not_a_style_model(tmp_path, pair):
    from atelier.config import RunConfig, save_config

    run = tmp_path / "gan"
    save_config(RunConfig(), run / "config.yaml")
    with pytest.raises(RunError, match="no checkpoint yet; train it first \\(`atelier train"):
        atelier.load(run)  # still the GAN path, unchanged
    r = _cli("stylize", "--model", run, "--content", pair[0], "--out", tmp_path / "o.png")
    _one_line_error(r, "not a fast style network|no checkpoint")


@pytest.mark.parametrize("mode", ["CMYK", "I;16"])
def test_cmyk_and_16_bit_photos_are_converted(tmp_path, mode):
    arr = np.linspace(0, 65535 if mode == "I;16" else 255, 40 * 30).reshape(30, 40)
    img = Image.fromarray(arr.astype(np.uint16)) if mode == "I;16" else Image.new("CMYK", (40, 30), (0, 90, 200, 10))
    img.save(tmp_path / "x.tiff")
    t = image_to_tensor(tmp_path / "x.tiff")
    assert t.shape == (1, 3, 30, 40) and 0 <= float(t.min()) and float(t.max()) <= 1
    if mode == "I;16":
        assert float(t.max()) > 0.95  # scaled from 16 bits, not clipped at 255/65535
    with pytest.raises(ImageError, match="needs at least"):
        image_to_tensor(Image.new("RGB", (1, 1)))


def test_stylized_images_record_every_input_the_same_way(tmp_path, pair):
    """Content and style are both recorded by file name and the sha256 of the file's bytes."""
    from atelier.provenance import read_metadata
    from atelier.utils import sha256_file

    content, style = pair
    r = _cli("stylize", "--content", content, "--style", style, "--out", tmp_path / "o.png", "--size", 24,
             "--steps", 1)
    assert r.exit_code == 0, r.output
    meta = read_metadata(str(tmp_path / "o.png"))
    assert meta["atelier:content"] == Path(content).name and meta["atelier:style"] == Path(style).name
    assert meta["atelier:content_sha256"] == sha256_file(content) and meta["atelier:style_sha256"] == sha256_file(style)
