"""The *sample* and *interpolate* workflows: images from a trained generator, with provenance that says how
to make each one again (its seed, its index among the latents of that seed, its class)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from atelier import families
from atelier.api.diffusion import with_sampling
from atelier.errors import AtelierError, RunError
from atelier.imageio import encode_animation, save_image
from atelier.images import make_grid
from atelier.loaded import Generator
from atelier.provenance import log_no_metadata
from atelier.runs import Run
from atelier.utils import atomic_write_bytes

__all__ = ["SampleSet", "grid_scale", "interpolate", "load_generator", "mix_cells", "parse_seeds", "sample",
           "style_mix"]


def parse_seeds(text: str) -> list[int]:
    """``"0-3,17"`` -> ``[0, 1, 2, 3, 17]``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            if dash:
                a, b = int(lo), int(hi)
                if b < a or a < 0:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise AtelierError(f"seeds {text!r}: use numbers and ranges like 0-63 or 3,17,42") from None
    if not seeds:
        raise AtelierError("no seeds given")
    if any(s < 0 for s in seeds):
        raise AtelierError(f"seeds {text!r}: seeds are non-negative")
    return seeds


def grid_scale(resolution: int) -> int:
    """Grids of tiny images (28-32 px) are enlarged 3x so that they can be seen (and carry the watermark)."""
    return 3 if resolution <= 32 else 1


def load_generator(run: str | Path | Generator, which: str = "ema", device: str = "cpu") -> Generator:
    if isinstance(run, Generator):
        return run
    g = families.load(run, which=which, device=device)
    if not isinstance(g, Generator):
        raise RunError(f"{run} is a {g.kind} run ({g.cfg.model['name']}); this needs a generator run (a GAN or a VAE)")
    return g


@dataclass
class SampleSet:
    """Generated images and, for each, the fields that regenerate exactly it."""

    generator: Generator
    images: torch.Tensor                      # uint8 (N, C, H, W)
    fields: list[dict[str, Any]]              # per image: seed (+ n and index), class
    grid_fields: dict[str, Any]               # for a grid of them all
    nrow: int | None = None                   # grid width: one row per class for a conditional model
    names: list[str] = field(default_factory=list)

    def save_grid(self, out: str | Path, strip_metadata: bool = False) -> Path:
        g = self.generator
        grid = make_grid(self.images, nrow=self.nrow, scale=grid_scale(g.resolution))
        return save_image(grid, out, g.metadata(**self.grid_fields), strip_metadata=strip_metadata)

    def save_each(self, out_dir: str | Path, strip_metadata: bool = False) -> list[Path]:
        g, out_dir = self.generator, Path(out_dir)
        return [save_image(img, out_dir / name, g.metadata(**f), strip_metadata=strip_metadata)
                for img, name, f in zip(self.images, self.names, self.fields, strict=True)]


def sample(run: str | Path | Generator, n: int = 64, seed: int = 0, seeds: Sequence[int] | None = None,
           class_: int | None = None, which: str = "ema", device: str = "cpu", truncation: float = 1.0,
           steps: int | None = None, sampler: str | None = None, guidance: float | None = None) -> SampleSet:
    """``n`` images from ``seed`` (image i is the i-th latent of that seed), or one image per seed in ``seeds``.

    A conditional model gives ``class_`` only, or, without it, one grid row per class (n rounded down to whole
    rows); with ``seeds`` and no class it cycles through the classes. ``truncation`` (psi < 1) pulls the styles
    towards the average w (a StyleGAN-type model's more typical, less varied images). ``steps``, ``sampler`` and
    ``guidance`` choose how a diffusion model samples (default: its run's settings); other models take none.
    """
    g = with_sampling(load_generator(run, which, device), steps, sampler, guidance)
    g.check_truncation(truncation)
    if class_ is not None and not g.num_classes:
        raise AtelierError("--class needs a class-conditional model (model.num_classes > 0); this one is "
                           "unconditional")
    if class_ is not None and not 0 <= class_ < g.num_classes:
        raise AtelierError(f"--class {class_} is out of range: the model has classes 0..{g.num_classes - 1}")
    count = len(seeds) if seeds is not None else n
    nrow = None
    if class_ is not None:
        labels: torch.Tensor | None = torch.full((count,), class_, dtype=torch.long)
    elif g.num_classes and seeds is None:
        per = max(1, n // g.num_classes)
        labels, nrow, count = torch.arange(g.num_classes).repeat_interleave(per), per, per * g.num_classes
    else:
        labels = g.class_labels(None, count)
    if seeds is not None:
        z = g.latents(seeds=seeds)
        fields: list[dict[str, Any]] = [{"seed": int(s)} for s in seeds]
        names = [f"seed{s:06d}.png" for s in seeds]
        grid_fields: dict[str, Any] = {"seeds": _ranges(seeds), "n": count}
    else:
        # Per class rows, latent i of the grid is latent i of the seed: the same seed gives the same images.
        z = g.latents(count, seed)
        fields = [{"seed": seed, "n": count, "index": i} for i in range(count)]
        names = [f"seed{seed}-{i:05d}.png" for i in range(count)]
        grid_fields = {"seed": seed, "n": count}
    if labels is not None:
        for f, y in zip(fields, labels.tolist(), strict=True):
            f["class"] = int(y)
        grid_fields["classes"] = "one row per class" if nrow else (class_ if class_ is not None else "cycled")
    if truncation != 1.0:
        for f in fields:
            f["truncation"] = truncation
        grid_fields["truncation"] = truncation
    try:
        images = g.generate(z, labels=labels, psi=truncation)
    except ValueError as exc:
        raise AtelierError(str(exc)) from None
    return SampleSet(g, images, fields, grid_fields, nrow, names)


def _ranges(seeds: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (how the CLI spells them)."""
    out, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            out.append(f"{start}-{s}" if s != start else str(s))
            start = None
    return ",".join(out)


def interpolate(run: str | Path | Generator, seeds: Sequence[int], out: str | Path, frames: int = 16,
                mode: Literal["slerp", "lerp"] = "slerp", psi: float = 1.0, duration_ms: int = 80,
                which: str = "ema", strip_metadata: bool = False) -> tuple[Path, int]:
    """Walk the latent space through ``seeds``: a strip (one row per pair) or an animated ``.gif``.
    Returns (path, number of frames)."""
    out = Path(out)
    if len(seeds) < 2:
        raise AtelierError("give at least two seeds, e.g. 3,17")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".gif"):
        raise AtelierError(f"{out.name}: use a .png, .jpg, .webp or .gif file name")
    g = load_generator(run, which)
    images = g.walk(g.latents(seeds=seeds), frames, mode, psi)   # in w for a mapping network, else in z
    meta = g.metadata(workflow="interpolate", seeds=",".join(map(str, seeds)), frames=frames,
                      mode="lerp in w" if g.supports_truncation else mode, truncation=psi)
    scale = grid_scale(g.resolution)
    if out.suffix.lower() == ".gif":
        big = [im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST) for im in
               (make_grid(img[None], pad=0) for img in images)]
        atomic_write_bytes(out, encode_animation(big, meta, duration_ms=duration_ms, strip_metadata=strip_metadata))
    else:
        save_image(make_grid(images, nrow=frames, scale=scale), out, meta, strip_metadata=strip_metadata)
    if strip_metadata and g.run is not None:
        log_no_metadata(g.run.path, g.step, [out], len(images), "interpolate")
    return out, len(images)


def mix_cells(g: Generator, row_seeds: Sequence[int], col_seeds: Sequence[int], crossover: int | None = None,
              truncation: float = 1.0, class_: int | None = None) -> torch.Tensor:
    """The cells of a style-mixing grid, row by row (``len(col_seeds) + 1`` per row): an empty corner, the column
    seeds' images, then per row seed its own image and its mixes with every column seed. uint8 (N, C, H, W)."""
    if not row_seeds or not col_seeds:
        raise AtelierError("give at least one row seed and one column seed")
    rows, cols = g.latents(seeds=row_seeds), g.latents(seeds=col_seeds)
    mixed = g.mix(rows, cols, crossover, psi=truncation, labels=class_)                 # (R, C, ch, H, W)
    top = g.generate(cols, labels=class_, psi=truncation)                              # (C, ch, H, W)
    left = g.generate(rows, labels=class_, psi=truncation)                             # (R, ch, H, W)
    corner = torch.zeros_like(top[:1])  # transparent for RGBA, black otherwise: no image there
    return torch.cat([torch.cat([corner, top])] + [torch.cat([left[i : i + 1], mixed[i]]) for i in range(len(rows))])


def style_mix(run: str | Path | Generator, row_seeds: Sequence[int], col_seeds: Sequence[int], out: str | Path,
              crossover: int | None = None, truncation: float = 1.0, class_: int | None = None, which: str = "ema",
              strip_metadata: bool = False) -> Path:
    """A style-mixing grid (Karras et al. 2019, fig. 3): the top row shows the ``col_seeds`` images, the left column
    the ``row_seeds`` images, and cell [i, j] takes the coarse styles (feature sizes below ``crossover`` px,
    default 16: shape and layout) of row seed i and the fine ones (colour, texture) of column seed j."""
    g = load_generator(run, which)
    cells = mix_cells(g, row_seeds, col_seeds, crossover, truncation, class_)
    meta = g.metadata(workflow="style-mix", row_seeds=_ranges(list(row_seeds)), col_seeds=_ranges(list(col_seeds)),
                      crossover=crossover or g.default_crossover, truncation=truncation,
                      **({"class": class_} if class_ is not None else {}))
    return save_image(make_grid(cells, nrow=len(col_seeds) + 1, scale=grid_scale(g.resolution)), out, meta,
                      strip_metadata=strip_metadata)


def note_no_metadata(run: Run | None, step: int, outputs: list[Path], n: int, workflow: str) -> None:
    """--no-metadata is recorded in the run's metrics.jsonl (nothing to record without a run)."""
    if run is not None:
        log_no_metadata(run.path, step, outputs, n, workflow=workflow)
