"""The fast style task: a feed-forward network trained against the Gatys losses (Johnson et al. 2016).

One step: a batch of random crops of the content photos -> TransformerNet -> the losses of
:class:`atelier.style.gatys.PerceptualLoss` (style Gram targets fixed, content targets from the crops)
-> Adam. The content photos are ``data.source`` (a folder), the crop size ``data.resolution``; the style
images and loss weights are in the ``model:`` section (:class:`atelier.models.fast_style.FastStyleConfig`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from atelier.config import RunConfig
from atelier.errors import ConfigError, DataError
from atelier.images import IMAGE_SUFFIXES, make_grid
from atelier.models import get as get_model
from atelier.style.features import build_features
from atelier.style.gatys import PerceptualLoss, image_to_tensor, parse_style_spec, total_variation
from atelier.training.task import Context, Grid, Task

__all__ = ["PhotoCrops", "StyleTask", "content_files"]


def content_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"content folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def fit_short_side(x: torch.Tensor, side: int, crop: bool = False) -> torch.Tensor:
    h, w = x.shape[-2:]
    s = side / min(h, w)
    x = F.interpolate(x, size=(max(side, round(h * s)), max(side, round(w * s))), mode="bilinear",
                      antialias=True, align_corners=False)
    if crop:
        h, w = x.shape[-2:]
        top, left = (h - side) // 2, (w - side) // 2
        x = x[..., top : top + side, left : left + side]
    return x.contiguous()


class PhotoCrops:
    """Random square crops (and horizontal flips) of random photos, from a generator whose state is saved."""

    def __init__(self, photos: list[torch.Tensor], size: int, batch_size: int, seed: int) -> None:
        self.photos, self.size, self.batch_size = photos, size, batch_size
        self.rng = torch.Generator().manual_seed(seed + 1)

    def next(self) -> tuple[torch.Tensor, None]:
        s, out = self.size, []
        for _ in range(self.batch_size):
            p = self.photos[int(torch.randint(len(self.photos), (1,), generator=self.rng))]
            h, w = p.shape[-2:]
            top = int(torch.randint(h - s + 1, (1,), generator=self.rng))
            left = int(torch.randint(w - s + 1, (1,), generator=self.rng))
            crop = p[..., top : top + s, left : left + s]
            if bool(torch.rand(1, generator=self.rng) < 0.5):
                crop = crop.flip(-1)
            out.append(crop)
        return torch.cat(out), None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.set_state(state["rng"])


class StyleTask(Task):
    grid_title = "Content photos (top) and the network's restyling of them at this step (bottom)"

    def __init__(self, cfg: RunConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        m, size, device = cfg.model, cfg.data.resolution, ctx.device
        if not m["style"]:
            raise ConfigError("a fast style run needs model.style: one or more style images (--style IMAGE)")
        # Inputs first: a bad style or content file fails here, before anything is written.
        styles = [(image_to_tensor(p, round(size * m["style_scale"]), what="style image").to(device), w)
                  for p, w in (parse_style_spec(s) for s in m["style"])]
        files = content_files(Path(cfg.data.source))
        held = files[: min(m["holdout"], len(files) - 1)] if len(files) > 1 else []
        train_files = [f for f in files if f not in held] or files
        # Short side = size * 1.25, so random crops see different parts of each photo.
        photos = [fit_short_side(image_to_tensor(f, None, what="content image"), round(size * 1.25))
                  for f in train_files]
        # The held-out photos, then the first training ones, make the fixed progress grid (3 columns).
        grid_files = (held + [f for f in train_files if f not in held])[: max(3, len(held))]
        self.fixed = torch.cat([fit_short_side(image_to_tensor(f, None, what="content image"), size, crop=True)
                                for f in grid_files]).to(device)
        self.data = PhotoCrops(photos, size, cfg.train.batch_size, cfg.seed)
        params = dict(m)
        spec = get_model(params.pop("name"))
        self.net = ctx.wrap(spec.build(spec.parse(params), size, 3)["net"])
        self.networks = {"net": self.net}
        self.features = build_features(m["features"], m["vgg_weights"], seed=cfg.seed).to(device)
        self.loss = PerceptualLoss(self.features, styles)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.optim.lr_g)
        self.optimizers = {"opt": self.opt}

    def step(self, content: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        m = self.cfg.model
        content = content.to(self.ctx.device)
        with self.ctx.autocast():
            targets = self.loss.content_targets(content)
            out = self.net(content)
            terms = self.loss(out, targets)
        terms["tv"] = total_variation(out.float()) * 100.0  # the same scale as Gatys' stylize()
        total = (m["style_weight"] * terms["style"] + m["content_weight"] * terms["content"]
                 + m["tv_weight"] * terms["tv"])
        self.ctx.optimize(total, self.opt)
        return {"loss": float(total.detach()), **{f"loss_{k}": float(v.detach()) for k, v in terms.items()}}

    @torch.no_grad()
    def grid(self) -> Grid:
        self.net.eval()
        styled = self.net(self.fixed).float()
        self.net.train()
        # Row 1: the content photos; row 2: the same photos restyled by the network at this step.
        rows = np.concatenate([_uint8(self.fixed), _uint8(styled)])
        return Grid(make_grid(rows, nrow=len(self.fixed)), {"workflow": "train-style-progress"})

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "loader" not in state and "data" in state.get("rng", {}) and self.data is not None:
            self.data.load_state_dict({"rng": state["rng"]["data"]})  # checkpoints of the old style trainer

    def describe(self, metrics: dict[str, float]) -> list[str]:
        m = self.cfg.model
        return [f"- Style: {', '.join(Path(str(s)).name for s in m['style'])} (scale {m['style_scale']:g}); "
                f"features: {self.features.describe()}",
                f"- Loss: style x {m['style_weight']:g} + content x {m['content_weight']:g} + total variation x "
                f"{m['tv_weight']:g} (Gatys et al. 2016, relative per layer); Adam lr {self.cfg.optim.lr_g:g}"]

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"style": f"{metrics.get('loss_style', 0.0):.3f}", "content": f"{metrics.get('loss_content', 0.0):.3f}"}


def _uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3)."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
