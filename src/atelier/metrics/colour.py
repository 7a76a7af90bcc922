"""Feature networks for colour images: a trained domain classifier and a fixed random network.

Both read uint8 RGB ``(B, 3, H, W)`` (the evaluator composites RGBA over white and repeats gray
before they see it), resize to :data:`INPUT_SIZE` (bilinear with antialiasing, as the FID Inception
resizes to 299) and map to ``[-1, 1]``.

``ColourClassifier`` (the ``emoji`` evaluator, and the architecture for any folder with class
sub-folders): the digits evaluator's recipe (a dataset-specific classifier whose penultimate layer
is the feature space, as in Binkowski et al. 2018) at 64 px in colour::

    x (B, 3, 64, 64)
    [conv3x3(32)  BN ReLU] maxpool     # (B, 32, 32, 32)
    [conv3x3(64)  BN ReLU] maxpool     # (B, 64, 16, 16)
    [conv3x3(128) BN ReLU] maxpool     # (B, 128, 8, 8)
    [conv3x3(256) BN ReLU] maxpool     # (B, 256, 4, 4)
    global average pool -> Linear(128) -> BN -> ReLU   # (B, 128) the features (FID, KID, P/R)
    dropout -> Linear(K)                                # (B, K)   the logits (IS)

About 60 MMAC per image.

``RandomFeatures`` (the ``random-cnn`` fallback for any folder, no weights to download): the same
four conv stages with fixed Gaussian weights (He scaling, drawn from seed 0) and no training. Each
stage contributes the spatial mean and standard deviation of every channel (first- and second-order
statistics at four scales, as texture descriptors do: Gatys et al. 2015; Ulyanov et al. 2017 show
random conv features already carry them), each stage scaled by ``1/sqrt(channels)`` so that every
scale weighs the same in a distance, and all by :data:`FEATURE_SCALE` so that the features' mean
square is about 1 per dimension, as the trained evaluators' are (0.87 on emoji; digits 1.06): KID's
kernel ``(x.y / d + 1)^3`` then works in its intended range rather than near-linearly, and FIDs have
the usual magnitude. Random-weight embeddings were proposed for FID-type metrics on
data far from ImageNet by Naeem et al. 2020 ("Reliable Fidelity and Diversity Metrics for
Generative Models", Sec. 5: a randomly initialised VGG-16) and track perceptual differences better
than pixels (Zhang et al. 2018, LPIPS, random-network baselines). ``benchmarks/eval_sanity_colour.py``
measures how monotonically it ranks blur, noise and colour shifts against the trained classifier.
The weights are regenerated from the seed on every load; their sha256 is recorded with every score
like a weights file's, so a change of torch's random generator would show as a different evaluator.

Measured (``benchmarks/eval_sanity_colour.py --n 1000``: 1,000 damaged images against 1,000 others of
the folder, blur / noise / hue rotation at 6 strengths; Spearman's rho of strength vs FID, averaged
over the three damages; 2-core CPU, shared):

    folder         emoji classifier   random-cnn (this)   random CNN, last stage means only
    emoji          1.000              0.981               0.981
    facade tiles   1.000              0.981               1.000

Every non-1.0 comes from the mildest level (noise 4/255, hue 5 degrees) scoring within 6% of the
real-vs-real floor. The two random embeddings rank alike; this one keeps the mildest damage closer
to the floor at worst (0.94 of it on emoji, against 0.84) and sees colour far better than the
trained classifier (hue 80 degrees: 53x the floor on emoji, the classifier 8x). Still to measure:
ranking a generator's checkpoints by training step, once the StyleGAN2 family trains on colour data.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["INPUT_SIZE", "ColourClassifier", "RandomFeatures", "preprocess_rgb", "state_sha256"]

INPUT_SIZE = 64
WIDTHS = (32, 64, 128, 256)
# Unscaled, the features' mean square per dimension is 0.0022 on 300 emoji: x20 brings it to ~0.87.
FEATURE_SCALE = 20.0


def preprocess_rgb(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float ``(B, 3, size, size)`` in [-1, 1]; float input is taken as already in
    [-1, 1] at ``size``."""
    if x.dtype != torch.uint8:
        return x.float()
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected uint8 (B, 3, H, W) images, got shape {tuple(x.shape)}")
    x = x.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x / 127.5 - 1.0


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


class ColourClassifier(nn.Module):
    """A 64x64 RGB K-class CNN whose 128-d penultimate layer is the evaluator's feature space."""

    def __init__(self, *, num_classes: int = 9, feature_dim: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.num_features = feature_dim
        chans = (3, *WIDTHS)
        self.body = nn.Sequential(*(_block(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)))
        self.embed = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                   nn.Linear(WIDTHS[-1], feature_dim, bias=False), nn.BatchNorm1d(feature_dim),
                                   nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    preprocess = staticmethod(preprocess_rgb)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, 128), logits (B, K))."""
        f = self.embed(self.body(self.preprocess(x)))
        return f, self.head(self.dropout(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


class RandomFeatures(nn.Module):
    """Fixed random conv features: per stage, the channels' spatial mean and std (960-d in all)."""

    def __init__(self, *, seed: int = 0, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = (3, *widths)
        self.widths = tuple(widths)
        self.num_features = 2 * sum(widths)
        self.convs = nn.ParameterList()
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            # He et al. 2015 scaling keeps the activations' variance roughly constant from stage to stage.
            w = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (cin * 9)) ** 0.5
            self.convs.append(nn.Parameter(w, requires_grad=False))
        # A buffer, so that it is part of the state whose sha256 names the evaluator.
        self.register_buffer("scale", torch.tensor(FEATURE_SCALE))
        self.requires_grad_(False)

    preprocess = staticmethod(preprocess_rgb)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, 960), logits (B, 0): no classes, so no Inception Score)."""
        x = self.preprocess(x)
        feats = []
        for i, w in enumerate(self.convs):
            x = F.relu(F.conv2d(x, w, padding=1))          # (B, C_i, S, S), S = 64 / 2^i
            scale = self.scale * w.shape[0] ** -0.5         # each stage weighs the same in a distance
            feats += [x.mean((2, 3)) * scale, x.std((2, 3)) * scale]
            if i < len(self.convs) - 1:
                x = F.avg_pool2d(x, 2)
        f = torch.cat(feats, 1)
        return f, f.new_zeros(f.shape[0], 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


def state_sha256(module: nn.Module) -> str:
    """sha256 over a module's tensors (names, shapes, fp32 bytes): the identity of generated weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode() + str(tuple(t.shape)).encode() + t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()
