from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import atelier
from atelier.api.evaluate import evaluate_pairs
from atelier.checkpoint import CheckpointManager
from atelier.cli import cli
from atelier.data import BatchLoader
from atelier.data.paired import load_paired
from atelier.errors import DataError
from atelier.loaded import Translator
from atelier.models.pix2pix import PatchDiscriminator, Pix2PixConfig, UNetGenerator, receptive_field
from conftest import make_pairs


@pytest.mark.parametrize("resolution,depth", [(256, None), (128, None), (64, 4), (32, 5)])
def test_unet_output_shape(resolution, depth):
    g = UNetGenerator(Pix2PixConfig(ngf=4, depth=depth), resolution=resolution, channels=3)
    assert g(torch.randn(2, 3, resolution, resolution)).shape == (2, 3, resolution, resolution)
    with pytest.raises(ValueError, match="must be divisible"):
        g(torch.randn(1, 3, resolution + 8, resolution))


def test_unet_has_skips_and_paper_dropout():
    g = UNetGenerator(Pix2PixConfig(), resolution=256, channels=3)
    drops = [m.drop.p for m in g.up if isinstance(m.drop, torch.nn.Dropout)]
    assert drops == [0.5, 0.5, 0.5]  # the three innermost decoder blocks
    assert sum(p.numel() for p in g.parameters()) == 54_414_531  # the reference unet_256


def test_patchgan_receptive_field_is_70():
    assert receptive_field(3) == 70
    # Measure it: the gradient of one output logit reaches exactly a 70x70 window of the input.
    d = PatchDiscriminator(Pix2PixConfig(ndf=4), resolution=128, channels=1).eval()
    x = torch.randn(1, 2, 128, 128, requires_grad=True)
    out = d(x)
    out[0, 0, 5, 5].backward()
    ys, xs = torch.nonzero(x.grad[0].abs().sum(0) > 0, as_tuple=True)
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (70, 70)


def test_paired_loader_keeps_halves_aligned_under_augmentation(tmp_path):
    ds = load_paired(str(make_pairs(tmp_path / "p", n=8)), "side_by_side", "AtoB", 3, 40)
    loader = BatchLoader(ds, 4, seed=0, hflip=True, crop=32)
    flipped_some = False
    for _ in range(6):
        x, _ = loader.next()
        a, b = x[:, :3], x[:, 3:]
        # B = 255 - A survives resize (bicubic is linear), crop and flip only if both halves move together.
        assert torch.allclose(a, -b, atol=2 / 127.5)
        flipped_some |= bool((a[:, :, :, -1] > 0.5).any())  # the left band ended up on the right
    assert flipped_some


def test_direction_swaps_input_and_target(tmp_path):
    src = make_pairs(tmp_path / "p", n=2)
    ab = load_paired(str(src), "side_by_side", "AtoB", 3, 32)
    ba = load_paired(str(src), "side_by_side", "BtoA", 3, 32)
    assert torch.equal(ab.images[:, :3], ba.images[:, 3:])


def test_folders_layout_and_mismatchedmake_pairs(tmp_path):
    for sub, names in (("A", ["1", "2", "3"]), ("B", ["1", "2", "4"])):
        (tmp_path / sub).mkdir()
        for n in names:
            Image.new("RGB", (16, 16)).save(tmp_path / sub / f"{n}.png")
    with pytest.raises(DataError, match=r"unmatched pairs \(in A/ only: 3; in B/ only: 4\)"):
        load_paired(str(tmp_path), "folders", "AtoB", 3, 16)
    (tmp_path / "A" / "3.png").unlink()
    (tmp_path / "B" / "4.png").unlink()
    assert len(load_paired(str(tmp_path), "folders", "AtoB", 3, 16)) == 2
    with pytest.raises(DataError, match="needs sub-folders A/ and B/"):
        load_paired(str(tmp_path / "A"), "folders", "AtoB", 3, 16)


def test_train_resume_translate_and_evaluate(tmp_path, tiny_p2p):
    straight = atelier.train(None, tmp_path / "straight", tiny_p2p, progress=False)
    assert straight.step == 6 and (tmp_path / "straight" / "samples" / "grid-0000006.png").is_file()

    def stop_at_4(trainer):
        if trainer.step == 4:
            trainer.request_stop()

    atelier.train(None, tmp_path / "resumed", tiny_p2p, progress=False, callback=stop_at_4)
    atelier.train(None, tmp_path / "resumed", tiny_p2p, progress=False)
    a = CheckpointManager.read(CheckpointManager(tmp_path / "straight" / "checkpoints").latest_path())
    b = CheckpointManager.read(CheckpointManager(tmp_path / "resumed" / "checkpoints").latest_path())
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"]) and a["step"] == b["step"] == 6

    model = atelier.load(tmp_path / "straight")
    assert isinstance(model, Translator)
    out = model(np.zeros((50, 70, 3), np.uint8))
    assert out.size == (70, 50)  # any input size: back to its own size

    cfg = model.cfg
    ident = evaluate_pairs(None, tiny_p2p["data.eval_source"], cfg)
    scored = evaluate_pairs(model, tiny_p2p["data.eval_source"], cfg)
    assert ident["pairs"] == scored["pairs"] == 3
    assert ident["l1"] > 0.5 and ident["psnr"] < 10  # B = 255 - A: the identity is far off
    assert 0 <= scored["l1"] <= 1 and -1 <= scored["ssim"] <= 1


def test_l1_only_ablation_trains_no_discriminator(tmp_path, tiny_p2p):
    atelier.train(None, tmp_path / "l1", {**tiny_p2p, "model.gan_weight": 0.0}, progress=False)
    state = CheckpointManager.read(CheckpointManager(tmp_path / "l1" / "checkpoints").latest_path())
    assert "state" not in state["opt_d"] or not state["opt_d"]["state"]  # D's optimiser never stepped


def test_translate_cli_file_and_folder(tmp_path, tiny_p2p):
    atelier.train(None, tmp_path / "run", tiny_p2p, progress=False)
    runner = CliRunner()
    res = runner.invoke(cli, ["translate", str(tmp_path / "run"), "--input", str(tmp_path / "test" / "0.png"),
                              "--out", str(tmp_path / "o.png")])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (64, 32)
    res = runner.invoke(cli, ["translate", str(tmp_path / "run"), "--input", str(tmp_path / "test"),
                              "--out", str(tmp_path / "outs")])
    assert res.exit_code == 0 and sorted(p.name for p in (tmp_path / "outs").iterdir()) == ["0.png", "1.png",
                                                                                             "2.png"]
    res = runner.invoke(cli, ["translate", str(tmp_path / "run"), "--input", str(tmp_path / "nope.png"),
                              "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "input not found" in res.output


def test_paired_config_without_layout_is_a_clear_error(tmp_path, tiny_p2p):
    with pytest.raises(atelier.AtelierError, match="data.paired"):
        atelier.train(None, tmp_path / "r", {**tiny_p2p, "data.paired": None}, progress=False)


def test_evaluate_cli_scores_translation_runs_and_records(tmp_path, tiny_p2p):
    import json

    atelier.train(None, tmp_path / "run", tiny_p2p, progress=False)
    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", str(tmp_path / "run"), "--split", "test", "--json"])
    assert res.exit_code == 0, res.output
    model = json.loads(res.output)
    res = runner.invoke(cli, ["evaluate", str(tmp_path / "run"), "--baseline", "identity", "--json"])
    ident = json.loads(res.output)
    assert model["pairs"] == ident["pairs"] == 3 and model["generator"] == "G" and ident["generator"] == "identity"
    assert ident["l1"] > 0.5  # B = 255 - A
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r.get("event") == "eval"]
    assert [e["generator"] for e in evals if e["metric"] == "l1"] == ["G", "identity"] and evals[0]["step"] == 6
    assert [e["metric"] for e in evals[:3]] == ["l1", "psnr", "ssim"] and evals[0]["value"] == model["l1"]
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "L1 " in card and "PSNR " in card and "Not measured yet" not in card
    res = runner.invoke(cli, ["evaluate", str(tmp_path / "run"), "--split", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "paired data not found" in res.output


def test_unreadable_pairs_are_skipped_with_one_warning(tmp_path):
    src = make_pairs(tmp_path / "p", n=3)
    (src / "bad.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable pair\(s\): bad.png"):
        ds = load_paired(str(src), "side_by_side", "AtoB", 3, 32)
    assert len(ds) == 3 and ds.skipped == ["bad.png"]
