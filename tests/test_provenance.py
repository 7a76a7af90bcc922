"""Provenance through the one door (save_image): metadata, watermark, C2PA, and `atelier verify`."""

from __future__ import annotations

import datetime as dt
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from atelier.cli import cli
from atelier.errors import AtelierError
from atelier.imageio import save_image
from atelier.images import load_image
from atelier.provenance import (
    COMPOSITE_SOURCE_TYPE,
    DIGITAL_SOURCE_TYPE,
    C2paCredentials,
    read_c2pa,
    read_metadata,
    verify_image,
)
from atelier.provenance.watermark import detect, model_id_hash
from conftest import DATA_REASON, mnist_available


def _picture(size: int = 192, seed: int = 0) -> np.ndarray:
    """A smooth synthetic picture with some texture (no data files needed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([120 + 80 * np.sin(6 * x + c) * np.cos(4 * y) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_png_metadata_reads_back_with_pillow_and_carries_the_watermark(tmp_path):
    out = save_image(_picture(), tmp_path / "a.png", {"workflow": "sample", "run": "my-run", "seed": 7})
    with Image.open(out) as im:
        text = dict(im.text)
    assert text["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert text["atelier:run"] == "my-run" and text["atelier:seed"] == "7" and text["atelier:model_id"] == "my-run"
    assert text["atelier:watermark"] == f"{model_id_hash('my-run'):08x}"
    assert "trainedAlgorithmicMedia" in text["XML:com.adobe.xmp"]
    found = detect(load_image(out))
    assert found.detected and found.id32 == model_id_hash("my-run")


def test_stripped_metadata_leaves_the_watermark(tmp_path):
    out = save_image(_picture(), tmp_path / "a.png", {"run": "my-run"}, strip_metadata=True)
    with Image.open(out) as im:
        assert not getattr(im, "text", {}) and "xmp" not in im.info
    assert read_metadata(out) == {}
    jpg = save_image(_picture(), tmp_path / "a.jpg", {"run": "my-run"}, strip_metadata=True, quality=80)
    with Image.open(jpg) as im:
        assert "xmp" not in im.info
    for path in (out, jpg):
        assert detect(load_image(path)).id32 == model_id_hash("my-run")


def test_jpeg_xmp_is_parsed_back(tmp_path):
    out = save_image(_picture(), tmp_path / "a.jpg", {"run": "r<&>"})
    meta = read_metadata(out)
    assert meta["DigitalSourceType"] == DIGITAL_SOURCE_TYPE and meta["atelier:run"] == "r<&>"


def test_same_input_same_pixels_and_opt_outs(tmp_path):
    img = _picture()
    a = save_image(img, tmp_path / "a.png", {"run": "r"})
    b = save_image(img, tmp_path / "b.png", {"run": "r"})
    assert np.array_equal(load_image(a), load_image(b))  # deterministic: same seed + payload, same pixels
    plain = save_image(img, tmp_path / "c.png", {"run": "r"}, watermark=False)
    assert np.array_equal(load_image(plain), img)
    preview = save_image(img, tmp_path / "d.png", {"DigitalSourceType": COMPOSITE_SOURCE_TYPE})
    assert np.array_equal(load_image(preview), img)  # real data (dataset previews) is not marked as generated
    small = save_image(img[:28, :28], tmp_path / "e.png", {"run": "r"})
    assert np.array_equal(load_image(small), img[:28, :28])
    assert read_metadata(small)["atelier:watermark"].startswith("none (smaller than")


def test_alpha_channel_is_kept(tmp_path):
    rgba = np.dstack([_picture(), np.full((192, 192), 200, np.uint8)])
    out = save_image(rgba, tmp_path / "a.png", {"run": "r"})
    with Image.open(out) as im:
        assert im.mode == "RGBA" and np.all(np.asarray(im)[:, :, 3] == 200)


def test_verify_exit_codes_and_run_matching(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "mnist-dcgan").mkdir(parents=True)
    (tmp_path / "runs" / "mnist-dcgan" / "config.yaml").write_text("seed: 0\n")
    save_image(_picture(), "made.png", {"run": "mnist-dcgan"})
    Image.fromarray(_picture(seed=1)).save("clean.png")
    ok = invoke("verify", "made.png")
    assert ok.exit_code == 0 and "recognised as atelier's" in ok.output and "runs/mnist-dcgan" in ok.output
    report = json.loads(invoke("verify", "made.png", "--json").output)
    assert report["watermark"]["detected"] and report["watermark"]["run"] == "runs/mnist-dcgan"
    assert report["watermark"]["matches_metadata"] is True
    assert report["metadata"]["atelier:run"] == "mnist-dcgan" and report["c2pa"]["status"] in ("absent", "unavailable")
    clean = invoke("verify", "clean.png")
    assert clean.exit_code == 1 and "not recognised" in clean.output
    missing = invoke("verify", "nope.png")
    assert missing.exit_code == 2 and missing.output.strip() == "error: image not found: nope.png"


def test_verify_reports_the_scale_of_a_shrunk_and_recompressed_image(tmp_path, monkeypatch):
    # Issue 20: an image shrunk and re-encoded by a website, kept small; verify finds the mark and its scale.
    monkeypatch.chdir(tmp_path)
    out = save_image(_picture(320), tmp_path / "made.png", {"run": "my-run"})
    with Image.open(out) as im:
        im.convert("RGB").resize((240, 240), Image.Resampling.BICUBIC).save(tmp_path / "thumb.jpg", quality=80)
    report = verify_image(tmp_path / "thumb.jpg")
    wm = report["watermark"]
    assert report["recognised"] and wm["detected"] and wm["payload"] == f"{model_id_hash('my-run'):08x}"
    assert wm["scale"] is not None and abs(wm["scale"] / 0.75 - 1) < 0.02 and abs(wm["rotation"]) < 0.5
    printed = invoke("verify", "thumb.jpg")
    assert printed.exit_code == 0 and f"scale {wm['scale']:g}x" in printed.output


def test_watermark_commands(tmp_path):
    Image.fromarray(_picture()).save(tmp_path / "in.png")
    out = tmp_path / "out.jpg"
    assert invoke("watermark", "embed", str(tmp_path / "in.png"), "--out", str(out), "--id", "x",
                  "--no-metadata").exit_code == 0
    assert read_metadata(out) == {}
    found = invoke("watermark", "detect", str(out), "--json")
    assert found.exit_code == 0 and json.loads(found.output)["payload"] == f"{model_id_hash('x'):08x}"
    assert invoke("watermark", "detect", str(tmp_path / "in.png")).exit_code == 1
    Image.fromarray(_picture(48)).save(tmp_path / "small.png")
    small = invoke("watermark", "embed", str(tmp_path / "small.png"), "--out", str(out))
    assert small.exit_code == 2 and "at least" in small.output
    Image.fromarray(_picture(96)).save(tmp_path / "mid.png")  # 64-127 px: the payload is written by QIM
    mid = invoke("watermark", "embed", str(tmp_path / "mid.png"), "--out", str(tmp_path / "mid-out.png"), "--id", "x")
    assert mid.exit_code == 0
    found = invoke("watermark", "detect", str(tmp_path / "mid-out.png"), "--json")
    assert found.exit_code == 0 and json.loads(found.output)["method"] == "qim"
    assert json.loads(found.output)["payload"] == f"{model_id_hash('x'):08x}"
    report = invoke("verify", str(tmp_path / "mid-out.png"))
    assert report.exit_code == 0 and "detected, payload" in report.output and "qim" in report.output


@pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)
def test_sample_no_metadata_is_logged(tmp_path, tiny):
    from atelier import api

    run_dir = tmp_path / "run"
    api.train(None, run_dir, {**tiny, "train.steps": 2, "log.checkpoint_every": 2}, progress=False)
    assert invoke("sample", str(run_dir), "--n", "4", "--out", str(tmp_path / "g.png"), "--no-metadata").exit_code == 0
    assert read_metadata(tmp_path / "g.png") == {}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["event"] == "no-metadata" and rows[-1]["images"] == 4
    assert invoke("sample", str(run_dir), "--n", "4", "--out", str(tmp_path / "m.png")).exit_code == 0
    meta = read_metadata(tmp_path / "m.png")
    assert len(meta["atelier:weights_sha256"]) == 64 and meta["atelier:run"] == "run"
    assert "invisible watermark" in (run_dir / "model_card.md").read_text()


def test_folder_sources_state_their_licence(tmp_path):
    from atelier.data import open_source

    for folder in ("facades", "mine"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            Image.fromarray(_picture(16, seed=i)).save(tmp_path / folder / f"{i}.png")
    assert "CMP Facade Database" in open_source(str(tmp_path / "facades"), channels=3, resolution=16).license
    assert open_source(str(tmp_path / "mine"), channels=3, resolution=16).license.startswith("unknown")
    from atelier.data.paired import load_paired

    Image.fromarray(_picture(32)[:16]).save(tmp_path / "facades" / "0.png")  # a 32x16 A|B pair
    assert "CMP Facade Database" in load_paired(str(tmp_path / "facades"), "side_by_side", "BtoA", 3, 16).license


# ------------------------------------------------------------------------------------------------ C2PA
def _make_credentials(tmp_path):
    """A CA and a signing certificate made here (ES256), as PEM files."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject, issuer, key, signing_key, ca: bool):
        usage = dict.fromkeys(["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"],
                              False)
        usage.update({"key_cert_sign": ca, "crl_sign": ca, "digital_signature": not ca})
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
             .not_valid_after(now + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(**usage), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                            critical=False))
        if not ca:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        return b.sign(signing_key, hashes.SHA256())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "atelier tests")])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert(name("test CA"), name("test CA"), ca_key, ca_key, True)
    leaf = cert(name("test signer"), name("test CA"), key, ca_key, False)
    pem = serialization.Encoding.PEM
    (tmp_path / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return C2paCredentials(tmp_path / "chain.pem", tmp_path / "key.pem"), tmp_path / "ca.pem"


def test_c2pa_sign_and_verify_round_trip(tmp_path, monkeypatch):
    pytest.importorskip("c2pa")
    creds, ca = _make_credentials(tmp_path)
    monkeypatch.setenv("ATELIER_C2PA_CERT", str(creds.cert))
    monkeypatch.setenv("ATELIER_C2PA_KEY", str(creds.key))
    out = save_image(_picture(), tmp_path / "signed.png", {"run": "r", "seed": 1})  # signed via the env vars
    state = read_c2pa(out)
    assert state["status"] == "valid" and state["claim_generator"] == ["atelier"]
    assert state["actions"] == ["c2pa.created"] and state["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert read_c2pa(out, trust_anchors=ca)["status"] == "trusted"
    assert read_metadata(out)["atelier:run"] == "r" and detect(load_image(out)).detected  # signing kept the rest
    report = verify_image(out)
    assert report["recognised"] and report["c2pa"]["status"] == "valid"
    # Change one pixel after signing: the manifest no longer matches the file.
    img = np.asarray(Image.open(out).convert("RGB")).copy()
    img[0, 0, 0] ^= 1
    Image.fromarray(img).save(tmp_path / "edited.png")
    assert read_c2pa(tmp_path / "edited.png")["status"] == "absent"  # re-saved by Pillow: manifest gone
    data = bytearray(out.read_bytes())
    idat = data.find(b"IDAT")
    data[idat + 40] ^= 0xFF
    (tmp_path / "tampered.png").write_bytes(bytes(data))
    assert read_c2pa(tmp_path / "tampered.png")["status"] == "invalid"
    jpg = save_image(_picture(), tmp_path / "signed.jpg", {"run": "r"})
    assert read_c2pa(jpg)["status"] == "valid"
    Image.fromarray(_picture()).save(tmp_path / "plain.bmp")
    assert read_c2pa(tmp_path / "plain.bmp")["status"] == "absent"  # a format C2PA does not cover


def test_c2pa_missing_package_is_a_friendly_error(tmp_path, monkeypatch):
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    monkeypatch.setitem(sys.modules, "c2pa", None)  # as if c2pa-python were not installed
    with pytest.raises(AtelierError, match=r"install with: pip install 'atelier\[c2pa\]'"):
        save_image(_picture(), tmp_path / "a.png", c2pa=C2paCredentials(tmp_path / "c.pem", tmp_path / "k.pem"))
    assert not (tmp_path / "a.png").exists()
    assert read_c2pa(tmp_path / "c.pem")["status"] == "unavailable"
    monkeypatch.setenv("ATELIER_C2PA_CERT", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("ATELIER_C2PA_KEY", str(tmp_path / "k.pem"))
    result = invoke("watermark", "embed", str(tmp_path / "c.pem"), "--out", str(tmp_path / "b.png"))
    assert result.exit_code == 2 and "error:" in result.output


# ------------------------------------------------------------------- --no-metadata and weights sha256
def _no_metadata_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("event") == "no-metadata"]


@pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)
def test_interpolate_and_data_info_no_metadata(tmp_path, own_tiny_run):
    tiny_run = own_tiny_run
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "tiny-dcgan")
    for out in ("strip.png", "loop.gif"):
        res = invoke("interpolate", str(run), "--seeds", "1,2", "--frames", "3", "--out", str(tmp_path / out),
                     "--no-metadata")
        assert res.exit_code == 0, res.output
    assert read_metadata(tmp_path / "strip.png") == {}
    with Image.open(tmp_path / "loop.gif") as im:
        assert "comment" not in im.info
    assert [(r["workflow"], r["images"]) for r in _no_metadata_rows(run)] == [("interpolate", 3)] * 2
    res = CliRunner().invoke(cli, ["data", "info", "mnist", "--grid", str(tmp_path / "g.png"), "--no-metadata"])
    assert res.exit_code == 0 and read_metadata(tmp_path / "g.png") == {} and "without metadata" in res.output


def test_translate_and_stylize_carry_weights_sha256_and_log_no_metadata(tmp_path):
    import atelier
    from atelier.api import train_style
    from atelier.checkpoint import CheckpointManager
    from atelier.utils import sha256_file

    pairs, photos = tmp_path / "pairs", tmp_path / "photos"
    pairs.mkdir()
    photos.mkdir()
    for i in range(3):
        a = _picture(32, seed=i)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(pairs / f"{i}.png")
        Image.fromarray(_picture(40, seed=i)).save(photos / f"{i}.png")
    p2p = {"data.source": str(pairs), "data.paired": "side_by_side", "data.resolution": 32, "data.channels": 3,
           "model.name": "pix2pix", "model.ngf": 4, "model.ndf": 4, "train.batch_size": 2, "train.steps": 2,
           "train.device": "cpu", "log.every": 1, "log.sample_every": 2, "log.checkpoint_every": 2,
           "log.grid": 2, "log.tensorboard": False}
    atelier.train(None, tmp_path / "p2p", p2p, progress=False)
    train_style(tmp_path / "sty", style=[str(photos / "0.png")], content_dir=str(photos), features="random",
                progress=False, overrides={"data.resolution": 32, "train.steps": 2, "train.batch_size": 1,
                                           "model.width": 4, "model.res_blocks": 1, "log.every": 1,
                                           "log.sample_every": 2, "log.checkpoint_every": 2, "log.tensorboard": False})
    for run, command in (("p2p", ["translate", str(tmp_path / "p2p"), "--input", str(pairs / "0.png")]),
                         ("sty", ["stylize", "--model", str(tmp_path / "sty"), "--content", str(photos / "1.png")])):
        model = atelier.load(tmp_path / run)
        ckpt = CheckpointManager(tmp_path / run / "checkpoints").latest_path()
        assert model.metadata()["weights_sha256"] == sha256_file(ckpt)  # the checkpoint file's hash
        assert invoke(*command, "--out", str(tmp_path / f"{run}.png")).exit_code == 0
        assert read_metadata(tmp_path / f"{run}.png")["atelier:weights_sha256"] == sha256_file(ckpt)
        assert invoke(*command, "--out", str(tmp_path / f"{run}-bare.png"), "--no-metadata").exit_code == 0
        assert read_metadata(tmp_path / f"{run}-bare.png") == {}
        assert [r["outputs"] for r in _no_metadata_rows(tmp_path / run)] == [[str(tmp_path / f"{run}-bare.png")]]
