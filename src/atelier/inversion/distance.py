"""The distance a projection minimises, and the scores it reports, without any downloaded network.

The StyleGAN2 projector (Karras et al. 2020, sec. 5 and appendix D) compares images with LPIPS (Zhang et al.,
"The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018), whose VGG/AlexNet weights
come from ImageNet and cannot be had here. The distance below needs none:

    d(x, t) = w_pix * MSE(x, t) + w_ssim * (1 - MS-SSIM(x, t)) + w_feat * LPIPS-style distance of features

* MS-SSIM (Wang, Simoncelli & Bovik 2003) as kornia's ``MS_SSIMLoss`` defines it (Zhao et al., "Loss Functions
  for Image Restoration with Neural Networks", 2017): its scales are Gaussian windows of growing sigma at full
  resolution, so it works (with non-zero gradients) on 28-32 px images, where torchmetrics' pyramid version
  needs >= 32 px for its 5 scales and, cut to 3, returns 0 with a zero gradient for dissimilar images.
  kornia filters with the full 2-D window (33 x 33 taps at sigma 8) and also filters an L1 term that a weight of
  0 discards; that was 90% of a 64 px projection's time. :func:`ms_ssim_loss` computes the same value with the
  Gaussians applied as two 1-D passes (66 taps) and no L1 term; the tests hold it to kornia's loss and gradient.
* Features: the stages of a frozen CNN compared as LPIPS does without its learned weights (unit-normalise each
  pixel's channel vector, squared difference, spatial mean, summed over stages). The network is the run's
  domain evaluator when the run's data set has one and it reads the images (``digits`` for MNIST), else
  atelier's ``random-cnn`` evaluator: Zhang et al. (table 5) found even random-weight networks' deep features
  closer to human judgements than pixel distances. Every result names the distance it used.
"""

from __future__ import annotations

from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from atelier.errors import AtelierError
from atelier.metrics.colour import INPUT_SIZE
from atelier.metrics.evaluators import EVALUATORS, Evaluator, auto_evaluator, load_evaluator

__all__ = ["FEATURES", "ProjectionDistance", "choose_features", "ms_ssim_loss", "psnr", "ssim"]

FEATURES = ("auto", "random-cnn", "digits", "fashion", "emoji", "none")


def choose_features(requested: str, dataset: str | None, channels: int, resolution: int) -> str:
    """``auto`` -> the data set's domain evaluator when it reads these images, else ``random-cnn``."""
    if requested not in FEATURES:
        raise AtelierError(f"features must be one of {', '.join(FEATURES)}, got {requested!r}")
    name = auto_evaluator(dataset) if requested == "auto" else requested
    if name == "none":
        return name
    spec = EVALUATORS[name]
    fits = channels in spec.channels and spec.resolution in (None, resolution)
    if not fits:
        if requested != "auto":
            raise AtelierError(f"the {name} evaluator reads {spec.channels}-channel images at {spec.resolution} px; "
                               f"this generator makes {channels}-channel {resolution} px images (use random-cnn)")
        return "random-cnn"
    return name


def _stages(evaluator: Evaluator) -> list[nn.Module]:
    """The feature stages (conv blocks) of an evaluator network, for a spatial comparison."""
    net = evaluator.network
    if evaluator.name == "random-cnn":
        return [_RandomStage(w) for w in getattr(net, "convs")]  # noqa: B009  (RandomFeatures' conv weights)
    return list(getattr(net, "body"))  # noqa: B009  (DigitClassifier / ColourClassifier conv blocks)


class _RandomStage(nn.Module):
    """One stage of the random-cnn evaluator: conv + ReLU (the 2x average pool between stages is the caller's)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.weight, padding=1))


def _gaussians(sigmas: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(S, K) normalised 1-D Gaussians, all as wide as kornia's window for the last (coarsest) sigma."""
    half = int(2 * sigmas[-1])
    x = torch.arange(-half, half + 1, dtype=dtype, device=device)
    g = torch.exp(-x[None] ** 2 / (2 * torch.tensor(sigmas, dtype=dtype, device=device)[:, None] ** 2))
    return g / g.sum(1, keepdim=True)


def ms_ssim_loss(x: torch.Tensor, t: torch.Tensor, sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0),
                 data_range: float = 1.0) -> torch.Tensor:
    """1 - MS-SSIM per pixel, (B, H, W), for images (B, C, H, W): kornia's ``MS_SSIMLoss(sigmas, data_range,
    alpha=1, compensation=1, reduction="none")`` (zero padding, luminance at the coarsest sigma, contrast-structure
    at every sigma, averaged over the channels), with separable filtering."""
    C, S = x.shape[1], len(sigmas)
    g = _gaussians(sigmas, x.dtype, x.device).repeat(5 * C, 1)      # (5C * S, K): 5C maps, S scales each
    pad = g.shape[1] // 2
    maps = torch.cat([x, t, x * x, t * t, x * t], dim=1)                     # (B, 5C, H, W)
    blurred = F.conv2d(maps, g[:, None, None, :], padding=(0, pad), groups=5 * C)
    blurred = F.conv2d(blurred, g[:, None, :, None], padding=(pad, 0), groups=5 * C * S)
    mx, mt, xx, tt, xt = blurred.chunk(5, dim=1)                             # each (B, C * S, H, W)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    lum = (2 * mx * mt + c1) / (mx * mx + mt * mt + c1)
    cs = (2 * (xt - mx * mt) + c2) / ((xx - mx * mx) + (tt - mt * mt) + c2)
    return 1 - (lum[:, S - 1::S] * cs.unflatten(1, (C, S)).prod(2)).mean(1)


class ProjectionDistance(nn.Module):
    """``d(x, t) -> (B,)`` for images ``x``, ``t`` (B, C, H, W) in [-1, 1]; see the module docstring."""

    def __init__(self, features: str, channels: int, resolution: int, *, pixel: float = 1.0, ms_ssim: float = 1.0,
                 feature: float = 1.0, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.features, self.channels = features, channels
        self.weights = {"pixel": pixel, "ms_ssim": ms_ssim, "feature": feature if features != "none" else 0.0}
        # MS-SSIM alone (the pixel term is separate), as 1 - MS-SSIM. Scales: Gaussian windows of sigma 0.5 .. 8 px
        # (kornia's default) for images of 64 px and more, 0.5 .. 4 px below (a sigma-8 window spans a whole 28 px
        # image, and costs half of the distance's time there).
        self.sigmas = (0.5, 1.0, 2.0, 4.0, 8.0) if resolution >= 64 else (0.5, 1.0, 2.0, 4.0)
        self.stages: list[nn.Module] = []
        self.evaluator: Evaluator | None = None
        if features != "none":
            self.evaluator = load_evaluator(features, device=device)
            self.stages = _stages(self.evaluator)

    def describe(self) -> dict[str, Any]:
        """What the distance is, for the result's JSON and the CLI's output."""
        feat = (f"LPIPS-style distance of the {self.features} evaluator's conv stages (no learned weights)"
                if self.evaluator is not None else "none")
        text = (f"{self.weights['pixel']:g} * pixel MSE + {self.weights['ms_ssim']:g} * (1 - MS-SSIM) + "
                f"{self.weights['feature']:g} * {feat}")
        out: dict[str, Any] = {"distance": text, "features": self.features, "weights": dict(self.weights)}
        if self.evaluator is not None:
            out["evaluator_sha256"] = self.evaluator.sha256
        return out

    def _feature_input(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images as the evaluator reads them: RGBA over white, grey -> RGB for colour networks."""
        assert self.evaluator is not None
        if x.shape[1] == 4:
            a = (x[:, 3:] + 1) / 2
            x = x[:, :3] * a + (1 - a)                                      # over white (1 in [-1, 1])
        if self.features == "digits" or self.features == "fashion":
            return x                                                        # 28x28 grayscale as they are
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        # The emoji classifier reads 64x64; the random CNN is fully convolutional and reads the image at its own
        # size (4-16x cheaper for 16-32 px generators than upsampling to 64).
        if self.features == "emoji" and x.shape[-1] != INPUT_SIZE:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return x

    def feature_distance(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        fx, ft = self._feature_input(x), self._feature_input(t)
        total = x.new_zeros(x.shape[0])
        for i, stage in enumerate(self.stages):
            if i and self.features == "random-cnn":
                fx, ft = F.avg_pool2d(fx, 2), F.avg_pool2d(ft, 2)
            fx, ft = stage(fx), stage(ft)
            # LPIPS without its learned channel weights: compare each pixel's unit-normalised channel vector.
            nx, nt = F.normalize(fx, dim=1, eps=1e-10), F.normalize(ft, dim=1, eps=1e-10)
            total = total + (nx - nt).square().sum(1).mean((1, 2))
        return total

    def terms(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term per image (B,), unweighted."""
        # A raw output beyond [-1, 1] where the target is saturated shows the same pixel: no penalty (a clamp
        # instead would also stop the gradient where the target is not saturated).
        x = torch.where(((x > 1) & (t >= 1)) | ((x < -1) & (t <= -1)), t, x)
        out = {"pixel": (x - t).square().mean((1, 2, 3)),
               "ms_ssim": ms_ssim_loss((x + 1) / 2, (t + 1) / 2, self.sigmas).flatten(1).mean(1)}
        if self.evaluator is not None:
            out["feature"] = self.feature_distance(x, t)
        return out

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return sum((self.weights[k] * v for k, v in self.terms(x, t).items()), x.new_zeros(x.shape[0]))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of uint8 images (all channels, alpha included); inf for identical images."""
    mse = (a.double() - b.double()).square().mean()
    return float("inf") if mse == 0 else float(10 * torch.log10(255.0**2 / mse))


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5) of uint8 images (N, C, H, W), via kornia."""
    x, y = a.float() / 255.0, b.float() / 255.0
    return float(kornia.metrics.ssim(x, y, window_size=11).mean())
