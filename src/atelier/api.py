"""The public Python API; the CLI (and later the server) call these functions and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from atelier.checkpoint import CheckpointManager
from atelier.config import RunConfig, apply_overrides, flatten, read_yaml, validate_config
from atelier.device import resolve_device
from atelier.errors import ConfigError, RunError
from atelier.images import to_uint8_array
from atelier.translation import Translator

__all__ = ["Generator", "Translator", "load", "prepare_run", "train"]

# Keys that may change when a run is resumed (they do not change what has been trained so far;
# evaluations draw from their own seeded generators, so they do not change training either).
RESUMABLE_KEYS = ("train.steps", "train.device", "log.", "eval.")


class Generator:
    """A trained generator loaded from a run folder, ready to sample."""

    def __init__(self, network: torch.nn.Module, cfg: RunConfig, run_dir: Path, step: int, which: str,
                 weights: Path | None = None) -> None:
        from atelier.provenance import weights_sha256

        self.network = network.eval()
        self.weights_sha256 = weights_sha256(weights)  # of the checkpoint file, in every image's metadata
        self.cfg = cfg
        self.run_dir = run_dir
        self.step = step
        self.which = which
        self.z_dim = int(cfg.model["z_dim"])
        # Class-conditional models (model.num_classes > 0) take a label per latent; 0 means unconditional.
        self.num_classes = int(cfg.model.get("num_classes", 0) or 0)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def latents(self, n: int | None = None, seed: int = 0, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """``n`` latents from one seed, or one latent per seed in ``seeds`` (the same z for a seed always)."""
        if seeds is not None:
            return torch.cat([torch.randn(1, self.z_dim, generator=torch.Generator().manual_seed(int(s)))
                              for s in seeds])
        if n is None or n < 1:
            raise ValueError(f"n must be a positive number of images, got {n}")
        return torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed))

    def class_labels(self, labels: int | Sequence[int] | torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Labels for ``n`` images: one class for all, or one per image (checked).

        For a conditional model, None cycles through the classes (0, 1, ..., K-1, 0, ...), so that
        samples, grids and evaluations are class-balanced; an unconditional model takes None only.
        """
        if labels is None:
            return torch.arange(n) % self.num_classes if self.num_classes else None
        if not self.num_classes:
            raise ValueError("this model is unconditional; it takes no class (drop --class)")
        y = torch.as_tensor(labels, dtype=torch.long).flatten()
        if y.numel() == 1:
            y = y.expand(n)
        if y.numel() != n:
            raise ValueError(f"got {y.numel()} labels for {n} latents")
        bad = y[(y < 0) | (y >= self.num_classes)]
        if bad.numel():
            raise ValueError(f"class {int(bad[0])} is out of range: this model has classes 0..{self.num_classes - 1}")
        return y.contiguous()

    @torch.no_grad()
    def generate(self, z: torch.Tensor, batch_size: int = 256,
                 labels: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Latents (and, for a conditional model, class labels) -> uint8 images ``(N, C, H, W)``."""
        y = self.class_labels(labels, z.shape[0])
        out = []
        for i, chunk in enumerate(z.split(batch_size)):
            args = (chunk.to(self.device),)
            if y is not None:
                args += (y[i * batch_size : (i + 1) * batch_size].to(self.device),)
            x = self.network(*args)
            out.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
        return torch.cat(out)

    def sample(self, n: int | None = None, seed: int = 0, *, seeds: Sequence[int] | None = None,
               labels: int | Sequence[int] | torch.Tensor | None = None,
               pil: bool = False, batch_size: int = 256) -> torch.Tensor | list[Image.Image]:
        images = self.generate(self.latents(n, seed, seeds), batch_size=batch_size, labels=labels)
        if not pil:
            return images
        return [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in to_uint8_array(images)]

    def metadata(self, **fields: Any) -> dict[str, Any]:
        from atelier.provenance import model_metadata

        return model_metadata(self.run_dir, self.step, self.weights_sha256, **{
            "workflow": "sample", "model": self.cfg.model["name"], "generator": self.which, **fields})


def _read_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise RunError(f"{run_dir} is not an atelier run folder (no config.yaml); train one with `atelier train`")
    return validate_config(read_yaml(path), where=str(path))


def load(run_dir: str | Path, which: str = "ema", device: str = "cpu") -> Generator | Translator:
    """Load a run folder's latest model, ready to use.

    A GAN run gives a :class:`Generator` (the EMA generator by default, ``which="raw"`` for G);
    a translation run (pix2pix) gives a :class:`~atelier.translation.Translator`, called on an image;
    a ``train-style`` run (``kind: fast-style`` in its config.yaml) gives a callable
    :class:`~atelier.style.fast.StyleModel`: ``atelier.load("runs/wave")(photo)``.
    """
    from atelier.models import build, get

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}")
    raw = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else None
    if isinstance(raw, dict) and "kind" in raw:
        from atelier.style.fast import load_style_run

        return load_style_run(run_dir, raw, device=device)  # type: ignore[return-value]
    cfg = _read_run_config(run_dir)
    if which not in ("ema", "raw"):
        raise ValueError(f"which must be 'ema' or 'raw', got {which!r}")
    ckpt = CheckpointManager(run_dir / "checkpoints")
    path = ckpt.latest_path()
    if path is None:
        raise RunError(f"{run_dir} has no checkpoint yet; train it first (`atelier train --run-dir {run_dir}`)")
    kind = get(cfg.model["name"]).kind
    key = "s.G_ema" if which == "ema" and kind == "gan" else "s.G"
    state = ckpt.read(path, tensors_only=key)
    step = int(CheckpointManager.read_step(path))
    net = build(cfg.model, resolution=cfg.data.resolution, channels=cfg.data.channels)["G"]
    net.load_state_dict(state)
    net = net.to(resolve_device(device))
    if kind == "translation":
        return Translator(net, cfg, run_dir, step, weights=path)
    # Only a GAN run keeps an EMA generator; other kinds (a VAE's decoder) are sampled from G itself.
    return Generator(net, cfg, run_dir, step, which if kind == "gan" else "raw", weights=path)


def _config_data(config: str | Path | dict | RunConfig | None) -> tuple[dict[str, Any] | None, str]:
    if config is None:
        return None, "config"
    if isinstance(config, RunConfig):
        return config.to_dict(), "config"
    if isinstance(config, dict):
        return config, "config"
    return read_yaml(config), str(config)


def prepare_run(config: str | Path | dict | RunConfig | None, run_dir: Path,
                overrides: dict[str, Any]) -> tuple[RunConfig, bool]:
    """Resolve the config of a new run, or of a run folder being resumed. Returns (config, resuming).

    A run folder with a checkpoint is resumed from its own ``config.yaml``; only the keys in
    ``RESUMABLE_KEYS`` (more steps, logging cadence, device) may differ from what it was trained with.
    """
    data, where = _config_data(config)
    stored = run_dir / "config.yaml"
    if stored.is_file() and CheckpointManager(run_dir / "checkpoints").latest_path() is not None:
        # Validate the stored config first, so keys added to atelier since the run started take their
        # defaults instead of looking like changes.
        base = flatten(validate_config(read_yaml(stored), where=str(stored)).to_dict())
        changed = {}
        if data is not None:
            asked = flatten(validate_config(apply_overrides(data, overrides), where=where).to_dict())
            changed = {k: v for k, v in asked.items() if base.get(k) != v}
        changed.update({k: v for k, v in overrides.items() if base.get(k) != v})
        bad = {k: v for k, v in changed.items() if not k.startswith(RESUMABLE_KEYS)}
        if bad:
            shown = ", ".join(f"{k}={v!r} (the run has {base.get(k)!r})" for k, v in list(bad.items())[:4])
            raise ConfigError(f"{run_dir} was trained with a different config: {shown}. Resume with the same "
                              f"settings, or start a new run with another --run-dir")
        return validate_config(apply_overrides(read_yaml(stored), changed), where=str(stored)), True
    return validate_config(apply_overrides(data or {}, overrides), where=where), False


def train(config: str | Path | dict | RunConfig | None = None, run_dir: str | Path = "runs/atelier",
          overrides: dict[str, Any] | None = None, progress: bool | None = None, callback=None):
    """Train a run, or resume it when ``run_dir`` already holds a checkpoint.

    Returns a :class:`~atelier.training.TrainResult` (step, images seen, paths of the grid, loss plot
    and model card).
    """
    from atelier.models import get
    from atelier.training import GANTrainer
    from atelier.training.pix2pix import Pix2PixTrainer
    from atelier.training.vae import VAETrainer

    run_dir = Path(run_dir)
    cfg, resuming = prepare_run(config, run_dir, overrides or {})
    trainer_cls = {"gan": GANTrainer, "translation": Pix2PixTrainer, "vae": VAETrainer}[get(cfg.model["name"]).kind]
    from atelier import distributed

    try:
        trainer = trainer_cls(cfg, run_dir, progress=progress)
        if resuming:
            trainer.resume()
        return trainer.fit(callback=callback)
    finally:
        distributed.cleanup()  # under torchrun: leave the process group (a no-op in one process)
