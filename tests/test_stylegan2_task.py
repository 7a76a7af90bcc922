"""The StyleGAN2 family through atelier: its task (exact resume with lazy R1, path length and ADA), truncation and
style mixing through the loaded Generator, the API and the CLI, RGBA folders in and out, and fine-tuning from a
parent run with FreezeD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import atelier
from atelier.checkpoint import CheckpointManager
from atelier.errors import AtelierError
from atelier.runs import Run
from conftest import one_line_error, run_cli

# A tiny StyleGAN2 on a tiny RGBA folder: a few steps take about a second.
TINY_SG = {
    "model.name": "stylegan2", "model.z_dim": 8, "model.w_dim": 8, "model.width": 4, "model.width_max": 8,
    "data.resolution": 32, "data.channels": 4, "data.alpha": "keep", "train.batch_size": 4, "train.steps": 4,
    "train.device": "cpu", "train.precision": "fp32", "loss.r1_gamma": 1.0, "loss.r1_every": 2,
    "model.pl_weight": 1.0, "model.pl_every": 2, "augment.policy": "color,translation,cutout", "augment.p": 0.0,
    "augment.ada_target": 0.6, "augment.ada_interval": 1, "augment.ada_kimg": 0.01, "optim.lr_g": 2e-3,
    "optim.lr_d": 2e-3, "optim.betas": [0.0, 0.99], "log.every": 1, "log.sample_every": 2,
    "log.checkpoint_every": 2, "log.grid": 2, "log.tensorboard": False,
}


def sprites(folder: Path, n: int = 12, size: int = 32, seed: int = 0) -> Path:
    """RGBA sprites: a coloured disc of random size and colour on a transparent background, in two class folders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        r = rng.uniform(size * 0.2, size * 0.45)
        a = np.zeros((size, size, 4), np.uint8)
        disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r
        a[disc, :3] = rng.integers(0, 256, 3)
        a[disc, 3] = 255
        sub = folder / ("round" if i % 2 else "other")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a, "RGBA").save(sub / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def sg_run(tmp_path_factory) -> Path:
    """A tiny StyleGAN2 run on RGBA sprites (4 steps), trained once for this module."""
    root = tmp_path_factory.mktemp("sg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_CACHE", str(root / "cache"))
        atelier.train(None, root / "run", {**TINY_SG, "data.source": str(sprites(root / "sprites"))},
                      progress=False)
    return root / "run"


def _state(run: Path) -> dict[str, torch.Tensor]:
    path = Run(run).latest_checkpoint()
    assert path is not None
    state = CheckpointManager.read(path)
    return {f"{slot}.{k}": v for slot in ("G", "D", "G_ema") for k, v in state[slot].items()}


def test_the_task_resumes_bit_identically_with_lazy_r1_path_length_and_ada(tmp_path):
    data = {**TINY_SG, "data.source": str(sprites(tmp_path / "sprites"))}
    straight = atelier.train(None, tmp_path / "straight", data, progress=False)
    atelier.train(None, tmp_path / "halves", {**data, "train.steps": 2}, progress=False)
    resumed = atelier.train(None, tmp_path / "halves", {"train.steps": 4}, progress=False)
    assert straight.step == resumed.step == 4
    # Every regulariser ran in these steps (lazy ones at steps 1 and 3), and ADA moved p.
    text = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert '"r1"' in text and '"pl"' in text and '"aug_p"' in text
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "halves")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert straight.metrics == resumed.metrics


def test_truncation_zero_gives_the_w_average_image_for_every_seed(sg_run):
    g = atelier.load(sg_run)
    assert g.supports_truncation and g.info()["truncation"]
    images = g.sample(6, seed=3, psi=0.0)
    assert images.shape == (6, 4, 32, 32)
    assert all(torch.equal(images[0], im) for im in images[1:])
    assert not torch.equal(g.sample(6, seed=3)[0], g.sample(6, seed=3)[1])  # psi 1: the seeds differ
    s = atelier.sample(sg_run, n=4, seed=0, truncation=0.0)
    assert all(torch.equal(s.images[0], im) for im in s.images[1:]) and s.fields[0]["truncation"] == 0.0


def test_truncation_of_a_model_without_mapping_network_is_a_clear_error(tiny_run, tmp_path):
    with pytest.raises(AtelierError, match="truncation needs a generator with a mapping network.*dcgan"):
        atelier.sample(tiny_run, n=2, truncation=0.7)
    one_line_error(run_cli("sample", str(tiny_run), "--truncation", "0.7", "--out", str(tmp_path / "g.png"),
                           ok=False), "truncation needs a generator with a mapping network")
    assert atelier.sample(tiny_run, n=2).images.shape[0] == 2  # psi 1 (the default) still works


def test_style_mixing_takes_coarse_styles_from_rows_and_fine_ones_from_columns(sg_run, tmp_path):
    g = atelier.load(sg_run)
    a, b = g.latents(seeds=[1, 2]), g.latents(seeds=[7, 8, 9])
    own_a, own_b = g.generate(a), g.generate(b)
    same = g.mix(a, a, crossover=16)
    assert torch.equal(same[0, 0], own_a[0]) and torch.equal(same[1, 1], own_a[1])  # mixing a with itself: a
    all_fine = g.mix(a, b, crossover=4)  # every style from the column
    assert torch.equal(all_fine[0, 2], own_b[2]) and torch.equal(all_fine[1, 2], own_b[2])
    mixed = g.mix(a, b, crossover=16)
    assert mixed.shape == (2, 3, 4, 32, 32)
    assert not torch.equal(mixed[0, 0], own_a[0]) and not torch.equal(mixed[0, 0], own_b[0])
    assert not torch.equal(mixed[0, 0], mixed[1, 0]) and not torch.equal(mixed[0, 0], mixed[0, 1])  # both count
    res = run_cli("mix", str(sg_run), "--rows", "1-2", "--cols", "7-9", "--out", str(tmp_path / "mix.png"))
    assert "style-mixing grid" in res.output
    with Image.open(tmp_path / "mix.png") as grid:  # 3 + 1 columns, 2 + 1 rows, RGBA over a checkerboard
        assert grid.mode == "RGB" and grid.width > 4 * 32 * 3 and 3 * 32 * 3 < grid.height < 4 * 32 * 3


def test_rgba_samples_keep_their_alpha_channel(sg_run, tmp_path):
    run_cli("sample", str(sg_run), "--n", "3", "--truncation", "0.7", "--out-dir", str(tmp_path / "each"))
    files = sorted((tmp_path / "each").glob("*.png"))
    assert len(files) == 3
    for f in files:
        with Image.open(f) as im:
            assert im.mode == "RGBA" and im.size == (32, 32)
    with Image.open(files[0]) as im:
        alpha = np.asarray(im)[:, :, 3]
    assert alpha.min() < 255  # transparency survives (an untrained G is not opaque everywhere)


def test_finetune_starts_from_the_parent_freezes_d_and_records_the_parent(sg_run, tmp_path):
    new = sprites(tmp_path / "new", n=6, seed=5)
    result = atelier.finetune(sg_run, new, tmp_path / "ft", freeze_d=2,
                              overrides={"train.steps": 2, "log.sample_every": 2}, progress=False)
    assert result.step == 2
    parent_ckpt = Run(sg_run).latest_checkpoint()
    parent = CheckpointManager.read(parent_ckpt)
    child = CheckpointManager.read(Run(tmp_path / "ft").latest_checkpoint())
    d_frozen = [k for k in parent["D"] if k.startswith(("from_rgb.", "blocks.0."))]
    d_trained = [k for k in parent["D"] if not k.startswith(("from_rgb.", "blocks.0."))]
    assert d_frozen and all(torch.equal(parent["D"][k], child["D"][k]) for k in d_frozen)
    assert any(not torch.equal(parent["D"][k], child["D"][k]) for k in d_trained)
    # G starts from the parent's: two small Adam steps away (a fresh init would be O(1) away), w average included.
    for k, v in parent["G"].items():
        assert (child["G"][k] - v).abs().max() < 0.05, k
    cfg = Run(tmp_path / "ft").config()
    assert cfg.model["init_from"] == str(parent_ckpt.resolve()) and cfg.model["freeze_d"] == 2
    assert cfg.data.source == str(new) and cfg.augment.ada_target == 0.6
    card = (tmp_path / "ft" / "model_card.md").read_text()
    assert f"Fine-tuned from `{parent_ckpt.resolve()}` (step 4" in card and "FreezeD: D's first 2 blocks" in card
    # The memorisation check ran on the 6 new images and is in the card.
    (mem,) = result.evaluations
    assert mem["metric"] == "memorisation" and mem["n_train"] == 6 and 0 <= mem["value"] <= 1
    assert "MEMORISATION" in card
    # Resuming the fine-tuned run continues it (its own checkpoint, not the parent's weights again).
    again = atelier.finetune(sg_run, new, tmp_path / "ft", overrides={"train.steps": 3}, progress=False)
    assert again.step == 3 and again.resumed_from == 2


def test_finetune_on_fewer_images_than_the_parents_batch_lowers_the_batch_and_says_so(sg_run, tmp_path):
    few = sprites(tmp_path / "few", n=3, seed=9)                  # the parent trained at batch 4
    with pytest.warns(UserWarning, match="holds 3 images: fine-tuning at batch 2"):
        result = atelier.finetune(sg_run, few, tmp_path / "ft3", overrides={"train.steps": 1}, progress=False)
    assert result.step == 1 and Run(tmp_path / "ft3").config().train.batch_size == 2


def test_finetune_refuses_what_it_cannot_do(tiny_run, sg_run, tmp_path):
    with pytest.raises(AtelierError, match="StyleGAN2-type run"):
        atelier.finetune(tiny_run, tmp_path, tmp_path / "x")
    with pytest.raises(AtelierError, match="freeze_d is 9 but this discriminator has 4 blocks"):
        atelier.finetune(sg_run, sprites(tmp_path / "s", n=4), tmp_path / "y", freeze_d=9,
                         overrides={"train.steps": 1})
    one_line_error(run_cli("finetune", str(tmp_path / "nothing"), "--data", str(tmp_path), "--run-dir",
                           str(tmp_path / "z"), ok=False), "is not a run folder")


def test_a_fine_tune_keeps_its_parents_class_blend(tmp_path):
    folder = sprites(tmp_path / "two-classes", n=8)
    blend = {"model.num_classes": 2, "model.cond_start_kimg": 0.004, "model.cond_ramp_kimg": 0.016}
    atelier.train(None, tmp_path / "parent", {**TINY_SG, **blend, "data.source": str(folder)}, progress=False)
    assert float(_state(tmp_path / "parent")["D.cond_weight"]) == 0.75      # (16 - 4) / 16 after 4 steps
    atelier.finetune(tmp_path / "parent", folder, tmp_path / "child", overrides={"train.steps": 2})
    child = _state(tmp_path / "child")  # its own images seen (8) would give 0.25: it keeps the parent's 0.75
    assert float(child["D.cond_weight"]) == float(child["G.map.cond_weight"]) == 0.75
    assert "blend now 0.75" in (tmp_path / "child" / "model_card.md").read_text()


def test_the_recipes_training_defaults_follow_the_resolution_and_batch_it_ends_with():
    sg = {"model.name": "stylegan2", "data.resolution": 64}
    cpu = atelier.api.training_defaults({**sg, "model.num_classes": 9}, gpu=False)
    assert (cpu["train.batch_size"], cpu["loss.r1_gamma"], cpu["train.minutes"]) == (32, 0.0256, 30.0)
    assert (cpu["model.cond_start_kimg"], cpu["model.cond_ramp_kimg"]) == (20, 40)  # classes blended in
    assert atelier.api.training_reason(cpu).startswith("training: StyleGAN2-ADA's small-data settings, batch 32, "
                                                       "R1 gamma 0.0256; classes blended in from 20k to 60k images")
    gpu = atelier.api.training_defaults({**sg, "model.num_classes": 9, "train.batch_size": 16}, gpu=True)
    assert (gpu["loss.r1_gamma"], gpu["model.pl_weight"], gpu["train.images"]) == (0.0512, 2.0, 5_000_000)
    assert (gpu["model.cond_start_kimg"], gpu["model.cond_ramp_kimg"]) == (1000, 1000)
    plain = atelier.api.training_defaults({**sg, "data.resolution": 128}, gpu=False)
    assert plain["loss.r1_gamma"] == 0.1024 and "model.cond_start_kimg" not in plain  # no classes: nothing to blend
    assert "classes blended" not in atelier.api.training_reason(plain)
    assert atelier.api.training_defaults({"model.name": "resnet", "data.resolution": 64}, gpu=False) == {}


def test_train_on_a_folder_without_config_uses_the_recipe_chosen_from_the_data(tmp_path):
    folder = sprites(tmp_path / "icons", n=8)
    res = run_cli("train", "--data", str(folder), "--run-dir", str(tmp_path / "run"), "--steps", "1",
                  "--batch-size", "2", "--set", "log.tensorboard=false", "--set", "model.width=4",
                  "--set", "model.width_max=8")
    assert "no --config: a recipe chosen from" in res.output and "model stylegan2" in res.output
    cfg = Run(tmp_path / "run").config()
    assert cfg.model["name"] == "stylegan2" and cfg.data.channels == 4 and cfg.data.alpha == "keep"
    assert cfg.data.resolution == 32 and cfg.optim.lr_g == 0.0025 and cfg.loss.r1_gamma > 0
    assert cfg.model["width"] == 4 and cfg.train.batch_size == 2  # the user's options win over the recipe
    assert cfg.loss.r1_gamma == round(0.0002 * 32**2 / 2, 4)  # and R1's gamma follows the user's batch
    assert "batch 2, R1 gamma 0.1024" in res.output
    assert ("your --set on top of it: log.tensorboard=False, model.width=4 (recipe: 16), model.width_max=8 (recipe: "
            "128)") in res.output
    # A batch size or resolution given with --set moves R1's gamma too; a gamma given with --set stays.
    res = run_cli("train", "--data", str(folder), "--run-dir", str(tmp_path / "r2"), "--set", "train.batch_size=4",
                  "--set", "data.resolution=64", "--dry-run")
    assert "batch 4, R1 gamma 0.2048" in res.output
    assert not (tmp_path / "r2").exists()  # a dry run writes nothing
    res = run_cli("train", "--data", str(folder), "--run-dir", str(tmp_path / "r3"), "--set", "train.batch_size=4",
                  "--set", "loss.r1_gamma=0.5", "--dry-run")
    assert "loss.r1_gamma=0.5 (recipe: 0.0512)" in res.output
    # A CPU recipe's resolution follows the time budget: 64-px pictures train at 32 px for the default 30
    # minutes, at 64 px for an hour or more, or for a budget of steps.
    big = sprites(tmp_path / "big", n=8, size=64)
    for budget, res in ((), 32), (("--minutes", "60"), 64), (("--steps", "5"), 64):
        out = run_cli("train", "--data", str(big), "--run-dir", str(tmp_path / "r4"), *budget, "--set",
                      "model.width=4", "--set", "model.width_max=8", "--device", "cpu", "--dry-run").output
        assert f"resolution {res} px: the images' median short side is 64 px" in out, (budget, out)
        assert ("a CPU budget of 30 minutes trains at 32 px" in out) == (not budget)
    # Run again: it resumes its own config (no new recipe).
    again = run_cli("train", "--data", str(folder), "--run-dir", str(tmp_path / "run"), "--steps", "2")
    assert "recipe" not in again.output and "resuming" in again.output


def test_evaluate_scores_truncated_samples_and_says_so(sg_run, tmp_path):
    kw = {"n": 12, "evaluator": "random-cnn", "metrics": ["fid"], "record": False, "batch_size": 6,
          "ref": str(sprites(tmp_path / "ref", n=12, seed=9))}
    plain, = atelier.evaluate(sg_run, **kw)
    squeezed, = atelier.evaluate(sg_run, truncation=0.0, **kw)
    assert "truncation" not in plain and squeezed["truncation"] == 0.0
    assert squeezed["value"] != plain["value"]


def test_proportional_labels_follow_the_class_counts_exactly_when_they_divide():
    from atelier.latent import proportional_labels

    y = proportional_labels(torch.tensor([6, 2, 0, 2]), 20)
    assert y.bincount(minlength=4).tolist() == [12, 4, 0, 4]
    odd = proportional_labels(torch.tensor([1, 1, 1]), 10)     # largest remainder: the total is always n
    assert len(odd) == 10 and sorted(odd.bincount().tolist()) == [3, 3, 4]
    with pytest.raises(ValueError, match="positive sum"):
        proportional_labels(torch.tensor([0, 0]), 4)


def test_a_conditional_run_is_scored_in_its_training_class_mix(tmp_path, monkeypatch):
    # Three images of one class, nine of the other: FID against that folder must sample that mix, not 50/50.
    from atelier.api.evaluate import evaluate_run, training_labels

    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path / "cache"))
    folder = sprites(tmp_path / "sprites", n=12)
    for f in sorted((folder / "round").glob("*.png"))[:3]:
        f.rename(folder / "other" / f"x{f.name}")                # other: 9, round: 3
    run = tmp_path / "cond"
    atelier.train(None, run, {**TINY_SG, "train.steps": 1, "model.num_classes": 2, "data.source": str(folder)},
                  progress=False)
    g = atelier.load(run)
    labels, how = training_labels(g, 100)
    assert labels is not None and how == "training class mix"
    assert labels.bincount().tolist() == [75, 25]                # class 0 is "other" (sorted folder names)
    records = evaluate_run(run, metrics=["kid"], n=40, ref=str(folder), evaluator="random-cnn", record=False)
    assert next(r for r in records if r["metric"] == "kid")["labels"] == "training class mix"
    folder.rename(tmp_path / "moved")                            # the data is gone: balanced, and it says so
    labels, how = training_labels(g, 4)
    assert labels is None and how.startswith("balanced (the training data could not be read")
