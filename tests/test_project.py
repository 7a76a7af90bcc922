"""Projection (GAN inversion) and latent directions: atelier.inversion, api.project / edit_latent, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import atelier
from atelier.errors import AtelierError
from atelier.inversion import ProjectionDistance, find_directions, move, project_latent, psnr, render
from atelier.inversion.project import latent_stats, noise_buffers, project_batch
from atelier.models.dcgan import DCGANConfig
from atelier.models.dcgan import Generator as DCGANGenerator
from atelier.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from atelier.provenance import read_metadata
from conftest import TINY, _train_tiny, one_line_error, run_cli

TINY_SG = {"name": "stylegan2", "z_dim": 16, "w_dim": 16, "mapping_layers": 2, "width": 8, "width_max": 16}


def tiny_sg(channels: int = 3, num_classes: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(0)
    cfg = StyleGAN2Config(**{k: v for k, v in TINY_SG.items() if k != "name"}, num_classes=num_classes)
    return StyleGAN2Generator(cfg, resolution=16, channels=channels).eval()


def tiny_dcgan() -> DCGANGenerator:
    """A random DCGAN whose last layer is scaled up: an untrained one draws nearly flat grey (|x| < 0.03)."""
    torch.manual_seed(0)
    g = DCGANGenerator(DCGANConfig(width=8, z_dim=16), resolution=28, channels=1).eval()
    with torch.no_grad():
        [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1].weight.mul_(30)
    return g


def _w(g: StyleGAN2Generator, seed: int) -> torch.Tensor:
    with torch.no_grad():
        return g.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(seed)))[:, 0]   # (1, w_dim)


@pytest.mark.parametrize(("channels", "size", "sigmas"), [(3, 64, (0.5, 1.0, 2.0, 4.0, 8.0)),
                                                          (1, 28, (0.5, 1.0, 2.0, 4.0)), (4, 24, (1.0, 3.0))])
def test_separable_ms_ssim_equals_kornias_loss_and_gradient(channels, size, sigmas):
    import kornia

    from atelier.inversion.distance import ms_ssim_loss

    gen = torch.Generator().manual_seed(channels)
    x = torch.rand(3, channels, size, size, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.rand(3, channels, size, size, generator=gen, dtype=torch.float64)
    ref = kornia.losses.MS_SSIMLoss(sigmas=sigmas, alpha=1.0, compensation=1.0, reduction="none").double()(x, t)
    mine = ms_ssim_loss(x, t, sigmas)
    assert mine.shape == ref.shape == (3, size, size)
    torch.testing.assert_close(mine, ref, atol=1e-6, rtol=0)     # kornia's windows are float32 before .double()
    g_ref, = torch.autograd.grad(ref.sum(), x)
    g_mine, = torch.autograd.grad(mine.sum(), x)
    torch.testing.assert_close(g_mine, g_ref, atol=1e-5, rtol=1e-4)
    assert float(ms_ssim_loss(t, t, sigmas).abs().max()) < 1e-12               # an image against itself: 0


def test_projection_recovers_the_w_of_a_generated_image():
    g = tiny_sg()
    w_true = _w(g, 5)
    with torch.no_grad():
        target = render(g, w_true, "w").clamp(-1, 1)
    p = project_latent(g, target, ProjectionDistance("none", 3, 16), "w", steps=100, optimize_noise=False)
    w_avg, _ = latent_stats(g)
    # Stated error: within 10% of the distance from the start (w_avg) to the true w, and the image within 35 dB.
    rel = float((p.latent - w_true[0]).norm() / (w_true[0] - w_avg).norm())
    assert rel < 0.1, rel
    assert psnr(p.image, p.target) > 35
    assert p.start == "w_avg" and p.snapshots[0][0] == 0 and p.snapshots[-1][0] == 100
    # the start image is the w average's, which is far from the target
    assert psnr(p.snapshots[0][1], p.target) < psnr(p.image, p.target) - 10


def test_w_plus_with_noise_maps_on_rgba_keeps_the_generator_and_whitens_the_noise():
    g = tiny_sg(channels=4)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    with torch.no_grad():
        target = render(g, _w(g, 3), "w").clamp(-1, 1)
    p = project_latent(g, target, ProjectionDistance("random-cnn", 4, 16), "w+", steps=60)
    assert p.latent.shape == (g.num_ws, g.w_dim) and p.image.shape == (4, 16, 16)
    assert psnr(p.image, p.target) > 25
    assert set(p.noise) == set(noise_buffers(g)) and len(p.noise) == len(g.convs)
    for v in p.noise.values():  # renormalised after every step
        assert abs(float(v.mean())) < 1e-4 and abs(float(v.square().mean()) - 1) < 1e-3
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert "random-cnn" in p.distance["distance"] and "MS-SSIM" in p.distance["distance"]


def test_z_projection_of_a_grey_dcgan_image():
    g = tiny_dcgan()
    z_true = torch.randn(1, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        target = g(z_true)
    d = ProjectionDistance("digits", 1, 28)
    p = project_latent(g, target, d, "z", steps=80, candidates=16)
    start = psnr(p.snapshots[0][1], p.target)
    assert p.latent.shape == (16,) and psnr(p.image, p.target) > max(30, start + 10)
    # z is recovered within 25% of its norm (the Gaussian prior pulls it slightly towards 0)
    assert float((p.latent - z_true[0]).norm() / z_true.norm()) < 0.25
    with pytest.raises(AtelierError, match="mapping network"):
        project_latent(g, target, d, "w", steps=1)


@pytest.mark.parametrize("space", ["z", "w+"])
def test_a_batch_of_images_is_projected_as_each_one_alone(space):
    """Each image of a batch follows its own search: its result is the one-image projection's (the w+ search's
    exploration noise is drawn for the whole batch, so there only closeness to its own target is compared)."""
    if space == "z":
        g, d = tiny_dcgan(), ProjectionDistance("digits", 1, 28)
        with torch.no_grad():
            targets = g(torch.randn(3, 16, generator=torch.Generator().manual_seed(11)))
    else:
        g, d = tiny_sg(), ProjectionDistance("random-cnn", 3, 16)
        with torch.no_grad():
            targets = render(g, torch.cat([_w(g, s) for s in (1, 2, 3)]), "w").clamp(-1, 1)
    batch = project_batch(g, targets, d, space, steps=40, candidates=16)
    alone = [project_latent(g, targets[i:i + 1], d, space, steps=40, candidates=16) for i in range(3)]
    assert len(batch) == 3 and all(b.latent.shape == a.latent.shape for b, a in zip(batch, alone, strict=True))
    for b, a in zip(batch, alone, strict=True):
        if space == "z":
            assert float((b.latent - a.latent).norm() / a.latent.norm()) < 1e-3
        else:
            assert abs(psnr(b.image, b.target) - psnr(a.image, a.target)) < 3
            assert set(b.noise) == set(a.noise) and all(v.shape == a.noise[k].shape for k, v in b.noise.items())
    # each result belongs to its own target
    assert psnr(batch[0].image, batch[0].target) > psnr(batch[0].image, batch[1].target) + 3


def test_sefa_and_pca_directions_are_orthonormal_and_change_the_image():
    sg, dc = tiny_sg(), tiny_dcgan()
    for net, method in ((sg, "sefa"), (sg, "pca"), (dc, "sefa")):
        d = find_directions(net, method, k=6)
        assert d.orthonormal and d.vectors.shape == (6, 16)
        assert torch.allclose(d.vectors @ d.vectors.t(), torch.eye(6), atol=1e-5), (method, type(net).__name__)
        assert (d.values[:-1] >= d.values[1:] - 1e-6).all()   # strongest first
        space = "w" if net is sg else "z"
        lat = _w(sg, 1)[0] if net is sg else torch.randn(16, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            imgs = render(net, move(lat, d, 0, torch.tensor([-2.0, 0.0, 2.0])), space).clamp(-1, 1)
        assert (imgs[0] - imgs[1]).abs().mean() > 0.01 and (imgs[2] - imgs[1]).abs().mean() > 0.01
    z_pca = find_directions(dc, "pca", k=4)   # GANSpace's regression for a z-space model: unit, not orthogonal
    assert not z_pca.orthonormal and torch.allclose(z_pca.vectors.norm(dim=1), torch.ones(4), atol=1e-5)
    with pytest.raises(AtelierError, match="out of range"):
        move(torch.zeros(16), z_pca, 4, torch.zeros(1))


def test_class_directions_move_the_average_w_to_each_class_mean():
    g = tiny_sg(num_classes=3)
    d = find_directions(g, "class")
    assert len(d) == 3 and d.space == "w"
    means = torch.stack([_class_mean(g, k) for k in range(3)])
    assert torch.allclose(move(means.mean(0), d, 2, torch.ones(1))[0], means[2], atol=1e-5)
    with pytest.raises(AtelierError, match="class-conditional"):
        find_directions(tiny_sg(), "class")


def _class_mean(g: StyleGAN2Generator, k: int, n: int = 500) -> torch.Tensor:
    z = torch.randn(3 * n, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(3).repeat_interleave(n)
    with torch.no_grad():
        return g.mapping(z, labels)[labels == k, 0].mean(0)


@pytest.fixture(scope="module")
def sg_run(tmp_path_factory) -> Path:
    """A tiny StyleGAN2 run on MNIST at 16 px, trained for 2 steps (its weights only need to exist); the digits
    evaluator reads 28 px only, so its projections use the random-cnn features."""
    return _train_tiny(tmp_path_factory, "sgruns", "tiny-sg", {
        **TINY, **{f"model.{k}": v for k, v in TINY_SG.items()}, "data.resolution": 16, "train.steps": 2,
        "log.checkpoint_every": 2, "log.sample_every": 2})


def test_project_and_edit_latent_through_the_api(sg_run, tmp_path):
    g = atelier.load(sg_run)
    photo = tmp_path / "digit.png"
    Image.fromarray(g.sample(1, seed=4)[0, 0].numpy()).resize((40, 40)).save(photo)   # any size: resized
    result = atelier.project(sg_run, photo, tmp_path / "proj", "w+", steps=10)
    assert [s for s, _ in result.projection.snapshots] == [0, 2, 4, 6, 8, 10]
    files = {p.name for p in (tmp_path / "proj").iterdir()}
    assert files == {"latent.npy", "reconstruction.png", "progress.png", "projection.json", "noise.npz"}
    record = json.loads((tmp_path / "proj" / "projection.json").read_text())
    assert record["space"] == "w+" and record["features"] == "random-cnn" and "pixel MSE" in record["distance"]
    assert np.load(tmp_path / "proj" / "latent.npy").shape == (g.network.num_ws, 16)
    with Image.open(tmp_path / "proj" / "progress.png") as im:
        assert im.width > 7 * 16 * 3   # the target + 6 snapshots, enlarged 3x
    assert read_metadata(tmp_path / "proj" / "reconstruction.png")["atelier:workflow"] == "project"
    strip = atelier.edit_latent(sg_run, tmp_path / "proj" / "latent.npy", 2, "-2..2", "sefa", tmp_path / "s.png",
                                noise=tmp_path / "proj" / "noise.npz")
    assert strip.images.shape == (5, 1, 16, 16) and strip.amounts == [-2.0, -1.0, 0.0, 1.0, 2.0]
    # amount 0 is the projection's own reconstruction (the same latent and noise maps)
    assert torch.equal(strip.images[2], result.projection.image)
    assert not torch.equal(strip.images[0], strip.images[4])
    with Image.open(tmp_path / "s.png") as im:
        assert im.width > 5 * 16 * 3
    # a w latent (one vector) also works, and a method that needs classes refuses an unconditional run
    w = atelier.edit_latent(g, np.zeros(16, np.float32), 0, [0.0, 1.0], "pca").images
    assert w.shape == (2, 1, 16, 16)


def test_project_and_edit_latent_cli_on_a_dcgan_run(tiny_run, tmp_path):
    g = atelier.load(tiny_run)
    photo = tmp_path / "digit.png"
    Image.fromarray(g.sample(1, seed=2)[0, 0].numpy()).save(photo)
    out = run_cli("project", tiny_run, "--image", photo, "--out-dir", tmp_path / "p", "--steps", "5").output
    assert "into z" in out and "PSNR" in out and "distance: " in out and "digits" in out
    latent = tmp_path / "p" / "latent.npy"
    assert np.load(latent).shape == (g.z_dim,) and not (tmp_path / "p" / "noise.npz").exists()
    out = run_cli("edit-latent", tiny_run, "--latent", latent, "--direction", "3", "--amount", "-3,0,3", "--out",
                  tmp_path / "s.png").output
    assert "3 frames along sefa direction 3" in out
    strip = atelier.edit_latent(tiny_run, latent, 3, [0.0])
    expected = atelier.load(tiny_run).generate(torch.from_numpy(np.load(latent))[None])
    assert torch.equal(strip.images, expected)   # amount 0: the latent's own image, as sample renders it


def test_cli_bad_input_is_one_error_line(tiny_run, tmp_path):
    one_line_error(run_cli("project", tiny_run, "--image", tmp_path / "none.png", "--out-dir", tmp_path / "p",
                           ok=False), "no such file")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 7), np.float32))
    one_line_error(run_cli("edit-latent", tiny_run, "--latent", bad, "--direction", "0", "--out", tmp_path / "s.png",
                           ok=False), r"wrong latent shape \(3, 7\)")
    good = tmp_path / "z.npy"
    np.save(good, np.zeros(16, np.float32))
    one_line_error(run_cli("edit-latent", tiny_run, "--latent", good, "--direction", "16", "--out",
                           tmp_path / "s.png", ok=False), r"direction 16 is out of range")
    one_line_error(run_cli("edit-latent", tiny_run, "--latent", good, "--direction", "0", "--amount", "a..b",
                           "--out", tmp_path / "s.png", ok=False), "amount")
    photo = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(photo)
    one_line_error(run_cli("project", tiny_run, "--image", photo, "--out-dir", tmp_path / "p",
                           "--space", "w+", ok=False), "mapping network")


def test_no_metadata_is_logged_in_the_run(own_tiny_run, tmp_path):
    photo = tmp_path / "digit.png"
    Image.new("L", (28, 28), 255).save(photo)
    out = run_cli("project", own_tiny_run, "--image", photo, "--out-dir", tmp_path / "p", "--steps", "2",
                  "--no-metadata").output
    assert "without metadata" in out
    rows = [json.loads(line) for line in (own_tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["workflow"] for r in rows if r.get("event") == "no-metadata"] == ["project"]
    assert read_metadata(tmp_path / "p" / "reconstruction.png") == {}


def test_perceptual_path_length_is_zero_for_a_collapsed_generator_and_stable_in_eps():
    from atelier.inversion import path_length

    g = tiny_sg()
    d = ProjectionDistance("random-cnn", 3, 16)
    full = path_length(g, d, n=40, seed=1)
    assert full["metric"] == "ppl" and full["space"] == "w" and full["value"] > 0
    assert path_length(g, d, n=40, seed=1, psi=0.0)["value"] == 0.0        # every w is w_avg: nothing changes
    assert path_length(g, d, n=40, seed=1, psi=0.5)["value"] < full["value"]  # truncation shortens the paths
    dc = tiny_dcgan()
    a = path_length(dc, ProjectionDistance("digits", 1, 28), n=40, seed=2)["value"]
    b = path_length(dc, ProjectionDistance("digits", 1, 28), n=40, seed=2, eps=2e-4)["value"]
    assert a > 0 and abs(a - b) / a < 0.2                                     # a second-order quantity over eps^2


def test_evaluate_reports_ppl_for_a_run(sg_run):
    recs = atelier.evaluate(sg_run, metrics=["ppl"], n=20, evaluator="random-cnn", record=False)
    assert [r["metric"] for r in recs] == ["ppl"] and recs[0]["value"] > 0 and recs[0]["evaluator"] == "random-cnn"
    out = run_cli("evaluate", str(sg_run), "--metrics", "ppl", "--n", "20", "--evaluator", "random-cnn",
                  "--no-record").output
    assert "ppl" in out and "pairs" in out and "reference:" not in out     # no reference set for a path length
