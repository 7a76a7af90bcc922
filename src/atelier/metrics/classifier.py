"""The domain evaluators: small CNN classifiers of MNIST and Fashion-MNIST, trained by atelier.

FID/KID/precision-recall need a feature network; Heusel et al. 2017 used ImageNet Inception-v3,
which says little about 28x28 digits and cannot be downloaded here. Following the common practice
for MNIST-family GAN evaluation (a dataset-specific classifier's penultimate layer, e.g. the LeNet
features of Binkowski et al. 2018, "Demystifying MMD GANs"), atelier trains its own classifier:

    x uint8 (B, 1, 28, 28) -> x/127.5 - 1
    [conv3x3(32) BN ReLU] maxpool                  # (B, 32, 14, 14)
    [conv3x3(64) BN ReLU] maxpool                  # (B, 64, 7, 7)
    [conv3x3(128) BN ReLU] maxpool                 # (B, 128, 3, 3)
    flatten -> Linear(128) -> BN -> ReLU           # (B, 128)  the *features* (FID, KID, P/R)
    dropout -> Linear(10)                          # (B, 10)   the *logits* (Inception Score)

About 7.6 MMAC per image, so it trains in minutes on a 2-core CPU (``scripts/train_evaluator.py``)
and the weights (~0.9 MB) ship inside the package. Training is seeded: the same seed, data and
machine give the same weights (a different CPU may round differently in the last bits).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from atelier.data import open_source
from atelier.device import autocast
from atelier.utils import atomic_write_bytes, atomic_write_text, sha256_file

__all__ = ["DigitClassifier", "TrainReport", "accuracy", "fit_classifier", "train_classifier"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


class DigitClassifier(nn.Module):
    """A 28x28 grayscale 10-class CNN whose 128-d penultimate layer is the evaluator's feature space."""

    def __init__(self, *, num_classes: int = 10, feature_dim: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = feature_dim  # read by torchmetrics when this module is its feature extractor
        self.body = nn.Sequential(_block(1, 32), _block(32, 64), _block(64, 128))
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(128 * 3 * 3, feature_dim, bias=False),
                                   nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """uint8 ``[0, 255]`` -> float ``[-1, 1]`` (float input is taken as already in [-1, 1])."""
        return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, 128), logits (B, 10))."""
        f = self.embed(self.body(self.preprocess(x)))
        return f, self.head(self.dropout(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for xb, yb in zip(images.split(batch_size), labels.split(batch_size), strict=True):
        correct += int((model(xb).argmax(1) == yb).sum())
    return correct / len(labels)


def _augment(x: torch.Tensor, g: torch.Generator, shift: int, hflip: bool, fill: int = 0) -> torch.Tensor:
    """Random translations of up to ``shift`` pixels (and horizontal flips), one draw per image; the pixels
    shifted in are ``fill`` (0: MNIST's black; 255: white, for images composited over white)."""
    B, C, H, W = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=fill)
    dx = torch.randint(0, 2 * shift + 1, (B,), generator=g)
    dy = torch.randint(0, 2 * shift + 1, (B,), generator=g)
    rows = (dy[:, None] + torch.arange(H)[None, :])[:, None, :, None].expand(B, C, H, W + 2 * shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(W)[None, :])[:, None, None, :].expand(B, C, H, W)
    out = out.gather(3, cols)
    if hflip:
        flip = torch.rand(B, generator=g) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


@dataclass
class TrainReport:
    dataset: str
    seed: int
    epochs: int
    batch_size: int
    lr: float
    precision: str
    augment: str
    train_images: int
    test_images: int
    test_accuracy: float
    train_seconds: float
    torch_version: str
    command: str = ""
    # Colour evaluators: class names (in label order), how the held-out split was made, the input format.
    classes: list[str] | None = None
    split: str | None = None
    input: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def fit_classifier(images: torch.Tensor, labels: torch.Tensor, *, num_classes: int, seed: int = 0, epochs: int = 6,
                   batch_size: int = 128, lr: float = 3e-3, hflip: bool = False, precision: str = "bf16",
                   on_epoch: Callable[[nn.Module, int, float], None] | None = None,
                   build: Callable[[int], nn.Module] | None = None, shift: int = 2, fill: int = 0,
                   class_weights: torch.Tensor | None = None) -> nn.Module:
    """Train a fresh :class:`DigitClassifier` on uint8 ``(N, 1, 28, 28)`` images and int64 labels (or the
    network ``build(num_classes)`` returns, e.g. a :class:`~atelier.metrics.colour.ColourClassifier` on
    ``(N, 3, 64, 64)``; shifted-in pixels are ``fill``; ``class_weights`` re-weight the loss of unbalanced
    classes).

    AdamW with a one-cycle schedule (Smith & Topin 2017) reaches the accuracy targets in a few epochs;
    +-2 px shifts (and flips for Fashion-MNIST, whose classes are mirror-symmetric) regularise it.
    bf16 autocast + channels_last train 2x faster than fp32 on a 2-core CPU; the weights stay fp32
    and the classifier is returned in eval mode (fp32). ``on_epoch(model, epoch, mean_loss)`` is called
    after every epoch. Seeds the global torch generator with ``seed`` (the weight init).
    """

    steps_per_epoch = len(images) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{len(images)} images are fewer than one batch of {batch_size}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    model = (build or (lambda k: DigitClassifier(num_classes=k)))(num_classes)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (torch's stub lacks it)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(images), generator=g)
        total, seen = 0.0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            xb = _augment(images[idx], g, shift=shift, hflip=hflip, fill=fill)
            with autocast(torch.device("cpu"), precision):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), labels[idx], weight=class_weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        if on_epoch is not None:
            on_epoch(model, epoch, total / seen)
    return model.to(memory_format=torch.contiguous_format).eval()


def train_classifier(dataset: str, *, seed: int = 0, epochs: int = 6, batch_size: int = 128, lr: float = 3e-3,
                     hflip: bool = False, precision: str = "bf16",
                     log=print) -> tuple[DigitClassifier, TrainReport]:
    """Train the evaluator CNN on ``dataset``'s training split and measure it on the test split
    (the recipe is :func:`fit_classifier`'s)."""

    train = open_source(f"{dataset}:train")
    test = open_source(f"{dataset}:test")
    x_train, y_train = train.images, train.labels
    assert y_train is not None and test.labels is not None
    t0 = time.perf_counter()

    test_labels = test.labels

    def on_epoch(model: nn.Module, epoch: int, mean_loss: float) -> None:
        acc = accuracy(model, test.images, test_labels)
        log(f"{dataset} epoch {epoch + 1}/{epochs}  loss {mean_loss:.4f}  test acc {acc:.4%}  "
            f"{time.perf_counter() - t0:.0f} s")

    model = fit_classifier(x_train, y_train, num_classes=int(y_train.max()) + 1, seed=seed, epochs=epochs,
                           batch_size=batch_size, lr=lr, hflip=hflip, precision=precision, on_epoch=on_epoch)
    assert isinstance(model, DigitClassifier)
    acc = accuracy(model, test.images, test.labels)
    if not math.isfinite(acc):
        raise RuntimeError("accuracy is not finite")
    report = TrainReport(dataset=dataset, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                         precision=precision, augment="shift+-2" + ("+hflip" if hflip else ""),
                         train_images=len(x_train), test_images=len(test.labels), test_accuracy=round(acc, 6),
                         train_seconds=round(time.perf_counter() - t0, 1), torch_version=torch.__version__)
    return model, report


def save_classifier(model: nn.Module, report: TrainReport, path: Path) -> str:
    """Write ``path`` (.safetensors, metadata = the report) and ``path.json``; return the file's sha256."""
    from safetensors.torch import save


    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "atelier-evaluator/1", "arch": type(model).__name__, "num_classes": str(model.num_classes),
            "dataset": report.dataset, "test_accuracy": str(report.test_accuracy)}
    atomic_write_bytes(path, save(state, metadata=meta))
    digest = sha256_file(path)
    fields = {k: v for k, v in asdict(report).items() if v is not None}
    atomic_write_text(path.with_suffix(".json"), json.dumps({**fields, "sha256": digest}, indent=2) + "\n")
    return digest
