"""Data-parallel training on PyTorch's own engine: ``torchrun`` starts the processes, ``torch.distributed``
connects them, ``DistributedDataParallel`` (DDP) averages gradients.

Nothing here starts or watches processes. ``torchrun --nproc_per_node=N -m atelier train ...`` sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each process's
environment; :func:`init` reads them (env:// rendezvous) and joins the group: gloo on CPU, NCCL on CUDA.
Without those variables every function here is a cheap no-op for a single process, so the trainer
has one code path for one CPU, one GPU and many (edm's ``distributed.py``, nanoGPT's ``master_process``).

GANs and DDP, what this module takes care of:

* A discriminator runs several forwards per step (real and fake, or D in the G phase) and may
  hold buffers (BatchNorm statistics, spectral-norm vectors). DDP's default re-broadcasts rank 0's
  buffers in place at every forward, which breaks the autograd graph of the previous forward
  ("modified by an inplace operation"); networks are wrapped with ``forward_sync_buffers=False`` (the
  PyTorch 2.13 name of ``broadcast_buffers=False``; buffers are still broadcast once, at construction).
* In the G phase D is frozen with ``requires_grad_(False)`` and G's loss back-propagates through it.
  None of D's gradient hooks fires, so D's reducer never starts a reduction and the next D step is
  clean: plain DDP (``find_unused_parameters=False``, no ``no_sync``) handles this pattern; a D frozen
  only in part would need ``find_unused_parameters=True``.
* Gradient penalties (R1, WGAN-GP) that take ``torch.autograd.grad(..., create_graph=True)`` with
  respect to the *inputs* and then call an ordinary ``backward()`` work: each rank's penalty is a
  per-sample term, the intermediate input-gradients stay in-process, and the final backward's
  parameter gradients (including the second-order part) reach DDP's all-reduce hooks
  (pytorch/pytorch#63812; tested in tests/test_distributed.py). ``loss.backward(create_graph=True)``
  through a DDP network is not supported by PyTorch (pytorch/pytorch#63929): use ``autograd.grad``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from atelier.errors import ConfigError

__all__ = ["World", "all_mean", "any_flag", "barrier", "cleanup", "init", "is_main", "print0",
           "unwrap", "world_size", "wrap"]


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_world() -> World:
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (they are set by torchrun; "
                          "start data-parallel training with: torchrun --nproc_per_node=N -m atelier train ...)") \
            from None


def init(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun described in the environment (once). Returns (world, this rank's device).

    One process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``): nothing is initialised and ``device`` is returned.
    """
    world = _env_world()
    if not world.distributed:
        return world, device
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {world.local_rank} but only {torch.cuda.device_count()} CUDA device(s) "
                              "here: start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise ConfigError("WORLD_SIZE > 1 but MASTER_ADDR is not set: start data-parallel training with "
                              "torchrun --nproc_per_node=N -m atelier train ...")
        backend = "nccl" if device.type == "cuda" else "gloo"
        # A generous timeout: rank 0 alone writes checkpoints, grids and FID evaluations behind barriers.
        dist.init_process_group(backend, rank=world.rank, world_size=world.world_size,
                                timeout=datetime.timedelta(minutes=30),
                                device_id=device if device.type == "cuda" else None)
    elif dist.get_world_size() != world.world_size:
        raise ConfigError(f"the process group has {dist.get_world_size()} processes but WORLD_SIZE is "
                          f"{world.world_size}")
    return world, device


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one process that writes files and prints."""
    return (dist.get_rank() if dist.is_initialized() else _env_world().rank) == 0


def print0(*args: Any, **kwargs: Any) -> None:
    if is_main():
        print(*args, **kwargs)


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (at the end of ``atelier train`` under torchrun)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _reduce_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged scalar over all ranks (each rank saw its share of the global batch)."""
    if world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def any_flag(flag: bool) -> bool:
    """True when ``flag`` is true on any rank (a stop signal seen by one process stops all of them together)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_tensor(t: torch.Tensor) -> torch.Tensor:
    """Stack ``t`` from every rank into ``(world_size, *t.shape)`` (same shape and dtype on every rank)."""
    if world_size() == 1:
        return t[None].clone()
    dev = _reduce_device()
    parts = [torch.empty_like(t, device=dev) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.to(dev))
    return torch.stack([p.cpu() for p in parts])


def wrap(net: nn.Module, device: torch.device, sync_batchnorm: bool = False) -> nn.Module:
    """``net`` wrapped in DDP when the process group is up (else ``net`` itself).

    Construction broadcasts rank 0's parameters and buffers, so every rank starts from the same weights.
    ``sync_batchnorm`` (CUDA only: PyTorch's SyncBatchNorm has no CPU kernel) makes BatchNorm use the
    statistics of the global batch, the same maths as one process with the same global batch; without
    it, each rank normalises by its own share of the batch (PyTorch's default under DDP).
    """
    if world_size() == 1:
        return net
    if sync_batchnorm:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids, forward_sync_buffers=False)


def unwrap(net: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (for state dicts, EMA and sampling)."""
    return net.module if isinstance(net, DistributedDataParallel) else net
