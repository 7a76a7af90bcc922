"""Text-to-image, image-to-image and inpainting with a user's own Stable Diffusion-family checkpoint, every image
saved through :func:`atelier.imageio.save_image` with its provenance: IPTC ``trainedAlgorithmicMedia``, the prompt,
negative prompt and settings that regenerate it, the checkpoint's sha256 and atelier's invisible watermark.

    m = atelier.load_foundation("models/sd15")                  # a diffusers folder, or a .safetensors + config=
    r = atelier.t2i(m, Settings("a red fox in snow", seed=0, n=4), out_dir="out")
    r = atelier.t2i(m, read_sheet("sheet.csv", Settings("")), out_dir="out")   # a prompt sheet
    atelier.inpaint(m, "photo.png", "mask.png", Settings("a wooden door"), out_dir="out")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atelier.errors import AtelierError, ConfigError
from atelier.foundation import SAMPLERS, FoundationModel, Settings, load_foundation
from atelier.imageio import save_image
from atelier.images import open_image, to_channels
from atelier.utils import sha256_file

__all__ = ["FoundationImages", "img2img", "inpaint", "load_foundation", "t2i"]

# (done, total, path written or None); called with done = 0 once every input is checked, before the first image
Progress = Callable[[int, int, Path | None], None]


@dataclass
class FoundationImages:
    """Images made by a foundation model and, per image, the fields that regenerate exactly it."""

    model: FoundationModel
    images: list[np.ndarray] = field(default_factory=list)   # uint8 (H, W, 3) each
    fields: list[dict[str, Any]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)          # filled when written

    def save(self, out_dir: str | Path, strip_metadata: bool = False) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.paths = [save_image(img, out / name, f, strip_metadata=strip_metadata)
                      for img, name, f in zip(self.images, self.names, self.fields, strict=True)]
        return self.paths


def _model(model: FoundationModel | str | Path) -> FoundationModel:
    return model if isinstance(model, FoundationModel) else load_foundation(model)


def _fields(m: FoundationModel, workflow: str, s: Settings, seed: int, size: tuple[int, int],
            **extra: object) -> dict[str, Any]:
    sampler = s.sampler if s.sampler != "default" else f"default ({m.default_sampler})"
    return {
        "workflow": workflow,
        # the watermark's payload is a hash of model_id: one per checkpoint, whatever its file is called
        "model_id": f"foundation-{m.sha256[:16]}",
        "model": m.name, "model_family": m.info.label, "model_layout": m.info.layout,
        "weights_sha256": m.sha256,
        "prompt": s.prompt, "negative_prompt": s.negative, "steps": s.steps, "guidance": s.guidance,
        "sampler": sampler, "seed": seed, "size": f"{size[0]}x{size[1]}", "dtype": m.dtype,
        "levers": " + ".join(m.levers),
        "safety_checker": "on" if m.safety_checker else "off (not in this checkpoint)",
        **extra,
    }


def _plan(rows: Sequence[Settings]) -> list[tuple[Settings, int, str]]:
    """(settings, seed, file name) per image; two images may not share a file name."""
    plan: list[tuple[Settings, int, str]] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(rows, start=1):
        stem = s.name or f"{i:03d}"
        for k in range(s.n):
            name = f"{stem}-seed{s.seed + k}.png"
            if name in seen:
                first = rows[seen[name] - 1].where or f"prompt {seen[name]}"
                raise ConfigError(f"{first} and {s.where or f'prompt {i}'} would both write {name}: give them "
                                  "different names or seeds")
            seen[name] = i
            plan.append((s, s.seed + k, name))
    return plan


def _check(m: FoundationModel, rows: Sequence[Settings], workflow: str) -> None:
    if m.info.inpainting and workflow != "inpaint":
        raise AtelierError(f"{m.name} is an inpainting checkpoint (its UNet takes a mask): use it for inpainting "
                           "only (atelier sd-inpaint)")
    for i, s in enumerate(rows, start=1):
        try:
            s.check()
            if s.sampler != "default" and s.sampler not in SAMPLERS:
                raise ConfigError(f"unknown sampler {s.sampler!r}; use default or {', '.join(SAMPLERS)}")
            if s.size is not None and workflow == "t2i":
                m.check_size(s.size)
        except ConfigError as exc:
            where = s.where or (f"prompt {i}" if len(rows) > 1 else "")
            raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


def _run(m: FoundationModel, workflow: str, rows: Sequence[Settings], out_dir: str | Path | None,
         strip_metadata: bool, progress: Progress | None, make: Callable[[Settings, int], np.ndarray],
         extra: dict[str, object], size_of: Callable[[Settings], tuple[int, int]]) -> FoundationImages:
    plan = _plan(rows)
    result = FoundationImages(m)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress(0, len(plan), None)
    for done, (s, seed, name) in enumerate(plan, start=1):
        img = make(s, seed)
        f = _fields(m, workflow, s, seed, size_of(s), **extra)
        result.images.append(img)
        result.fields.append(f)
        result.names.append(name)
        path = None
        if out is not None:   # written as soon as it is made: an interrupted batch keeps what it finished
            path = save_image(img, out / name, f, strip_metadata=strip_metadata)
            result.paths.append(path)
        if progress is not None:
            progress(done, len(plan), path)
    return result


def t2i(model: FoundationModel | str | Path, settings: Settings | Sequence[Settings],
        out_dir: str | Path | None = None, *, strip_metadata: bool = False,
        progress: Progress | None = None) -> FoundationImages:
    """Text to image: ``n`` images per :class:`Settings` (seeds ``seed``, ``seed + 1``, ...), written to
    ``out_dir`` as ``<name or prompt number>-seed<seed>.png`` when it is given. Every row is checked first."""
    m = _model(model)
    rows = [settings] if isinstance(settings, Settings) else list(settings)
    _check(m, rows, "t2i")

    def make(s: Settings, seed: int) -> np.ndarray:
        return m.generate("t2i", s.prompt, negative=s.negative, steps=s.steps, guidance=s.guidance, seed=seed,
                          size=s.size, sampler=s.sampler)

    return _run(m, "t2i", rows, out_dir, strip_metadata, progress, make, {},
                lambda s: s.size or m.default_size)


def _source(m: FoundationModel, image: str | Path | Image.Image) -> tuple[Image.Image, dict[str, object],
                                                                          tuple[int, int]]:
    """The input image as RGB, its sides rounded down to the model's multiple (resized if they were not), the
    metadata fields naming it, and its size as given."""
    extra: dict[str, object] = {}
    if isinstance(image, Image.Image):
        pil = to_channels(image, 3)
    else:
        pil = to_channels(open_image(image), 3)
        extra = {"source_image": Path(image).name, "source_sha256": sha256_file(image)}
    mult = m.multiple
    w, h = original = pil.size
    if w < mult or h < mult:
        raise ConfigError(f"the image is {w}x{h}; this model needs at least {mult}x{mult}")
    size = (w // mult * mult, h // mult * mult)
    if size != (w, h):
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    return pil, extra, original


def img2img(model: FoundationModel | str | Path, image: str | Path | Image.Image, settings: Settings,
            out_dir: str | Path | None = None, *, strength: float = 0.6, strip_metadata: bool = False,
            progress: Progress | None = None) -> FoundationImages:
    """Image to image (SDEdit: Meng et al., ICLR 2022): noise the image to ``strength`` (0 keeps it, 1 ignores
    it) and denoise it toward the prompt. Sides are rounded down to the model's multiple."""
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"strength {strength:g}: use a number in (0, 1]")
    m = _model(model)
    _check(m, [settings], "img2img")
    src, extra, _ = _source(m, image)

    def make(s: Settings, seed: int) -> np.ndarray:
        return m.generate("img2img", s.prompt, negative=s.negative, steps=s.steps, guidance=s.guidance, seed=seed,
                          sampler=s.sampler, image=src, strength=strength)

    return _run(m, "img2img", [settings], out_dir, strip_metadata, progress, make, {**extra, "strength": strength},
                lambda s: src.size)


def _mask(mask: str | Path | Image.Image, size: tuple[int, int], original: tuple[int, int]) -> Image.Image:
    pil = mask if isinstance(mask, Image.Image) else open_image(mask)
    if pil.size != original:
        raise ConfigError(f"the mask is {pil.size[0]}x{pil.size[1]} but the image is {original[0]}x{original[1]}: "
                          "they must be the same size")
    arr = np.asarray(to_channels(pil, 1).resize(size, Image.Resampling.NEAREST)) > 127
    if not arr.any():
        raise ConfigError("the mask is empty: paint the area to repaint in white (black is kept)")
    return Image.fromarray((arr * 255).astype(np.uint8), mode="L")


def inpaint(model: FoundationModel | str | Path, image: str | Path | Image.Image, mask: str | Path | Image.Image,
            settings: Settings, out_dir: str | Path | None = None, *, strength: float = 1.0,
            keep_unmasked: bool = True, strip_metadata: bool = False,
            progress: Progress | None = None) -> FoundationImages:
    """Repaint the white part of ``mask`` (same size as ``image``; black is kept) to match the prompt.

    A plain checkpoint inpaints by blending its latents with the image's outside the mask at every step
    (diffusers' legacy inpainting); a dedicated inpainting checkpoint (9-channel UNet) sees the mask itself.
    Either way the VAE changes unmasked pixels a little, so ``keep_unmasked`` pastes the original back outside the
    mask (as image editors do): those pixels are then the input's exactly, before the watermark is added.
    """
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"strength {strength:g}: use a number in (0, 1]")
    m = _model(model)
    _check(m, [settings], "inpaint")
    src, extra, original = _source(m, image)
    mask_img = _mask(mask, src.size, original)
    keep = np.asarray(mask_img)[:, :, None] == 0            # (H, W, 1): True where the original stays
    base = np.asarray(src)

    def make(s: Settings, seed: int) -> np.ndarray:
        out = m.generate("inpaint", s.prompt, negative=s.negative, steps=s.steps, guidance=s.guidance, seed=seed,
                         sampler=s.sampler, image=src, mask=mask_img, strength=strength)
        if out.shape != base.shape:
            raise AtelierError(f"the model returned a {out.shape[1]}x{out.shape[0]} image for a "
                               f"{base.shape[1]}x{base.shape[0]} input")
        return np.where(keep, base, out) if keep_unmasked else out

    return _run(m, "inpaint", [settings], out_dir, strip_metadata, progress, make,
                {**extra, "strength": strength, "masked_share": f"{1 - keep.mean():.3f}",
                 "keep_unmasked": keep_unmasked}, lambda s: src.size)
