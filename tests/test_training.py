from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import atelier
from atelier.api import prepare
from atelier.checkpoint import CheckpointManager
from atelier.errors import ConfigError
from atelier.training import Trainer
from conftest import DATA_REASON, REPO, make_trainer, mnist_available

pytestmark = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)


def _final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    path = CheckpointManager(run_dir / "checkpoints").latest_path()
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys() if not k.startswith("s.rng")}


def test_run_folder_layout(tmp_path, tiny, capsys):
    result = atelier.train(None, tmp_path / "run", {**tiny, "log.tensorboard": True}, progress=False)
    # Without a terminal, plain log lines (one per log.every steps) carry the step, the losses and an ETA.
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2/6", "4/6", "6/6"] and all(" eta " in ln for ln in lines)
    run = tmp_path / "run"
    assert result.step == 6 and result.images_seen == 6 * 16
    assert (run / "config.yaml").is_file() and (run / "model_card.md").is_file() and (run / "loss.png").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["grid-0000003.png", "grid-0000006.png"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000006.safetensors"
    assert any((run / "tb").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "img_per_s", "kimg"} <= set(rows[0])
    card = (run / "model_card.md").read_text()
    assert "mnist:train" in card and "Licence" in card and "Steps: 6 at batch 16" in card and "budget 6 steps" in card


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, tiny, precision):
    overrides = {**tiny, "train.precision": precision, "train.steps": 7, "log.checkpoint_every": 100}
    atelier.train(None, tmp_path / "straight", overrides, progress=False)

    # Interrupt after step 4 (not a checkpoint step) through the same path Ctrl-C takes.
    def stop_at_4(trainer: Trainer) -> None:
        if trainer.step == 4:
            trainer.request_stop(signal.SIGTERM)

    first = atelier.train(None, tmp_path / "resumed", overrides, progress=False, callback=stop_at_4)
    assert first.interrupted and first.step == 4
    assert CheckpointManager(tmp_path / "resumed" / "checkpoints").latest_path().name == "step-0000004.safetensors"
    second = atelier.train(None, tmp_path / "resumed", overrides, progress=False)
    assert second.step == 7 and not second.interrupted

    a, b = _final_tensors(tmp_path / "straight"), _final_tensors(tmp_path / "resumed")
    assert a.keys() == b.keys() and len(a) > 20
    mismatched = [k for k in a if not torch.equal(a[k], b[k])]
    assert mismatched == [], f"differ after resume: {mismatched[:5]}"
    # The metrics record has each step once, in order.
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_resume_refuses_a_changed_config_but_allows_more_steps(tmp_path, tiny):
    atelier.train(None, tmp_path / "r", tiny, progress=False)
    with pytest.raises(ConfigError, match=r"model.width=16 \(the run has 8\)"):
        prepare(None, tmp_path / "r", {**tiny, "model.width": 16})
    cfg, resuming = prepare(None, tmp_path / "r", {"train.steps": 9})
    assert resuming and cfg.train.steps == 9 and cfg.model["width"] == 8
    result = atelier.train(None, tmp_path / "r", {"train.steps": 9}, progress=False)
    assert result.step == 9


def test_resume_a_run_written_before_new_config_keys_existed(tmp_path, tiny):
    import yaml

    atelier.train(None, tmp_path / "r", tiny, progress=False)
    stored = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    del stored["data"]["direction"]  # as if written by an older atelier
    (tmp_path / "r" / "config.yaml").write_text(yaml.safe_dump(stored))
    cfg, resuming = prepare(None, tmp_path / "r", {**tiny, "train.steps": 8})
    assert resuming and cfg.train.steps == 8


def test_crash_during_checkpoint_write_keeps_latest_valid(tmp_path, tiny, monkeypatch):
    atelier.train(None, tmp_path / "r", {**tiny, "train.steps": 3}, progress=False)
    ckpt = CheckpointManager(tmp_path / "r" / "checkpoints")
    before = ckpt.latest_path()

    import atelier.utils as utils

    real_replace = os.replace

    def dying_replace(src, dst):  # the process "dies" after writing the temp file, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(utils.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        atelier.train(None, tmp_path / "r", {"train.steps": 6}, progress=False)
    monkeypatch.setattr(utils.os, "replace", real_replace)
    assert ckpt.latest_path() == before
    assert not [p for p in (tmp_path / "r" / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert int(CheckpointManager.read(before)["step"]) == 3


def test_corrupt_latest_falls_back_to_an_older_checkpoint(tmp_path, tiny):
    atelier.train(None, tmp_path / "r", {**tiny, "train.steps": 6}, progress=False)
    ckpt = CheckpointManager(tmp_path / "r" / "checkpoints")
    ckpt.path_for(6).write_bytes(b"torn")
    with pytest.warns(UserWarning, match="unreadable"):
        path, state = ckpt.load_latest()
    assert path.name == "step-0000003.safetensors" and state["step"] == 3


def _spawn_train(run_dir: Path, steps: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "atelier", "train", "--run-dir", str(run_dir), "--steps", str(steps),
           "--batch-size", "16", "--checkpoint-every", "100000", "--set", "model.width=8",
           "--set", "data.limit=128", "--set", "log.tensorboard=false", "--set", "train.device=cpu",
           "--set", "log.every=2"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_a_checkpoint_then_resume_finishes(tmp_path, sig):
    run = tmp_path / "r"
    proc = _spawn_train(run, steps=100_000)
    deadline = time.time() + 60
    metrics = run / "metrics.jsonl"
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "checkpoint written; run the same command again to resume" in out
    ckpt = CheckpointManager(run / "checkpoints")
    step = int(ckpt.read(ckpt.latest_path())["step"])
    assert step >= 4  # log.every=2, and we waited for two log lines
    proc = _spawn_train(run, steps=step + 3)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert f"finished step {step + 3:,}" in out


def test_sample_api_is_deterministic_and_uses_ema(tmp_path, tiny):
    atelier.train(None, tmp_path / "r", tiny, progress=False)
    g = atelier.load(tmp_path / "r")
    a, b = g.sample(8, seed=5), g.sample(8, seed=5)
    assert a.dtype == torch.uint8 and a.shape == (8, 1, 28, 28) and torch.equal(a, b)
    assert not torch.equal(a, g.sample(8, seed=6))
    # Batching does not change the images: z is drawn up-front from the seed.
    assert torch.equal(a, g.sample(8, seed=5, batch_size=3))
    pils = g.sample(4, seed=5, pil=True)
    assert pils[0].size == (28, 28) and np.array_equal(np.asarray(pils[0]), a[0, 0].numpy())
    raw = atelier.load(tmp_path / "r", which="raw")
    assert not torch.equal(raw.sample(8, seed=5), a)
    # Per-seed latents: seed 3 alone equals seed 3 inside a list.
    assert torch.equal(g.sample(seeds=[3]), g.sample(seeds=[9, 3])[1:])


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(atelier.AtelierError, match="run folder not found"):
        atelier.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(atelier.AtelierError, match="not an atelier run folder"):
        atelier.load(tmp_path / "empty")


def test_ema_beta_follows_half_life():
    from atelier.training.ema import EMA

    ema = EMA(torch.nn.Linear(2, 2), half_life_kimg=10, rampup=None)
    # After 10k images in batches of 256 the old weights count half.
    assert ema.beta(256, 10**6) ** (10_000 / 256) == pytest.approx(0.5)
    ramp = EMA(torch.nn.Linear(2, 2), half_life_kimg=10, rampup=0.05)
    assert ramp.beta(256, 2560) < ema.beta(256, 2560)


def test_training_loss_moves_and_outputs_are_finite(tmp_path, tiny):
    trainer = make_trainer(tmp_path / "r", {**tiny, "train.steps": 10})
    first = trainer.train_step()
    for _ in range(9):
        last = trainer.train_step()
    assert all(np.isfinite(v) for v in last.values())
    assert 0 < last["d_real"] < 1 and last["d_real"] != first["d_real"]
