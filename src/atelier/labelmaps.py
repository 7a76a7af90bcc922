"""Label maps: class-index images and the colour palettes that draw them.

A segmentation data set often ships its label maps as colour-coded images (one colour per class), and the
pix2pix copies of the CMP facades (Tyleček & Šára, GCPR 2013) are resized and JPEG-compressed on top: a
window's pixels are not exactly the window colour, and every edge between two classes passes through 2-4 px of
colours in between (16% of the facades' label pixels lie more than 60 RGB levels from every palette colour,
all of them along edges). :meth:`Palette.quantize` maps each pixel to the class whose colour is nearest
(squared RGB distance), which is what the data reader and the FCN-score use. It is exact inside regions; on an
edge a blend can land nearest to a third class (thin "background" outlines around windows). Repairing those
from their neighbours was tried and rejected: it also erased real 2-4 px structures (blinds, sills).
:meth:`Palette.colorize` draws an index map back.

A palette is a registered name (``cmp-facades``) or a list of ``name=#rrggbb`` entries (a user's own data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import ImageColor

from atelier.errors import ConfigError, DataError

__all__ = ["CMP_FACADES", "PALETTES", "Palette", "get_palette"]


@dataclass(frozen=True)
class Palette:
    """Class names and their colours; class ``i`` is drawn in ``colors[i]``."""

    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.colors) or len(self.classes) < 2:
            raise ConfigError(f"palette {self.name}: needs two or more classes, each with one colour")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"palette {self.name}: class names must differ ({', '.join(self.classes)})")
        if len(set(self.colors)) != len(self.colors):
            raise ConfigError(f"palette {self.name}: two classes share a colour")
        if len(self.classes) > 256:
            raise ConfigError(f"palette {self.name}: at most 256 classes (label maps are 8-bit), got "
                              f"{len(self.classes)}")

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.colors, dtype=np.uint8)                     # (K, 3)

    def spec(self) -> str | list[str]:
        """What a config stores: the registered name, or the ``name=#rrggbb`` list."""
        if PALETTES.get(self.name) == self:
            return self.name
        return [f"{c}=#{r:02x}{g:02x}{b:02x}" for c, (r, g, b) in zip(self.classes, self.colors, strict=True)]

    def quantize(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 ``(H, W, 3)`` colours -> uint8 ``(H, W)`` class indices of the nearest palette colour."""
        return self.nearest(rgb)[0]

    def nearest(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The class indices of :meth:`quantize` and each pixel's RGB distance to its class colour (float32)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise DataError(f"a colour label map is (H, W, 3) RGB, got shape {rgb.shape}")
        flat = rgb.reshape(-1, 3).astype(np.int32)
        pal = self.array.astype(np.int32)
        idx = np.empty(len(flat), dtype=np.uint8)
        dist = np.empty(len(flat), dtype=np.float32)
        for start in range(0, len(flat), 1 << 18):                          # bounded memory on large images
            chunk = flat[start:start + (1 << 18)]
            d2 = ((chunk[:, None, :] - pal[None]) ** 2).sum(-1)             # (n, K)
            idx[start:start + len(chunk)] = d2.argmin(1)
            dist[start:start + len(chunk)] = np.sqrt(d2.min(1))
        return idx.reshape(rgb.shape[:2]), dist.reshape(rgb.shape[:2])

    def colorize(self, index: np.ndarray) -> np.ndarray:
        """Class indices ``(H, W)`` -> uint8 ``(H, W, 3)`` in the palette's colours."""
        index = np.asarray(index)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise DataError(f"label map has class {int(index.max())}, but palette {self.name} has {len(self)} classes")
        return self.array[index.astype(np.intp)]

    def indices(self, names: Sequence[str]) -> list[int]:
        """Class names (case-insensitive) -> their indices; an unknown name lists the known ones."""
        lower = {c.lower(): i for i, c in enumerate(self.classes)}
        out = []
        for name in names:
            key = name.strip().lower()
            if key not in lower:
                raise DataError(f"unknown class {name.strip()!r}; palette {self.name} has: {', '.join(self.classes)}")
            out.append(lower[key])
        return out


# The CMP facades as rendered in the pix2pix data set (photo | label map, 256 px each). Measured on the label
# halves of all 506 shared files: the 12 clusters of near-flat pixels (7x7 variance < 2) have these medians,
# each within ~1.5 levels (std) of the median, and the nearest two colours are 58 apart. Their order is the
# data set's label numbering (1-12, a jet-like ramp from dark blue to dark red); the names were matched by
# looking at where each colour falls (sky and street -> background, thin bars under windows -> sill, ...),
# and agree with the CMP base set's label list.
CMP_FACADES = Palette(
    name="cmp-facades",
    classes=("background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco", "molding",
             "pillar", "shop"),
    colors=((0, 0, 222), (0, 48, 255), (0, 128, 255), (1, 207, 255), (32, 255, 224), (112, 255, 142),
            (192, 255, 63), (255, 240, 1), (255, 159, 0), (255, 80, 0), (254, 0, 0), (174, 0, 1)),
)

PALETTES: dict[str, Palette] = {CMP_FACADES.name: CMP_FACADES}


def get_palette(spec: str | Sequence[str] | Palette) -> Palette:
    """A registered palette by name, or one built from ``["name=#rrggbb", ...]``."""
    if isinstance(spec, Palette):
        return spec
    if isinstance(spec, str):
        if spec not in PALETTES:
            raise ConfigError(f"unknown palette {spec!r}; use one of {', '.join(PALETTES)} or list the classes as "
                              "name=#rrggbb")
        return PALETTES[spec]
    classes, colors = [], []
    for entry in spec:
        name, sep, colour = str(entry).partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"palette entry {entry!r}: write it as name=#rrggbb")
        try:
            rgb = ImageColor.getrgb(colour.strip())
        except ValueError:
            raise ConfigError(f"palette entry {entry!r}: unknown colour {colour.strip()!r}") from None
        classes.append(name.strip())
        colors.append((int(rgb[0]), int(rgb[1]), int(rgb[2])))
    return Palette("custom", tuple(classes), tuple(colors))
