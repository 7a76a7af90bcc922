"""Data-parallel training: torchrun + DDP over gloo on this CPU, compared with one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from pydantic import BaseModel, ConfigDict
from torch import nn

import atelier
from atelier import distributed
from atelier.checkpoint import CheckpointManager
from atelier.data import BatchLoader, ImageDataset
from atelier.device import check_precision
from atelier.errors import ConfigError, DataError
from atelier.models import Network
from conftest import DATA_REASON, mnist_available

REPO = Path(__file__).resolve().parents[1]
needs_mnist = pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)

# Global batch 32: one process trains on 32 images per step, two processes on 16 each.
RUN = {"model.width": 8, "model.z_dim": 16, "data.limit": 256, "train.batch_size": 32, "train.steps": 12,
       "train.device": "cpu", "train.precision": "fp32", "log.every": 1, "log.sample_every": 6,
       "log.checkpoint_every": 6, "log.grid": 2, "log.tensorboard": False}


def _torchrun(run_dir: Path, overrides: dict, nproc: int = 2, *extra: str) -> subprocess.CompletedProcess:
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "atelier", "train", "--run-dir", str(run_dir), *sets, *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _curve(run_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss_d" in r]


@needs_mnist
def test_two_processes_follow_the_one_process_loss_curve_and_resume_in_one(tmp_path):
    one = atelier.train(None, tmp_path / "one", dict(RUN), progress=False)
    proc = _torchrun(tmp_path / "two", RUN)
    # Rank 0 alone reports, logs and writes: one report, one metrics line per step.
    assert proc.stdout.count("finished step 12") == 1
    a, b = _curve(tmp_path / "one"), _curve(tmp_path / "two")
    assert [r["step"] for r in b] == list(range(1, 13)) and [r["kimg"] for r in a] == [r["kimg"] for r in b]
    # Same init, same images per step (the ranks' shards make up the one-process batch), but each rank draws
    # its own noise and dropout masks and normalises G's BatchNorm over its 16 images, so the curves agree
    # statistically, not bit for bit. Measured over the 12 steps: mean |diff| 0.040 (loss_d, which is ~1.5) and
    # 0.012 (loss_g, ~0.69), max 0.081 and 0.041. Tolerance: twice the measured mean, 2.5-3x the max.
    for key, mean_tol, max_tol in (("loss_d", 0.08, 0.2), ("loss_g", 0.025, 0.12)):
        diffs = [abs(x[key] - y[key]) for x, y in zip(a, b, strict=True)]
        assert sum(diffs) / len(diffs) < mean_tol and max(diffs) < max_tol, (key, diffs)
    assert abs(one.metrics["loss_d"] - b[-1]["loss_d"]) < 0.2

    # The 2-process checkpoint of step 6 resumes in one process: copy the run without its later steps.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    (resumed / "config.yaml").write_text((tmp_path / "two" / "config.yaml").read_text())
    ckpt = (tmp_path / "two" / "checkpoints" / "step-0000006.safetensors").read_bytes()
    (resumed / "checkpoints" / "step-0000006.safetensors").write_bytes(ckpt)
    (resumed / "checkpoints" / "latest").write_text("step-0000006.safetensors\n")
    state = CheckpointManager.read(resumed / "checkpoints" / "step-0000006.safetensors")
    assert state["rng"]["cpu_ranks"].shape[0] == 2 and state["images_seen"] == 6 * 32
    result = atelier.train(None, resumed, {"train.steps": 12}, progress=False)
    assert result.step == 12 and result.images_seen == 12 * 32
    c = _curve(resumed)
    assert [r["step"] for r in c] == list(range(7, 13))
    diffs = [abs(x["loss_d"] - y["loss_d"]) for x, y in zip(b[6:], c, strict=True)]
    assert sum(diffs) / len(diffs) < 0.08, diffs


@needs_mnist
def test_a_dry_run_under_torchrun_reports_once(tmp_path):
    proc = _torchrun(tmp_path / "dry", RUN, 2, "--dry-run")
    assert proc.stdout.count("dry run ok") == 1 and proc.stdout.count("would write into") == 1, proc.stdout
    assert not (tmp_path / "dry").exists()


def _dataset(n: int = 64) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.randint(0, 256, (n, 2, 12, 12), dtype=torch.uint8, generator=g),
                        torch.arange(n), "synthetic")


def test_rank_shards_make_up_the_one_process_batch_with_the_same_augmentation():
    ds = _dataset()
    one = BatchLoader(ds, 16, seed=3, hflip=True, crop=10)
    ranks = [BatchLoader(ds, 16, seed=3, hflip=True, crop=10, rank=r, world_size=4) for r in range(4)]
    for _ in range(9):  # past an epoch boundary (64 images, 4 batches per epoch)
        x, y = one.next()
        parts = [loader.next() for loader in ranks]
        assert all(p[0].shape == (4, 2, 10, 10) for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)
    # The position is global: a one-process state resumes a rank and vice versa.
    assert ranks[2].state_dict() == one.state_dict()
    with pytest.raises(DataError, match="multiple of 3"):
        BatchLoader(ds, 16, seed=0, rank=0, world_size=3)


def test_fp16_is_refused_on_cpu_with_a_clear_message(tmp_path, tiny):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        check_precision(torch.device("cpu"), "fp16")
    with pytest.raises(ConfigError, match="use bf16"):
        atelier.train(None, tmp_path / "r", {**tiny, "train.precision": "fp16"}, progress=False)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_single_process_helpers_are_no_ops():
    world, device = distributed.init(torch.device("cpu"))
    assert (world.rank, world.world_size, world.is_main, world.distributed) == (0, 1, True, False)
    net = nn.Linear(2, 2)
    assert distributed.wrap(net, device) is net and distributed.unwrap(net) is net
    assert distributed.all_mean({"a": 1.5}) == {"a": 1.5} and distributed.any_flag(True)
    assert distributed.all_gather_tensor(torch.ones(3)).shape == (1, 3)


# ---- DDP and the GAN task's own step, exactly: two processes vs one, same data and noise ---------------------
class _ToyGANConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    z_dim: int = 4


class _ToyG(Network):
    """No batch norm and no dropout: each rank's maths is then exactly its share of the one-process batch."""

    def __init__(self, cfg: _ToyGANConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        self.net = nn.Sequential(nn.Linear(cfg.z_dim, channels * resolution**2), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, self.channels, self.resolution, self.resolution)


class _ToyD(Network):
    def __init__(self, cfg: _ToyGANConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * resolution**2, 16), nn.LeakyReLU(0.2),
                                 nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _register_toy_gan() -> None:
    from atelier import families
    from atelier.loaded import Generator
    from atelier.models import ModelSpec, register
    from atelier.tasks.gan import GANTask

    register(ModelSpec(name="toy-mlp-gan", config=_ToyGANConfig, networks={"G": _ToyG, "D": _ToyD}))
    families.register(families.Family("toy-mlp-gan", GANTask, Generator, slots=("G_ema", "G")))


def _fixed_noise_task():
    """The GAN task with every image's latent fixed by its index in the global batch (ranks draw their own
    noise streams otherwise); the step itself is GANTask.step, unchanged."""
    from atelier.tasks.gan import GANTask

    class FixedNoise(GANTask):
        def noise(self, batch: int):
            z = torch.randn(8, self.z_dim, generator=torch.Generator().manual_seed(100 + self.ctx.step))
            return z[self.ctx.world.rank * batch : (self.ctx.world.rank + 1) * batch], None

    return FixedNoise


TOY_GAN = {"model.name": "toy-mlp-gan", "data.resolution": 8, "train.batch_size": 8, "train.precision": "fp32",
           "train.channels_last": False, "train.device": "cpu", "loss.r1_gamma": 5.0, "loss.r1_every": 1,
           "log.tensorboard": False}


def _toy_trainer(run_dir: Path):
    from atelier.runs import Run, load_config
    from atelier.training import Trainer

    _register_toy_gan()
    cfg = load_config(None, TOY_GAN)
    data = ImageDataset(torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8,
                                      generator=torch.Generator().manual_seed(0)), None, "synthetic")
    return Trainer(cfg, Run(run_dir), _fixed_noise_task(), progress=False, dataset=data)


def _train_three_steps(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    trainer = _toy_trainer(run_dir)
    for _ in range(3):
        trainer.train_step()
    state = trainer.state_dict()
    return {k: state[k] for k in ("G", "D", "G_ema")}


def _ada():
    from atelier.config import AugmentConfig
    from atelier.data.augment import Augment

    return Augment(AugmentConfig(policy="translation", p=0.5, ada_target=0.6, ada_interval=1, ada_kimg=0.1), 8)


def _ada_logits() -> torch.Tensor:
    return torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0])[:, None]  # global mean sign 0.25 < 0.6


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    states = _train_three_steps(Path(out).parent / "two")   # the Trainer joins the process group
    world = distributed.World(rank, 2, rank)
    # ADA: rank 0 sees D(real) > 0, rank 1 sees D(real) < 0 more often; p moves by the global statistic.
    ada = _ada()
    ada.observe(_ada_logits()[slice(4 * rank, 4 * rank + 4)])
    if world.is_main:
        torch.save({**{k: v for k, v in states.items()}, "ada_p": ada.p}, out)
    distributed.barrier()
    distributed.cleanup()


def test_the_gan_task_step_and_ada_under_ddp_match_one_process_exactly(tmp_path):
    """GANTask.step (D phase with R1's double backward through DDP, G through a frozen D, EMA) on two processes
    gives the one-process weights: the gradients are averaged over the ranks' shards of the same batch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two.pt"
    mp.start_processes(_worker, args=(port, str(out)), nprocs=2, start_method="spawn")
    one = _train_three_steps(tmp_path / "one")
    two = torch.load(out, weights_only=True)
    ada = _ada()
    ada.observe(_ada_logits())
    assert ada.p == pytest.approx(0.42) and two["ada_p"] == pytest.approx(ada.p)  # rank 0 alone would raise p
    for name in ("G", "D", "G_ema"):
        assert one[name].keys() == two[name].keys()
        for key, value in one[name].items():
            torch.testing.assert_close(two[name][key], value, rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")
    assert not torch.equal(one["G"]["net.0.weight"], _toy_trainer(tmp_path / "fresh").state_dict()["G"]["net.0.weight"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@needs_mnist
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_training_runs_and_resumes(tmp_path, tiny, precision):
    overrides = {**tiny, "train.device": "cuda", "train.precision": precision}
    result = atelier.train(None, tmp_path / "r", overrides, progress=False)
    assert result.step == 6 and all(map(lambda v: v == v, result.metrics.values()))
    state = CheckpointManager.read(CheckpointManager(tmp_path / "r" / "checkpoints").latest_path())
    assert ("scaler_g" in state) == (precision == "fp16")
    assert atelier.train(None, tmp_path / "r", {"train.steps": 8}, progress=False).step == 8
