"""Evaluators for colour data: the emoji domain classifier (shipped weights) and the random-CNN fallback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from atelier.cli import cli
from atelier.metrics import EVALUATORS, auto_evaluator, evaluate_images, load_evaluator, reference_features
from atelier.metrics.colour import RandomFeatures, state_sha256
from atelier.metrics.evaluators import WEIGHTS_DIR
from atelier.metrics.maths import fid
from atelier.runs import load_config

EMOJI = Path(os.environ.get("ATELIER_DATA", ""), "emoji")
needs_emoji = pytest.mark.skipif(not EMOJI.is_dir(), reason="shared emoji folder (ATELIER_DATA/emoji) not present")


def shapes(n: int, seed: int, size: int = 64) -> torch.Tensor:
    """uint8 (N, 3, size, size): a few random coloured ellipses and boxes on white, like flat icons."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(img)
        for _ in range(rng.integers(1, 4)):
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            w, h = (int(v) for v in rng.integers(8, size // 2, 2))
            fill = tuple(int(v) for v in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill=fill)
        out.append(np.asarray(img))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(x.float(), k, 1, k // 2, count_include_pad=False)[..., :64, :64].round().to(
        torch.uint8)


def noisy(x: torch.Tensor, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def test_random_cnn_fid_is_zero_against_itself_and_grows_with_damage():
    ev = load_evaluator("random-cnn")
    a, b = shapes(200, 0), shapes(200, 1)
    fa, fb = ev(a).features, ev(b).features
    assert fa.shape == (200, 960)
    assert abs(fid(fa, fa)) < 1e-6 * max(fid(fa, fb), 1.0)
    floor = fid(fa, fb)                                   # two samples of one distribution
    scores = {name: fid(fa, ev(x).features) for name, x in (("blur3", blur(b, 3)), ("blur5", blur(b, 5)),
                                                             ("noise16", noisy(b, 16)), ("noise48", noisy(b, 48)))}
    assert floor < scores["blur3"] < scores["blur5"], (floor, scores)
    assert floor < scores["noise16"] < scores["noise48"], (floor, scores)


def test_random_cnn_is_deterministic_and_named_in_every_record(tmp_path):
    a, b = RandomFeatures(seed=0), RandomFeatures(seed=0)
    assert state_sha256(a) == state_sha256(b) != state_sha256(RandomFeatures(seed=1))
    ev = load_evaluator("random-cnn")
    assert ev.sha256 == state_sha256(a) and ev.weights is None and not ev.spec.logits
    # RGBA is composited over white, gray repeated: the same picture scores the same features.
    rgb = shapes(4, 2)
    rgba = torch.cat([rgb, torch.full((4, 1, 64, 64), 255, dtype=torch.uint8)], 1)
    assert torch.allclose(ev(rgba).features, ev(rgb).features)
    clear = rgba.clone()
    clear[:, 3] = 0
    assert torch.allclose(ev(clear).features, ev(torch.full_like(rgb, 255)).features)
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, img in enumerate(shapes(30, 3).permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img).save(ref / f"{i}.png")
    records = evaluate_images(shapes(30, 4), ref=str(ref), evaluator=ev, metrics=["fid", "kid", "pr"])
    assert {r["evaluator"] for r in records} == {"random-cnn"} and records[0]["evaluator_sha256"] == ev.sha256
    assert "RGBA over white" in records[0]["resize"] and records[0]["n_ref"] == 30
    with pytest.raises(Exception, match="no classifier head, so no Inception Score"):
        evaluate_images(shapes(30, 4), ref=str(ref), evaluator=ev, metrics=["is"])


def test_auto_picks_the_fallback_for_any_folder_and_the_config_accepts_both():
    assert auto_evaluator("mnist") == "digits" and auto_evaluator("fashion-mnist:test") == "fashion"
    assert auto_evaluator(str(EMOJI)) == "random-cnn"     # a folder is never recognised by its path
    assert auto_evaluator("/any/folder") == "random-cnn" and EVALUATORS["emoji"].datasets == ()
    for name in ("emoji", "random-cnn"):
        assert load_config(None, {"eval.evaluator": name}).eval.evaluator == name


def test_folder_reference_features_are_cached_by_content(tmp_path):
    ev = load_evaluator("random-cnn")
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, img in enumerate(shapes(12, 5).permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img).save(ref / f"{i}.png")
    first, info1 = reference_features(str(ref), ev)
    again, info2 = reference_features(str(ref), ev)
    assert not info1["cached"] and info2["cached"] and torch.equal(first, again)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(ref / "3.png")   # a changed file: recomputed
    changed, info3 = reference_features(str(ref), ev)
    assert not info3["cached"] and not torch.equal(changed, first)


def test_cli_evaluate_folder_with_the_fallback(tmp_path):
    for name, seed in (("real", 6), ("ref", 7)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(shapes(40, seed).permute(0, 2, 3, 1).numpy()):
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", "--real", str(tmp_path / "real"), "--ref", str(tmp_path / "ref"),
                              "--metrics", "fid,kid", "--n", "40", "--json"])
    assert res.exit_code == 0, res.output
    records = json.loads(res.output)
    assert [r["evaluator"] for r in records] == ["random-cnn", "random-cnn"] and records[0]["value"] > 0
    res = runner.invoke(cli, ["evaluate", "--real", str(tmp_path / "real"), "--ref", str(tmp_path / "ref"),
                              "--metrics", "is"])
    assert res.exit_code == 2 and res.output.startswith("error: the random-cnn evaluator has no classifier head")


def test_emoji_weights_ship_with_their_report():
    path = WEIGHTS_DIR / "emoji.safetensors"
    report = json.loads(path.with_suffix(".json").read_text())
    ev = load_evaluator("emoji")
    assert ev.sha256 == report["sha256"] and report["command"].startswith("python scripts/train_evaluator.py emoji")
    assert report["test_accuracy"] > 0.85 and len(report["classes"]) == 9
    assert path.stat().st_size < 2_000_000
    out = ev(shapes(5, 8))
    assert out.features.shape == (5, 128) and out.logits.shape == (5, 9)


@needs_emoji
def test_emoji_evaluator_classifies_real_emoji():
    """The shipped weights and the preprocessing (RGBA read at 64 px, composited over white by the evaluator)
    classify real emoji: the first three files of each group, training images or not (the held-out accuracy
    is in the weights' report)."""
    from atelier.images import load_image

    ev = load_evaluator("emoji")
    files, labels = [], []
    for k, group in enumerate(ev.info["classes"]):
        picked = sorted((EMOJI / group).glob("*.png"))[:3]
        files += picked
        labels += [k] * len(picked)
    images = torch.stack([torch.tensor(load_image(f, channels=4, resolution=64)).permute(2, 0, 1) for f in files])
    pred = ev(images).logits.argmax(1)
    correct = (pred == torch.tensor(labels)).float().mean().item()
    assert correct >= 0.85, (correct, pred.tolist(), labels)
