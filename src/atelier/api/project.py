"""The *project*, *directions* and *edit-latent* workflows: a real image into a generator's latent space, and that
latent (or any other) moved along a discovered direction. The optimisation and the directions are in
:mod:`atelier.inversion`; this module reads runs and latents and writes the files, with provenance."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atelier.api.sample import grid_scale, load_generator
from atelier.errors import AtelierError
from atelier.imageio import save_image
from atelier.images import make_grid
from atelier.inversion import Directions, Projection, find_directions, has_mapping, move, psnr, render, ssim
from atelier.inversion.project import Space, dim, noise_buffers
from atelier.latent import to_uint8
from atelier.loaded import Generator
from atelier.loaded.projection import ImageInput
from atelier.provenance import log_no_metadata
from atelier.utils import atomic_write_bytes, atomic_write_text

__all__ = ["LatentStrip", "ProjectionResult", "directions", "edit_latent", "parse_amounts", "project", "read_latent"]


@dataclass
class ProjectionResult:
    """A projection and the files it was written to (none when ``out_dir`` was None)."""

    generator: Generator
    projection: Projection
    record: dict[str, Any]                    # what projection.json holds: scores, distance, settings
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def psnr(self) -> float:
        return float(self.record["psnr"])

    @property
    def ssim(self) -> float:
        return float(self.record["ssim"])


def project(run: str | Path | Generator, image: ImageInput, out_dir: str | Path | None = None,
            space: Space | None = None, steps: int = 500, *, features: str = "auto", lr: float = 0.1, seed: int = 0,
            noise: bool = True, class_: int | None = None, which: str = "ema", device: str = "cpu",
            strip_metadata: bool = False) -> ProjectionResult:
    """Project ``image`` into the run's generator (see :mod:`atelier.inversion.project`) and, with ``out_dir``, write
    ``latent.npy`` (w (w_dim,), w+ (num_ws, w_dim) or z (z_dim,)), ``reconstruction.png``, ``progress.png`` (the
    target, then the image at a few steps), ``projection.json`` (PSNR, SSIM, the distance used and its final terms)
    and, when the noise maps were optimised, ``noise.npz`` (``atelier edit-latent --noise`` reuses them)."""
    g = load_generator(run, which, device)
    if steps < 1 or steps > 100_000:
        raise AtelierError(f"steps must be in 1..100000, got {steps}")
    p = g.project(image, space, steps, features=features, lr=lr, seed=seed, noise=noise, label=class_)
    record: dict[str, Any] = {
        "space": p.space, "steps": p.steps, "seconds": round(p.seconds, 3), "start": p.start,
        "psnr": round(psnr(p.image, p.target), 3), "ssim": round(ssim(p.image[None], p.target[None]), 4),
        **p.distance, "terms": {k: round(v, 6) for k, v in p.terms.items()},
        "latent_shape": list(p.latent.shape), "noise_optimised": bool(p.noise), "seed": seed, "lr": lr,
        "model": g.cfg.model["name"], "run": str(g.run_dir) if g.run_dir else None, "step": g.step,
        "image": str(image) if isinstance(image, (str, Path)) else None,
    }
    if p.label is not None:
        record["class"] = p.label
    result = ProjectionResult(g, p, record)
    if out_dir is not None:
        result.paths = _write(result, Path(out_dir), strip_metadata)
    return result


def _write(result: ProjectionResult, out: Path, strip_metadata: bool) -> dict[str, Path]:
    g, p, record = result.generator, result.projection, result.record
    out.mkdir(parents=True, exist_ok=True)
    meta = g.metadata(workflow="project", space=p.space, steps=p.steps, psnr=record["psnr"],
                      **({"source_image": Path(record["image"]).name} if record["image"] else {}),
                      **({"class": p.label} if p.label is not None else {}))
    paths = {"latent": out / "latent.npy", "reconstruction": out / "reconstruction.png",
             "progress": out / "progress.png", "record": out / "projection.json"}
    np.save(paths["latent"], p.latent.numpy())
    save_image(p.image, paths["reconstruction"], meta, strip_metadata=strip_metadata)
    # The strip starts with the target (the user's picture, as the generator's size) and says so in its metadata.
    frames = torch.stack([p.target] + [img for _, img in p.snapshots])
    strip_meta = {**meta, "workflow": "project-progress", "frames": "target, then steps "
                  + ",".join(str(s) for s, _ in p.snapshots)}
    save_image(make_grid(frames, nrow=len(frames), scale=grid_scale(g.resolution)), paths["progress"], strip_meta,
               strip_metadata=strip_metadata)
    if p.noise:
        paths["noise"] = out / "noise.npz"
        buf = io.BytesIO()
        np.savez(buf, **{k: v.numpy() for k, v in p.noise.items()})  # type: ignore[arg-type]  # (numpy's stub)
        atomic_write_bytes(paths["noise"], buf.getvalue())
    atomic_write_text(paths["record"], json.dumps({**record, "files": {k: v.name for k, v in paths.items()}},
                                                  indent=2) + "\n")
    if strip_metadata and g.run is not None:
        log_no_metadata(g.run.path, g.step, [paths["reconstruction"], paths["progress"]], 2, "project")
    return paths


def directions(run: str | Path | Generator, method: str = "sefa", k: int | None = None, seed: int = 0,
               which: str = "ema") -> Directions:
    """Latent directions of the run's generator: ``sefa``, ``pca`` or ``class`` (see
    :mod:`atelier.inversion.directions`); strongest first."""
    g = load_generator(run, which)
    return find_directions(g.network, method, k, seed)


def read_latent(g: Generator, latent: str | Path | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, str]:
    """A latent file (``.npy``) or array checked against the generator: (latent, space). A mapping network takes
    w (w_dim,) / (1, w_dim) or w+ (num_ws, w_dim); any other generator z (z_dim,) / (1, z_dim)."""
    if isinstance(latent, (str, Path)):
        path = Path(latent)
        if not path.is_file():
            raise AtelierError(f"latent not found: {path}")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            raise AtelierError(f"{path}: not a numeric .npy array (write one with numpy.save)") from None
        t = torch.from_numpy(np.asarray(arr, dtype=np.float32))
    else:
        t = torch.as_tensor(latent, dtype=torch.float32)
    net = g.network
    if has_mapping(net):
        num_ws, w_dim = dim(net, "num_ws"), dim(net, "w_dim")
        if t.shape in ((w_dim,), (1, w_dim)):
            return t.reshape(w_dim), "w"
        if t.shape == (num_ws, w_dim):
            return t, "w+"
        want = f"w ({w_dim},) or w+ ({num_ws}, {w_dim})"
    else:
        if t.shape in ((g.z_dim,), (1, g.z_dim)):
            return t.reshape(g.z_dim), "z"
        want = f"z ({g.z_dim},)"
    raise AtelierError(f"wrong latent shape {tuple(t.shape)}: this generator takes {want}")


def parse_amounts(text: str, frames: int = 5) -> list[float]:
    """``"-2..2"`` -> ``frames`` evenly spaced amounts; ``"-2,0,1.5"`` -> those."""
    try:
        if ".." in text:
            lo, hi = (float(v) for v in text.split(".."))
            if frames < 2:
                raise AtelierError(f"frames must be at least 2 for a range of amounts, got {frames}")
            return [round(float(v), 6) for v in np.linspace(lo, hi, frames)]
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AtelierError(f"amount {text!r}: use a range like -2..2 or a list like -2,0,2") from None
    if not values:
        raise AtelierError("no amounts given")
    return values


@dataclass
class LatentStrip:
    images: torch.Tensor          # uint8 (T, C, H, W), one per amount
    amounts: list[float]
    directions: Directions
    index: int
    path: Path | None = None


@torch.no_grad()
def edit_latent(run: str | Path | Generator, latent: str | Path | np.ndarray | torch.Tensor, direction: int,
                amounts: Sequence[float] | str = (-2, -1, 0, 1, 2), method: str = "sefa", out: str | Path | None = None,
                *, class_: int | None = None, noise: str | Path | None = None, seed: int = 0, which: str = "ema",
                strip_metadata: bool = False) -> LatentStrip:
    """Move ``latent`` along direction ``direction`` (0 = the strongest) of ``method`` by each amount (in standard
    deviations of the sampled latents along it) and render the strip; amount 0 is the latent's own image.
    ``noise``: a projection's ``noise.npz``; ``class_``: the class of a conditional z-space model."""
    g = load_generator(run, which)
    lat, space = read_latent(g, latent)
    values = parse_amounts(amounts) if isinstance(amounts, str) else [float(a) for a in amounts]
    if not values:
        raise AtelierError("no amounts given")
    if space == "z" and g.num_classes and class_ is None:
        raise AtelierError("this model is class-conditional: give the class (--class; a projection's "
                           "projection.json records it)")
    if class_ is not None and not 0 <= class_ < g.num_classes:
        raise AtelierError(f"class {class_} is out of range for this model")
    dirs = find_directions(g.network, method, None, seed)
    dirs.check(direction)
    maps = _read_noise(g, noise) if noise is not None else None
    moved = move(lat, dirs, direction, torch.tensor(values))                  # (T, D) or (T, L, D)
    images = torch.cat([to_uint8(render(g.network, chunk.to(g.device), space, class_, maps).clamp(-1, 1))
                        for chunk in moved.split(64)])
    strip = LatentStrip(images, values, dirs, direction)
    if out is not None:
        meta = g.metadata(workflow="edit-latent", method=method, direction=direction, space=space,
                          amounts=",".join(f"{a:g}" for a in values),
                          **({"latent": Path(latent).name} if isinstance(latent, (str, Path)) else {}))
        strip.path = save_image(make_grid(images, nrow=len(values), scale=grid_scale(g.resolution)), out, meta,
                                strip_metadata=strip_metadata)
        if strip_metadata and g.run is not None:
            log_no_metadata(g.run.path, g.step, [strip.path], 1, "edit-latent")
    return strip


def _read_noise(g: Generator, path: str | Path) -> dict[str, torch.Tensor]:
    want = noise_buffers(g.network)
    if not Path(path).is_file():
        raise AtelierError(f"noise maps not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        maps = {k: torch.from_numpy(data[k]).float().to(g.device) for k in data.files}
    if set(maps) != set(want) or any(maps[k].shape != want[k].shape for k in want):
        raise AtelierError(f"{path} does not hold this generator's noise maps (write them with atelier project)")
    return maps
