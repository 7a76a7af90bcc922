"""Smoke-run every CLI command (``--dry-run`` where it trains) and check user errors are one line."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from atelier.cli import cli
from atelier.provenance import read_metadata
from conftest import DATA_REASON, REPO, mnist_available

needs_mnist = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _one_line_error(result, pattern: str) -> None:
    import re

    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.output


def test_help_lists_every_command_and_every_command_has_help():
    from atelier.cli import cli as group

    out = run("--help").output
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(group.commands)
    paths = [[name, *([sub] if sub else [])] for name, cmd in group.commands.items()
             for sub in (getattr(cmd, "commands", None) or [None])]
    assert len(paths) >= 16  # every subcommand, groups' subcommands included
    for path in paths:
        text = run(*path, "--help").output
        assert "Usage: atelier " + " ".join(path) in text and "--debug" in text, path
    assert "--dry-run" in run("train", "--help").output and "--minutes" in run("train", "--help").output


@needs_mnist
def test_train_dry_run_writes_nothing_in_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("train", "--config", str(REPO / "configs" / "mnist-dcgan.yaml"), "--dry-run",
                 "--set", "model.width=8")
    assert "dry run ok" in result.output and "finished step 2" in result.output
    assert "grid-0000002.png" in result.output
    assert list(tmp_path.iterdir()) == []


@needs_mnist
def test_demo_dry_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "dry run ok" in run("demo", "--dry-run").output
    assert list(tmp_path.iterdir()) == []


@needs_mnist
def test_train_then_sample_grid_and_folder(tmp_path):
    run_dir = tmp_path / "run"
    out = run("train", "--run-dir", str(run_dir), "--steps", "4", "--batch-size", "8", "--sample-every", "2",
              "--set", "model.width=8", "--set", "data.limit=32", "--set", "log.tensorboard=false").output
    assert "finished step 4" in out and "model card:" in out
    run("sample", str(run_dir), "--n", "9", "--seed", "1", "--out", str(tmp_path / "g.png"))
    with Image.open(tmp_path / "g.png") as grid:
        size = grid.size
    assert size == ((3 * 30 + 2) * 3, (3 * 30 + 2) * 3)
    meta = read_metadata(str(tmp_path / "g.png"))
    assert meta["atelier:run"] == "run" and meta["atelier:seed"] == "1" and meta["atelier:generator"] == "ema"
    run("sample", str(run_dir), "--seeds", "3,5-6", "--out-dir", str(tmp_path / "s"))
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["seed000003.png", "seed000005.png",
                                                                  "seed000006.png"]
    # Same seed, same image, whether sampled alone or in a batch.
    run("sample", str(run_dir), "--seeds", "5", "--out-dir", str(tmp_path / "s2"))
    with Image.open(tmp_path / "s2" / "seed000005.png") as a, Image.open(tmp_path / "s" / "seed000005.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


@needs_mnist
def test_data_info_and_grid(tmp_path):
    out = run("data", "info", "mnist:test", "--grid", str(tmp_path / "g.png")).output
    assert "images:     10,000" in out and "classes:    10" in out and "licence:" in out
    assert "@" in out or "#" in out  # the ASCII preview shows ink
    with Image.open(tmp_path / "g.png") as im:
        assert im.size[0] > 100
    assert "composite" in read_metadata(str(tmp_path / "g.png"))["DigitalSourceType"]


def test_data_fetch_offline_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path))
    _one_line_error(run("data", "fetch", "mnist", ok=False), "ATELIER_OFFLINE")


@pytest.mark.parametrize("args,pattern", [
    (["train", "--config", "missing.yaml"], "config file not found: missing.yaml"),
    (["train", "--data", "/no/such/folder", "--dry-run"], "data source not found: /no/such/folder"),
    (["train", "--set", "model.bogus=1", "--dry-run"], r"model\.bogus: unknown key"),
    (["train", "--set", "oops", "--dry-run"], "--set expects key=value"),
    (["sample", "/no/run", "--out", "x.png"], "run folder not found"),
    (["data", "info", "/no/such/thing"], "data source not found"),
])
def test_user_errors_are_one_line_without_traceback(args, pattern, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(run(*args, ok=False), pattern)


@needs_mnist
def test_three_channels_from_mnist_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(run("train", "--set", "data.channels=3", "--dry-run", ok=False), "grayscale")


def test_folder_with_bad_files_trains_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    (folder / "00-zero.png").write_bytes(b"")  # sorts first, so the 8-image dry run meets it
    result = run("train", "--data", str(folder), "--set", "data.channels=3", "--set", "data.resolution=32",
                 "--set", "model.width=4", "--dry-run")
    warnings = [ln for ln in result.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "zero.png" in warnings[0]
    assert "dry run ok" in result.output


def test_sample_needs_an_output(tmp_path):
    result = run("sample", str(tmp_path), ok=False)
    assert result.exit_code == 2 and "--out" in result.output


@pytest.mark.parametrize("args,pattern", [
    (["sample"], r"Missing argument 'RUN'.*\(see `atelier sample --help`\)"),
    (["sample", "r", "--n", "0", "--out", "x.png"], r"Invalid value for '--n'"),
    (["train", "--steps", "many"], r"Invalid value for '--steps'"),
    (["nonsense"], r"No such command 'nonsense'"),
])
def test_usage_errors_are_in_the_same_one_line_style(args, pattern, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(run(*args, ok=False), pattern)


def test_debug_works_before_and_after_the_subcommand(tmp_path):
    from atelier.errors import AtelierError

    _one_line_error(run("sample", str(tmp_path / "none"), "--out", "x.png", ok=False), "run folder not found")
    for args in (["--debug", "sample", str(tmp_path / "none"), "--out", "x.png"],
                 ["sample", str(tmp_path / "none"), "--out", "x.png", "--debug"],
                 ["data", "info", str(tmp_path / "none"), "--debug"]):
        with pytest.raises(AtelierError) as err:
            CliRunner().invoke(cli, args, catch_exceptions=False)
        assert "not found" in str(err.value), args  # the exception itself, with its traceback


def test_no_metadata_help_names_the_run_log_only_where_there_is_a_run():
    for path in (["data", "info"], ["watermark", "embed"], ["stylize"]):
        text = " ".join(run(*path, "--help").output.split())
        assert "--no-metadata" in text
        assert ("metrics.jsonl" in text) == (path == ["stylize"]), path
    assert "metrics.jsonl" in " ".join(run("sample", "--help").output.split())


@needs_mnist
def test_every_image_records_what_regenerates_exactly_it(tmp_path):
    """--seeds and --n both write per-image metadata (its own seed, or the seed, count and index) that makes the
    same image again; a grid records the whole request."""
    run_dir = tmp_path / "run"
    run("train", "--run-dir", str(run_dir), "--steps", "2", "--batch-size", "8", "--set", "model.width=8",
        "--set", "data.limit=32", "--set", "log.tensorboard=false")
    run("sample", str(run_dir), "--seeds", "0-3", "--out-dir", str(tmp_path / "a"), "--out", str(tmp_path / "a.png"))
    for seed in range(4):
        meta = read_metadata(str(tmp_path / "a" / f"seed{seed:06d}.png"))
        assert meta["atelier:seed"] == str(seed) and "atelier:n" not in meta and "atelier:seeds" not in meta
        run("sample", str(run_dir), "--seeds", meta["atelier:seed"], "--out-dir", str(tmp_path / f"again{seed}"))
        with Image.open(tmp_path / "a" / f"seed{seed:06d}.png") as a, \
                Image.open(tmp_path / f"again{seed}" / f"seed{seed:06d}.png") as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    grid = read_metadata(str(tmp_path / "a.png"))
    assert grid["atelier:seeds"] == "0-3" and grid["atelier:n"] == "4"
    run("sample", str(run_dir), "--n", "5", "--seed", "7", "--out-dir", str(tmp_path / "b"))
    meta = read_metadata(str(tmp_path / "b" / "seed7-00003.png"))
    assert (meta["atelier:seed"], meta["atelier:n"], meta["atelier:index"]) == ("7", "5", "3")
    run("sample", str(run_dir), "--n", "5", "--seed", "7", "--out-dir", str(tmp_path / "c"))
    with Image.open(tmp_path / "b" / "seed7-00003.png") as a, Image.open(tmp_path / "c" / "seed7-00003.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
