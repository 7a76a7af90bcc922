"""Bring your own foundation model: atelier t2i / img2img / sd-inpaint on a tiny Stable Diffusion 1.x-shaped
pipeline with random weights (tests/tiny_sd.py), as a diffusers folder and as an original-layout single file."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import one_line_error, run_cli

pytest.importorskip("diffusers", reason="the diffusion extra (pip install 'atelier[diffusion]')")
pytest.importorskip("transformers", reason="the diffusion extra (pip install 'atelier[diffusion]')")

import atelier  # noqa: E402
import tiny_sd  # noqa: E402
from atelier.errors import AtelierError, ConfigError, MissingExtraError  # noqa: E402
from atelier.foundation import Settings, detect, read_sheet  # noqa: E402
from atelier.provenance import DIGITAL_SOURCE_TYPE, read_metadata  # noqa: E402

FAST = ("--steps", "2", "--device", "cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("foundation")
    folder = tiny_sd.build_folder(root)
    return {"folder": folder, "file": tiny_sd.write_single_file(folder, root / "tiny-sd.safetensors"), "root": root}


@pytest.fixture(scope="module")
def model(models):
    return atelier.load_foundation(models["folder"], device="cpu")


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _photo(path: Path, size=(64, 48)) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------------------------------- detection
def test_detect_both_layouts(models):
    folder, single = detect(models["folder"]), detect(models["file"])
    assert (folder.layout, folder.family, folder.inpainting) == ("folder", "sd", False)
    assert (single.layout, single.family) == ("single-file", "sd")
    assert len(folder.weight_files) == 3 and single.weight_files == [models["file"]]
    assert len(folder.sha256()) == 64 and folder.sha256() != single.sha256()
    assert single.verified                                   # SD 1.x's CLIP in the layout the tests cover


def test_single_file_layouts_not_covered_by_tests_are_marked(tmp_path):
    import torch
    from safetensors.torch import save_file

    sd2 = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
           "first_stage_model.encoder.conv_in.weight": torch.zeros(1),
           "cond_stage_model.model.token_embedding.weight": torch.zeros(10, 1024)}   # OpenCLIP, as SD 2.x
    save_file(sd2, tmp_path / "sd2.safetensors")
    info = detect(tmp_path / "sd2.safetensors")
    assert (info.family, info.label, info.verified) == ("sd", "Stable Diffusion 2.x", False)


# ---------------------------------------------------------------------------------------------- text to image
def test_t2i_shapes_and_determinism_by_seed(model):
    a = atelier.t2i(model, Settings("a cat", steps=2, seed=3, n=2, size=(64, 48)))
    assert [im.shape for im in a.images] == [(48, 64, 3)] * 2
    assert [im.dtype for im in a.images] == [np.uint8] * 2
    assert atelier.t2i(model, Settings("a cat", steps=2, size=(72, 40))).images[0].shape == (40, 72, 3)
    assert a.names == ["001-seed3.png", "001-seed4.png"]
    again = atelier.t2i(model, Settings("a cat", steps=2, seed=4, size=(64, 48)))   # image 2 alone, from its seed
    np.testing.assert_array_equal(a.images[1], again.images[0])
    assert not np.array_equal(a.images[0], a.images[1])
    other_prompt = atelier.t2i(model, Settings("a fox", steps=2, seed=3, size=(64, 48)))
    assert not np.array_equal(a.images[0], other_prompt.images[0])


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "euler", "euler-a", "ddpm"])
def test_every_sampler_runs_and_is_recorded(model, sampler):
    r = atelier.t2i(model, Settings("a cat", steps=2, sampler=sampler))
    assert r.images[0].shape == (64, 64, 3) and r.fields[0]["sampler"] == sampler


def test_single_file_gives_the_folders_images(models, model, tmp_path):
    configs = tmp_path / "configs-only"        # --config needs the configs and tokenizer, not the weights
    shutil.copytree(models["folder"], configs, ignore=shutil.ignore_patterns("*.safetensors"))
    single = atelier.load_foundation(models["file"], config=configs, device="cpu")
    s = Settings("a cat", steps=2, seed=1)
    np.testing.assert_array_equal(atelier.t2i(single, s).images[0], atelier.t2i(model, s).images[0])
    assert single.sha256 == detect(models["file"]).sha256()


def test_sdxl_folder_all_three_workflows(models, tmp_path):
    m = atelier.load_foundation(tiny_sd.build_xl_folder(models["root"]), device="cpu")
    assert (m.info.family, m.info.label, m.default_sampler) == ("sdxl", "SDXL", "EulerDiscreteScheduler")
    a = atelier.t2i(m, Settings("a cat", steps=2, seed=1, size=(64, 48)), out_dir=tmp_path)
    assert a.images[0].shape == (48, 64, 3) and read_metadata(a.paths[0])["atelier:model_family"] == "SDXL"
    np.testing.assert_array_equal(a.images[0], atelier.t2i(m, Settings("a cat", steps=2, seed=1,
                                                                        size=(64, 48))).images[0])
    photo = _photo(tmp_path / "in.png")
    assert atelier.img2img(m, photo, Settings("a cat", steps=3)).images[0].shape == (48, 64, 3)
    mask = np.zeros((48, 64), np.uint8)
    mask[8:24, 8:40] = 255
    out = atelier.sd_inpaint(m, photo, Image.fromarray(mask), Settings("a cat", steps=3)).images[0]
    np.testing.assert_array_equal(out[mask == 0], _read(photo)[mask == 0])


def test_cli_t2i_provenance_and_verify(models, model, tmp_path):
    out = tmp_path / "out"
    r = run_cli("t2i", "--model", models["folder"], "--prompt", "a cat", "--negative", "blurry", "--seed", "7",
                "--n", "2", "--guidance", "5", "--sampler", "euler", "--out-dir", out, *FAST)
    assert "wrote 2 image(s)" in r.output
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["001-seed7.png", "001-seed8.png"]
    meta = read_metadata(files[0])
    assert meta["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    expected = {"workflow": "t2i", "prompt": "a cat", "negative_prompt": "blurry", "seed": "7", "steps": "2",
                "guidance": "5.0", "sampler": "euler", "size": "64x64", "weights_sha256": model.sha256,
                "model": "tiny-sd", "model_layout": "folder"}
    assert {k: meta[f"atelier:{k}"] for k in expected} == expected
    assert meta["atelier:watermark"] == f"{int(meta['atelier:watermark'], 16):08x}"   # embedded, not "none"
    v = run_cli("verify", files[0], "--json")
    report = json.loads(v.output)
    assert report["recognised"] and report["metadata"]["atelier:prompt"] == "a cat"
    assert report["watermark"]["detected"], report["watermark"]


def test_cli_single_file_needs_config(models):
    one_line_error(run_cli("t2i", "--model", models["file"], "--prompt", "a cat", "--out-dir", "x", *FAST, ok=False),
                   r"single-file .* Pass --config DIR")


# ------------------------------------------------------------------------------------------------ prompt sheets
def test_prompt_sheet_batch(models, tmp_path):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text('prompt,negative,steps,seed,size,sampler,n,name\n'
                     '"a cat, sitting",blurry,3,5,64x32,dpm++,2,cat\n'
                     '\n'
                     'a fox,,,,,,,\n')
    out = tmp_path / "batch"
    run_cli("t2i", "--model", models["folder"], "--prompts", sheet, "--seed", "1", "--out-dir", out, *FAST)
    assert sorted(p.name for p in out.iterdir()) == ["002-seed1.png", "cat-seed5.png", "cat-seed6.png"]
    cat, fox = read_metadata(out / "cat-seed6.png"), read_metadata(out / "002-seed1.png")
    assert _read(out / "cat-seed6.png").shape == (32, 64, 3) and _read(out / "002-seed1.png").shape == (64, 64, 3)
    assert (cat["atelier:prompt"], cat["atelier:steps"], cat["atelier:sampler"]) == ("a cat, sitting", "3", "dpm++")
    assert (fox["atelier:prompt"], fox["atelier:steps"], fox["atelier:negative_prompt"]) == ("a fox", "2", "")


@pytest.mark.parametrize(("rows", "message"), [
    ("prompt,steps\na cat,3\na fox,abc\n", r"sheet\.csv row 3: steps 'abc' is not a whole number"),
    ("prompt,size\na cat,64x64\n,64x64\n", r"sheet\.csv row 3: the prompt is empty"),
    ("prompt,colour\na cat,red\n", r"unknown column\(s\) 'colour'"),
    ("prompt,sampler\na cat,lms\n", r"row 2: unknown sampler 'lms'"),
    ("prompt,name,seed\na,x,1\nb,x,1\n", r"sheet\.csv row 2 and sheet\.csv row 3 would both write x-seed1\.png"),
    ("prompt,size\na cat,65x64\n", r"sheet\.csv row 2: size 65x64: .*multiples of 8"),
])
def test_prompt_sheet_bad_row_is_one_error(models, tmp_path, rows, message):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(rows)
    out = tmp_path / "out"
    r = run_cli("t2i", "--model", models["folder"], "--prompts", sheet, "--out-dir", out, *FAST, ok=False)
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error")]
    assert r.exit_code == 2 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not out.exists() or not any(out.iterdir())     # checked before the first image


def test_read_sheet_defaults_fill_blank_cells(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("\ufeffPrompt,Guidance\na cat,\na fox,9.5\n")      # a spreadsheet's BOM and capitals
    rows = read_sheet(sheet, Settings("", guidance=4.0, steps=11))
    assert [(r.prompt, r.guidance, r.steps) for r in rows] == [("a cat", 4.0, 11), ("a fox", 9.5, 11)]


# --------------------------------------------------------------------------------- image to image and inpainting
def test_img2img_keeps_size_and_seed(model, tmp_path):
    src = _photo(tmp_path / "in.png", (65, 49))          # rounded down to multiples of 8: 64x48
    a = atelier.img2img(model, src, Settings("a cat", steps=3, seed=2), strength=0.5)
    b = atelier.img2img(model, src, Settings("a cat", steps=3, seed=2), strength=0.5)
    assert a.images[0].shape == (48, 64, 3)
    np.testing.assert_array_equal(a.images[0], b.images[0])
    assert a.fields[0]["strength"] == 0.5 and a.fields[0]["source_image"] == "in.png"


def test_inpaint_keeps_unmasked_pixels(model, tmp_path):
    src = _photo(tmp_path / "in.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:50] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    r = atelier.sd_inpaint(model, src, tmp_path / "mask.png", Settings("a cat", steps=2))
    out, orig, hole = r.images[0], _read(src), mask > 0
    np.testing.assert_array_equal(out[~hole], orig[~hole])           # outside the mask: the input, exactly
    assert np.abs(out[hole].astype(int) - orig[hole]).mean() > 10     # inside: repainted
    raw = atelier.sd_inpaint(model, src, tmp_path / "mask.png", Settings("a cat", steps=2), keep_unmasked=False)
    assert not np.array_equal(raw.images[0][~hole], orig[~hole])     # the VAE alone does change them


def test_cli_inpaint_with_an_inpainting_checkpoint(models, tmp_path):
    folder = tiny_sd.build_folder(models["root"], inpainting=True)
    src = _photo(tmp_path / "in.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    run_cli("sd-inpaint", "--model", folder, "--image", src, "--mask", tmp_path / "mask.png", "--prompt", "a cat",
            "--out-dir", out, *FAST)
    img = _read(out / "001-seed0.png")
    assert img.shape == (48, 64, 3)
    assert read_metadata(out / "001-seed0.png")["atelier:model_family"] == "Stable Diffusion (inpainting)"
    one_line_error(run_cli("t2i", "--model", folder, "--prompt", "a cat", "--out-dir", out, *FAST, ok=False),
                   "inpainting checkpoint")
    Image.fromarray(mask[:32]).save(tmp_path / "small.png")
    one_line_error(run_cli("sd-inpaint", "--model", folder, "--image", src, "--mask", tmp_path / "small.png",
                           "--prompt", "x", "--out-dir", out, *FAST, ok=False), "must be the same size")


# ---------------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize(("part", "message"), [
    ("text_encoder", r"incomplete: missing the text encoder \(text_encoder/: folder not found\)"),
    ("tokenizer", r"incomplete: missing the tokenizer \(tokenizer/: folder not found\)"),
    ("vae", r"incomplete: missing the VAE \(vae/: folder not found\)"),
    ("unet/diffusion_pytorch_model.safetensors", r"the denoising UNet \(unet/: no \.safetensors weights\)"),
    ("tokenizer/merges.txt", r"the tokenizer \(tokenizer/: no vocab\.json \+ merges\.txt or tokenizer\.json\)"),
])
def test_incomplete_folder_is_one_error(models, tmp_path, part, message):
    broken = tmp_path / "broken"
    shutil.copytree(models["folder"], broken)
    target = broken / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    one_line_error(run_cli("t2i", "--model", broken, "--prompt", "a cat", "--out-dir", tmp_path / "o", *FAST,
                           ok=False), message)


def test_unusable_files_are_one_error(models, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(models["folder"], bad)
    weights = bad / "vae" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    one_line_error(run_cli("t2i", "--model", bad, "--prompt", "x", "--out-dir", tmp_path, *FAST, ok=False),
                   r"vae/: weights only as pickle .*\.safetensors only")
    (tmp_path / "m.ckpt").write_bytes(b"x")
    one_line_error(run_cli("t2i", "--model", tmp_path / "m.ckpt", "--prompt", "x", "--out-dir", tmp_path, *FAST,
                           ok=False), r"pickle checkpoint \(\.ckpt\)")
    vae_only = tiny_sd.write_single_file(models["folder"], tmp_path / "part.safetensors", parts=("unet", "vae"))
    one_line_error(run_cli("t2i", "--model", vae_only, "--config", models["folder"], "--prompt", "x", "--out-dir",
                           tmp_path, *FAST, ok=False), r"only a UNet \(no text encoder\)")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    one_line_error(run_cli("t2i", "--model", tmp_path / "junk.safetensors", "--prompt", "x", "--out-dir", tmp_path,
                           *FAST, ok=False), "not a readable safetensors file")
    index = json.loads((models["folder"] / "model_index.json").read_text())
    other = tmp_path / "flux"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    one_line_error(run_cli("t2i", "--model", other, "--prompt", "x", "--out-dir", tmp_path, *FAST, ok=False),
                   "holds a FluxPipeline model; atelier runs Stable Diffusion 1.x / 2.x and SDXL")


def test_memory_levers_run_and_are_recorded(models, tmp_path):
    run_cli("t2i", "--model", models["folder"], "--prompt", "a cat", "--attention-slicing", "--vae-tiling",
            "--out-dir", tmp_path, *FAST)
    assert read_metadata(tmp_path / "001-seed0.png")["atelier:levers"] == "fp32 + attention-slicing + vae-tiling"
    one_line_error(run_cli("t2i", "--model", models["folder"], "--prompt", "a cat", "--cpu-offload",
                           "--out-dir", tmp_path, *FAST, ok=False), "--cpu-offload .* needs a CUDA device")


def test_bad_options_are_one_error(models, tmp_path):
    run = ("--model", models["folder"], "--out-dir", tmp_path / "o", *FAST)
    one_line_error(run_cli("t2i", *run, ok=False), r"give --prompt TEXT or --prompts SHEET\.csv")
    one_line_error(run_cli("t2i", "--prompt", "x", "--size", "65x64", *run, ok=False), "multiples of 8")
    one_line_error(run_cli("t2i", "--prompt", "x", "--size", "big", *run, ok=False), "WIDTHxHEIGHT")
    one_line_error(run_cli("t2i", "--prompt", "x", "--dtype", "fp16", *run, ok=False), "fp16 needs a CUDA device")
    one_line_error(run_cli("img2img", "--prompt", "x", "--image", tmp_path / "none.png", *run, ok=False),
                   "image not found")


def test_missing_extra_is_one_error(models, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "diffusers", None)      # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'atelier\[diffusion\]'"):
        atelier.load_foundation(models["folder"])
    one_line_error(run_cli("t2i", "--model", models["folder"], "--prompt", "x", "--out-dir", tmp_path, *FAST,
                           ok=False), r"install them with: pip install 'atelier\[diffusion\]'")


_NO_NETWORK = """
import socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[1:] or kwargs))
    raise OSError("network access attempted")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
import atelier
from atelier.foundation import Settings
folder, single, photo, mask, out = sys.argv[1:6]
for i, (path, config) in enumerate(((folder, None), (single, folder))):
    m = atelier.load_foundation(path, config=config, device="cpu")
    atelier.t2i(m, Settings("a cat", steps=2), out_dir=f"{out}/{i}-t2i")
    atelier.img2img(m, photo, Settings("a cat", steps=2), out_dir=f"{out}/{i}-img2img")
    atelier.sd_inpaint(m, photo, mask, Settings("a cat", steps=2), out_dir=f"{out}/{i}-inpaint")
print("attempts:", attempts)
"""


@pytest.mark.slow  # a fresh interpreter importing torch and diffusers: about 10 s
def test_no_network_during_load_and_generate(models, tmp_path):
    """A fresh process with no Hugging Face settings (atelier must switch the hub off itself) and every socket
    connection refused: loading both layouts and all three workflows attempt none."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "DIFFUSERS_"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(Path(atelier.__file__).parents[1]))
    photo = _photo(tmp_path / "in.png")
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(tmp_path / "mask.png")
    done = subprocess.run([sys.executable, "-c", _NO_NETWORK, str(models["folder"]), str(models["file"]),
                           str(photo), str(tmp_path / "mask.png"), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "attempts: []", done.stdout
    assert len(list((tmp_path / "out").glob("*/*.png"))) == 6


def test_safety_checker_listed_but_not_shipped_loads_without_it(models, tmp_path):
    pruned = tmp_path / "pruned"
    shutil.copytree(models["folder"], pruned)
    index = json.loads((pruned / "model_index.json").read_text())
    index.update(safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
                 feature_extractor=["transformers", "CLIPImageProcessor"], requires_safety_checker=True)
    (pruned / "model_index.json").write_text(json.dumps(index))
    m = atelier.load_foundation(pruned, device="cpu")
    assert not m.safety_checker
    assert atelier.t2i(m, Settings("a cat", steps=1)).fields[0]["safety_checker"] == "off (not in this checkpoint)"


def test_api_errors_are_atelier_errors(model, tmp_path):
    with pytest.raises(ConfigError, match="prompt 1 and prompt 2 would both write x-seed1.png"):
        atelier.t2i(model, [Settings("a", seed=0, n=2, name="x"), Settings("b", seed=1, name="x")])
    with pytest.raises(AtelierError, match="model not found"):
        atelier.load_foundation(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="--config is for single-file checkpoints"):
        atelier.load_foundation(model.info.path, config=model.info.path)


def test_atelier_edit_and_inpaint_take_model_and_prompt(models, tmp_path):
    # Issue 23: the diffusion family's `atelier edit` (image to image) and `atelier inpaint` accept --model PATH
    # with a prompt, writing one file with the foundation model's provenance.
    src = _photo(tmp_path / "in.png")
    run_cli("edit", "--model", models["folder"], "--prompt", "a cat", "--image", src, "--strength", "0.5",
            "--steps", "2", "--seed", "3", "--out", tmp_path / "edited.png")
    meta = read_metadata(tmp_path / "edited.png")
    assert meta["atelier:prompt"] == "a cat" and meta["atelier:seed"] == "3" and meta["atelier:strength"] == "0.5"
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:50] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    run_cli("inpaint", "--model", models["folder"], "--prompt", "a cat", "--image", src, "--mask",
            tmp_path / "mask.png", "--steps", "2", "--out", tmp_path / "filled.png")
    out, orig = _read(tmp_path / "filled.png"), _read(src)
    assert out.shape == orig.shape and (np.abs(out.astype(int) - orig)[mask == 0] <= 8).all()  # + the watermark
    one_line_error(run_cli("edit", "--model", models["folder"], "--image", src, "--out", tmp_path / "x.png",
                           ok=False), "needs --prompt")
    one_line_error(run_cli("edit", "--image", src, "--out", tmp_path / "x.png", ok=False),
                   "needs a diffusion RUN folder, or --model PATH")
    one_line_error(run_cli("inpaint", "--model", models["folder"], "--prompt", "x", "--image", src,
                           "--out", tmp_path / "x.png", ok=False), "needs --mask")
