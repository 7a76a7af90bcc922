from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from atelier.api import prepare
from atelier.config import apply_overrides, parse_set, save_config
from atelier.errors import ConfigError
from atelier.runs import load_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_equals_builtin_defaults():
    # configs/mnist-dcgan.yaml spells out the defaults; if one changes, the other must too.
    shipped = load_config(REPO / "configs" / "mnist-dcgan.yaml").to_dict()
    assert shipped == load_config(None).to_dict()


def test_default_model_is_the_tensorflow_tutorial_dcgan():
    cfg = load_config(None)
    assert cfg.model == {"name": "dcgan", "z_dim": 100, "width": 64, "dropout": 0.3, "negative_slope": 0.2,
                         "num_classes": 0, "cond_dim": 0, "d_conditioning": "input", "spectral_norm_d": False,
                         "spectral_norm_g": False,
                         "attention": None}
    assert (cfg.optim.lr_g, cfg.optim.lr_d, cfg.optim.betas) == (2e-4, 2e-4, (0.5, 0.999))
    assert cfg.train.batch_size == 256


def test_unknown_key_is_a_clear_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  stepz: 10\n")
    with pytest.raises(ConfigError, match=r"train\.stepz: unknown key"):
        load_config(p)


def test_unknown_model_key_names_the_model_section():
    with pytest.raises(ConfigError, match=r"model\.widht: unknown key"):
        load_config(None, {"model.widht": 3})


def test_bad_values_quote_the_offending_input():
    with pytest.raises(ConfigError, match=r"train\.batch_size.*-3"):
        load_config(None, {"train.batch_size": -3})
    with pytest.raises(ConfigError, match="unknown model 'stylegan9'"):
        load_config(None, {"model.name": "stylegan9"})


def test_invalid_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    p.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(p)


def test_set_parsing_and_overrides():
    sets = parse_set(["model.width=32", "train.precision=fp32", "optim.betas=[0.0, 0.99]", "data.limit=null"])
    assert sets == {"model.width": 32, "train.precision": "fp32", "optim.betas": [0.0, 0.99], "data.limit": None}
    cfg = load_config(None, sets)
    assert cfg.model["width"] == 32 and cfg.optim.betas == (0.0, 0.99) and cfg.train.precision == "fp32"
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["model.width"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"seed": 1}, {"seed.x": 2})


def test_save_then_load_round_trip(tmp_path):
    cfg = load_config(None, {"model.width": 16, "seed": 7})
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["width"] == 16
    assert load_config(tmp_path / "config.yaml") == cfg


def test_a_model_that_cannot_take_the_data_is_one_config_error_naming_both_keys():
    # A colour folder at 64 px with the Fashion SNGAN config, as a user would try: attention sits at a feature
    # resolution that no longer exists. The builder's complaint is a config error, not a traceback.
    with pytest.raises(ConfigError) as err:
        load_config(REPO / "configs" / "fashion-sngan-hinge.yaml", {"data.resolution": 64})
    msg = str(err.value)
    assert "model.attention" in msg and "data.resolution 64" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"data.resolution must be one of \[28, 32, 64\] for model dcgan, got 48"):
        load_config(None, {"data.resolution": 48})
    with pytest.raises(ConfigError, match=r"data.channels must be one of \[3\] for this model, got 1"):
        load_config(None, {"model.name": "fast-style", "data.channels": 1})


def test_messages_have_no_pydantic_prefix_and_blame_the_flag(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, {"data.load_size": 10})
    assert "Value error" not in str(err.value) and "data.load_size (10) must be >= data.resolution" in str(err.value)
    # A key that does not exist, given with --set, is the flag's mistake, not the config file's.
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  steps: 5\n")
    with pytest.raises(ConfigError, match=r"^--set train\.stepz: unknown key"):
        prepare(p, tmp_path / "run", {"train.stepz": 3})
    with pytest.raises(ConfigError, match=r"^--set model\.widht: unknown key"):
        prepare(p, tmp_path / "run", {"model.widht": 3})


def test_broken_yaml_points_at_the_line_and_column(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("seed: 0\ndata:\n  source: mnist\n  resolution: [28\nmodel: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    lines = str(err.value).splitlines()
    assert "at line 5, column 6" in lines[0] and lines[1].strip() == "model: x" and lines[2].strip() == "^"
