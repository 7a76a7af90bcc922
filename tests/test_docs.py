"""The README and the manual stay true: every ``atelier`` command the README shows runs (with tiny budgets), the
README is short and links only to files that exist, its two commands are the ones ``.ci/run`` runs, and the
manual builds with ``mkdocs build --strict`` (every page in the nav, every link and anchor resolved)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

import atelier
from atelier.cli import cli
from conftest import DATA_REASON, REPO, data_available, mnist_available

README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"

# Tiny overrides per model family, for every `atelier train` the README shows (seconds on one CPU thread).
TINY_TRAIN = {
    "dcgan": ["--set", "model.width=8", "--set", "model.z_dim=16", "--set", "data.limit=64", "--batch-size", "16"],
    "resnet": ["--set", "model.width=8", "--set", "model.z_dim=16", "--set", "data.limit=64", "--batch-size", "16"],
    "vae": ["--set", "model.width=8", "--set", "model.z_dim=8", "--set", "data.limit=64", "--batch-size", "16"],
    "pix2pix": ["--set", "model.ngf=4", "--set", "model.ndf=4", "--set", "data.limit=8", "--set", "data.resolution=32",
                "--set", "data.load_size=36", "--batch-size", "2"],
}
BUDGETS = ("--steps", "--minutes", "--images")


# ------------------------------------------------------------------------------------------ reading the README
def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def atelier_commands(text: str) -> list[list[str]]:
    """The argument lists of every ``atelier ...`` command in the README's bash blocks (``.venv/bin/atelier``,
    ``python -m atelier`` and ``torchrun ... -m atelier`` count too), in order; comments and environment
    assignments dropped, backslash continuations joined."""
    commands = []
    for block in code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for segment in re.split(r"&&|;|\|\|", line):
                words = shlex.split(segment, comments=True)
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                    words.pop(0)
                if not words:
                    continue
                if Path(words[0]).name == "atelier":
                    commands.append(words[1:])
                elif "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "atelier":
                    commands.append(words[words.index("-m") + 2 :])
    return commands


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def _without(args: list[str], names: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in names:
            skip = True
        else:
            out.append(a)
    return out


def tiny(args: list[str], work: Path) -> list[str]:
    """The README command with tiny budgets, as the test runs it."""
    cmd = args[0]
    if cmd == "demo":
        return [*_without(args, BUDGETS), "--dry-run"]
    if cmd == "train":
        config = _option(args, "--config")
        family = "dcgan"
        if config is not None:
            family = (yaml.safe_load((work / config).read_text()).get("model") or {}).get("name", "dcgan")
        assert family in TINY_TRAIN, f"add tiny overrides for the {family!r} family to TINY_TRAIN in {__file__}"
        return [*_without(args, BUDGETS), "--steps", "2", *TINY_TRAIN[family], "--set", "log.tensorboard=false"]
    if cmd == "train-style":
        return [*_without(args, (*BUDGETS, "--size", "--batch-size")), "--steps", "2", "--size", "32",
                "--batch-size", "2"]
    if cmd == "stylize" and "--model" not in args:
        return [*_without(args, ("--steps", "--size")), "--steps", "2", "--size", "32"]
    if cmd == "evaluate":
        extra = ["--n", "64"]
        if "--split" not in args and "--ref" not in args:
            extra += ["--ref", str(work / "ref.npz")]  # 200 test digits instead of all 10,000
        return [*_without(args, ("--n",)), *extra]
    if cmd == "synth":
        if "--per-class" in args:
            return [*_without(args, ("--per-class",)), "--per-class", "2"]
        return [*_without(args, ("--n",)), "--n", "32"]
    return list(args)


# ------------------------------------------------------------------------------------- inputs the README names
def _prepare_inputs(work: Path) -> None:
    data = Path(os.environ["ATELIER_DATA"])
    shutil.copytree(REPO / "configs", work / "configs")
    Image.open(data / "content" / "chelsea.png").convert("RGB").save(work / "photo.jpg")
    shutil.copytree(data / "content", work / "photos")
    for style in (data / "style").glob("*.jpg"):
        shutil.copy(style, work / style.name)
    with Image.open(data / "facades" / "test" / "1.jpg") as pair:   # photo | label map
        pair.crop((256, 0, 512, 256)).save(work / "labels.png")
    ref = atelier.open_data("mnist:test").images[:200, 0].numpy()
    np.savez(work / "ref.npz", images=ref)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(args: list[str], work: Path) -> None:
    """Start the studio as the README says (on a free port), wait until it lists the runs, stop it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(atelier.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "atelier", *_without(args, ("--port",)), "--port", str(port)],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, models = time.monotonic() + 180, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=30) as resp:
                    models = json.load(resp)["models"]
                    break
            except OSError:
                time.sleep(0.5)
        assert models is not None, f"`atelier {shlex.join(args)}` did not answer: {proc.poll()=}"
        served = {m["name"] for m in models}
        runs = {p.name for p in (work / "runs").iterdir() if (p / "config.yaml").is_file()}
        assert runs and runs <= served, (runs, served)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert "atelier studio on http://" in out, out


# ---------------------------------------------------------------------------------------------------- tests
def test_the_readme_shows_every_main_workflow():
    commands = atelier_commands(README.read_text(encoding="utf-8"))
    shown = {c[0] for c in commands if c}
    assert {"demo", "train", "sample", "interpolate", "evaluate", "verify", "export", "stylize", "translate",
            "serve"} <= shown, shown
    assert any("--config" in c and "configs/facades-pix2pix.yaml" in c for c in commands)  # pix2pix
    assert code_blocks(README.read_text(encoding="utf-8"), "python")


def test_the_readme_commands_parse_as_the_shell_would():
    text = """```bash
ATELIER_DATA=../x .venv/bin/atelier demo   # a comment
python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && atelier sample runs/a --out 'a b.png'
atelier train --config c.yaml \\
    --steps 3
torchrun --nproc_per_node=2 -m atelier train --run-dir r
```
"""
    assert atelier_commands(text) == [["demo"], ["sample", "runs/a", "--out", "a b.png"],
                                      ["train", "--config", "c.yaml", "--steps", "3"], ["train", "--run-dir", "r"]]
    assert tiny(["train", "--run-dir", "r", "--minutes", "10"], Path("."))[:5] == ["train", "--run-dir", "r",
                                                                                   "--steps", "2"]


@pytest.mark.skipif(not (mnist_available() and all(data_available(f) for f in ("content", "style", "facades"))),
                    reason=DATA_REASON)
def test_every_atelier_command_in_the_readme_runs_with_tiny_budgets(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    work = tmp_path / "clone"
    work.mkdir()
    _prepare_inputs(work)
    monkeypatch.chdir(work)
    runner = CliRunner()
    ran = []
    for args in atelier_commands(text):
        if args[0] == "serve":
            _serve(args, work)
        else:
            res = runner.invoke(cli, tiny(args, work))
            assert res.exit_code == 0, f"README command `atelier {shlex.join(args)}` failed:\n{res.output}"
        ran.append(args[0])
    assert len(ran) >= 10
    for block in code_blocks(text, "python"):
        exec(compile(block, "README.md (python block)", "exec"), {})
    # What the tour promises was written.
    for out in ("grid.png", "strip.png", "mnist.onnx", "painted.png", "facade.png", "more.png"):
        assert (work / out).is_file(), out


def _slug(heading: str) -> str:
    """GitHub's (and the manual's) anchor of a markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def _anchors(md: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", md.read_text(encoding="utf-8"), flags=re.M)}


def test_the_readme_is_short_and_links_only_to_files_that_exist():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        assert not re.match(r"[a-z]+:", link), f"README links outside the repository: {link}"
        path, _, anchor = link.partition("#")
        target = (REPO / path) if path else README
        assert target.exists(), f"README links to a missing file: {link}"
        if anchor:
            assert anchor in _anchors(target), f"README links to a missing heading: {link}"


def test_the_readme_install_and_test_commands_are_what_ci_runs():
    readme = README.read_text(encoding="utf-8")
    ci = CI_RUN.read_text(encoding="utf-8")
    assert ".venv/bin/python -m pytest -q" in readme and ".venv/bin/python -m pytest -q" in ci
    assert "python3 -m venv .venv" in readme and "python3 -m venv .venv" in ci
    install = ".venv/bin/pip install -e '.[dev]'"
    assert install in readme and install in ci.replace("pip install -q ", "pip install ")
    for setting in ("ATELIER_DATA", "ATELIER_OFFLINE=1", "CI", "chromium"):  # what .ci/run sets, said in the README
        assert setting in ci and setting in readme, setting


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs and mkdocs-material are not installed (pip install -e '.[dev]')")
def test_the_manual_builds_strictly(tmp_path):
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    for page in ("index.html", "getting-started/index.html", "architecture/index.html", "benchmarks/index.html"):
        assert (site / page).is_file(), page
