"""Every registered network saves and loads back without pickle to the same outputs, and every shipped config
trains a few steps and loads as its family's model. New families and configs are picked up automatically: a
family needs an entry in TINY below, or these tests fail and say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import atelier
from atelier import families
from atelier.models import get, load_pretrained, registered, save_pretrained
from atelier.runs import load_config
from conftest import DATA_REASON, REPO, data_available

# Small options per family, and a resolution each supports: what a test can afford on a CPU.
TINY: dict[str, dict] = {
    "dcgan": {"model.width": 4, "model.z_dim": 8},
    "resnet": {"model.width": 8, "model.z_dim": 8},
    "vae": {"model.width": 4, "model.z_dim": 4},
    "pix2pix": {"model.ngf": 2, "model.ndf": 2, "data.resolution": 32, "data.load_size": 36},
    "fast-style": {"model.width": 2, "model.res_blocks": 1, "data.resolution": 32},
    "segmenter": {"model.ngf": 2, "model.palette": "cmp-facades", "data.resolution": 32, "data.load_size": 36},
    "stylegan2": {"model.width": 4, "model.width_max": 8, "model.z_dim": 8, "model.w_dim": 8, "data.resolution": 32},
    "diffusion": {"model.block_out_channels": [8, 16], "model.attention_resolutions": [],
                  "model.attention_head_dim": 8, "model.norm_num_groups": 4},
}
RESOLUTION = {"dcgan": 28, "resnet": 32, "vae": 28, "pix2pix": 32, "fast-style": 32, "segmenter": 32, "stylegan2": 32,
              "diffusion": 16}
CHANNELS = {"fast-style": 3, "segmenter": 3}
TEST_FAMILIES = ("toy", "toy-mlp-gan", "toy-invert")  # registered by other test modules for their own use


def _families() -> list[str]:
    return [n for n in registered() if n not in TEST_FAMILIES]


def test_every_family_has_tiny_options():
    assert set(_families()) <= set(TINY), f"give {sorted(set(_families()) - set(TINY))} tiny options in TINY"


def _variants() -> list[tuple[str, bool]]:
    """Every family, and its class-conditional variant where it has one."""
    return [(n, c) for n in _families() for c in (False, True) if not c or "num_classes" in get(n).config.model_fields]


@pytest.mark.parametrize("name,conditional", _variants())
def test_every_network_round_trips_through_save_and_load(tmp_path, name, conditional):
    spec = get(name)
    params = {k.removeprefix("model."): v for k, v in TINY[name].items() if k.startswith("model.")}
    if conditional:
        params["num_classes"] = 3
    torch.manual_seed(0)
    nets = spec.build(spec.parse(params), RESOLUTION[name], CHANNELS.get(name, 1 if name != "pix2pix" else 3))
    for slot, net in nets.items():
        for p in net.parameters():  # away from the init, so a load that silently re-initialised would differ
            p.data.add_(torch.randn_like(p) * 0.01)
        back = load_pretrained(save_pretrained(net, tmp_path / f"{name}-{slot}"))
        assert type(back) is type(net) and back.config == net.config, slot
        net.eval(), back.eval()
        inputs = net.example_inputs(3)
        with torch.no_grad():
            a, b = net(*inputs), back(*inputs)
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
            assert torch.equal(x, y), (name, slot)


def _configs() -> list[Path]:
    return sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", _configs(), ids=lambda p: p.stem)
def test_every_shipped_config_trains_a_few_steps_and_loads(tmp_path, path):
    cfg = load_config(path)
    name = cfg.model["name"]
    source = cfg.data.source
    if not (data_available(source.split(":")[0]) or data_available("mnist")):
        pytest.skip(DATA_REASON)
    overrides = {**TINY[name], "data.limit": 8, "train.batch_size": 2, "train.steps": 3, "train.minutes": None,
                 "train.images": None, "train.device": "cpu", "log.every": 1, "log.sample_every": 3,
                 "log.checkpoint_every": 3, "log.grid": 2, "log.tensorboard": False, "eval.every": 0}
    if name == "fast-style":
        overrides["data.limit"] = None
    result = atelier.train(path, tmp_path / path.stem, overrides, progress=False)
    assert result.step == 3 and all(np.isfinite(v) for v in result.metrics.values())
    model = atelier.load(tmp_path / path.stem)
    assert model.kind == families.get(name).kind and model.step == 3
    assert (tmp_path / path.stem / "model_card.md").is_file() and result.grid is not None
