"""Feature networks for neural style transfer: VGG-19 (ImageNet weights) and a weights-free random network.

* :class:`VGG19Features` — the convolutional part of VGG-19 (Simonyan & Zisserman 2015, configuration E),
  laid out exactly like torchvision's ``vgg19().features`` so that its ``features.N.weight`` keys load
  unchanged from the official ``vgg19-dcbb9e9d.pth``. Gatys et al. 2016 ("Image Style Transfer Using
  Convolutional Neural Networks", CVPR) take style from relu1_1..relu5_1 and content from relu4_2.
* :class:`RandomFeatures` — after Ustyuzhaninov, Brendel, Gatys & Bethge 2017 ("What does it take to
  generate natural textures?", ICLR), who showed that one layer of random multi-scale filters followed
  by a ReLU gives Gram statistics that synthesise textures close to VGG's. Large filters (they use up to
  55x55) are too slow on a CPU, so the scales come from an image pyramid instead: the same small random
  filter bank applied at 1/2^k resolution sees a 2^k times larger neighbourhood. The filters are drawn
  from a seed every time the network is built: nothing is trained and nothing is stored.

Both take images in [0, 1], shape (B, 3, H, W), and return ``{layer name: activation}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from atelier.errors import ConfigError
from atelier.weights import NamedWeights, WeightsError, load_state_dict, register_weights, resolve_weights

__all__ = ["FeatureNet", "RandomFeatures", "VGG19Features", "VGG19_WEIGHTS", "build_features", "vgg19_available"]

# torchvision's IMAGENET1K_V1 weights. The file name carries the first 8 hex digits of the sha256.
VGG19_WEIGHTS = register_weights(NamedWeights(
    name="vgg19",
    filename="vgg19-dcbb9e9d.pth",
    url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",  # 574,673,361 bytes
    description="VGG-19 ImageNet (torchvision)",
))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureNet(nn.Module):
    """A frozen feature extractor with default style and content layers."""

    name: str = "features"
    style_layers: tuple[str, ...] = ()
    content_layers: tuple[str, ...] = ()
    # Relative weight of each style layer (same order as style_layers).
    style_layer_weights: tuple[float, ...] = ()

    def describe(self) -> str:
        return self.name

    def forward(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------ VGG-19
# Configuration "E" of Simonyan & Zisserman: numbers are conv widths, "M" is a 2x2 max-pool.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _vgg19_layer_names() -> list[str]:
    """Names of the modules of ``features`` in order: conv1_1, relu1_1, ..., pool5."""
    names, block, idx = [], 1, 1
    for v in _VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


class VGG19Features(FeatureNet):
    """VGG-19's convolutional layers with torchvision's module indices (``features.0`` = conv1_1, ...)."""

    name = "vgg19"
    style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    content_layers = ("relu4_2",)
    style_layer_weights = (1.0, 1.0, 1.0, 1.0, 1.0)

    def __init__(self, last: str = "relu5_1") -> None:
        super().__init__()
        names = _vgg19_layer_names()
        if last not in names:
            raise ValueError(f"last must be a VGG-19 layer name such as relu5_1, got {last!r}")
        layers: list[nn.Module] = []
        c_in = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c_in = int(v)
        # Only the layers up to `last` are kept: the rest would cost time and change nothing.
        self.layer_names = names[: names.index(last) + 1]
        self.features = nn.Sequential(*layers[: len(self.layer_names)])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.weights_path: Path | None = None
        self.requires_grad_(False)

    def load_weights(self, path: str | Path) -> VGG19Features:
        """Load torchvision-layout weights (``features.N.weight``; the classifier keys are ignored)."""
        state = load_state_dict(path)
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise WeightsError(f"{path} is not a VGG-19 state dict in torchvision's layout (missing {missing[0]}"
                               f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''})")
        bad = [k for k in own if state[k].shape != own[k].shape]
        if bad:
            raise WeightsError(f"{path}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, VGG-19 needs "
                               f"{tuple(own[bad[0]].shape)}")
        self.load_state_dict({k: state[k] for k in own})
        self.weights_path = Path(path)
        return self

    def describe(self) -> str:
        return f"VGG-19 ({self.weights_path.name if self.weights_path else 'random init'})"

    def forward(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = set(layers if layers is not None else self.style_layers + self.content_layers)
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        h = (x - mean) / std
        out: dict[str, torch.Tensor] = {}
        for name, module in zip(self.layer_names, self.features, strict=True):
            h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out


# --------------------------------------------------------------------------------------- weights-free
class RandomFeatures(FeatureNet):
    """One layer of seeded random filters + ReLU, applied to every level of an image pyramid.

    Layer ``s{k}`` holds the responses at 1/2^k resolution. Style uses every level (texture at every
    scale, colour included, since the filters are not zero-mean); content uses the coarse levels only,
    which keep the layout but leave the fine texture free to change.
    """

    name = "random"
    centered_gram = True

    def __init__(self, seed: int = 0, levels: int = 5, channels: int = 64, kernel: int = 5,
                 content_levels: Sequence[int] | None = None) -> None:
        super().__init__()
        if levels < 1 or channels < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"need levels >= 1, channels >= 1 and an odd kernel, got {levels}, {channels}, {kernel}")
        if content_levels is None:  # octaves 2-3 (1/4 and 1/8 size): the layout without the fine texture
            content_levels = tuple(k for k in (2, 3) if k < levels) or (levels - 1,)
        if any(not 0 <= c < levels for c in content_levels):
            raise ValueError(f"content_levels must lie in [0, {levels}), got {list(content_levels)}")
        self.seed, self.levels, self.channels, self.kernel = seed, levels, channels, kernel
        g = torch.Generator().manual_seed(seed)
        fan_in = 3 * kernel * kernel
        # One independent filter bank per level; He-style scale keeps every level's activations O(1).
        w = torch.randn(levels, channels, 3, kernel, kernel, generator=g) * math.sqrt(2.0 / fan_in)
        b = torch.randn(levels, channels, generator=g) * 0.1
        # Generated, never stored: persistent=False keeps them out of any state dict.
        self.register_buffer("weight", w, persistent=False)
        self.register_buffer("bias", b, persistent=False)
        self.style_layers = tuple(f"s{k}" for k in range(levels))
        self.content_layers = tuple(f"s{k}" for k in content_levels)
        self.style_layer_weights = tuple(1.0 for _ in range(levels))
        self.requires_grad_(False)

    def describe(self) -> str:
        return (f"weights-free random multi-scale network (seed {self.seed}, {self.levels} levels x "
                f"{self.channels} filters {self.kernel}x{self.kernel})")

    def forward(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = set(layers if layers is not None else self.style_layers + self.content_layers)
        h = x * 2.0 - 1.0  # signed input, so a ReLU unit responds to a colour and not just to brightness
        out: dict[str, torch.Tensor] = {}
        for k in range(self.levels):
            if k > 0:
                if min(h.shape[-2:]) < 2:
                    break
                h = _downsample(h)
            name = f"s{k}"
            if name in wanted:
                p = self.kernel // 2
                pad = "reflect" if min(h.shape[-2:]) > p else "replicate"
                out[name] = F.relu(F.conv2d(F.pad(h, (p, p, p, p), mode=pad), self.get_buffer("weight")[k],
                                           self.get_buffer("bias")[k]))
        return out


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _downsample(x: torch.Tensor) -> torch.Tensor:
    """Binomial blur + stride 2 (a Gaussian pyramid step). A 2x2 box pool instead lets the gradient through
    in 2x2 blocks, which printed a visible grid onto the optimised images."""
    c = x.shape[1]
    k = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(x).expand(c, 1, 5, 5)
    pad = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode=pad), k, stride=2, groups=c)


# ------------------------------------------------------------------------------------------- choosing
def vgg19_available(path: str | Path | None = None) -> bool:
    try:
        resolve_weights("vgg19", path)
        return True
    except WeightsError:
        return False


def build_features(kind: str = "auto", vgg_weights: str | Path | None = None, seed: int = 0,
                   download: bool = False) -> FeatureNet:
    """``"vgg19"`` (needs its weights), ``"random"`` (weights-free) or ``"auto"`` (VGG-19 when found)."""
    if kind not in ("auto", "vgg19", "random"):
        raise ConfigError(f"unknown feature network {kind!r}; use auto, vgg19 or random")
    if kind == "auto":
        kind = "vgg19" if vgg19_available(vgg_weights) else "random"
    if kind == "random":
        return RandomFeatures(seed=seed)
    path = resolve_weights("vgg19", vgg_weights, download_ok=download, option="--vgg-weights")
    return VGG19Features().load_weights(path)
