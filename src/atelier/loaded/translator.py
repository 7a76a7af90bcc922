"""An image-to-image generator loaded from a run (pix2pix): an image in, its translation out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from atelier.errors import DataError
from atelier.imageio import save_image
from atelier.images import IMAGE_SUFFIXES, load_image
from atelier.latent import to_uint8
from atelier.loaded.base import FullyConvolutional

__all__ = ["Translator"]


class Translator(FullyConvolutional):
    """A trained translation generator: ``Translator(image) -> PIL image`` of the same size."""

    kind = "translator"
    workflow = "translate"
    capabilities = ("translate",)

    @torch.no_grad()
    def translate_batch(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, R, R)`` at the training resolution -> uint8 ``(N, C, R, R)``."""
        return to_uint8(self.network(x.to(self.device).float() / 127.5 - 1))

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
        r = self.resolution
        small = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).resize((r, r), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.array(small).reshape(r, r, -1)).permute(2, 0, 1)
        out = self.translate_batch(x[None])[0].permute(1, 2, 0).numpy()
        img = Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out)
        return img.resize((w, h), Image.Resampling.BICUBIC) if (w, h) != img.size else img

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

    def info(self) -> dict[str, Any]:
        return {**super().info(), "classes": None}

