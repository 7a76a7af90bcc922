"""Feed-forward style transfer (Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", ECCV).

A fully convolutional image transformation network — strided convs down, residual blocks, nearest-upsample +
conv up — trained against the Gatys losses of one style (see :mod:`atelier.training.style`), then restyles
any photo in one forward pass. Following Ulyanov et al. 2016 ("Instance Normalization: The Missing
Ingredient for Fast Stylization") every norm is an instance norm; following Odena et al. 2016
("Deconvolution and Checkerboard Artifacts") upsampling is nearest-neighbour + conv rather than a
transposed conv. Being fully convolutional, the output has the input's size (inputs are reflect-padded to a
multiple of the total stride and cropped back).

Two layouts (``arch``):

* ``"johnson"`` — the paper's: 9x9 conv at full resolution, two stride-2 convs, residual blocks at 1/4,
  two upsampling blocks, 9x9 conv. 17 GFLOP per 512 px image at width 16, 70% of it in the three
  full-resolution layers; ~0.3 s per 512 px image on a quiet 2-core CPU.
* ``"lean"`` (default) — the same blocks, rearranged for a CPU: the first conv already has stride 2 and a
  third stride-2 conv takes the residual blocks to 1/8 resolution (a 4x larger receptive field per block,
  which suits brush strokes), and the only full-resolution layer is a 3x3 conv with 3 output channels.
  ~3.6 GFLOP per 512 px image (5x fewer), ~5x faster, under 100 ms at 512 px on this CPU.

Unlike Johnson's net, the output is a residual, ``x + f(x)`` (clamped to [0, 1] only when saved), with
the last conv initialised near zero: an untrained network is the identity, so a few CPU-minutes of
training already give a sensible stylisation instead of grey noise. (A residual in logit space,
``sigmoid(logit(x) + f(x))``, was tried first: it saturates in dark areas, where the network then
learned to paint glowing blobs.)

At inference on a CPU with native bf16 (AVX512-BF16 / AMX), :class:`StyleModel` runs under bf16 autocast:
~1.5x faster, and the 8-bit output differs from fp32 by about one grey level (see the README's table).
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

__all__ = ["ARCHS", "StyleModel", "TransformerNet", "bf16_native", "load_style_run", "load_transformer",
           "network_config"]

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
    def __init__(self, c_in: int, c_out: int, norm: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.conv = ConvLayer(c_in, c_out, 3, norm=norm, relu=relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


ARCHS = ("lean", "johnson")
# Runs and saved networks from before ``arch`` existed are Johnson's layout.
LEGACY_ARCH = "johnson"


def network_config(stored: dict[str, Any] | None) -> dict[str, Any]:
    """Constructor arguments of a stored network config, filling in what older runs did not record."""
    return {"arch": LEGACY_ARCH, **(stored or {})}


class TransformerNet(nn.Module):
    """Image (B, 3, H, W) in [0, 1] -> stylised image of the same shape (clamp to [0, 1] for display).

    ``width`` is the first layer's channels (Johnson: 32; 16 runs ~4x faster on a CPU); ``arch`` picks the
    layout (see the module docstring).
    """

    def __init__(self, *, width: int = 16, res_blocks: int = 3, arch: str = "lean") -> None:
        super().__init__()
        if width < 1 or res_blocks < 0:
            raise ValueError(f"need width >= 1 and res_blocks >= 0, got {width}, {res_blocks}")
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        self.config: dict[str, Any] = {"width": width, "res_blocks": res_blocks, "arch": arch}
        w = width
        if arch == "johnson":
            self.stride = 4
            self.down = nn.Sequential(
                ConvLayer(3, w, 9),                        # (B, w, H, W)
                ConvLayer(w, 2 * w, 3, stride=2),          # (B, 2w, H/2, W/2)
                ConvLayer(2 * w, 4 * w, 3, stride=2),      # (B, 4w, H/4, W/4)
            )
            self.res = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(res_blocks)])
            self.up = nn.Sequential(
                UpsampleLayer(4 * w, 2 * w),               # (B, 2w, H/2, W/2)
                UpsampleLayer(2 * w, w),                   # (B, w, H, W)
                ConvLayer(w, 3, 9, norm=False, relu=False),  # (B, 3, H, W): the residual
            )
            last = self.up[-1].conv
        else:
            self.stride = 8
            self.down = nn.Sequential(
                ConvLayer(3, w, 5, stride=2),              # (B, w, H/2, W/2)
                ConvLayer(w, 2 * w, 3, stride=2),          # (B, 2w, H/4, W/4)
                ConvLayer(2 * w, 4 * w, 3, stride=2),      # (B, 4w, H/8, W/8)
            )
            self.res = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(res_blocks)])
            self.up = nn.Sequential(
                UpsampleLayer(4 * w, 2 * w),               # (B, 2w, H/4, W/4)
                UpsampleLayer(2 * w, w),                   # (B, w, H/2, W/2)
                UpsampleLayer(w, 3, norm=False, relu=False),  # (B, 3, H, W): the residual
            )
            last = self.up[-1].conv.conv
        # Start near the identity (see the module docstring).
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Pad to a multiple of the total stride, and to at least 2 cells at the bottom of the network (the
        # 3x3 reflection pads there need 2); crop back at the end.
        s = self.stride
        ph, pw = max((-h) % s, 2 * s - h), max((-w) % s, 2 * s - w)
        xp = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate") if ph or pw else x
        y = self.up(self.res(self.down(xp)))[..., :h, :w]
        return x + y.to(x.dtype)  # unbounded while training, so no pixel's gradient is cut off by a clamp


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 convolutions are fast here: a GPU that supports them, or a CPU with AVX512-BF16 / AMX.
    (Elsewhere oneDNN emulates bf16 by conversion, which need not be faster than fp32.)"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: stay with fp32 unless asked
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_transformer(path: str | Path) -> TransformerNet:
    """Rebuild a TransformerNet saved with :func:`atelier.models.save_pretrained` (config.json + safetensors)."""
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise RunError(f"{path} is not a saved style network (needs config.json and model.safetensors)")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("class") != TransformerNet.__name__:
        raise RunError(f"{cfg_file} holds a {cfg.get('class')!r}, not a {TransformerNet.__name__}")
    net = TransformerNet(**network_config(cfg["config"]))
    net.load_state_dict(load_file(str(weights)))
    return net.eval()


class StyleModel:
    """A trained fast style network, callable on an image: ``atelier.load("runs/wave")(photo)``.

    ``precision``: ``"auto"`` runs under bf16 autocast where the device computes bf16 natively (see
    :func:`bf16_native`), else fp32; ``"fp32"`` / ``"bf16"`` force one.
    """

    def __init__(self, network: TransformerNet, run_dir: Path | None = None, step: int = 0,
                 style: str | None = None, weights: Path | None = None, precision: str = "auto") -> None:
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        self.network = network.eval()
        self.run_dir = run_dir
        self.step = step
        from atelier.provenance import weights_sha256

        self.style = style
        self.weights_sha256 = weights_sha256(weights)  # of the checkpoint file, in every image's metadata
        self.precision = precision

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16" or (self.precision == "auto" and bf16_native(self.device))

    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the same shape, stylised (float32)."""
        dev = self.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            y = self.network(x.to(dev))
        return y.float().clamp(0, 1).cpu()

    def __call__(self, image: Any, size: int | None = None) -> Image.Image:
        """A path, PIL image, uint8 array or [0, 1] tensor -> the stylised PIL image (long side ``size``,
        or the input's own size)."""
        from atelier.style.gatys import image_to_tensor, tensor_to_image

        return tensor_to_image(self.stylize_tensor(image_to_tensor(image, size, what="content image")))

    def metadata(self, **fields: Any) -> dict[str, Any]:
        from atelier.provenance import model_metadata

        return model_metadata(self.run_dir, self.step, self.weights_sha256, **{
            "workflow": "stylize", "method": "fast (Johnson et al. 2016)", "precision": "bf16" if self.bf16 else "fp32",
            "style": self.style or "", **fields})


def load_style_run(run_dir: str | Path, raw: dict[str, Any] | None = None, device: str = "cpu") -> StyleModel:
    """The latest checkpoint of a ``train-style`` run folder as a :class:`StyleModel`."""
    from atelier.checkpoint import CheckpointManager
    from atelier.config import read_yaml
    from atelier.device import resolve_device

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
    net = TransformerNet(**network_config(raw.get("model")))
    net.load_state_dict(ckpt.read(path, tensors_only="s.net"))
    styles = ", ".join(Path(str(s)).name for s in raw.get("style", []))
    return StyleModel(net.to(resolve_device(device)), run_dir, CheckpointManager.read_step(path), styles,
                      weights=path)


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3)."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
