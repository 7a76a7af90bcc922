"""Evaluator networks: the feature spaces FID, KID and precision/recall are measured in.

* ``digits`` / ``fashion``: atelier's own CNN classifiers of MNIST / Fashion-MNIST (shipped in the
  package as ``weights/<name>.safetensors``; ``scripts/train_evaluator.py`` re-makes them). They read
  28x28 grayscale images only, and refuse anything else rather than produce a meaningless number.
* ``emoji``: atelier's colour CNN classifier of the nine emoji groups (``weights/emoji.safetensors``,
  made by ``scripts/train_evaluator.py emoji``): a domain evaluator chosen by name only (``auto``
  never picks it: no data set is recognised by its path).
* ``random-cnn``: the documented fallback for any other folder: a fixed-seed random-weight CNN with
  multi-scale pooled features, generated on load (no weights to download; see
  :mod:`atelier.metrics.colour`).
* ``inception``: the standard FID Inception-v3 (2015-12-05 graph), from a local weights file.

Colour evaluators read RGBA images composited over white (as a viewer shows them; every record says
so in its ``resize`` field). Every number atelier reports names its evaluator and the sha256 of the
weights that made it, so two scores are comparable exactly when those match.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atelier.data import parse_spec
from atelier.errors import DataError
from atelier.metrics.classifier import DigitClassifier
from atelier.metrics.colour import ColourClassifier, RandomFeatures, state_sha256
from atelier.metrics.inception import FIDInceptionV3
from atelier.utils import sha256_file
from atelier.weights import NamedWeights, WeightsError, load_state_dict, register_weights, resolve_weights

__all__ = ["EVALUATORS", "FALLBACK", "Evaluator", "EvaluatorSpec", "auto_evaluator", "load_evaluator"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

INCEPTION_WEIGHTS = register_weights(NamedWeights(
    name="inception-fid",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    # Not verified by a download here (no internet). It is the value several independent public
    # projects pin for this file (95,628,359 bytes), and it begins with the 6726825d of the file name,
    # which follows torch.hub's "<name>-<sha256 prefix>" convention.
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    description="FID Inception-v3 (TensorFlow 2015-12-05 graph, PyTorch port by pytorch-fid)",
))


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    description: str
    datasets: tuple[str, ...]      # named datasets it was trained on ("" = generic)
    channels: tuple[int, ...]      # channel counts it accepts
    resolution: int | None         # the only input size it accepts (None: any size, resized)
    resize: str                    # the preprocessing, as recorded with every score
    logits: bool = True            # a classifier head (the Inception Score needs one)
    num_classes: int = 0           # its classes, in the order of the data set's labels (class agreement)


EVALUATORS: dict[str, EvaluatorSpec] = {
    "digits": EvaluatorSpec("digits", "atelier's MNIST CNN classifier (128-d penultimate features)", ("mnist",),
                            (1,), 28, "none (28x28 grayscale, x/127.5-1)", num_classes=10),
    "fashion": EvaluatorSpec("fashion", "atelier's Fashion-MNIST CNN classifier (128-d penultimate features)",
                             ("fashion-mnist",), (1,), 28, "none (28x28 grayscale, x/127.5-1)", num_classes=10),
    "emoji": EvaluatorSpec("emoji", "atelier's emoji-group colour CNN classifier (128-d penultimate features)", (),
                           (3, 4), None, "RGBA over white, bilinear+antialias to 64x64, x/127.5-1"),
    "random-cnn": EvaluatorSpec("random-cnn", "fixed-seed random-weight CNN, per-stage channel mean+std (960-d)", (),
                                (1, 3, 4), None, "RGBA over white, gray->RGB, bilinear+antialias to 64x64, x/127.5-1",
                                logits=False),
    "inception": EvaluatorSpec("inception", "FID Inception-v3, 2015-12-05 graph (2048-d pool features)", (),
                               (1, 3, 4), None, "RGBA over white, bilinear+antialias to 299x299, gray->RGB, x/127.5-1"),
}
# The evaluator for a data set no domain evaluator was trained on: needs no downloaded weights.
FALLBACK = "random-cnn"


def auto_evaluator(dataset: str | None) -> str:
    """``digits`` for MNIST, ``fashion`` for Fashion-MNIST (by their names), else the :data:`FALLBACK`.

    A folder is never recognised by its path: a domain evaluator for it (``emoji``) is chosen by name."""

    name = parse_spec(dataset)[0] if dataset else ""
    for spec in EVALUATORS.values():
        if name in spec.datasets:
            return spec.name
    return FALLBACK


@dataclass
class Features:
    features: torch.Tensor   # (N, D) float32
    logits: torch.Tensor     # (N, K) float32


class Evaluator:
    """A frozen feature network plus the protocol that says what its numbers mean."""

    def __init__(self, spec: EvaluatorSpec, network: torch.nn.Module, weights: Path | None, sha256: str,
                 info: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.network = network.eval().requires_grad_(False)
        self.weights = weights
        self.sha256 = sha256
        self.info = info or {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def protocol(self) -> dict[str, Any]:
        return {"evaluator": self.name, "evaluator_sha256": self.sha256, "resize": self.spec.resize}

    def check(self, channels: int, height: int, width: int, what: str) -> None:
        """Refuse images this evaluator cannot score meaningfully (a DataError naming the fix)."""
        spec = self.spec
        if channels not in spec.channels:
            kind = {(1,): "grayscale", (3, 4): "RGB or RGBA"}.get(spec.channels, "grayscale, RGB or RGBA")
            raise DataError(f"{what} has {channels}-channel images; the {spec.name} evaluator reads {kind} images "
                            f"only. {self._hint()}")
        if spec.resolution is not None and (height, width) != (spec.resolution, spec.resolution):
            raise DataError(f"{what} has {height}x{width} images; the {spec.name} evaluator reads "
                            f"{spec.resolution}x{spec.resolution} images only (it would score a resized "
                            f"image, not the data). {self._hint()}")

    def _hint(self) -> str:
        if 1 not in self.spec.channels:
            return f"Use --evaluator {FALLBACK} (any images) for grayscale ones."
        return f"Use --evaluator {FALLBACK} (any images) or inception (with its weights file) for other images."


    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500, what: str = "the images") -> Features:
        """uint8 ``(N, C, H, W)`` -> features and logits, computed in fp32 in batches."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"evaluators take uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        self.check(int(images.shape[1]), int(images.shape[2]), int(images.shape[3]), what)
        if self.spec.name == "inception":
            batch_size = min(batch_size, 64)  # 299x299 Inception activations: ~10 MB per image
        feats, logits = [], []
        for chunk in images.split(batch_size):
            f, lg = self.network.forward_features(  # type: ignore[operator]  # (every evaluator network has it)
                self._input(chunk.to(self.device)))
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        return Features(torch.cat(feats), torch.cat(logits))


    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """RGBA -> RGB over white (as a viewer shows it); gray -> RGB for colour-only networks."""
        if x.shape[1] == 4:
            a = x[:, 3:].float() / 255.0
            x = (x[:, :3].float() * a + 255.0 * (1.0 - a)).round_().to(torch.uint8)
        if x.shape[1] == 1 and 3 in self.spec.channels and self.spec.name != "inception":  # Inception does its own
            x = x.expand(-1, 3, -1, -1)
        return x


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def weights_sha256(path: Path) -> str:
    st = path.stat()
    return _file_sha256(str(path), st.st_mtime_ns, st.st_size)


def _build(cls: type[torch.nn.Module]) -> torch.nn.Module:
    # The random init (overwritten by the weights) must not draw from the global generator: a training
    # run that evaluates would otherwise train differently from one that does not.
    with torch.random.fork_rng(devices=[]):
        return cls()


def load_evaluator(name: str, weights: str | Path | None = None, device: str | torch.device = "cpu",
                   download: bool = False) -> Evaluator:
    """Build an evaluator by name, from its shipped weights or from ``weights`` (a local file)."""
    if name not in EVALUATORS:
        raise DataError(f"unknown evaluator {name!r}; choose one of: auto, {', '.join(EVALUATORS)}")
    spec = EVALUATORS[name]
    if name == "inception":

        path = resolve_weights(INCEPTION_WEIGHTS.name, weights, download_ok=download, option="--inception-weights")
        net: torch.nn.Module = _build(FIDInceptionV3)
        info: dict[str, Any] = {}
        digest = weights_sha256(path)
        if INCEPTION_WEIGHTS.sha256 and digest != INCEPTION_WEIGHTS.sha256:
            warnings.warn(f"{path} is not the official FID Inception file (sha256 {digest[:12]}..., expected "
                          f"{INCEPTION_WEIGHTS.sha256[:12]}...): its FIDs are not comparable with published ones",
                          UserWarning, stacklevel=2)
    elif name == "random-cnn":

        net = RandomFeatures(seed=0)
        return Evaluator(spec, net.to(device), None, state_sha256(net), {"seed": 0, "weights": "generated"})
    else:

        path = Path(weights).expanduser() if weights is not None else WEIGHTS_DIR / f"{name}.safetensors"
        if not path.is_file():
            raise WeightsError(f"{name} evaluator weights not found at {path}; re-make them with "
                               f"`python scripts/train_evaluator.py {name}`")
        meta = path.with_suffix(".json")
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        if name == "emoji":
            with torch.random.fork_rng(devices=[]):  # the init is overwritten: leave the global generator alone
                net = ColourClassifier(num_classes=len(info.get("classes", ())) or 9)
        else:
            net = _build(DigitClassifier)
        digest = weights_sha256(path)
    state = load_state_dict(path)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path} does not hold {spec.description} weights ({first})") from None
    return Evaluator(spec, net.to(device), path, digest, info)
