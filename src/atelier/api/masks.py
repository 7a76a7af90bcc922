"""Masks for region edits: from a brush image, a rectangle, or chosen classes of a segmenter; feathering and the
compositing that keeps every pixel outside the mask exactly as it was."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from atelier.errors import DataError
from atelier.images import open_image
from atelier.loaded import Segmenter

__all__ = ["Mask", "brush_mask", "class_mask", "composite", "feather", "parse_rect", "rect_mask", "region_mask"]


@dataclass
class Mask:
    """bool ``(H, W)``: True where the edit applies; ``source`` says where it came from (for provenance)."""

    array: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return float(self.array.mean())

    def inverted(self) -> Mask:
        return Mask(~self.array, {**self.source, "mask_inverted": True})

    def image(self) -> Image.Image:
        """White where the edit applies, black elsewhere (what a brush mask file looks like)."""
        return Image.fromarray(self.array.astype(np.uint8) * 255, mode="L")


def parse_rect(text: str) -> tuple[int, int, int, int]:
    """``"x0,y0,x1,y1"`` (pixels; x1 and y1 excluded) -> a tuple of four ints."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise DataError(f"a rectangle is x0,y0,x1,y1 in whole pixels, got {text!r}") from None
    return x0, y0, x1, y1


def rect_mask(size: tuple[int, int], rect: tuple[int, int, int, int] | str) -> Mask:
    """The pixels ``x0 <= x < x1, y0 <= y < y1`` of an image of ``size = (H, W)``."""
    x0, y0, x1, y1 = parse_rect(rect) if isinstance(rect, str) else rect
    h, w = size
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise DataError(f"rectangle {x0},{y0},{x1},{y1} does not fit the {w}x{h} image (need 0 <= x0 < x1 <= {w} "
                        f"and 0 <= y0 < y1 <= {h})")
    arr = np.zeros((h, w), dtype=bool)
    arr[y0:y1, x0:x1] = True
    return Mask(arr, {"mask": f"rectangle {x0},{y0},{x1},{y1}"})


def brush_mask(brush: str | Path | Image.Image | np.ndarray, size: tuple[int, int]) -> Mask:
    """Any image as a mask: non-zero pixels are edited (with an alpha channel, the painted ones: alpha > 0)."""
    name = Path(brush).name if isinstance(brush, (str, Path)) else f"<{type(brush).__name__}>"
    if isinstance(brush, (str, Path)):
        img = open_image(brush)
        arr = np.asarray(img.convert("RGBA") if "A" in img.getbands() or "transparency" in img.info else img)
    else:
        arr = np.asarray(brush)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        on = np.asarray(arr[..., -1] > 0)                                     # painted = not transparent
    else:
        on = np.asarray(arr.any(axis=2) if arr.ndim == 3 else arr != 0)
    if on.shape != tuple(size):
        raise DataError(f"mask {name} is {on.shape[1]}x{on.shape[0]} but the image is {size[1]}x{size[0]}; "
                        "paint the mask at the image's size")
    digest = hashlib.sha256(np.packbits(on).tobytes()).hexdigest()
    return Mask(on, {"mask": f"brush {name}", "mask_sha256": digest})


def class_mask(image: np.ndarray, segmenter: Segmenter, classes: str | list[str]) -> Mask:
    """The pixels ``segmenter`` labels as any of ``classes`` (names or one comma-separated string)."""
    names = [c for c in (classes.split(",") if isinstance(classes, str) else classes) if c.strip()]
    if not names:
        raise DataError(f"name the classes to edit (the segmenter knows: {', '.join(segmenter.classes)})")
    arr = segmenter.mask(image, names)
    return Mask(arr, {"mask": f"segmenter classes {','.join(n.strip() for n in names)}",
                      "mask_segmenter": Path(str(segmenter.run_dir)).name,
                      "mask_segmenter_step": segmenter.step,
                      "mask_segmenter_sha256": segmenter.weights_sha256 or ""})


def region_mask(image: np.ndarray, *, brush: Any = None, rect: tuple[int, int, int, int] | str | None = None,
                segmenter: Segmenter | None = None, classes: str | list[str] | None = None,
                invert: bool = False) -> Mask:
    """Exactly one mask source for ``image`` (uint8 ``(H, W, C)``): a brush image, a rectangle, or a segmenter
    with class names; ``invert`` edits everything else. An empty mask is an error (nothing would change)."""
    given = [name for name, v in (("a brush mask", brush), ("a rectangle", rect), ("a segmenter", segmenter))
             if v is not None]
    if len(given) != 1:
        raise DataError("give one mask: a brush image (non-zero = edit), a rectangle x0,y0,x1,y1, or a segmenter "
                        f"run with classes{' (got ' + ' and '.join(given) + ')' if given else ''}")
    if (segmenter is None) != (classes is None):
        raise DataError("a class mask needs both a segmenter run and the classes to edit (e.g. window,door)")
    size = image.shape[:2]
    if brush is not None:
        mask = brush_mask(brush, size)
    elif rect is not None:
        mask = rect_mask(size, rect)
    else:
        assert segmenter is not None and classes is not None
        mask = class_mask(image, segmenter, classes)
    if invert:
        mask = mask.inverted()
    if not mask.array.any():
        raise DataError(f"the mask ({mask.source['mask']}{', inverted' if invert else ''}) selects no pixels: "
                        "nothing to edit")
    return mask


def feather(mask: np.ndarray, radius: int) -> np.ndarray:
    """float32 ``(H, W)`` blend weights: 0 outside the mask, rising inside it from ``1 / (radius + 1)`` at its
    edge to 1 at ``radius`` px in (smoothstep), so the new pixels fade in without touching the outside.

    The depth of a pixel is how many erosions it survives, alternating square and cross-shaped neighbourhoods (an
    octagonal distance, close to Euclidean); the image border is not an edge of the mask. A region thinner than
    ``2 * radius`` never reaches full weight.
    """
    if radius < 0:
        raise ValueError(f"feather radius must be >= 0, got {radius}")
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]  # (1, 1, H, W)
    if radius == 0:
        return m[0, 0].numpy()
    depth, cur = torch.zeros_like(m), m
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    for i in range(radius):
        # Beyond the image border counts as inside: a mask that reaches the border does not fade out there.
        if i % 2 == 0:   # square: a pixel survives when all 8 neighbours are inside
            cur = -F.max_pool2d(F.pad(-cur, (1, 1, 1, 1), value=-1.0), 3, stride=1)
        else:            # cross: the 4 direct neighbours
            cur = (F.conv2d(F.pad(cur, (1, 1, 1, 1), value=1.0), cross) >= 5.0).float()
        depth += cur
    t = (depth + m) / (radius + 1)                                             # in (0, 1] inside, 0 outside
    w = t * t * (3 - 2 * t) * m
    return w[0, 0].numpy().astype(np.float32)


def composite(image: np.ndarray, proposal: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``image`` with ``proposal`` blended in by ``weights`` (H, W) in [0, 1]; wherever the weight is 0 the
    pixel is copied from ``image`` unchanged, bit for bit. A fourth (alpha) channel of ``image`` is kept."""
    if proposal.shape[:2] != image.shape[:2]:
        raise ValueError(f"the edit made a {proposal.shape[1]}x{proposal.shape[0]} image for a "
                         f"{image.shape[1]}x{image.shape[0]} one")
    c = proposal.shape[2]
    out = image.copy()
    inside = weights > 0
    w = weights[inside][:, None]
    blend = image[..., :c][inside].astype(np.float32) * (1 - w) + proposal[inside].astype(np.float32) * w
    out[..., :c][inside] = np.clip(np.round(blend), 0, 255).astype(np.uint8)
    return out
