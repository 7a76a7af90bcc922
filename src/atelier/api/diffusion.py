"""The diffusion workflows: sampling settings (sampler, steps, guidance), *inpaint* (RePaint) and *edit* (SDEdit)
of an image file, and *export* to diffusers' own pipeline folder.

Input images are read as the model's channels and fitted to its square (short side resized, centre crop),
the mask the same way with nearest-neighbour resampling; outputs are written through :mod:`atelier.imageio`
with the provenance of every atelier image (the workflow, its seed and settings, the input's name and hash).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from atelier import families
from atelier.api.edit import RegionEdit, register_edit
from atelier.diffusion import load_mask, rect_mask
from atelier.errors import AtelierError, ImageError, RunError
from atelier.imageio import save_image
from atelier.images import fit_to_square, open_image, to_channels
from atelier.loaded import DiffusionModel, Generator
from atelier.provenance import log_no_metadata

__all__ = ["DiffusionResult", "Inpaint", "export_diffusers", "inpaint", "load_diffusion", "sdedit", "with_sampling"]


def with_sampling(g: Generator, steps: int | None = None, sampler: str | None = None,
                  guidance: float | None = None) -> Generator:
    """``g`` sampling with these settings; a clear error when they are set for a model that has none (a GAN)."""
    if steps is None and sampler is None and guidance is None:
        return g
    if not isinstance(g, DiffusionModel):
        given = [f"--{k}" for k, v in (("steps", steps), ("sampler", sampler), ("guidance", guidance))
                 if v is not None]
        raise AtelierError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to diffusion runs; "
                           f"{g.run_dir or 'this model'} is a {g.cfg.model['name']} run")
    return g.with_sampling(steps, sampler, guidance)


def load_diffusion(run: str | Path | DiffusionModel, which: str = "ema", device: str = "cpu") -> DiffusionModel:
    if isinstance(run, DiffusionModel):
        return run
    m = families.load(run, which=which, device=device)
    if not isinstance(m, DiffusionModel):
        raise RunError(f"{run} is a {m.cfg.model['name']} ({m.kind}) run; inpainting and editing need a diffusion "
                       "run (model.name: diffusion)")
    return m


def _read(path: str | Path, m: DiffusionModel, what: str) -> tuple[torch.Tensor, tuple[int, int], str]:
    """uint8 (1, C, R, R) of the image file fitted to the model, its original (W, H), and its sha256."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{what} not found: {path}")
    data = path.read_bytes()
    img = open_image(data, name=str(path))
    size = img.size
    fitted = fit_to_square(to_channels(img, m.channels), m.resolution)
    arr = np.asarray(fitted, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None], size, hashlib.sha256(data).hexdigest()


def _mask(m: DiffusionModel, size: tuple[int, int], mask: str | Path | None, rect: str | None) -> torch.Tensor:
    """The hole (1, 1, R, R): a mask file of the input's size (white = fill), or a rectangle in input pixels."""
    if (mask is None) == (rect is None):
        raise AtelierError("give a mask image (--mask) or a rectangle (--rect x0,y0,x1,y1), one of the two")
    w, h = size
    if mask is not None:
        if not Path(mask).is_file():
            raise ImageError(f"mask not found: {mask}")
        hole = load_mask(mask, h, w)
    else:
        hole = rect_mask(rect or "", h, w)
    if (w, h) == (m.resolution, m.resolution):
        return hole
    # The same fit as the image, nearest-neighbour so that the mask stays binary.
    pil = Image.fromarray(hole[0, 0].numpy().astype(np.uint8) * 255)
    fitted = ImageOps.fit(pil, (m.resolution, m.resolution), method=Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(fitted) > 127).view(1, 1, m.resolution, m.resolution)


@dataclass
class DiffusionResult:
    path: Path
    image: torch.Tensor               # uint8 (C, R, R), what was written (before the watermark)
    input: torch.Tensor               # uint8 (C, R, R), the input as the model saw it
    fields: dict[str, Any]            # the provenance fields of the workflow
    resized_from: tuple[int, int] | None = None   # the input's (W, H) when it was not the model's size
    mask: torch.Tensor | None = None  # bool (1, R, R), inpainting's hole


def _finish(m: DiffusionModel, run: Any, out: str | Path, image: torch.Tensor, x: torch.Tensor,
            size: tuple[int, int], fields: dict[str, Any], strip_metadata: bool,
            mask: torch.Tensor | None = None) -> DiffusionResult:
    out = Path(out)
    path = save_image(image[0], out, m.metadata(**fields), strip_metadata=strip_metadata)
    if strip_metadata and m.run is not None:
        log_no_metadata(m.run.path, m.step, [path], 1, fields["workflow"])
    resized = None if size == (m.resolution, m.resolution) else size
    return DiffusionResult(path, image[0], x[0], fields, resized, None if mask is None else mask[0])


def _labels(m: DiffusionModel, class_: int | None) -> int | None:
    if class_ is None:
        return None
    if not m.num_classes:
        raise AtelierError("--class needs a class-conditional model (model.num_classes > 0); this one is "
                           "unconditional")
    if not 0 <= class_ < m.num_classes:
        raise AtelierError(f"--class {class_} is out of range: the model has classes 0..{m.num_classes - 1}")
    return class_


def inpaint(run: str | Path | DiffusionModel, image: str | Path, out: str | Path, mask: str | Path | None = None,
            rect: str | None = None, seed: int = 0, steps: int = 50, jump_length: int = 5, jump_n_sample: int = 4,
            class_: int | None = None, guidance: float | None = None, which: str = "ema", device: str = "cpu",
            strip_metadata: bool = False) -> DiffusionResult:
    """Fill the hole of ``image`` (a mask file, white = fill, or ``rect`` "x0,y0,x1,y1") by RePaint resampling
    (Lugmayr et al. 2022) and write the result to ``out``; the pixels outside the hole are the input's."""
    m = load_diffusion(run, which, device)
    x, size, sha = _read(image, m, "image")
    hole = _mask(m, size, mask, rect)
    m = m.with_sampling(guidance=guidance) if guidance is not None else m
    result = m.inpaint(x, hole, seed=seed, steps=steps, jump_length=jump_length, jump_n_sample=jump_n_sample,
                       labels=_labels(m, class_))
    fields: dict[str, Any] = {"workflow": "inpaint", "seed": seed, "steps": steps, "jump_length": jump_length,
                              "jump_n_sample": jump_n_sample, "input": Path(image).name, "input_sha256": sha,
                              "mask": Path(mask).name if mask is not None else f"rect {rect}",
                              "sampler": "repaint"}
    if class_ is not None:
        fields["class"] = class_
    return _finish(m, run, out, result, x, size, fields, strip_metadata, hole)


def sdedit(run: str | Path | DiffusionModel, image: str | Path, out: str | Path, strength: float = 0.6,
         seed: int = 0, steps: int | None = None, sampler: str | None = None, class_: int | None = None,
         guidance: float | None = None, which: str = "ema", device: str = "cpu",
         strip_metadata: bool = False) -> DiffusionResult:
    """SDEdit (Meng et al. 2022): noise ``image`` to ``strength`` of the chain and denoise it into the model's
    domain; ``steps`` counts the full chain (about strength x steps run)."""
    if not 0.0 < strength <= 1.0:
        raise AtelierError(f"--strength must be in (0, 1], got {strength}")
    m = load_diffusion(run, which, device).with_sampling(sampler=sampler, guidance=guidance)
    x, size, sha = _read(image, m, "image")
    result = m.edit(x, strength=strength, seed=seed, steps=steps, labels=_labels(m, class_))
    fields: dict[str, Any] = {"workflow": "edit", "seed": seed, "strength": strength, "steps": steps or m.steps,
                              "input": Path(image).name, "input_sha256": sha}
    if class_ is not None:
        fields["class"] = class_
    return _finish(m, run, out, result, x, size, fields, strip_metadata)


def export_diffusers(run: str | Path, out: str | Path, sampler: str | None = None, which: str = "ema",
                     overwrite: bool = False) -> Path:
    """A diffusion run's denoiser (the EMA by default) as diffusers' pipeline folder, with the scheduler of
    ``sampler`` (default: the run's)."""
    m = load_diffusion(run, which).with_sampling(sampler=sampler)
    return m.export_diffusers(out, overwrite=overwrite)


class Inpaint(RegionEdit):
    """The region edit ``inpaint`` (:func:`atelier.edit_region`, ``atelier edit-region --edit inpaint``): the frame
    is fitted to the diffusion model's square, the masked region filled by RePaint there, and the result scaled
    back; the region edit then keeps every pixel outside the mask exactly. Options: ``seed``, ``steps``,
    ``jump_length``, ``jump_n_sample``."""

    kind, model_kind, model_class, needs = "inpaint", "generator", DiffusionModel, "diffusion"

    def propose(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        m = self.model
        assert isinstance(m, DiffusionModel)
        r, (h, w) = m.resolution, image.shape[:2]
        small = Image.fromarray(image).resize((r, r), Image.Resampling.LANCZOS)
        # A model pixel is filled where any frame pixel under it is (BOX averages, > 0 keeps every touched pixel).
        hole = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((r, r), Image.Resampling.BOX)) > 0
        arr = np.asarray(to_channels(small, m.channels), dtype=np.uint8)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]
        o = self.options
        out = m.inpaint(x, torch.from_numpy(hole)[None, None], seed=int(o.get("seed", 0)),
                        steps=int(o.get("steps", 50)), jump_length=int(o.get("jump_length", 5)),
                        jump_n_sample=int(o.get("jump_n_sample", 4)))
        filled = out[0].permute(1, 2, 0).numpy()
        pil = Image.fromarray(filled[:, :, 0] if filled.shape[2] == 1 else filled[:, :, :3])
        return np.asarray(pil.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))

    def fields(self) -> dict[str, Any]:
        o = self.options
        return {**super().fields(), "seed": int(o.get("seed", 0)), "steps": int(o.get("steps", 50)),
                "sampler": "repaint"}


register_edit(Inpaint)
