"""Optimisation-based neural style transfer (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using
Convolutional Neural Networks", CVPR).

The pixels of the output are optimised so that the Gram matrices of its features match those of the
style image(s) on several layers, its features on the content layer(s) match the content photo, and a
total-variation term keeps it smooth. Several styles blend by mixing their Gram targets with the given
weights. ``preserve_color`` keeps the content's colours (Gatys, Bethge, Hertzmann & Shechtman 2016,
"Preserving Color in Neural Artistic Style Transfer": luminance-only transfer in YUV).

Losses are relative (``||G - A||^2 / ||A||^2`` per layer), so one set of default weights works for
VGG-19 and for the weights-free network alike, whatever the image size.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from atelier.device import resolve_device
from atelier.errors import ConfigError, ImageError
from atelier.imageio import save_image
from atelier.images import load_image
from atelier.style.features import FeatureNet, build_features
from atelier.utils import sha256_file

__all__ = [
    "MIN_SIDE",
    "PerceptualLoss",
    "StylizeResult",
    "gram",
    "image_to_tensor",
    "parse_style_spec",
    "preserve_colors",
    "rgb_to_yuv",
    "stylize",
    "tensor_to_image",
    "describe_source",
    "total_variation",
    "yuv_to_rgb",
]

# Below this a photo has no texture to restyle (and the feature pyramid has nothing left to pool).
MIN_SIDE = 16
ImageSource = str | Path | Image.Image | np.ndarray | torch.Tensor


# ------------------------------------------------------------------------------------------ image glue
def _read(source: ImageSource, what: str) -> np.ndarray:
    """Any accepted image source -> uint8 (H, W, 3), through atelier's one image door for files."""
    if isinstance(source, (str, Path)):
        arr = load_image(source, channels=3)
    elif isinstance(source, Image.Image):
        arr = np.asarray(source.convert("RGB"), dtype=np.uint8)
    elif isinstance(source, torch.Tensor):
        t = source.detach().cpu()
        t = t[0] if t.ndim == 4 else t
        if t.dtype != torch.uint8:
            t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
        arr = t.permute(1, 2, 0).numpy()
    elif isinstance(source, np.ndarray):
        arr = source if source.dtype == np.uint8 else np.clip(source * 255 + 0.5, 0, 255).astype(np.uint8)
    else:
        raise TypeError(f"{what}: expected a path, PIL image, array or tensor, got {type(source).__name__}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{what} is {w}x{h}; style transfer needs at least {MIN_SIDE} pixels on each side")
    return np.ascontiguousarray(arr[:, :, :3])


def image_to_tensor(source: ImageSource, size: int | None = None, what: str = "image") -> torch.Tensor:
    """An image as float (1, 3, H, W) in [0, 1]; ``size`` sets the long side (Lanczos resampling)."""
    arr = _read(source, what)
    if size is not None:
        h, w = arr.shape[:2]
        scale = size / max(h, w)
        if scale != 1.0:
            nw, nh = max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale))
            arr = np.asarray(Image.fromarray(arr).resize((nw, nh), Image.Resampling.LANCZOS))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float().contiguous() / 255.0


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    arr = (x.detach()[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def parse_style_spec(spec: str) -> tuple[str, float]:
    """``"a.jpg:0.7"`` -> ("a.jpg", 0.7); a path without a weight gets 1.0."""
    path, sep, weight = spec.rpartition(":")
    if sep and path and not Path(spec).exists():
        try:
            w = float(weight)
        except ValueError:
            return spec, 1.0
        if not w > 0:
            raise ConfigError(f"--style {spec}: the weight after ':' must be a positive number")
        return path, w
    return spec, 1.0


# --------------------------------------------------------------------------------------------- losses
class _SelfGram(torch.autograd.Function):
    """X X^T for X (B, C, N), with the backward as one product, (G' + G'^T) X. Autograd's own backward of
    ``bmm(x, x.transpose(1, 2))`` makes two products, one over a transposed operand, and measured ~3x slower
    on a CPU (the Gram matrices were 30% of a Gatys step)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.bmm(x, x.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), x)


def gram(f: torch.Tensor, centered: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C), averaged over positions so that it does not depend on the image size.

    ``centered``: the covariance instead (the means are then matched separately, see PerceptualLoss).
    """
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    if centered:
        flat = flat - flat.mean(2, keepdim=True)
    return _SelfGram.apply(flat.contiguous()) / (h * w)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def _relative(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ||a - target||^2 / ||target||^2, averaged over the batch."""
    dims = tuple(range(1, a.ndim))
    return ((a - target).pow(2).sum(dims) / target.pow(2).sum(dims).clamp_min(1e-12)).mean()


class PerceptualLoss(torch.nn.Module):
    """Style (Gram) and content (feature) losses over a frozen feature network; shared by Gatys and the
    fast trainer. The style target is the weighted mix of the styles' Gram matrices."""

    def __init__(self, net: FeatureNet, styles: Sequence[tuple[torch.Tensor, float]],
                 style_layers: Sequence[str] | None = None, content_layers: Sequence[str] | None = None,
                 layer_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not styles:
            raise ConfigError("give at least one style image")
        self.net = net.eval()
        self.style_layers = tuple(style_layers or net.style_layers)
        self.content_layers = tuple(content_layers or net.content_layers)
        lw = tuple(layer_weights or (net.style_layer_weights if style_layers is None else [1.0] * len(style_layers)))
        if len(lw) != len(self.style_layers):
            raise ConfigError(f"{len(lw)} layer weights for {len(self.style_layers)} style layers")
        self.layer_weights = [w / sum(lw) for w in lw]
        total = sum(w for _, w in styles)
        # Random ReLU features all have a large mean, which dominates a plain Gram matrix and hides the
        # texture (the covariance); for them, means and covariances are matched as separate terms.
        self.centered = bool(getattr(net, "centered_gram", False))
        targets: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for image, weight in styles:
                feats = self.net(image, self.style_layers)
                for name in self.style_layers:
                    for key, value in self._stats(name, feats[name]).items():
                        value = value * (weight / total)
                        targets[key] = targets[key] + value if key in targets else value
        for key, value in targets.items():
            self.register_buffer(key, value, persistent=False)

    def _stats(self, name: str, f: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.centered:
            return {f"gram_{name}": gram(f)}
        return {f"gram_{name}": gram(f, centered=True), f"mean_{name}": f.mean((2, 3))}

    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.style_layers + self.content_layers))

    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {k: v.detach() for k, v in self.net(content, self.content_layers).items()}

    def style_loss(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for name, w in zip(self.style_layers, self.layer_weights, strict=True):
            for key, value in self._stats(name, feats[name]).items():
                total = total + w * _relative(value, getattr(self, key))
        return total

    def content_loss(self, feats: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([_relative(feats[n], targets[n]) for n in self.content_layers]).mean()

    def forward(self, x: torch.Tensor, content_targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = self.net(x, self.layers())
        return {"style": self.style_loss(feats), "content": self.content_loss(feats, content_targets)}


# -------------------------------------------------------------------------------------------- colour
# BT.601 YUV: luminance Y and two colour-difference channels, the space Gatys et al. transfer in.
_RGB2YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14714, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


def rgb_to_yuv(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB2YUV.to(x), x)


def yuv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB2YUV).to(x), x)


def preserve_colors(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylised luminance with the content's colour channels (luminance-only transfer)."""
    y = rgb_to_yuv(stylized)[:, :1]
    y_c = rgb_to_yuv(content)
    # Match the stylised luminance's mean/std to the content's so the result keeps its tonal range.
    y = (y - y.mean()) / y.std().clamp_min(1e-6) * y_c[:, :1].std() + y_c[:, :1].mean()
    return yuv_to_rgb(torch.cat([y, y_c[:, 1:]], 1)).clamp(0, 1)


# ---------------------------------------------------------------------------------------- the optimiser
@dataclass
class StylizeResult:
    image: Image.Image
    losses: dict[str, float]               # final weighted terms and the total
    initial_losses: dict[str, float]
    features: str                          # which feature network was used, in words
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    # What it was made from, each input named the same way (file name and sha256 of its bytes).
    inputs: dict[str, str] = field(default_factory=dict)

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None, strip_metadata: bool = False) -> Path:
        return save_image(self.image, path, {"workflow": "stylize", "features": self.features, **self.inputs,
                                             **(metadata or {})}, strip_metadata=strip_metadata)


def describe_source(source: ImageSource) -> tuple[str, str]:
    """(name, sha256) of an image input: a file's name and the hash of its bytes; an in-memory image's kind and
    the hash of its pixels. Every input of a stylisation is recorded this way."""
    if isinstance(source, (str, Path)):
        return Path(source).name, sha256_file(source)
    arr = np.ascontiguousarray(_read(source, "image"))
    return f"<{type(source).__name__}>", hashlib.sha256(arr.tobytes()).hexdigest()


def _inputs_record(content: ImageSource, styles: list[tuple[ImageSource, float]]) -> dict[str, str]:
    c_name, c_sha = describe_source(content)
    described = [(describe_source(src), w) for src, w in styles]
    return {"content": c_name, "content_sha256": c_sha,
            "style": ", ".join(f"{n}:{w:g}" if len(styles) > 1 else n for (n, _), w in described),
            "style_sha256": ", ".join(sha for (_, sha), _ in described)}


def _normalise_styles(style: Any) -> list[tuple[ImageSource, float]]:
    items = style if isinstance(style, (list, tuple)) and not (
        len(style) == 2 and isinstance(style[1], (int, float)) and not isinstance(style[0], (int, float))) else [style]
    out = []
    for item in items:
        if isinstance(item, tuple):
            src, w = item
        elif isinstance(item, str):
            src, w = parse_style_spec(item)
        else:
            src, w = item, 1.0
        if not float(w) > 0:
            raise ConfigError(f"style weight must be positive, got {w}")
        out.append((src, float(w)))
    if not out:
        raise ConfigError("give at least one style image")
    return out


def stylize(
    content: ImageSource,
    style: ImageSource | tuple[ImageSource, float] | Sequence[ImageSource | tuple[ImageSource, float]],
    *,
    size: int = 512,
    steps: int = 300,
    style_weight: float = 1.0,
    content_weight: float = 0.2,
    tv_weight: float = 0.01,
    style_scale: float = 1.0,
    preserve_color: bool = False,
    init: str = "content",
    features: str | FeatureNet = "auto",
    vgg_weights: str | Path | None = None,
    optimizer: str = "adam",
    lr: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> StylizeResult:
    """Restyle ``content`` after one or more ``style`` images (``"a.jpg:0.7"`` or ``(image, weight)``).

    ``size`` is the output's long side. Returns a :class:`StylizeResult` (PIL image, losses, timing).
    """
    if init not in ("content", "noise"):
        raise ConfigError(f"init must be 'content' or 'noise', got {init!r}")
    if optimizer not in ("lbfgs", "adam"):
        raise ConfigError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if steps < 1 or size < MIN_SIDE or style_scale <= 0:
        raise ConfigError(f"need steps >= 1, size >= {MIN_SIDE} and style_scale > 0 (got {steps}, {size}, "
                          f"{style_scale})")
    for name, w in (("style_weight", style_weight), ("content_weight", content_weight), ("tv_weight", tv_weight)):
        if w < 0:
            raise ConfigError(f"{name} must be >= 0, got {w}")
    dev = resolve_device(device)
    # Every input is read (and checked) before any work starts, so a bad file fails in a second.
    content_t = image_to_tensor(content, size, what="content image").to(dev)
    styles = _normalise_styles(style)
    style_list = [(image_to_tensor(src, round(size * style_scale), what="style image").to(dev), w)
                  for src, w in styles]
    net = features if isinstance(features, FeatureNet) else build_features(features, vgg_weights, seed=seed)
    net = net.to(dev)
    loss_fn = PerceptualLoss(net, style_list)
    targets = loss_fn.content_targets(content_t)

    if init == "content":
        x = content_t.clone().contiguous()
    else:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(content_t.shape, generator=g).to(dev)
    x.requires_grad_(True)
    weights = {"style": style_weight, "content": content_weight, "tv": tv_weight}

    def evaluate() -> dict[str, torch.Tensor]:
        terms = loss_fn(x, targets)
        terms["tv"] = total_variation(x) * 100.0  # x100: TV of natural photos is ~1e-3 per pixel pair
        terms = {k: v * weights[k] for k, v in terms.items()}
        terms["total"] = sum(terms.values())
        return terms

    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS([x], lr=lr or 1.0, max_iter=1, max_eval=25, history_size=50,
                                                       # max_eval: with max_iter=1 the default (1.25) leaves the
                                                       # line search no evaluations at all.
                                                       tolerance_grad=0.0, tolerance_change=0.0,
                                                       line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([x], lr=lr or 0.03)
    last: dict[str, torch.Tensor] = {}
    pixels = float(x.shape[-1] * x.shape[-2])

    def closure() -> torch.Tensor:
        nonlocal last
        opt.zero_grad(set_to_none=True)
        last = evaluate()
        # The relative losses give per-pixel gradients ~1e-5; scaled by the pixel count they are O(1), so
        # L-BFGS's curvature test (y.s > 1e-10) accepts its updates instead of stalling.
        (last["total"] * pixels).backward()
        return last["total"]

    tty = sys.stderr.isatty() if progress is None else progress
    t0 = time.perf_counter()
    with torch.no_grad():
        first = {k: float(v) for k, v in evaluate().items()}
    history: list[dict[str, float]] = []
    bar = tqdm(range(steps), desc="stylize", unit="step", disable=not tty, dynamic_ncols=True)
    try:
        for i in bar:
            opt.step(closure)  # type: ignore[arg-type]  # (LBFGS's closure returns the loss tensor)
            with torch.no_grad():
                x.clamp_(0, 1)  # keep a displayable image; L-BFGS tolerates this small projection
            row = {k: float(v.detach()) for k, v in last.items()}
            history.append(row)
            bar.set_postfix(style=f"{row['style']:.3g}", content=f"{row['content']:.3g}")
            if callback is not None:
                callback(i + 1, row)
    finally:
        bar.close()
    with torch.no_grad():
        final = {k: float(v) for k, v in evaluate().items()}
        out = x.detach()
        if preserve_color:
            out = preserve_colors(out, content_t)
    return StylizeResult(tensor_to_image(out), final, first, net.describe(), time.perf_counter() - t0, history,
                         inputs=_inputs_record(content, styles))
