"""The *edit-region* workflow: change one region of a real image with a trained model and keep the rest.

    mask      a brush image, a rectangle, or classes of a segmenter run (:mod:`atelier.api.masks`)
    edit      a kind from :data:`EDITS`: ``restyle`` (a fast style network), ``translate`` (a pix2pix run);
              each proposes new pixels for the frame from the image (and the mask)
    blend     feathered inside the mask only; every pixel outside it is copied from the input, bit for bit

A new edit kind is a :class:`RegionEdit` subclass (its ``kind``, the loaded-model kind it takes and
``propose``) passed to :func:`register_edit`; the diffusion family's inpainting will be ``kind = "inpaint"``,
whose ``propose`` uses the mask as well as the image. Everything else (masks, feathering, the exact outside,
provenance) is shared.

The edited image is labelled IPTC ``compositeWithTrainedAlgorithmicMedia`` (a real photo with a region made
by a trained model) and records the edit, the model with its checkpoint sha256, the mask's source and the
input's sha256. It carries no invisible watermark: the watermark changes every pixel a little, which would
break the promise that the outside stays as it was (the metadata says so).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from atelier import families
from atelier.api.masks import Mask, composite, feather, region_mask
from atelier.api.segment import load_segmenter
from atelier.errors import DataError, RunError
from atelier.imageio import encode_image, save_image
from atelier.images import image_format, open_image
from atelier.loaded import LoadedModel, Segmenter, Stylizer, Translator
from atelier.style.gatys import describe_source

__all__ = ["EDITED_SOURCE_TYPE", "EDITS", "EditResult", "RegionEdit", "Restyle", "Translate", "edit_region",
           "read_image", "register_edit"]

# IPTC NewsCodes: "a composite of a capture and elements made by a trained model" (the edited-photo case).
EDITED_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
# A rectangle or a thresholded brush: pixels made by an algorithm, with no trained model involved.
ALGORITHMIC_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"
DEFAULT_FEATHER = 4


class RegionEdit:
    """One kind of region edit around a loaded model: ``propose(image, mask) -> new pixels for the frame``."""

    kind: ClassVar[str] = ""
    model_kind: ClassVar[str] = ""       # the LoadedModel.kind it needs ("stylizer", "translator", ...)
    # Narrower than the kind when only some models of that kind can do it (inpainting: diffusion generators).
    model_class: ClassVar[type[LoadedModel]] = LoadedModel
    needs: ClassVar[str] = ""            # the run it needs, in words, when model_class narrows the kind

    def __init__(self, model: LoadedModel, **options: Any) -> None:
        if model.kind != self.model_kind or not isinstance(model, self.model_class):
            article = "an" if self.kind[:1] in "aeiou" else "a"
            raise RunError(f"{article} {self.kind} edit needs a {self.needs or self.model_kind} run; {model.run_dir} "
                           f"is a {model.cfg.model['name']} ({model.kind}) run")
        self.model, self.options = model, options

    @classmethod
    def accepts(cls, loaded: type[LoadedModel]) -> bool:
        """Whether models loaded as ``loaded`` (a family's class) can make this edit, without loading one."""
        return loaded.kind == cls.model_kind and issubclass(loaded, cls.model_class)

    def propose(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """uint8 ``(H, W, 3)`` and bool ``(H, W)`` -> uint8 ``(H, W, 3)``; only the masked pixels are used."""
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        """Provenance of the edit: the model's own fields (run, step, weights sha256, ...)."""
        return self.model.metadata(workflow="edit-region", edit=self.kind)


class Restyle(RegionEdit):
    """Restyle the region with a fast style network (Johnson et al. 2016), run on the whole frame so that the
    region's strokes see their surroundings."""

    kind, model_kind = "restyle", "stylizer"

    def propose(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        assert isinstance(self.model, Stylizer)
        return np.asarray(self.model(image).convert("RGB"))


class Translate(RegionEdit):
    """Translate the region with a pix2pix run. Its input is the image itself, or ``source``: another image of
    the same size, e.g. an edited label map whose photo should replace only the changed region."""

    kind, model_kind = "translate", "translator"

    def propose(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        assert isinstance(self.model, Translator)
        src = self.options.get("source")
        x = image if src is None else read_image(src)[..., :3]
        if x.shape[:2] != image.shape[:2]:
            raise DataError(f"the translation input is {x.shape[1]}x{x.shape[0]} but the image is "
                            f"{image.shape[1]}x{image.shape[0]}")
        out = np.asarray(self.model(x))
        return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out[..., :3]

    def fields(self) -> dict[str, Any]:
        src = self.options.get("source")
        if src is None:
            return super().fields()
        name, sha = describe_source(src)
        return {**super().fields(), "translate_input": name, "translate_input_sha256": sha}


EDITS: dict[str, type[RegionEdit]] = {}


def register_edit(cls: type[RegionEdit]) -> type[RegionEdit]:
    """Make an edit kind available to :func:`edit_region`, the CLI and the studio."""
    EDITS[cls.kind] = cls
    return cls


register_edit(Restyle)
register_edit(Translate)


@dataclass
class EditResult:
    """The edited image, the input and mask it came from, the blend weights and its provenance fields."""

    image: Image.Image
    original: np.ndarray
    mask: Mask
    weights: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def save(self, path: str | Path, strip_metadata: bool = False) -> Path:
        """Write the edited image (PNG keeps the outside exact; JPEG/WebP re-encode every pixel: a warning)."""
        if image_format(Path(path)) != "PNG":
            warnings.warn(f"{Path(path).name}: a lossy format re-encodes every pixel, so the outside of the mask "
                          "will not stay exactly as it was; write .png to keep it", UserWarning, stacklevel=2)
        return save_image(self.image, path, self.metadata, watermark=False, strip_metadata=strip_metadata)

    def encode(self, fmt: str = "png") -> bytes:
        """The edited image as file bytes with its provenance (what the studio returns)."""
        return encode_image(self.image, fmt, self.metadata, watermark=False)

    def save_mask(self, path: str | Path) -> Path:
        """Write the mask (white = edited) as a PNG with its source in the metadata."""
        made_by_model = "mask_segmenter" in self.mask.source   # a class mask is a model's output; others are not
        fields = {"workflow": "edit-region mask", **self.mask.source, "watermark": "none (a mask)"}
        if not made_by_model:
            fields["DigitalSourceType"] = ALGORITHMIC_SOURCE_TYPE
        return save_image(self.mask.image(), path, fields, watermark=False)

    def comparison(self) -> Image.Image:
        """Before | after, side by side."""
        before = Image.fromarray(self.original)
        out = Image.new(before.mode, (before.width * 2, before.height))
        out.paste(before, (0, 0))
        out.paste(self.image.convert(before.mode), (before.width, 0))
        return out


def read_image(image: str | Path | Image.Image | np.ndarray) -> np.ndarray:
    """An input to edit as uint8 ``(H, W, 3)``, or ``(H, W, 4)`` when it has alpha (which is kept as it is)."""
    img = open_image(image) if isinstance(image, (str, Path)) else image
    if isinstance(img, Image.Image):
        keep_alpha = "A" in img.getbands() or "transparency" in img.info
        return np.asarray(img.convert("RGBA" if keep_alpha else "RGB"))
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise DataError(f"an image array must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] not in (3, 4):
        raise DataError(f"an image array is (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    return arr


def _model(model: str | Path | LoadedModel, device: str) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if not Path(model).is_dir():
        raise RunError(f"run folder not found: {model}")
    return families.load(model, device=device)


def edit_region(image: str | Path | Image.Image | np.ndarray, *, kind: str, model: str | Path | LoadedModel,
                mask: Mask | np.ndarray | None = None, brush: Any = None,
                rect: tuple[int, int, int, int] | str | None = None, segmenter: str | Path | Segmenter | None = None,
                classes: str | list[str] | None = None, invert: bool = False, feather_px: int = DEFAULT_FEATHER,
                device: str = "cpu", options: Mapping[str, Any] | None = None) -> EditResult:
    """Edit one region of ``image`` with ``model`` and keep every other pixel exactly.

    The region is ``mask`` (a :class:`~atelier.api.masks.Mask` or a bool array), or built from one of ``brush``
    (an image: non-zero = edit), ``rect`` (x0,y0,x1,y1) or ``segmenter`` + ``classes`` (e.g. "window,door");
    ``invert`` edits the rest instead. ``kind`` is one of :data:`EDITS` (``restyle``, ``translate``); ``options``
    go to the edit (``source`` for translate). ``feather_px`` fades the edit in over that many pixels inside the
    mask's edge (0: a hard edge).
    """
    if kind not in EDITS:
        raise DataError(f"unknown edit {kind!r}; choose one of: {', '.join(sorted(EDITS))}")
    if feather_px < 0:
        raise DataError(f"feather must be 0 or more pixels, got {feather_px}")
    arr = read_image(image)
    rgb = arr[..., :3]
    edit = EDITS[kind](_model(model, device), **dict(options or {}))
    if mask is None:
        seg = load_segmenter(segmenter, device=device) if segmenter is not None else None
        mask = region_mask(rgb, brush=brush, rect=rect, segmenter=seg, classes=classes, invert=invert)
    elif not isinstance(mask, Mask):
        mask = Mask(np.asarray(mask, dtype=bool), {"mask": "array"})
    if mask.array.shape != rgb.shape[:2]:
        raise DataError(f"the mask is {mask.array.shape[1]}x{mask.array.shape[0]} but the image is "
                        f"{rgb.shape[1]}x{rgb.shape[0]}")
    t0 = time.perf_counter()
    proposal = edit.propose(rgb, mask.array)
    weights = feather(mask.array, feather_px)
    out = composite(arr, proposal, weights)
    seconds = time.perf_counter() - t0
    name, sha = describe_source(image) if isinstance(image, (str, Path)) else describe_source(rgb)
    meta = {**edit.fields(), "DigitalSourceType": EDITED_SOURCE_TYPE, "source": name, "source_sha256": sha,
            **mask.source, "mask_fraction": round(mask.fraction, 6), "feather_px": feather_px,
            "watermark": "none (a region edit keeps the pixels outside its mask exactly)"}
    return EditResult(Image.fromarray(out), arr, mask, weights, meta, seconds)
