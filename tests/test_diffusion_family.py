"""The diffusion family through the one loop, the run folder, the API and the CLI: training and exact resume,
seeded sampling with a choice of sampler, steps and guidance, inpainting, SDEdit, and the diffusers export that
diffusers loads on its own. Tiny U-Nets on a few MNIST digits (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import atelier
from atelier.checkpoint import CheckpointManager
from atelier.loaded import DiffusionModel
from conftest import DATA_REASON, mnist_available, one_line_error, run_cli

pytestmark = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)

# A 2-level U-Net of widths 8 and 16 on 28 px digits: ~60 k parameters, a step in tens of milliseconds.
TINY = {"model.name": "diffusion", "model.block_out_channels": [8, 16], "model.attention_resolutions": [],
        "model.attention_head_dim": 8, "model.norm_num_groups": 4, "model.sample_steps": 4, "data.limit": 32,
        "train.batch_size": 8, "train.steps": 4, "train.device": "cpu", "log.every": 1, "log.sample_every": 4,
        "log.checkpoint_every": 2, "log.grid": 2, "log.tensorboard": False, "optim.lr_g": 1e-3}
CONDITIONAL = {**TINY, "model.num_classes": 10, "model.prediction": "flow"}


def _train(tmp_path_factory, name: str, overrides: dict):
    run = tmp_path_factory.mktemp(name) / name
    atelier.train(None, run, overrides, progress=False)
    return run


@pytest.fixture(scope="session")
def eps_run(tmp_path_factory):
    """An unconditional epsilon-prediction run (diffusers' DDPMPipeline samples it as it is)."""
    return _train(tmp_path_factory, "eps", TINY)


@pytest.fixture(scope="session")
def cond_run(tmp_path_factory):
    """A class-conditional flow-matching run (classifier-free guidance)."""
    return _train(tmp_path_factory, "cond", CONDITIONAL)


def _tensors(run) -> dict[str, torch.Tensor]:
    with safe_open(str(CheckpointManager(run / "checkpoints").latest_path()), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def _digit(tmp_path, model: DiffusionModel, name: str = "digit.png") -> tuple:
    """A 28 px image of the model's own making (uint8 (1, 28, 28)) written as a plain PNG."""
    img = model.sample(1, seed=5)[0]
    path = tmp_path / name
    Image.fromarray(img[0].numpy()).save(path)
    return path, img


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("overrides", [TINY, CONDITIONAL], ids=["epsilon", "flow-conditional"])
def test_trains_and_resumes_bit_identically(tmp_path, overrides):
    atelier.train(None, tmp_path / "straight", {**overrides, "train.steps": 4}, progress=False)
    atelier.train(None, tmp_path / "resumed", {**overrides, "train.steps": 2}, progress=False)
    result = atelier.train(None, tmp_path / "resumed", {**overrides, "train.steps": 4}, progress=False)
    assert result.step == 4 and np.isfinite(result.metrics["loss"])
    a, b = _tensors(tmp_path / "straight"), _tensors(tmp_path / "resumed")
    assert {"s.unet.unet.conv_in.weight", "s.unet_ema.unet.conv_in.weight", "s.opt.state.0.exp_avg"} <= a.keys()
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    # The EMA moved away from the raw weights (it is what samples), and the card says how the model samples.
    assert not torch.equal(a["s.unet.unet.conv_in.weight"], a["s.unet_ema.unet.conv_in.weight"])
    card = (tmp_path / "straight" / "model_card.md").read_text()
    assert "EMA denoiser" in card and "4 dpm++ steps" in card


# ---------------------------------------------------------------------------------------------- sampling
def test_sampling_is_seeded_and_follows_the_sampler_and_steps(eps_run):
    m = atelier.load(eps_run)
    assert isinstance(m, DiffusionModel) and m.which == "unet_ema" and m.steps == 4 and m.sampler_name == "dpm++"
    a = m.sample(3, seed=1)
    assert a.dtype == torch.uint8 and a.shape == (3, 1, 28, 28)
    assert torch.equal(a, m.sample(3, seed=1))                       # same seed, same images
    assert not torch.equal(a, m.sample(3, seed=2))
    assert torch.equal(m.sample(3, seed=1, sampler="ddpm", steps=3), m.sample(3, seed=1, sampler="ddpm", steps=3))
    assert not torch.equal(a, m.sample(3, seed=1, sampler="ddim"))
    assert not torch.equal(a, m.sample(3, seed=1, steps=6))
    # Image i of a seed is the same whatever the batch (its starting noise is the seed's i-th latent).
    assert torch.equal(a[:2], m.sample(3, seed=1, batch_size=2)[:2])
    assert not torch.equal(atelier.load(eps_run, which="raw").sample(3, seed=1), a)
    with pytest.raises(atelier.AtelierError, match="guidance needs a class-conditional"):
        m.sample(2, guidance=3.0)
    with pytest.raises(atelier.AtelierError, match="unknown sampler"):
        m.sample(2, sampler="plms")


def test_guidance_zero_is_the_unconditional_model_and_the_class_steers_the_rest(cond_run):
    m = atelier.load(cond_run)
    assert m.num_classes == 10 and m.sampler_name == "dpm++"
    three, seven = m.sample(4, seed=0, y=3, guidance=3.0), m.sample(4, seed=0, labels=7, guidance=3.0)
    assert not torch.equal(three, seven)                             # the output depends on the class
    # Scale 0 is the null class alone: the class asked for makes no difference.
    assert torch.equal(m.sample(4, seed=0, y=3, guidance=0.0), m.sample(4, seed=0, y=7, guidance=0.0))
    assert not torch.equal(three, m.sample(4, seed=0, y=3, guidance=1.0))
    assert torch.equal(three, m.sample(4, seed=0, y=3, guidance=3.0, sampler="dpm++"))


def test_sample_cli_takes_the_diffusion_options_and_other_runs_refuse_them(cond_run, tiny_run, tmp_path):
    out = tmp_path / "grid.png"
    res = run_cli("sample", cond_run, "--steps", 3, "--sampler", "euler", "--guidance", 3, "--class", 7, "--n", 4,
                  "--out", out)
    assert "wrote a grid of 4 images" in res.output
    with Image.open(out) as im:
        info = dict(im.info)
    assert (info["atelier:model"], info["atelier:sampler"], info["atelier:steps"]) == ("diffusion", "euler", "3")
    assert info["atelier:guidance"] == "3.0" and info["atelier:workflow"] == "sample"
    one_line_error(run_cli("sample", tiny_run, "--steps", 20, "--guidance", 3, "--out", out, ok=False),
                   r"--steps, --guidance apply to diffusion runs; .* is a dcgan run")
    one_line_error(run_cli("sample", cond_run, "--sampler", "ddim", "--out", out, ok=False),
                   r"unknown sampler 'ddim' for this flow model")


# ---------------------------------------------------------------------------------------------- editing
def test_inpaint_keeps_the_known_pixels_and_fills_the_hole(eps_run, tmp_path):
    m = atelier.load(eps_run)
    src, img = _digit(tmp_path, m)
    out = tmp_path / "filled.png"
    res = run_cli("inpaint", eps_run, "--image", src, "--rect", "8,8,20,20", "--out", out, "--steps", 4,
                  "--resample", 2, "--jump", 2)
    assert "144 px filled" in res.output
    hole = torch.zeros(1, 28, 28, dtype=torch.bool)
    hole[:, 8:20, 8:20] = True
    r = atelier.inpaint(eps_run, src, tmp_path / "api.png", rect="8,8,20,20", steps=4, jump_length=2, jump_n_sample=2)
    assert torch.equal(r.mask, hole) and torch.equal(r.input, img)
    assert torch.equal(r.image[~hole], img[~hole])                  # exactly the input outside the hole
    assert not torch.equal(r.image[hole], img[hole])
    # The file carries the invisible watermark, so its known pixels are the input's within a few levels.
    with Image.open(out) as im:
        written = torch.from_numpy(np.asarray(im.convert("L")).copy())[None]
        assert im.info["atelier:workflow"] == "inpaint" and im.info["atelier:input"] == "digit.png"
    diff = (written.int() - img.int()).abs()[~hole]
    assert diff.float().mean() < 2.0 and diff.max() <= 12, (diff.float().mean(), diff.max())
    # A mask file (white = fill) gives the same hole as the rectangle, and the same seed the same result.
    Image.fromarray(hole[0].numpy().astype(np.uint8) * 255).save(tmp_path / "mask.png")
    r2 = atelier.inpaint(eps_run, src, tmp_path / "api2.png", mask=tmp_path / "mask.png", steps=4, jump_length=2,
                         jump_n_sample=2)
    assert torch.equal(r2.image, r.image)


def test_edit_at_a_tiny_strength_returns_about_the_input(eps_run, tmp_path):
    m = atelier.load(eps_run)
    src, img = _digit(tmp_path, m)
    near = atelier.sdedit(eps_run, src, tmp_path / "near.png", strength=0.02, steps=50, seed=1)   # one step
    far = atelier.sdedit(eps_run, src, tmp_path / "far.png", strength=1.0, steps=4, seed=1)
    d_near = (near.image.int() - img.int()).abs().float().mean()
    d_far = (far.image.int() - img.int()).abs().float().mean()
    assert d_near < 8 and d_far > 3 * d_near, (d_near, d_far)
    res = run_cli("edit", eps_run, "--image", src, "--strength", 0.5, "--out", tmp_path / "cli.png")
    assert "wrote the edited image 28x28" in res.output
    with Image.open(tmp_path / "cli.png") as im:
        assert im.info["atelier:workflow"] == "edit" and im.info["atelier:strength"] == "0.5"


def test_editing_mistakes_are_one_line_errors(eps_run, tiny_run, tmp_path):
    m = atelier.load(eps_run)
    src, _ = _digit(tmp_path, m)
    Image.new("L", (20, 20), 255).save(tmp_path / "small-mask.png")
    out = tmp_path / "o.png"
    cases = [
        (("inpaint", eps_run, "--image", src, "--mask", tmp_path / "small-mask.png", "--out", out),
         r"mask .* is 20x20 px; it must match the image \(28x28\)"),
        (("inpaint", eps_run, "--image", tmp_path / "nope.png", "--rect", "1,1,5,5", "--out", out),
         r"image not found: .*nope.png"),
        (("inpaint", eps_run, "--image", src, "--out", out), r"give a mask image \(--mask\) or a rectangle"),
        (("inpaint", eps_run, "--image", src, "--rect", "1,1,40,5", "--out", out), r"rectangle .* must satisfy"),
        (("edit", tiny_run, "--image", src, "--out", out), r"is a dcgan \(generator\) run; inpainting and editing"),
        (("edit", eps_run, "--image", src, "--class", 3, "--out", out), r"--class needs a class-conditional model"),
    ]
    for args, pattern in cases:
        one_line_error(run_cli(*args, ok=False), pattern)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- export
def test_diffusers_export_loads_in_diffusers_and_samples_what_atelier_samples(eps_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "pipe"
    res = run_cli("export", eps_run, "--format", "diffusers", "--out", folder)
    assert "DiffusionPipeline.from_pretrained" in res.output
    import diffusers

    pipe = diffusers.DiffusionPipeline.from_pretrained(folder)
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"    # the run's sampler
    m = atelier.load(eps_run)
    for seed in (0, 3):
        ours = m.sample(2, seed=seed, steps=5)
        theirs = pipe(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(seed),
                      output_type="np").images                                   # (2, 28, 28, 1) in [0, 1]
        theirs = torch.from_numpy(np.round(theirs * 255)).permute(0, 3, 1, 2)
        assert (theirs - ours.float()).abs().max() <= 1, seed              # the same images, rounding aside
    one_line_error(run_cli("export", eps_run, "--format", "diffusers", "--out", folder, ok=False),
                   "already exists and is not empty")



def test_region_edit_inpaint_fills_the_region_of_a_larger_frame_and_keeps_the_rest(eps_run, tiny_run):
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (56, 72, 3), generator=g, dtype=torch.uint8).numpy()
    r = atelier.edit_region(frame, kind="inpaint", model=eps_run, rect="10,10,40,30",
                            options={"steps": 4, "jump_length": 2, "jump_n_sample": 2}, feather_px=0)
    out = np.asarray(r.image)
    inside = np.zeros((56, 72), dtype=bool)
    inside[10:30, 10:40] = True
    assert out.shape == frame.shape and np.array_equal(out[~inside], frame[~inside])
    assert not np.array_equal(out[inside], frame[inside])
    assert r.metadata["edit"] == "inpaint" and r.metadata["sampler"] == "repaint"
    with pytest.raises(atelier.AtelierError, match="an inpaint edit needs a diffusion run"):
        atelier.edit_region(frame, kind="inpaint", model=tiny_run, rect="10,10,40,30")


def test_the_studio_samples_with_the_chosen_sampler_steps_and_guidance_and_offers_only_diffusion_to_inpaint(
        eps_run, cond_run, tiny_run, tmp_path):
    pytest.importorskip("fastapi")
    import base64
    import io

    from fastapi.testclient import TestClient

    from atelier.serve import create_app
    from atelier.serve.settings import StudioSettings

    runs = tmp_path / "runs"
    runs.mkdir()
    for run in (eps_run, cond_run, tiny_run):
        (runs / run.name).symlink_to(run, target_is_directory=True)
    with TestClient(create_app(runs, settings=StudioSettings(home=tmp_path / "home"))) as client:
        kinds = client.get("/api/edit/kinds").json()["kinds"]
        assert sorted(kinds["inpaint"]["models"]) == sorted([eps_run.name, cond_run.name])  # no GAN listed
        body = {"model": cond_run.name, "seeds": [1, 2], "label": 3, "steps": 3, "sampler": "euler",
                "guidance": 2.0, "format": "json"}
        r = client.post("/api/generate", json=body)
        assert r.status_code == 200, r.text
        got = [np.asarray(Image.open(io.BytesIO(base64.b64decode(im["image"].split(",", 1)[1]))))
               for im in r.json()["images"]]
        want = atelier.load(cond_run).with_sampling(3, "euler", 2.0).sample(seeds=[1, 2], labels=3)
        assert all(np.array_equal(g, w[0].numpy()) for g, w in zip(got, want, strict=True))
        other = client.post("/api/generate", json={**body, "guidance": 0.0}).json()["images"]
        assert other[0]["image"] != r.json()["images"][0]["image"]  # the guidance scale is used
        assert r.json()["steps"] == 3 and r.json()["sampler"] == "euler"  # recorded with the images
        gan = client.post("/api/generate", json={"model": tiny_run.name, "n": 2, "steps": 5})
        assert gan.status_code == 400 and "diffusion runs" in gan.json()["detail"]
        bad = client.post("/api/generate", json={**body, "sampler": "magic"})
        assert bad.status_code == 400 and "unknown sampler" in bad.json()["detail"]
        assert client.post("/api/generate", json={**body, "steps": 0}).status_code == 422


def test_cli_edit_region_inpaints_with_a_diffusion_run_and_keeps_the_outside(eps_run, tiny_run, tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    res = run_cli("edit-region", "--image", tmp_path / "in.png", "--rect", "8,8,24,20", "--inpaint-model", eps_run,
                  "--steps", "4", "--seed", "1", "--feather", "0", "--out", out)
    assert "inpaint of" in res.output
    got = np.asarray(Image.open(out).convert("RGB"))
    outside = np.ones((40, 48), bool)
    outside[8:20, 8:24] = False
    assert np.array_equal(got[outside], photo[outside]) and not np.array_equal(got[~outside], photo[~outside])
    one_line_error(run_cli("edit-region", "--image", tmp_path / "in.png", "--rect", "8,8,24,20", "--inpaint-model",
                           tiny_run, "--out", tmp_path / "x.png", ok=False), "inpaint edit needs a diffusion run")
