"""Feed-forward style transfer (Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", ECCV).

A fully convolutional image transformation network — 9x9 conv, two stride-2 convs, residual blocks,
two upsampling blocks, 9x9 conv — trained against the Gatys losses of one style (see
:mod:`atelier.training.style`), then restyles any photo in one forward pass. Following Ulyanov et al.
2016 ("Instance Normalization: The Missing Ingredient for Fast Stylization") every norm is an instance
norm; following Odena et al. 2016 ("Deconvolution and Checkerboard Artifacts") upsampling is
nearest-neighbour + conv rather than a transposed conv. Being fully convolutional, the output has the
input's size (inputs are reflect-padded to a multiple of 4 and cropped back).

Unlike Johnson's net, the output is a residual, ``x + f(x)`` (clamped to [0, 1] only when saved), with
the last conv initialised near zero: an untrained network is the identity, so a few CPU-minutes of
training already give a sensible stylisation instead of grey noise. (A residual in logit space,
``sigmoid(logit(x) + f(x))``, was tried first: it saturates in dark areas, where the network then
learned to paint glowing blobs.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from atelier.errors import RunError

__all__ = ["StyleModel", "TransformerNet", "load_style_run", "load_transformer"]

KIND = "fast-style"


class ConvLayer(nn.Module):
    """Reflection pad + conv (+ instance norm + ReLU): reflection avoids dark borders on the output."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, norm: bool = True,
                 relu: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)
        self.norm = nn.InstanceNorm2d(c_out, affine=True) if norm else nn.Identity()
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.pad(x))))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with instance norm and an identity skip (Johnson et al.'s supplementary, after He et al.)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvLayer(c, c, 3), ConvLayer(c, c, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvLayer(c_in, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransformerNet(nn.Module):
    """Image (B, 3, H, W) in [0, 1] -> stylised image of the same shape (clamp to [0, 1] for display).

    ``width`` is the first layer's channels (Johnson: 32; the default 16 runs ~4x faster on a CPU).
    """

    def __init__(self, *, width: int = 16, res_blocks: int = 3) -> None:
        super().__init__()
        if width < 1 or res_blocks < 0:
            raise ValueError(f"need width >= 1 and res_blocks >= 0, got {width}, {res_blocks}")
        self.config: dict[str, Any] = {"width": width, "res_blocks": res_blocks}
        w = width
        self.down = nn.Sequential(
            ConvLayer(3, w, 9),                        # (B, w, H, W)
            ConvLayer(w, 2 * w, 3, stride=2),          # (B, 2w, H/2, W/2)
            ConvLayer(2 * w, 4 * w, 3, stride=2),      # (B, 4w, H/4, W/4)
        )
        self.res = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(res_blocks)])
        self.up = nn.Sequential(
            UpsampleLayer(4 * w, 2 * w),               # (B, 2w, H/2, W/2)
            UpsampleLayer(2 * w, w),                   # (B, w, H, W)
            ConvLayer(w, 3, 9, norm=False, relu=False),  # (B, 3, H, W): a residual in logit space
        )
        # Start near the identity (see the module docstring).
        last = self.up[-1].conv
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4  # two stride-2 stages: pad to a multiple of 4, crop back at the end
        xp = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > 4 else "replicate") if ph or pw else x
        y = self.up(self.res(self.down(xp)))[..., :h, :w]
        return x + y  # unbounded while training, so no pixel's gradient is cut off by a clamp


def load_transformer(path: str | Path) -> TransformerNet:
    """Rebuild a TransformerNet saved with :func:`atelier.models.save_pretrained` (config.json + safetensors)."""
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise RunError(f"{path} is not a saved style network (needs config.json and model.safetensors)")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("class") != TransformerNet.__name__:
        raise RunError(f"{cfg_file} holds a {cfg.get('class')!r}, not a {TransformerNet.__name__}")
    net = TransformerNet(**cfg["config"])
    net.load_state_dict(load_file(str(weights)))
    return net.eval()


class StyleModel:
    """A trained fast style network, callable on an image: ``atelier.load("runs/wave")(photo)``."""

    def __init__(self, network: TransformerNet, run_dir: Path | None = None, step: int = 0,
                 style: str | None = None, weights: Path | None = None) -> None:
        self.network = network.eval()
        self.run_dir = run_dir
        self.step = step
        from atelier.provenance import weights_sha256

        self.style = style
        self.weights_sha256 = weights_sha256(weights)  # of the checkpoint file, in every image's metadata

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the same shape, stylised."""
        return self.network(x.to(self.device)).clamp(0, 1).cpu()

    def __call__(self, image: Any, size: int | None = None) -> Image.Image:
        """A path, PIL image, uint8 array or [0, 1] tensor -> the stylised PIL image (long side ``size``,
        or the input's own size)."""
        from atelier.style.gatys import image_to_tensor, tensor_to_image

        return tensor_to_image(self.stylize_tensor(image_to_tensor(image, size, what="content image")))

    def metadata(self, **fields: Any) -> dict[str, Any]:
        from atelier.provenance import model_metadata

        return model_metadata(self.run_dir, self.step, self.weights_sha256, **{
            "workflow": "stylize", "method": "fast (Johnson et al. 2016)", "style": self.style or "", **fields})


def load_style_run(run_dir: str | Path, raw: dict[str, Any] | None = None, device: str = "cpu") -> StyleModel:
    """The latest checkpoint of a ``train-style`` run folder as a :class:`StyleModel`."""
    from atelier.config import read_yaml
    from atelier.training.checkpoint import CheckpointManager
    from atelier.training.engine import resolve_device

    run_dir = Path(run_dir)
    if raw is None:
        cfg_path = run_dir / "config.yaml"
        raw = read_yaml(cfg_path) if cfg_path.is_file() else {}
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise RunError(f"{run_dir} is not a fast style run (its config.yaml has no 'kind: {KIND}'); train one "
                       f"with `atelier train-style --style STYLE.jpg --content-dir PHOTOS/ --run-dir {run_dir}`")
    ckpt = CheckpointManager(run_dir / "checkpoints")
    path = ckpt.latest_path()
    if path is None:
        raise RunError(f"{run_dir} has no checkpoint yet; train it first (`atelier train-style --run-dir {run_dir}`)")
    net = TransformerNet(**raw.get("model", {}))
    net.load_state_dict(ckpt.read(path, tensors_only="s.net"))
    styles = ", ".join(Path(str(s)).name for s in raw.get("style", []))
    return StyleModel(net.to(resolve_device(device)), run_dir, CheckpointManager.read_step(path), styles,
                      weights=path)


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3)."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
