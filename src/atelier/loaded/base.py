"""The base of every loaded model: its network, run, step, device, weights hash and image metadata."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from atelier.checkpoint import CheckpointManager
from atelier.config import RunConfig
from atelier.device import resolve_device
from atelier.errors import RunError
from atelier.models import build
from atelier.provenance import model_metadata, weights_sha256
from atelier.runs import Run

__all__ = ["ExportSpec", "FullyConvolutional", "LoadedModel", "read_slot"]

# (network, example inputs by name (batch axis first), image inputs whose height and width may vary -> (the stride
# they must be a multiple of, the smallest multiple))
ExportSpec = tuple[nn.Module, dict[str, torch.Tensor], dict[str, tuple[int, int]]]


def read_slot(path: Path, slots: Sequence[str]) -> tuple[str, dict[str, torch.Tensor]]:
    """The state of the first of ``slots`` that the checkpoint holds (e.g. ("G_ema", "G"))."""
    for slot in slots:
        try:
            return slot, CheckpointManager.read(path, tensors_only=f"s.{slot}")
        except KeyError:
            continue
    raise RunError(f"checkpoint {path} holds none of the networks {', '.join(slots)}")


class LoadedModel:
    """A network of a run folder's latest checkpoint, ready to use (``eval`` mode, on ``device``)."""

    kind: ClassVar[str] = ""              # "generator", "translator", "stylizer"
    workflow: ClassVar[str] = ""          # the provenance workflow of its images
    capabilities: ClassVar[tuple[str, ...]] = ()  # what the studio may call

    def __init__(self, network: nn.Module, cfg: RunConfig, run: Run | str | Path | None, step: int,
                 which: str, weights: Path | None = None) -> None:
        self.network = network.eval()
        self.cfg = cfg
        self.run = run if isinstance(run, Run) or run is None else Run(run)
        self.step = step
        self.which = which  # the slot it came from ("G_ema", "G", "decoder", "net", ...)
        self.weights_sha256 = weights_sha256(weights)  # of the checkpoint file, in every image's metadata

    @classmethod
    def from_run(cls, run: Run, cfg: RunConfig, slots: Sequence[str], device: str = "cpu") -> LoadedModel:
        """Build the family's networks, load the first of ``slots`` found in the latest checkpoint into the one
        in ``slots[-1]``'s place (an EMA has the same shape as its network)."""
        path = run.require_checkpoint()
        slot, state = read_slot(path, slots)
        nets = build(cfg.model, resolution=cfg.data.resolution, channels=cfg.data.channels)
        net = nets[cls.network_slot(slot, nets)]
        net.load_state_dict(state)
        return cls(net.to(resolve_device(device)), cfg, run, CheckpointManager.read_step(path), slot, weights=path)

    @staticmethod
    def network_slot(slot: str, nets: dict[str, nn.Module]) -> str:
        """The network a checkpoint slot belongs to: "G_ema" -> "G"; a legacy name -> the family's one slot."""
        base = slot.removesuffix("_ema")
        if base in nets:
            return base
        return {"G": "decoder", "D": "encoder"}.get(base, base)  # VAE run folders written before the one loop

    # ------------------------------------------------------------------ common
    @property
    def run_dir(self) -> Path | None:
        return self.run.path if self.run is not None else None

    def network_int(self, name: str) -> int:
        """An integer attribute of the network that export and size checks need (a U-Net's depth, a stride)."""
        return int(getattr(self.network, name))

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def resolution(self) -> int:
        return self.cfg.data.resolution

    @property
    def channels(self) -> int:
        return self.cfg.data.channels

    def metadata(self, **fields: Any) -> dict[str, Any]:
        """Provenance fields of an image this model made (run, step, checkpoint sha256, family, ...)."""
        return model_metadata(self.run_dir, self.step, self.weights_sha256,
                              **{"workflow": self.workflow, "model": self.cfg.model["name"], **fields})

    def info(self) -> dict[str, Any]:
        """What the studio shows about the model."""
        return {"kind": self.kind, "model": self.cfg.model["name"], "step": self.step,
                "resolution": self.resolution, "channels": self.channels, "data": self.cfg.data.source,
                "capabilities": list(self.capabilities)}

    def export_spec(self) -> ExportSpec:
        raise NotImplementedError

    def export_sizes(self) -> str:
        """Which image sizes the exported model accepts, in words."""
        return ""


class FullyConvolutional(LoadedModel):
    """A loaded U-Net (pix2pix's translator, the segmenter): it exports with dynamic height and width, any
    multiple of 2**depth."""

    def export_spec(self) -> ExportSpec:
        r = self.resolution
        return self.network, {"x": torch.zeros(2, self.channels, r, r)}, {"x": (2 ** self.network_int("depth"), 1)}

    def export_sizes(self) -> str:
        k = 2 ** self.network_int("depth")
        return f"any height and width that are multiples of {k} (trained at {self.resolution}x{self.resolution})"
