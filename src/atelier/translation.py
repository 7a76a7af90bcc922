"""Image-to-image translation with a trained pix2pix run: translate images and score paired test sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from atelier.config import RunConfig
from atelier.errors import AtelierError, DataError
from atelier.imageio import save_image
from atelier.images import IMAGE_SUFFIXES, load_image

__all__ = ["Translator", "evaluate_pairs"]


class Translator:
    """A trained translation generator: ``Translator(image) -> PIL image`` of the same size."""

    def __init__(self, network: torch.nn.Module, cfg: RunConfig, run_dir: Path, step: int,
                 weights: Path | None = None) -> None:
        self.network = network.eval()
        from atelier.provenance import weights_sha256

        self.cfg, self.run_dir, self.step = cfg, run_dir, step
        self.weights_sha256 = weights_sha256(weights)  # of the checkpoint file, in every image's metadata
        self.resolution, self.channels = cfg.data.resolution, cfg.data.channels

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @torch.no_grad()
    def translate_batch(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, R, R)`` at the training resolution -> uint8 ``(N, C, R, R)``."""
        y = self.network(x.to(self.device).float() / 127.5 - 1)
        return ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()

    def __call__(self, image: str | Path | Image.Image | np.ndarray) -> Image.Image:
        """Translate one image of any size: resized to the training resolution, translated, resized back."""
        if isinstance(image, (str, Path)):
            arr = load_image(image, channels=self.channels)
        elif isinstance(image, Image.Image):
            arr = np.asarray(image.convert("L" if self.channels == 1 else "RGB"))
        else:
            arr = np.asarray(image, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[..., None]
        h, w = arr.shape[:2]
        small = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).resize(
            (self.resolution, self.resolution), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.array(small).reshape(self.resolution, self.resolution, -1)).permute(2, 0, 1)
        out = self.translate_batch(x[None])[0].permute(1, 2, 0).numpy()
        img = Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out)
        return img.resize((w, h), Image.Resampling.BICUBIC) if (w, h) != img.size else img

    def metadata(self, **fields: Any) -> dict[str, Any]:
        from atelier.provenance import model_metadata

        return model_metadata(self.run_dir, self.step, self.weights_sha256,
                              **{"workflow": "translate", "model": self.cfg.model["name"], **fields})

    def translate_path(self, src: Path, dst: Path, strip_metadata: bool = False) -> list[Path]:
        """A file to a file, or a folder to a folder (one output PNG per readable input image)."""
        src, dst = Path(src), Path(dst)
        if src.is_dir():
            files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"{src} holds no images to translate")
            return [save_image(self(p), dst / f"{p.stem}.png", self.metadata(source=p.name),
                               strip_metadata=strip_metadata) for p in files]
        if not src.exists():
            raise DataError(f"input not found: {src}")
        return [save_image(self(src), dst, self.metadata(source=src.name), strip_metadata=strip_metadata)]


def evaluate_pairs(translator: Translator | None, source: str, cfg: RunConfig, limit: int | None = None,
                   batch_size: int = 16) -> dict[str, float]:
    """Mean L1 (on [0, 1]), PSNR (dB) and SSIM of outputs against targets over a paired set.

    With ``translator=None`` the input itself is scored against the target: the identity baseline.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    from atelier.data.paired import load_paired

    d = cfg.data
    ds = load_paired(source, d.paired or "side_by_side", d.direction, d.channels, d.resolution, limit=limit)
    C = d.channels
    l1, psnr, ssim, n = 0.0, 0.0, 0.0, 0
    for chunk in ds.images.split(batch_size):
        x, y = chunk[:, :C], chunk[:, C:]
        out = x if translator is None else translator.translate_batch(x)
        a, b = out.float() / 255, y.float() / 255
        l1 += (a - b).abs().mean(dim=(1, 2, 3)).sum().item()
        psnr += peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)).sum().item()
        ssim += structural_similarity_index_measure(a, b, data_range=1.0, reduction="none").sum().item()
        n += len(chunk)
    return {"pairs": n, "l1": l1 / n, "psnr": psnr / n, "ssim": ssim / n}


def is_translation_run(run_dir: str | Path) -> bool:
    """True for a run folder whose model is an image-to-image translator (read from its config.yaml)."""
    from atelier.config import read_yaml
    from atelier.models import get

    cfg_file = Path(run_dir) / "config.yaml"
    if not cfg_file.is_file():
        return False
    name = (read_yaml(cfg_file).get("model") or {}).get("name", "dcgan")
    try:
        return get(name).kind == "translation"
    except AtelierError:  # an unknown model: let the normal loader report it
        return False


def evaluate_run(run_dir: str | Path, split: str = "test", limit: int | None = None,
                 baseline: str | None = None, record: bool = False) -> dict[str, Any]:
    """Score a translation run on a split: ``test`` (data.eval_source), ``train`` or a folder path.

    ``baseline="identity"`` scores the input passed through unchanged instead of the model's output;
    ``record=True`` appends the result to the run's metrics.jsonl as an ``"event": "eval"`` line.
    """
    import json

    import atelier

    model = atelier.load(run_dir)
    if not isinstance(model, Translator):
        raise DataError(f"{run_dir} is not an image-to-image translation run")
    d = model.cfg.data
    source = {"test": d.eval_source, "train": d.source}.get(split, split)
    if source is None:
        raise DataError(f"{run_dir} has no data.eval_source for the test split; pass a folder of pairs")
    scores = evaluate_pairs(None if baseline == "identity" else model, source, model.cfg, limit=limit)
    result = {"event": "eval", "step": model.step, "run": str(run_dir), "split": split, "source": source,
              "generator": "identity" if baseline == "identity" else "G", "resolution": d.resolution,
              "l1_scale": "[0, 1]", **scores}
    if record:
        with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
    return result
