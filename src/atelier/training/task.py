"""The task protocol: what a model family tells the one training loop.

A task owns its networks, optimisers, EMAs and data, and knows one step, its progress grid and how to
describe itself; the loop (:mod:`atelier.training.loop`) owns everything around it: the run folder,
checkpoints and exact resume, signals, logging, budgets, evaluation during training, DDP and the
model card. A new family is a model file, a task file and one registry line (:mod:`atelier.families`).

What the loop checkpoints from a task, under fixed keys so that every family resumes the same way:
``networks`` (by slot: "G", "D", "net", ...), ``emas`` (saved as "<slot>_ema"), ``optimizers`` (by name:
"opt_g", "opt_d", ...), ``data.state_dict()`` (the loader's position, as "loader"), and whatever
``extra_state()`` returns (ADA's probability, a path-length mean, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from PIL import Image
from torch import nn

from atelier import distributed
from atelier.device import autocast, make_scaler

if TYPE_CHECKING:
    from atelier.config import RunConfig
    from atelier.data import ImageDataset
    from atelier.runs import Run
    from atelier.training.ema import EMA

__all__ = ["Batches", "Context", "Grid", "Task"]


class Batches(Protocol):
    """A seeded, endless batch stream whose position can be saved and restored exactly."""

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Grid:
    """A progress image and the provenance fields it is saved with."""

    image: Image.Image
    fields: dict[str, Any] = field(default_factory=dict)


class Context:
    """What the loop lends a task: the config, the device and precision, the process group, the counters,
    and the one place where gradients are computed and applied (:meth:`optimize`)."""

    def __init__(self, cfg: RunConfig, run: Run, world: distributed.World, device: torch.device) -> None:
        self.cfg, self.run, self.world, self.device = cfg, run, world, device
        self.precision = cfg.train.precision
        # Counters, advanced by the loop *before* each step: inside ``Task.step`` they include the current step.
        self.step = 0
        self.images_seen = 0
        self._scalers: dict[int, torch.amp.GradScaler | None] = {}

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def wrap(self, net: nn.Module) -> nn.Module:
        """The network for training: moved to the device (channels_last when configured) and, under torchrun,
        wrapped in DDP (SyncBatchNorm on CUDA; on CPU each rank normalises over its share of the batch)."""
        net = net.to(self.device)
        if self.cfg.train.channels_last:
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (torch's stub lacks it)
        return distributed.wrap(net, self.device, sync_batchnorm=self.device.type == "cuda")

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cfg.train.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def global_batch(self) -> int:
        return self.cfg.train.batch_size

    def scaler(self, opt: torch.optim.Optimizer) -> torch.amp.GradScaler | None:
        if id(opt) not in self._scalers:
            self._scalers[id(opt)] = make_scaler(self.device, self.precision)
        return self._scalers[id(opt)]

    def optimize(self, loss: torch.Tensor, *opts: torch.optim.Optimizer) -> None:
        """One optimiser step of ``opts`` on ``loss``: zero the gradients, backward, step.

        Under DDP the backward pass also averages the gradients over ranks. In fp16 the loss is scaled by
        each optimiser's own GradScaler (PyTorch AMP's "multiple optimizers" recipe), which unscales before the
        step and skips steps with inf/NaN gradients.
        """
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        scalers = [self.scaler(opt) for opt in opts]
        if all(s is None for s in scalers):
            loss.backward()
            for opt in opts:
                opt.step()
            return
        scalers[0].scale(loss).backward()  # type: ignore[union-attr]
        for opt, scaler in zip(opts, scalers, strict=True):
            scaler.step(opt)  # type: ignore[union-attr]
            scaler.update()  # type: ignore[union-attr]


class Task:
    """Base of a family's training task. Subclasses set the attributes below in ``__init__`` and implement
    :meth:`step`, :meth:`grid` and :meth:`describe`."""

    # The model card's heading of the progress grid.
    grid_title = "Samples from fixed latents"

    def __init__(self, cfg: RunConfig, ctx: Context) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.networks: dict[str, nn.Module] = {}
        self.emas: dict[str, EMA] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.data: Batches | None = None
        self.dataset: ImageDataset | None = None  # what the model card describes (name, size, licence)

    # ------------------------------------------------------------------ training
    def step(self, batch: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        """One training step on this process's share of the batch; returns named loss terms (floats)."""
        raise NotImplementedError

    def batch_images(self, batch: torch.Tensor) -> int:
        """Images this process trained on in ``batch`` (counted over all processes by the loop)."""
        return int(batch.shape[0])

    def extra_state(self) -> dict[str, Any]:
        """Task state beyond networks, EMAs, optimisers and data position (tensors and JSON values)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------ showing it
    def grid(self) -> Grid:
        """The progress grid (rank 0 only), from fixed inputs so that changes over time are the model's."""
        raise NotImplementedError

    def describe(self, metrics: dict[str, float]) -> list[str]:
        """Model-card lines (markdown list items) on the model and its objective, given the last metrics."""
        return []

    def sampler(self) -> Callable[[int, int], torch.Tensor] | None:
        """``(n, seed) -> uint8 (n, C, H, W)`` from the model being trained, for FID during training; None
        when the family does not generate from noise."""
        return None

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        """A few short values for the progress bar."""
        keys = [k for k in metrics if k.startswith("loss")][:3]
        return {k.removeprefix("loss_") or "loss": f"{metrics[k]:.3f}" for k in keys}
