"""A new model family is one model file, one task file and one registry line: a toy family, written and
registered here in the test, trains through the one loop, resumes bit for bit, and samples through the CLI.
The loop's budgets (steps, minutes, images) stop a run cleanly and the same command with a larger budget
continues it."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from safetensors import safe_open
from torch import nn

import atelier
from atelier import families
from atelier.checkpoint import CheckpointManager
from atelier.cli import cli
from atelier.images import make_grid
from atelier.latent import generate, latents
from atelier.loaded import Generator
from atelier.models import ModelSpec, Network, register
from atelier.models import get as get_model
from atelier.tasks.common import loader, open_data
from atelier.training import Grid, Task
from atelier.training.ema import EMA
from conftest import DATA_REASON, mnist_available

pytestmark = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)


# ---------------------------------------------------------------------------------------- "the model file"
class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    z_dim: int = Field(4, ge=1)


class ToyGenerator(Network):
    """z -> one linear layer -> tanh image: a generator in a few lines."""

    def __init__(self, cfg: ToyConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        self.fc = nn.Linear(cfg.z_dim, channels * resolution * resolution)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, self.channels, self.resolution, self.resolution)


# ----------------------------------------------------------------------------------------- "the task file"
class ToyTask(Task):
    """Matches each pixel's mean and spread over the batch to the real batch's (moment matching)."""

    def __init__(self, cfg, ctx) -> None:
        super().__init__(cfg, ctx)
        self.dataset = open_data(cfg)
        self.data = loader(ctx, self.dataset)
        params = dict(cfg.model)
        spec = get_model(params.pop("name"))
        self.G = ctx.wrap(spec.build(spec.parse(params), cfg.data.resolution, cfg.data.channels)["G"])
        self.networks = {"G": self.G}
        self.ema = EMA(self.G, half_life_kimg=0.05, rampup=None)
        self.emas = {"G": self.ema}
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=1e-2)
        self.optimizers = {"opt_g": self.opt_g}
        self.z_dim = cfg.model["z_dim"]
        self.fixed_z = torch.randn(4, self.z_dim, generator=torch.Generator().manual_seed(1))

    def step(self, real, labels):
        fake = self.G(torch.randn(real.shape[0], self.z_dim))     # draws from the global (checkpointed) stream
        loss = (fake.mean(0) - real.mean(0)).pow(2).mean() + (fake.std(0) - real.std(0)).pow(2).mean()
        self.ctx.optimize(loss, self.opt_g)
        self.ema.update(self.G, real.shape[0], self.ctx.images_seen)
        return {"loss": loss.item()}

    @torch.no_grad()
    def grid(self) -> Grid:
        return Grid(make_grid(self.ema.model(self.fixed_z), nrow=4))

    def sampler(self):
        return lambda n, seed: generate(self.ema.model, latents(self.z_dim, n, seed))


# ------------------------------------------------------------------------------------- "the registry line"
register(ModelSpec(name="toy", config=ToyConfig, networks={"G": ToyGenerator}))
families.register(families.Family("toy", ToyTask, Generator, slots=("G_ema", "G"), raw_slots=("G",)))

TOY = ["--set", "model.name=toy", "--set", "data.limit=64", "--batch-size", "16", "--set", "log.every=1",
       "--set", "log.tensorboard=false", "--checkpoint-every", "100", "--sample-every", "2"]


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _tensors(run) -> dict[str, torch.Tensor]:
    with safe_open(str(CheckpointManager(run / "checkpoints").latest_path()), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def test_a_family_registered_in_a_test_trains_resumes_bit_identically_and_samples(tmp_path):
    res = _cli("train", "--run-dir", tmp_path / "straight", "--steps", 6, *TOY)
    assert res.exit_code == 0 and "finished step 6" in res.output, res.output
    res = _cli("train", "--run-dir", tmp_path / "resumed", "--steps", 3, *TOY)
    assert res.exit_code == 0 and "finished step 3" in res.output, res.output
    res = _cli("train", "--run-dir", tmp_path / "resumed", "--steps", 6, *TOY)
    assert res.exit_code == 0 and "resuming" in res.output and "from step 3" in res.output, res.output
    a, b = _tensors(tmp_path / "straight"), _tensors(tmp_path / "resumed")
    assert {"s.G.fc.weight", "s.G_ema.fc.weight", "s.opt_g.state.0.exp_avg"} <= a.keys()
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []

    res = _cli("sample", tmp_path / "straight", "--n", 8, "--out", tmp_path / "toy.png")
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "toy.png") as im:
        assert im.size[0] >= 2 * 3 * 28  # several 28 px images, enlarged 3x
        assert im.info["atelier:model"] == "toy" and im.info["atelier:generator"] == "ema"
    g = atelier.load(tmp_path / "straight")
    assert isinstance(g, Generator) and g.z_dim == 4
    assert torch.equal(g.sample(5, seed=2), g.sample(5, seed=2)) and g.sample(5, seed=2).shape == (5, 1, 28, 28)
    assert (tmp_path / "straight" / "model_card.md").read_text().count("Family: `toy`") == 1


def test_budgets_stop_with_a_checkpoint_and_a_larger_budget_continues(tmp_path):
    run = tmp_path / "r"
    res = _cli("train", "--run-dir", run, "--images", "64", *TOY)    # 64 images at batch 16: 4 steps
    assert res.exit_code == 0 and "finished step 4 (0.1 kimg" in res.output, res.output
    assert CheckpointManager(run / "checkpoints").latest_path().name == "step-0000004.safetensors"
    res = _cli("train", "--run-dir", run, "--images", "64", *TOY)    # the same budget: nothing left to do
    assert res.exit_code == 0 and "already at step 4" in res.output and "nothing to train" in res.output
    res = _cli("train", "--run-dir", run, "--images", "0.128k", *TOY)
    assert res.exit_code == 0 and "finished step 8" in res.output, res.output
    res = _cli("train", "--run-dir", run, "--steps", "5", *TOY)      # a step budget below where the run is
    assert "already at step 8" in res.output

    timed = tmp_path / "t"
    res = _cli("train", "--run-dir", timed, "--minutes", "0.0005", *TOY)   # 30 ms of training: stops early
    assert res.exit_code == 0, res.output
    first = CheckpointManager.read_step(CheckpointManager(timed / "checkpoints").latest_path())
    assert first >= 1
    res = _cli("train", "--run-dir", timed, "--minutes", "0.003", *TOY)
    later = CheckpointManager.read_step(CheckpointManager(timed / "checkpoints").latest_path())
    assert res.exit_code == 0 and later > first
    assert _cli("train", "--run-dir", tmp_path / "x", "--images", "lots", *TOY).exit_code == 2


def test_a_cpu_clock_budget_counts_this_process_cpu_time_not_wall_time(tmp_path, monkeypatch):
    """train.clock=cpu: train.minutes counts time.process_time, so equal budgets stay equal on a shared machine.
    A fake CPU clock that advances 6 s per reading makes each step cost 6 CPU-seconds: 0.5 min is 5 steps,
    while the wall clock (a few ms a step) would have allowed thousands."""
    ticks = iter(range(0, 10**6, 6))
    monkeypatch.setattr("atelier.training.loop.time.process_time", lambda: float(next(ticks)))
    run = tmp_path / "cpu"
    res = _cli("train", "--run-dir", run, "--minutes", "0.5", "--set", "train.clock=cpu", *TOY)
    assert res.exit_code == 0, res.output
    assert CheckpointManager.read_step(CheckpointManager(run / "checkpoints").latest_path()) == 5
    assert atelier.load(run).cfg.train.clock == "cpu"
