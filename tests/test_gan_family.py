"""The GAN family: losses and regularisers as units, spectral norm, self-attention, the conditional GAN,
DiffAugment/ADA, and every shipped config trained with tiny overrides."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import atelier
from atelier.checkpoint import CheckpointManager
from atelier.cli import cli
from atelier.data.augment import Augment, cutout, translation
from atelier.errors import ConfigError, DataError
from atelier.losses import (
    HingeLoss,
    LeastSquaresLoss,
    NonSaturatingLoss,
    WassersteinLoss,
    gradient_penalty,
    r1_penalty,
)
from atelier.models import build
from atelier.models.layers import SelfAttention
from atelier.runs import load_config
from conftest import needs_mnist

REPO = Path(__file__).resolve().parents[1]
REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-3.0, 0.0, 1.5])


# ---------------------------------------------------------------- losses on known logits
def test_hinge_loss_values():
    d = HingeLoss().d_loss(REAL, FAKE)
    # relu(1 - real) = [0, 0.5, 2] -> 2.5/3; relu(1 + fake) = [0, 1, 2.5] -> 3.5/3
    assert d["loss"].item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert HingeLoss().g_loss(FAKE)["loss"].item() == pytest.approx(-(-3.0 + 0.0 + 1.5) / 3)


def test_wasserstein_least_squares_and_nonsaturating_values():
    w = WassersteinLoss().d_loss(REAL, FAKE)
    assert w["loss"].item() == pytest.approx(-REAL.mean().item() + FAKE.mean().item())
    assert w["w_distance"].item() == pytest.approx(REAL.mean().item() - FAKE.mean().item())
    ls = LeastSquaresLoss().d_loss(REAL, FAKE)
    assert ls["loss"].item() == pytest.approx(0.5 * ((REAL - 1) ** 2).mean().item() + 0.5 * (FAKE**2).mean().item())
    assert LeastSquaresLoss().g_loss(FAKE)["loss"].item() == pytest.approx(0.5 * ((FAKE - 1) ** 2).mean().item())
    ns = NonSaturatingLoss().d_loss(REAL, FAKE)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(REAL, torch.ones(3)) + bce(FAKE, torch.zeros(3))
    assert ns["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def _linear_critic(w: torch.Tensor):
    return lambda x: (x.flatten(1) * w).sum(1, keepdim=True)


def test_gradient_penalty_is_zero_for_a_1_lipschitz_linear_critic_and_not_otherwise():
    torch.manual_seed(0)
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    w = torch.randn(16)
    unit = _linear_critic(w / w.norm())
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    # ||grad|| = 3 everywhere -> (3 - 1)^2 = 4
    assert gradient_penalty(_linear_critic(3 * w / w.norm()), real, fake).item() == pytest.approx(4.0, rel=1e-5)


def test_gradient_penalty_draws_one_interpolation_weight_per_sample():
    # A critic whose gradient depends on where x_hat is: D(x) = 0.5 * ||x||^2 -> grad = x_hat.
    real, fake = torch.ones(64, 1, 2, 2), torch.zeros(64, 1, 2, 2)
    seen = []

    def critic(x):
        seen.append(x.detach().clone())
        return 0.5 * x.flatten(1).square().sum(1, keepdim=True)

    torch.manual_seed(1)
    gradient_penalty(critic, real, fake)
    per_sample = seen[0].flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))   # one weight inside a sample
    assert per_sample[:, 0].std() > 0.2                                            # different across samples


def test_r1_penalty_is_the_squared_gradient_norm_on_reals():
    w = torch.tensor([1.0, 2.0, 2.0, 0.0])
    real = torch.randn(5, 1, 2, 2)
    assert r1_penalty(_linear_critic(w), real).item() == pytest.approx(9.0)


def test_wasserstein_without_a_lipschitz_constraint_is_a_config_error():
    with pytest.raises(ConfigError, match="Lipschitz") as err:
        load_config(None, {"loss.name": "wasserstein"})
    assert "'data'" not in str(err.value)                  # one line for the user, not the whole config echoed
    assert load_config(None, {"loss.name": "wasserstein", "model.spectral_norm_d": True}).loss.name == "wasserstein"


# ---------------------------------------------------------------- layers
def test_spectral_norm_bounds_every_layer_of_d():
    nets = build({"name": "dcgan", "spectral_norm_d": True, "width": 8}, resolution=28, channels=1)
    D = nets["D"].train()
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        for m in layers:  # make the raw weights far from 1-Lipschitz
            m.parametrizations.weight.original.mul_(5.0)
    raw = [torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), ord=2).item() for m in layers]
    for _ in range(30):  # power iterations run in training-mode forwards
        D(torch.randn(4, 1, 28, 28))
    D.eval()
    sigmas = [torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() for m in layers]
    assert len(sigmas) == 3 and min(raw) > 3
    assert all(s == pytest.approx(1.0, abs=0.05) for s in sigmas)


def test_self_attention_starts_as_identity_and_then_mixes_positions():
    torch.manual_seed(0)
    attn = SelfAttention(16)
    x = torch.randn(2, 16, 6, 6)
    assert torch.equal(attn(x), x)
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    y = attn(x)
    x2 = x.clone()
    x2[:, :, 5, 5] += 10.0  # a change in one corner...
    y2 = attn(x2)
    assert (y2 - y)[:, :, 0, 0].abs().max() > 1e-4  # ...reaches the opposite corner: global attention


@pytest.mark.parametrize("name,res,ch", [("dcgan", 28, 1), ("resnet", 28, 1), ("resnet", 32, 3), ("resnet", 64, 3)])
def test_conditional_backbones_with_attention_shapes_and_labels(name, res, ch):
    torch.manual_seed(0)
    nets = build({"name": name, "num_classes": 10, "attention": 14 if res == 28 else res // 4, "width": 8},
                 resolution=res, channels=ch)
    G, D = nets["G"].eval(), nets["D"].eval()
    with torch.no_grad():  # conditional batch norm starts as the identity for every class: make classes differ
        for m in G.modules():
            if isinstance(m, torch.nn.Embedding):
                m.weight.add_(0.5 * torch.randn_like(m.weight))
    z = torch.randn(3, G.z_dim)
    x0, x1 = G(z, torch.tensor([0, 0, 0])), G(z, torch.tensor([1, 1, 1]))
    assert x0.shape == (3, ch, res, res) and not torch.allclose(x0, x1)
    assert D(x0, torch.tensor([0, 1, 2])).shape == (3, 1)
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)


def test_attention_resolution_is_checked():
    with pytest.raises(ValueError, match="attention"):
        build({"name": "dcgan", "attention": 28}, resolution=28, channels=1)


# ---------------------------------------------------------------- augmentation
def test_diffaugment_ops_are_differentiable_and_shape_preserving():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    aug = Augment(load_config(None, {"augment.policy": "color,translation,cutout"}).augment, batch_size=6)
    y = aug(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_content_and_cutout_blanks_a_quarter():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    moved = translation(x)
    where = moved.flatten(1).argmax(1)
    assert len(set(where.tolist())) > 10 and moved.sum(dim=(1, 2, 3)).eq(1).all()  # shifted, never lost (|t|<=2)
    ones = torch.ones(64, 1, 16, 16)
    zeroed = 1 - cutout(ones).mean(dim=(1, 2, 3))
    assert zeroed.max().item() == pytest.approx(0.25)            # an 8x8 square fully inside
    assert zeroed.min().item() > 0                               # partly outside near the border, never absent


def test_ada_moves_p_toward_the_target():
    cfg = load_config(None, {"augment.policy": "translation", "augment.p": 0.5, "augment.ada_target": 0.6,
                             "augment.ada_interval": 2, "augment.ada_kimg": 1}).augment
    aug = Augment(cfg, batch_size=100)
    for _ in range(4):
        aug.observe(torch.ones(100))   # D sure of every real: r_t = 1 > 0.6 -> more augmentation
    assert aug.p == pytest.approx(0.5 + 2 * 0.2)
    for _ in range(2):
        aug.observe(-torch.ones(100))
    assert aug.p == pytest.approx(0.7)
    zero = Augment(cfg.model_copy(update={"p": 0.0}), batch_size=4)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(zero(x), x)  # p = 0 is the identity


# ---------------------------------------------------------------- training
@needs_mnist
def test_conditional_run_grid_has_one_row_per_class_and_sample_class(tmp_path, tiny):
    run = tmp_path / "cgan"
    atelier.train(REPO / "configs" / "mnist-cgan.yaml", run, {**tiny, "train.steps": 3, "log.grid": 3},
                  progress=False)
    with Image.open(sorted((run / "samples").glob("grid-*.png"))[-1]) as im:
        w, h = im.size
    assert h / w == pytest.approx(10 / 3, rel=0.05)               # 10 rows (classes) x 3 columns
    g = atelier.load(run)
    sevens = g.sample(6, seed=0, labels=7)
    assert sevens.shape == (6, 1, 28, 28)
    assert not torch.equal(sevens, g.sample(6, seed=0, labels=3))  # the class changes the image
    with pytest.raises(ValueError, match="out of range"):
        g.sample(2, labels=10)

    runner = CliRunner()
    out = tmp_path / "sevens.png"
    res = runner.invoke(cli, ["sample", str(run), "--class", "7", "--n", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file()
    res = runner.invoke(cli, ["sample", str(run), "--n", "20", "--out", str(tmp_path / "rows.png")])
    assert res.exit_code == 0 and "20 images" in res.output
    res = runner.invoke(cli, ["sample", str(run), "--class", "12", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "out of range" in res.output
    assert not (tmp_path / "x.png").exists()


def test_class_on_an_unconditional_run_is_a_clear_error(tiny_run, tmp_path):
    res = CliRunner().invoke(cli, ["sample", str(tiny_run), "--class", "1", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "unconditional" in res.output


@needs_mnist
def test_conditional_model_on_unlabelled_data_is_a_data_error(tmp_path, tiny):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((28, 28), i * 10, np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(DataError, match="no labels"):
        atelier.train(None, tmp_path / "r", {**tiny, "data.source": str(folder), "data.limit": None,
                                             "model.num_classes": 10}, progress=False)


@needs_mnist
def test_wgan_gp_trains_critic_n_times_per_generator_step(tmp_path, tiny):
    seen = []
    atelier.train(REPO / "configs" / "mnist-wgan-gp.yaml", tmp_path / "w", {**tiny, "train.steps": 10},
                  progress=False, callback=lambda t: seen.append(
                      int(t.task.opt_g.state_dict()["state"].get(0, {}).get("step", 0))))
    # Adam's step counter of G's first parameter: G moved at steps 5 and 10 only.
    assert seen == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2]
    rows = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert all("gp" in r and r["gp"] >= 0 for r in rows if "loss_d" in r)


@needs_mnist
def test_lazy_r1_runs_every_k_steps(tmp_path, tiny):
    atelier.train(None, tmp_path / "r1", {**tiny, "loss.r1_gamma": 1.0, "loss.r1_every": 2, "log.every": 1},
                  progress=False)
    rows = [json.loads(x) for x in (tmp_path / "r1" / "metrics.jsonl").read_text().splitlines()]
    with_r1 = [r["step"] for r in rows if "r1" in r]
    assert with_r1 == [1, 3, 5]  # steps 0, 2, 4 (0-based) carry the penalty; rows are logged after the step


@needs_mnist
def test_ada_probability_is_restored_exactly_on_resume(tmp_path, tiny):
    overrides = {**tiny, "augment.policy": "color,translation,cutout", "augment.p": 0.2, "augment.ada_target": 0.6,
                 "augment.ada_interval": 1, "augment.ada_kimg": 0.5, "train.steps": 6, "log.checkpoint_every": 100}
    straight = atelier.train(None, tmp_path / "a", overrides, progress=False)

    def stop_at_3(trainer):
        if trainer.step == 3:
            trainer.request_stop(signal.SIGTERM)

    atelier.train(None, tmp_path / "b", overrides, progress=False, callback=stop_at_3)
    resumed = atelier.train(None, tmp_path / "b", overrides, progress=False)
    assert resumed.step == 6
    p_a, p_b = straight.metrics["aug_p"], resumed.metrics["aug_p"]
    assert p_a == p_b and p_a != 0.2                              # p moved, and the resumed run agrees exactly
    a = CheckpointManager(tmp_path / "a" / "checkpoints")
    b = CheckpointManager(tmp_path / "b" / "checkpoints")
    ta, tb = a.read(a.latest_path(), tensors_only="s.G"), b.read(b.latest_path(), tensors_only="s.G")
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
