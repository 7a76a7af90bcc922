from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open
from torch.distributions import Bernoulli, Normal
from torch.distributions import kl_divergence as torch_kl

import atelier
from atelier.checkpoint import CheckpointManager
from atelier.cli import cli
from atelier.errors import ConfigError
from atelier.models import load_pretrained, save_pretrained
from atelier.models.vae import Decoder, Encoder, VAEConfig, kl_divergence, reconstruction_nll
from atelier.runs import load_config
from conftest import DATA_REASON, REPO, make_trainer, mnist_available

needs_mnist = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)

TINY_VAE = {
    "model.name": "vae", "model.z_dim": 4, "model.width": 4, "data.limit": 128, "train.batch_size": 16,
    "train.steps": 6, "train.device": "cpu", "optim.lr_g": 3e-3, "optim.lr_d": 3e-3, "log.every": 2,
    "log.sample_every": 3, "log.checkpoint_every": 3, "log.grid": 4, "log.tensorboard": False,
}


def _rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("resolution,channels", [(28, 1), (32, 3), (64, 3)])
def test_shapes_and_range(resolution, channels):
    cfg = VAEConfig(z_dim=5, width=4)
    enc = Encoder(cfg, resolution=resolution, channels=channels)
    dec = Decoder(cfg, resolution=resolution, channels=channels)
    x = torch.rand(3, channels, resolution, resolution) * 2 - 1
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (3, 5)
    out = dec(torch.randn(3, 5) * 10)                 # far outside the prior: still a valid image
    assert out.shape == (3, channels, resolution, resolution)
    assert out.min() >= -1 and out.max() <= 1
    with pytest.raises(ValueError, match=r"expected z of shape \(B, 5\)"):
        dec(torch.randn(3, 6))
    with pytest.raises(ValueError, match="expected images of shape"):
        enc(torch.zeros(1, channels, resolution + 4, resolution + 4))
    with pytest.raises(ValueError, match=r"data.resolution must be one of \[28, 32, 64\] for model vae"):
        Decoder(cfg, resolution=48, channels=1)


def test_kl_and_likelihoods_match_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    expected = torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl_divergence(mu, logvar), expected, atol=1e-5)
    assert torch.equal(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))  # q = prior

    x = torch.rand(2, 1, 28, 28) * 2 - 1
    logits = torch.randn(2, 1, 28, 28)
    bern = Decoder(VAEConfig(likelihood="bernoulli"), resolution=28, channels=1)
    nll = reconstruction_nll(bern, logits, x)
    # BCE with soft targets t = (x + 1) / 2 is -[t log p + (1 - t) log(1 - p)]; at t in {0, 1} it is -log Bernoulli.
    binary = torch.where(x > 0, 1.0, -1.0)
    assert torch.allclose(reconstruction_nll(bern, logits, binary),
                          -Bernoulli(logits=logits).log_prob((binary + 1) / 2).flatten(1).sum(1), atol=1e-3)
    assert nll.shape == (2,) and (nll > 0).all()
    gauss = Decoder(VAEConfig(likelihood="gaussian"), resolution=28, channels=1)
    mean = gauss.to_image(logits)
    assert torch.allclose(reconstruction_nll(gauss, logits, x, sigma=0.2),
                          -Normal(mean, 0.2).log_prob(x).flatten(1).sum(1), atol=1e-2)


def test_save_load_pretrained_round_trip(tmp_path):
    dec = Decoder(VAEConfig(z_dim=7, width=4, likelihood="gaussian"), resolution=32, channels=3)
    back = load_pretrained(save_pretrained(dec, tmp_path / "dec"))
    z = torch.randn(2, 7)
    assert isinstance(back, Decoder) and back.likelihood == "gaussian"
    assert torch.equal(back(z), dec(z))


def test_config_file_spells_out_the_model_defaults():
    cfg = load_config(REPO / "configs" / "mnist-vae.yaml")
    assert cfg.model == {"name": "vae", **VAEConfig().model_dump()}
    raw = yaml.safe_load((REPO / "configs" / "mnist-vae.yaml").read_text())
    assert "loss" not in raw  # the ELBO has no adversarial loss to choose


@needs_mnist
def test_trains_logs_elbo_terms_grids_and_samples(tmp_path):
    run = tmp_path / "vae"
    result = atelier.train(REPO / "configs" / "mnist-vae.yaml", run, {**TINY_VAE, "train.steps": 24}, progress=False)
    assert result.step == 24
    rows = _rows(run)
    assert {"recon", "kl", "beta", "elbo", "loss"} <= set(rows[0]) and "loss_d" not in rows[0]
    for r in rows:
        assert r["elbo"] == pytest.approx(-(r["recon"] + r["kl"]), rel=1e-4)
        assert r["kl"] >= 0 and r["beta"] == 1.0
    assert rows[-1]["elbo"] > rows[0]["elbo"] + 50  # it learns (about 540 nats per image at the start)

    # The grid: one pair of rows (held-out images, reconstructions), then 2 rows of samples, 4 per row.
    with Image.open(result.grid) as img:
        w, h = img.size
    assert (w // 3, h // 3) == (4 * 30 + 2, 4 * 30 + 2)

    card = (run / "model_card.md").read_text()
    assert "negative ELBO with beta 1" in card and f"ELBO {rows[-1]['elbo']:.2f} nats/image" in card
    assert "## Held-out test images and their reconstructions" in card

    g = atelier.load(run)
    assert isinstance(g, atelier.Generator) and g.z_dim == 4 and g.num_classes == 0
    a, b = g.sample(5, seed=3), g.sample(5, seed=3)
    assert a.shape == (5, 1, 28, 28) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, g.sample(5, seed=4))


@needs_mnist
def test_reconstructions_in_the_grid_are_the_decoded_posterior_means(tmp_path):
    task = make_trainer(tmp_path / "r", TINY_VAE, config=REPO / "configs" / "mnist-vae.yaml").task
    real = task.fixed_real
    assert real.shape == (4, 1, 28, 28)       # log.grid 4 -> one pair of rows of 4 held-out images
    from atelier.data import open_source

    test = open_source("mnist:test", limit=4).images.float() / 127.5 - 1
    assert torch.equal(real, test)            # held out: the test split, not training images
    mu, _ = task.encoder(real)
    assert torch.allclose(task.reconstruct(real), task.decoder(mu))


def test_gan_only_settings_are_refused(tmp_path):
    for key, value in (("loss.name", "hinge"), ("augment.policy", "color")):
        with pytest.raises(ConfigError, match=f"{key} does not apply"):
            atelier.train(REPO / "configs" / "mnist-vae.yaml", tmp_path / "r", {**TINY_VAE, key: value},
                          progress=False)


@needs_mnist
def test_beta_warmup_ramps_with_images_seen(tmp_path):
    overrides = {**TINY_VAE, "model.beta": 4.0, "model.beta_warmup_kimg": 0.064}
    trainer = make_trainer(tmp_path / "r", overrides, config=REPO / "configs" / "mnist-vae.yaml")
    assert trainer.task.beta() == 0.0
    trainer.ctx.images_seen = 32
    assert trainer.task.beta() == pytest.approx(2.0)
    trainer.ctx.images_seen = 1000
    assert trainer.task.beta() == 4.0
    result = atelier.train(trainer.cfg, tmp_path / "run", progress=False)
    betas = [r["beta"] for r in _rows(tmp_path / "run")]
    assert betas == sorted(betas) and betas[0] < 4.0 and betas[-1] == 4.0 and result.step == 6


@needs_mnist
def test_interrupted_and_resumed_vae_is_bit_identical(tmp_path):
    overrides = {**TINY_VAE, "train.steps": 7, "log.checkpoint_every": 100}
    atelier.train(REPO / "configs" / "mnist-vae.yaml", tmp_path / "straight", overrides, progress=False)

    def stop_at_4(trainer) -> None:
        if trainer.step == 4:
            trainer.request_stop(signal.SIGTERM)

    first = atelier.train(REPO / "configs" / "mnist-vae.yaml", tmp_path / "resumed", overrides, progress=False,
                          callback=stop_at_4)
    assert first.interrupted and first.step == 4
    atelier.train(REPO / "configs" / "mnist-vae.yaml", tmp_path / "resumed", overrides, progress=False)

    def tensors(run):
        with safe_open(str(CheckpointManager(run / "checkpoints").latest_path()), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys() if not k.startswith("s.rng")}

    a, b = tensors(tmp_path / "straight"), tensors(tmp_path / "resumed")
    assert any(k.startswith("s.encoder.") for k in a) and any(k.startswith("s.opt_encoder.") for k in a)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


@needs_mnist
def test_cli_train_dry_run_sample_and_evaluate(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--config", str(REPO / "configs" / "mnist-vae.yaml"), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "dry run ok: model vae" in res.output

    run = tmp_path / "v"
    atelier.train(REPO / "configs" / "mnist-vae.yaml", run, TINY_VAE, progress=False)
    res = runner.invoke(cli, ["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "s.png") as img:
        assert img.info.get("atelier:model") == "vae"
    # A small reference set keeps the test fast (the mnist:test features would take most of a minute here).
    from atelier.data import open_source

    ref = tmp_path / "ref.npz"
    np.savez(ref, images=open_source("mnist:test", limit=300).images[:, 0].numpy())
    res = runner.invoke(cli, ["evaluate", str(run), "--metrics", "fid", "--n", "200", "--ref", str(ref), "--json"])
    assert res.exit_code == 0, res.output
    (record,) = json.loads(res.output)
    assert record["metric"] == "fid" and record["evaluator"] == "digits" and record["value"] > 0
    assert record["n_generated"] == 200 and record["n_ref"] == 300 and record["generator"] == "raw"  # no EMA
    res = runner.invoke(cli, ["evaluate", str(run), "--metrics", "cas", "--n", "200"])
    assert res.exit_code == 2 and "unconditional" in res.output

    from atelier.serve.registry import ModelStore

    # The studio and `atelier export` serve its decoder.
    assert ModelStore(tmp_path).get("v").capabilities == ("generate",)


def test_rgb_32px_gaussian_vae_trains_on_an_npz(tmp_path):
    rng = np.random.default_rng(0)
    images = np.zeros((40, 32, 32, 3), np.uint8)
    for i, img in enumerate(images):             # coloured squares at random places
        y, x = rng.integers(0, 20, 2)
        img[y : y + 12, x : x + 12] = rng.integers(60, 255, 3)
        images[i] = img
    np.savez(tmp_path / "squares.npz", images=images)
    overrides = {**TINY_VAE, "data.source": str(tmp_path / "squares.npz"), "data.resolution": 32,
                 "data.channels": 3, "data.limit": None, "model.likelihood": "gaussian", "model.sigma": 0.2,
                 "train.batch_size": 8, "train.steps": 12, "log.every": 4}
    result = atelier.train(REPO / "configs" / "mnist-vae.yaml", tmp_path / "rgb", overrides, progress=False)
    rows = _rows(tmp_path / "rgb")
    assert rows[-1]["elbo"] > rows[0]["elbo"]
    assert result.grid is not None and result.grid.is_file()
    g = atelier.load(tmp_path / "rgb")
    assert g.sample(3).shape == (3, 3, 32, 32)
