"""The segmenter task: per-pixel cross-entropy on (photo, label map) pairs.

    data      paired photos and colour-coded label maps (``data.paired``; the label half is quantised to class
              indices with the model's palette, :mod:`atelier.labelmaps`); the loader's random jitter and flips
              hit photo and labels alike, as for pix2pix
    step      logits = net(photo); loss = CE(logits, labels), optionally class-weighted (median frequency
              balancing, Eigen & Fergus 2015); Adam at ``optim.lr_g``

The progress grid shows held-out photos, their predicted label maps and the true ones.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from atelier.config import RunConfig
from atelier.data.paired import load_paired
from atelier.errors import ConfigError
from atelier.images import make_grid
from atelier.labelmaps import Palette, get_palette
from atelier.models import get as get_model
from atelier.tasks.common import loader
from atelier.training.task import Context, Grid, Task

__all__ = ["SegmenterTask", "labels_of", "median_frequency_weights"]


def labels_of(channel: torch.Tensor) -> torch.Tensor:
    """The loader's [-1, 1] floats of a class-index channel (B, H, W) -> int64 indices (exact for 0..255)."""
    return ((channel.float() + 1.0) * 127.5).round().long()


def median_frequency_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """weight_c = median(freq) / freq_c over the classes that occur (Eigen & Fergus 2015); absent ones get 0."""
    counts = torch.bincount(labels.reshape(-1).long(), minlength=num_classes).double()
    freq = counts / counts.sum()
    present = freq > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[present] = freq[present].median() / freq[present]
    return weights.float()


class SegmenterTask(Task):
    grid_title = "Held-out examples: photo | predicted labels | true labels"

    def __init__(self, cfg: RunConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        d, m = cfg.data, cfg.model
        if d.paired is None:
            raise ConfigError("the segmenter trains on pairs of photos and label maps: set data.paired to "
                              "side_by_side or folders (and data.direction so that the photo is the input)")
        self.palette: Palette = get_palette(m["palette"])
        self.dataset = load_paired(d.source, d.paired, d.direction, d.channels, d.load_size or d.resolution,
                                   d.limit, palette=self.palette)
        self.data = loader(ctx, self.dataset, crop=d.resolution)
        params = dict(m)
        spec = get_model(params.pop("name"))
        self.net = ctx.wrap(spec.build(spec.parse(params), d.resolution, d.channels)["net"])
        self.networks = {"net": self.net}
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas)
        self.optimizers = {"opt": self.opt}
        k = len(self.palette)
        self.weights = (median_frequency_weights(self.dataset.images[:, d.channels], k).to(ctx.device)
                        if m["class_weights"] == "balanced" else None)
        fixed = load_paired(d.eval_source or d.source, d.paired, d.direction, d.channels, d.resolution,
                            limit=min(cfg.log.grid, 8), palette=self.palette)
        self.fixed_pairs = fixed.images.to(ctx.device)                     # uint8 (n, C + 1, R, R)

    def step(self, batch: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        ctx, C = self.ctx, self.cfg.data.channels
        batch = ctx.to_device(batch)
        x, y = batch[:, :C], labels_of(batch[:, C])                         # (B, C, H, W), (B, H, W)
        with ctx.autocast():
            logits = self.net(x)                                            # (B, K, H, W)
        loss = F.cross_entropy(logits.float(), y, weight=self.weights)
        ctx.optimize(loss, self.opt)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return {"loss": loss.item(), "pixel_acc": acc.item()}

    @torch.no_grad()
    def grid(self) -> Grid:
        C = self.cfg.data.channels
        photos = self.fixed_pairs[:, :C]
        was_training = self.net.training
        self.net.eval()
        pred = self.net(photos.float() / 127.5 - 1).argmax(1).cpu().numpy()
        self.net.train(was_training)
        truth = self.fixed_pairs[:, C].cpu().numpy()
        shown = photos.cpu() if C == 3 else photos.cpu().expand(-1, 3, -1, -1)
        rows = []
        for p, a, b in zip(shown, pred, truth, strict=True):
            rows += [p, self._draw(a), self._draw(b)]
        images = torch.stack(rows).float() / 127.5 - 1
        return Grid(make_grid(images, nrow=3, pad=4), {"network": "net", "layout": "photo|predicted|true"})

    def _draw(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.palette.colorize(index)).permute(2, 0, 1)  # uint8 (3, H, W)

    def describe(self, metrics: dict[str, float]) -> list[str]:
        c, p = self.cfg, self.palette
        weights = "median-frequency class weights" if self.weights is not None else "unweighted"
        return [f"- Classes ({len(p)}, palette `{p.name}`): {', '.join(p.classes)}",
                f"- Loss: cross-entropy, {weights}; Adam lr {c.optim.lr_g:g}, betas {list(c.optim.betas)}",
                "- Inference uses the network in eval mode (batch-norm running statistics)"]

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"ce": f"{metrics.get('loss', 0.0):.3f}", "acc": f"{metrics.get('pixel_acc', 0.0):.3f}"}
