"""A fast style network loaded from a run (Johnson et al. 2016): a photo in, restyled at its own size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from atelier.device import bf16_native
from atelier.loaded.base import ExportSpec, LoadedModel
from atelier.style.gatys import image_to_tensor, tensor_to_image

__all__ = ["Stylizer"]


class Stylizer(LoadedModel):
    """A trained fast style network, callable on an image: ``atelier.load("runs/wave")(photo)``.

    ``precision``: ``"auto"`` runs under bf16 autocast where the device computes bf16 natively (see
    :func:`atelier.device.bf16_native`), else fp32; ``"fp32"`` / ``"bf16"`` force one.
    """

    kind = "stylizer"
    workflow = "stylize"
    capabilities = ("stylize",)
    precision = "auto"

    @property
    def style(self) -> str:
        return ", ".join(Path(str(s)).name for s in self.cfg.model.get("style", []))

    def set_precision(self, precision: str) -> Stylizer:
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        self.precision = precision
        return self

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16" or (self.precision == "auto" and bf16_native(self.device))

    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the same shape, stylised (float32)."""
        dev = self.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            y = self.network(x.to(dev))
        return y.float().clamp(0, 1).cpu()

    def __call__(self, image: Any, size: int | None = None) -> Image.Image:
        """A path, PIL image, uint8 array or [0, 1] tensor -> the stylised PIL image (long side ``size``, or the
        input's own size)."""
        return tensor_to_image(self.stylize_tensor(image_to_tensor(image, size, what="content image")))

    def metadata(self, **fields: Any) -> dict[str, Any]:
        return super().metadata(method="fast (Johnson et al. 2016)", precision="bf16" if self.bf16 else "fp32",
                                style=self.style, **fields)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "style": self.style, "classes": None, "resolution": None}

    def export_spec(self) -> ExportSpec:
        # Fully convolutional; the exported graph takes multiples of the network's stride (PyTorch pads other
        # sizes inside, a branch ONNX cannot follow).
        return self.network, {"x": torch.zeros(2, 3, 64, 64)}, {"x": (self.network_int("stride"), 2)}

    def export_sizes(self) -> str:
        s = self.network_int("stride")
        return f"any height and width that are multiples of {s}, from {2 * s} px"
