"""`atelier evaluate` end to end, and FID during training with the `best` checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from atelier.checkpoint import CheckpointManager
from atelier.runs import read_metrics
from conftest import DATA_REASON, mnist_available, one_line_error, run_cli

pytestmark = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)


@pytest.fixture(scope="module")
def ref_npz(tmp_path_factory) -> str:
    """400 real test digits as an .npz reference (a named split would cost 10,000 images per test)."""
    from atelier.data import open_source

    path = tmp_path_factory.mktemp("ref") / "ref.npz"
    np.savez(path, images=open_source("mnist:test", limit=400).images.numpy()[:, 0])
    return str(path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import atelier

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    overrides = {"model.width": 8, "model.z_dim": 16, "data.limit": 128, "train.batch_size": 16, "train.steps": 6,
                 "train.device": "cpu", "log.every": 2, "log.sample_every": 6, "log.checkpoint_every": 6,
                 "log.grid": 2, "log.tensorboard": False}
    atelier.train(None, run_dir, overrides, progress=False)
    return run_dir


def test_evaluate_help_has_examples():
    out = run_cli("evaluate", "--help").output
    assert "--real mnist:train --ref mnist:test" in out and "--inception-weights" in out


def test_evaluate_run_appends_records_with_their_protocol(own_tiny_run, ref_npz):
    tiny_run = own_tiny_run
    before = len(read_metrics(tiny_run / "metrics.jsonl"))
    out = run_cli("evaluate", str(tiny_run), "--ref", ref_npz, "--n", "300", "--metrics", "fid,kid,is,pr",
              "--seed", "5").output
    assert "fid" in out and "recall" in out and "appended 5 record(s)" in out
    rows = read_metrics(tiny_run / "metrics.jsonl")
    evals = [r for r in rows[before:] if r.get("event") == "eval"]
    assert [r["metric"] for r in evals] == ["fid", "kid", "is", "precision", "recall"]
    fid = evals[0]
    assert fid["step"] == fid["checkpoint_step"] == 6 and fid["generator"] == "ema"
    assert fid["evaluator"] == "digits" and len(fid["evaluator_sha256"]) == 64 == len(fid["checkpoint_sha256"])
    assert (fid["n_generated"], fid["n_ref"], fid["seed"]) == (300, 400, 5) and fid["ref"] == ref_npz
    assert fid["resize"].startswith("none") and fid["value"] > 0
    assert evals[1]["kid_subset_size"] == 300 and evals[2]["is_splits"] == 10 and evals[3]["pr_k"] == 3
    # The loss plot and a resumed RunLogger still read the file (eval lines have a step).
    again = json.loads(run_cli("evaluate", str(tiny_run), "--ref", ref_npz, "--n", "300", "--metrics", "fid",
                           "--seed", "5", "--json", "--no-record").output)
    assert again[0]["value"] == fid["value"]  # same seed, same evaluator -> same number
    assert len(read_metrics(tiny_run / "metrics.jsonl")) == len(rows)
    # The model card lists the latest record of each metric, with its protocol (it said "not measured" before).
    card = (tiny_run / "model_card.md").read_text()
    assert "Not measured yet" not in card and f"FID {fid['value']:.4g}" in card
    assert "evaluator `digits`" in card and f"reference `{ref_npz}`" in card and "300 samples" in card


def test_evaluate_real_vs_real(ref_npz):
    records = json.loads(run_cli("evaluate", "--real", "mnist:train", "--ref", ref_npz, "--n", "400",
                             "--metrics", "fid,pr", "--json").output)
    fid, precision, recall = (r["value"] for r in records)
    assert records[0]["n_images"] == 400 and records[0]["n_source"] == 60_000 and records[0]["source"] == "mnist:train"
    assert 0 <= fid < 10 and precision > 0.6 and recall > 0.6  # FID is biased upwards at n = 400


def test_evaluate_refuses_data_that_does_not_fit(tmp_path, ref_npz):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(photos / f"{i}.png")
    result = run_cli("evaluate", "--real", str(photos), "--ref", ref_npz, "--evaluator", "digits", ok=False)
    one_line_error(result, r"64x64 images; the digits evaluator reads 28x28 images only")
    result = run_cli("evaluate", "--real", str(photos), "--ref", ref_npz, "--evaluator", "inception", ok=False)
    one_line_error(result, r"FID Inception.*weights not found.*--inception-weights")
    result = run_cli("evaluate", "--real", "mnist:test", "--ref", ref_npz, "--metrics", "fid,lpips", ok=False)
    one_line_error(result, r"unknown metric\(s\) lpips")
    assert run_cli("evaluate", "--real", "mnist:test", ok=False).exit_code == 2  # --ref missing: usage error
    assert run_cli("evaluate", ok=False).exit_code == 2


def test_training_eval_keeps_best_and_does_not_change_training(tmp_path, ref_npz, tiny):
    import atelier

    plain = atelier.train(None, tmp_path / "plain", tiny, progress=False)
    with_eval = atelier.train(None, tmp_path / "eval", {**tiny, "eval.every": 3, "eval.n": 100, "eval.ref": ref_npz},
                              progress=False)
    assert plain.step == with_eval.step == 6
    a, b = (CheckpointManager.read(CheckpointManager(p / "checkpoints").latest_path(), tensors_only="s.G")
            for p in (tmp_path / "plain", tmp_path / "eval"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # evaluations leave training bit for bit unchanged
    evals = [r for r in read_metrics(tmp_path / "eval" / "metrics.jsonl") if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [3, 6] and all(r["metric"] == "fid" and r["n_generated"] == 100 for r in evals)
    best_step = min(evals, key=lambda r: r["value"])["step"]
    best = tmp_path / "eval" / "checkpoints" / "best.safetensors"
    assert CheckpointManager.read_step(best) == best_step
    assert evals[0]["best"] is True and evals[1]["best"] == (evals[1]["value"] < evals[0]["value"])
    assert (tmp_path / "eval" / "loss.png").is_file()


def test_training_eval_needs_a_reference_for_unnamed_data(tmp_path, tiny):
    from atelier.errors import ConfigError

    np.savez(tmp_path / "d.npz", images=np.zeros((32, 28, 28), np.uint8))
    import atelier

    with pytest.raises(ConfigError, match="set eval.ref"):
        atelier.train(None, tmp_path / "run", {**tiny, "data.source": str(tmp_path / "d.npz"), "eval.every": 3},
                      progress=False)
