from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import atelier
from atelier.api import Generator
from atelier.api.synth import check_output, output_format, synthesize, write_folder, write_npz
from atelier.cli import cli
from atelier.config import validate_config
from atelier.data import open_source
from atelier.errors import ConfigError, DataError, RunError
from atelier.metrics import load_evaluator
from atelier.metrics.cas import cas
from atelier.provenance import read_metadata
from conftest import DATA_REASON, TINY, mnist_available

pytestmark = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)


class _Bank(torch.nn.Module):
    """A stand-in generator that returns stored images: picked by z, or, when conditional, from class y."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("images", images.float() / 127.5 - 1)
        self.pools = [torch.nonzero(labels == c).flatten() for c in range(10)]
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # Generator.device reads a parameter

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        idx = (z[:, 0].abs() * 1e4).long()
        if y is None:
            return self.images[idx % len(self.images)]
        return self.images[torch.stack([self.pools[c][i % len(self.pools[c])] for c, i in zip(y.tolist(), idx,
                                                                                               strict=True)])]


@pytest.fixture(scope="module")
def real_bank() -> tuple[torch.Tensor, torch.Tensor]:
    ds = open_source("mnist:test", limit=400)
    return ds.images, ds.labels


def _standin(bank, tmp_path, num_classes: int = 0, source: str = "mnist") -> Generator:
    cfg = validate_config({"data": {"source": source}, "model": {"name": "dcgan", "z_dim": 4,
                                                                   "num_classes": num_classes}})
    return Generator(_Bank(*bank), cfg, tmp_path / "standin", step=0, which="raw")


def _by_bytes(bank) -> dict[bytes, int]:
    images, labels = bank
    return {img.numpy().tobytes(): int(y) for img, y in zip(images, labels, strict=True)}


def test_unconditional_run_npz_round_trip_with_classifier_labels(tiny_run, tmp_path):
    g = atelier.load(tiny_run)
    s = synthesize(g, 40, seed=3, progress=False)
    assert torch.equal(s.images, g.sample(40, seed=3))                 # the images `atelier sample` makes
    ev = load_evaluator("digits")
    assert torch.equal(s.labels, ev(s.images).logits.argmax(1))
    assert s.label_source.startswith("classifier digits") and s.classes == tuple("0123456789")

    path = write_npz(s, tmp_path / "s.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert npz["images"].shape == (40, 28, 28) and npz["images"].dtype == np.uint8
        assert npz["labels"].dtype == np.int64
        prov = json.loads(str(npz["provenance"]))
    assert prov["atelier:run"] == tiny_run.name and prov["atelier:weights_sha256"] == g.weights_sha256
    assert prov["atelier:seed"] == "3" and prov["atelier:workflow"] == "synth" and "atelier:version" in prov
    assert prov["DigitalSourceType"].endswith("trainedAlgorithmicMedia")
    back = open_source(str(path), channels=1, resolution=28)
    assert torch.equal(back.images, s.images) and torch.equal(back.labels, s.labels)
    assert back.classes == s.classes


def test_conditional_labels_are_balanced_and_images_follow_them(real_bank, tmp_path):
    g = _standin(real_bank, tmp_path, num_classes=10)
    s = synthesize(g, per_class=3, seed=0, progress=False)
    assert torch.equal(s.labels, torch.arange(30) % 10) and s.label_source.startswith("model")
    truth = _by_bytes(real_bank)
    assert [truth[img.numpy().tobytes()] for img in s.images] == s.labels.tolist()
    s = synthesize(g, 25, seed=0, batch_size=7, progress=False)      # --n: balanced, and so is every prefix
    assert s.labels.tolist() == [i % 10 for i in range(25)]


def test_unconditional_per_class_keeps_what_the_classifier_labels(real_bank, tmp_path):
    g = _standin(real_bank, tmp_path)
    s = synthesize(g, per_class=4, seed=1, batch_size=32, progress=False)
    assert s.labels.bincount(minlength=10).tolist() == [4] * 10
    truth = _by_bytes(real_bank)
    agree = np.mean([truth[img.numpy().tobytes()] == int(y) for img, y in zip(s.images, s.labels, strict=True)])
    assert agree >= 0.95                                               # the digits classifier is 99.6% accurate
    again = synthesize(g, per_class=4, seed=1, batch_size=32, progress=False)
    assert torch.equal(again.images, s.images)                         # seeded


def test_no_labels_without_a_classifier_for_the_data(real_bank, tmp_path):
    g = _standin(real_bank, tmp_path, source=str(tmp_path / "photos"))
    s = synthesize(g, 10, progress=False)
    assert s.labels is None and s.label_source.startswith("none")
    with np.load(write_npz(s, tmp_path / "u.npz"), allow_pickle=False) as npz:
        assert "labels" not in npz.files and "images" in npz.files
    with pytest.raises(ConfigError, match="--per-class needs class labels"):
        synthesize(g, per_class=2, progress=False)


def test_folder_output_per_class_round_trip(tmp_path):
    noise = torch.randint(0, 256, (50, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    g = _standin((noise, torch.arange(50) % 10), tmp_path, num_classes=10, source="fashion-mnist")
    s = synthesize(g, 23, progress=False)
    out = write_folder(s, tmp_path / "synth", progress=False)
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs[:2] == ["0_T-shirt-top", "1_Trouser"] and len(dirs) == 10
    assert (out / ".atelier-synth.json").is_file() and not list(tmp_path.glob(".synth.*"))  # temp folder renamed
    meta = read_metadata(out / "1_Trouser" / "000001.png")
    assert meta["atelier:workflow"] == "synth" and meta["atelier:label"] == "1"
    info = CliRunner().invoke(cli, ["data", "info", str(out)])      # read at the images' own size and colour
    assert info.exit_code == 0 and "28x28 (as read), 1 channel" in info.output, info.output
    assert "classes:    10 (0_T-shirt-top: 3, 1_Trouser: 3" in info.output, info.output
    back = open_source(str(out), channels=1, resolution=28)            # no skipped-file warning: .json is hidden
    order = sorted(range(23), key=lambda i: (int(s.labels[i]), i))
    assert torch.equal(back.images, s.images[order]) and torch.equal(back.labels, s.labels[order])


def test_output_checks(tmp_path):
    assert output_format(tmp_path / "a.npz") == "npz" and output_format(tmp_path / "a") == "folder"
    assert output_format(tmp_path / "a.npz", "folder") == "folder"
    with pytest.raises(ConfigError, match="give a .npz file or a folder"):
        output_format(tmp_path / "a.png")
    (tmp_path / "x.npz").write_bytes(b"")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        check_output(tmp_path / "x.npz")
    assert check_output(tmp_path / "x.npz", force=True) == "npz"
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ConfigError, match="is a folder; --force replaces only a file"):
        check_output(tmp_path / "d.npz", force=True)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="cannot write into"):
            check_output(locked / "s.npz")


def test_cli_synth_and_data_info(own_tiny_run, tmp_path):
    tiny_run = own_tiny_run
    runner = CliRunner()
    out = tmp_path / "s.npz"
    res = runner.invoke(cli, ["synth", str(tiny_run), "--n", "30", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 30 images (1x28x28)" in res.output and "labels: classifier digits" in res.output
    info = runner.invoke(cli, ["data", "info", str(out)])
    assert info.exit_code == 0, info.output
    assert "images:     30" in info.output and "28x28 (as read), 1 channel" in info.output
    assert "classes:    none" not in info.output

    for args, message in [
        (["--n", "30"], "already exists; pass --force"),
        (["--n", "0", "--force"], "0 is not in the range 1<=x<=10000000"),
        (["--n", "3", "--per-class", "2", "--force"], "not both"),
        (["--force"], "give --n N"),
    ]:
        res = runner.invoke(cli, ["synth", str(tiny_run), "--out", str(out), *args])
        assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(cli, ["synth", str(tiny_run), "--n", "3", "--out", str(tmp_path / "s.png")])
    assert res.exit_code == 2 and "give a .npz file or a folder" in res.output
    res = runner.invoke(cli, ["synth", str(tiny_run), "--n", "5", "--out", str(out), "--force", "--no-labels"])
    assert res.exit_code == 0 and "labels: none (not asked)" in res.output
    with np.load(out, allow_pickle=False) as npz:
        assert "provenance" in npz.files

    res = runner.invoke(cli, ["synth", str(tiny_run), "--n", "5", "--out", str(out), "--force", "--no-metadata"])
    assert res.exit_code == 0, res.output
    with np.load(out, allow_pickle=False) as npz:
        assert "provenance" not in npz.files
    events = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "no-metadata" and e.get("workflow") == "synth" for e in events)


# --------------------------------------------------------------------------------------------------- CAS
def test_cas_of_real_images_is_high_and_of_shuffled_labels_is_chance():
    ev = load_evaluator("digits")
    train = open_source("mnist:train", limit=1024)
    real = cas(train.images, train.labels, ev, epochs=3, n_test=500)
    shuffled_labels = train.labels[torch.randperm(1024, generator=torch.Generator().manual_seed(0))]
    shuffled = cas(train.images, shuffled_labels, ev, epochs=3, n_test=500)
    # 24 steps on 1,024 images is far from the recipe's 60,000 x 6 epochs (0.996), but far above chance.
    assert real["value"] > 0.6, real
    assert shuffled["value"] < 0.25, shuffled
    assert real["ceiling"] == 0.996 and real["n_train"] == 1024 and real["n_ref"] == 500
    assert real["ref"] == "mnist:test" and real["evaluator"] == "digits" and "DigitClassifier" in real["classifier"]
    assert real["recipe"]["epochs"] == 3 and "overridden" in real["note"] and real["train_classes"] == 10


def test_cas_refuses_what_it_cannot_score():
    ev = load_evaluator("digits")
    images = torch.zeros(200, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(DataError, match="classes 0..9"):
        cas(images, torch.full((200,), 10), ev)
    with pytest.raises(DataError, match="at least one batch"):
        cas(images[:20], torch.zeros(20, dtype=torch.long), ev)
    with pytest.raises(DataError, match="28x28 images only"):
        cas(torch.zeros(200, 1, 32, 32, dtype=torch.uint8), torch.zeros(200, dtype=torch.long), ev)


def test_cas_does_not_move_the_global_generator():
    ev = load_evaluator("digits")
    train = open_source("mnist:train", limit=128)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    cas(train.images, train.labels, ev, epochs=1, n_test=10)
    assert torch.equal(torch.get_rng_state(), before)


def test_conditional_run_synth_per_class_and_evaluate_cas(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "cgan"
    atelier.train(None, run, {**TINY, "model.num_classes": 10}, progress=False)
    # CAS tests on the whole mnist:test (10,000 images); 500 of them keep this test fast.
    import atelier.metrics.cas as cas_module

    full = cas_module.open_source
    monkeypatch.setattr(cas_module, "open_source",
                        lambda spec, *a, **k: full(spec, *a, **({**k, "limit": 500} if spec == "mnist:test" else k)))
    runner = CliRunner()
    res = runner.invoke(cli, ["synth", str(run), "--per-class", "2", "--out", str(tmp_path / "c.npz")])
    assert res.exit_code == 0, res.output
    assert "model (class-conditional" in res.output and "per class: 0: 2, 1: 2" in res.output
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        assert npz["labels"].tolist() == [i % 10 for i in range(20)]

    res = runner.invoke(cli, ["evaluate", str(run), "--metrics", "cas", "--n", "128", "--json"])
    assert res.exit_code == 0, res.output
    cas_record, agreement = json.loads(res.output)  # CAS, and the class agreement every conditional run gets
    record = cas_record
    assert agreement["metric"] == "class_agreement" and agreement["n"] == 120
    assert record["metric"] == "cas" and 0.0 <= record["value"] <= 1.0 and record["n_train"] == 128
    assert record["ceiling"] == 0.996 and record["recipe"]["epochs"] == 6 and record["checkpoint_step"] == 6
    assert record["train_classes"] == 10 and record["n_ref"] == 500
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["metric"] for line in lines[-2:]] == ["cas", "class_agreement"]


def test_evaluate_cas_of_an_unconditional_run_is_a_clear_error(tiny_run):
    from atelier.api.evaluate import evaluate_run

    with pytest.raises(RunError, match="unconditional"):
        evaluate_run(tiny_run, metrics=["cas"], n=100, record=False)


def test_data_info_of_a_synth_npz_names_the_models_training_data_and_its_licence(tiny_run, tmp_path):
    # Issue 16.12: `data info synth.npz` said "licence unknown" although the provenance names the run's data.
    out = tmp_path / "synth.npz"
    assert CliRunner().invoke(cli, ["synth", str(tiny_run), "--n", "12", "--out", str(out)]).exit_code == 0
    res = CliRunner().invoke(cli, ["data", "info", str(out)])
    assert res.exit_code == 0, res.output
    licence = next(line for line in res.output.splitlines() if "licen" in line.lower())
    assert "generated by atelier" in licence and "mnist" in licence and "CC BY-SA" in licence, licence
    stripped = tmp_path / "stripped.npz"
    CliRunner().invoke(cli, ["synth", str(tiny_run), "--n", "12", "--out", str(stripped), "--no-metadata"])
    assert "unknown" in CliRunner().invoke(cli, ["data", "info", str(stripped)]).output  # no provenance, no claim
