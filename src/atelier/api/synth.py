"""The *synth* workflow: a trained generator -> a labelled synthetic dataset atelier's own loader reads.

    from atelier.api.synth import synthesize, write_npz
    s = synthesize(atelier.load("runs/mnist-cgan"), per_class=6000, seed=0)   # 60,000 balanced images
    write_npz(s, "synth.npz")          # then: atelier data info synth.npz / data.source: synth.npz

Labels come from the model when it is class-conditional (balanced: image i gets class i mod K, so
any prefix of the file is balanced too). An unconditional model's images are labelled by the domain
evaluator's classifier (digits / fashion, :mod:`atelier.metrics.evaluators`) when its run was trained
on MNIST or Fashion-MNIST; ``per_class`` then keeps the first images the classifier puts in each
class. Otherwise no labels are written. ``label_source`` says which, in the file and on screen.

Outputs: an ``.npz`` (``images`` uint8 N x H x W or N x H x W x C, ``labels`` int64, ``classes`` and a
``provenance`` JSON string built by :func:`atelier.provenance.build_metadata`), or a folder tree with one
sub-folder per class (``0_T-shirt-top/``, ...) of PNGs written through :func:`atelier.imageio.save_image`
(metadata and, from 128 px, the watermark in each file) plus a hidden ``.atelier-synth.json``.
Both are written to a temporary name and renamed into place: an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from atelier.data import class_names
from atelier.data.spec import license_of
from atelier.errors import ConfigError, DataError
from atelier.imageio import save_image
from atelier.metrics.evaluators import EVALUATORS, auto_evaluator, load_evaluator
from atelier.provenance import build_metadata
from atelier.utils import atomic_write, atomic_write_text, temp_dir

if TYPE_CHECKING:
    from atelier.loaded import Generator

__all__ = ["SynthSet", "check_output", "output_format", "synthesize", "write_folder", "write_npz"]

# An unconditional model may rarely draw some class: per_class gives up after this many draws per image asked.
MAX_DRAWS_PER_IMAGE = 20


@dataclass
class SynthSet:
    images: torch.Tensor                 # uint8 (N, C, H, W)
    labels: torch.Tensor | None          # int64 (N,), or None
    classes: tuple[str, ...]             # class names, index = label
    label_source: str                    # "model (class-conditional)", "classifier digits (...)" or "none (...)"
    provenance: dict[str, str] = field(default_factory=dict)


def _progress(total: int, desc: str, progress: bool | None) -> tqdm:
    tty = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, disable=not tty)


def _check_counts(n: int | None, per_class: int | None) -> None:
    if (n is None) == (per_class is None):
        raise ConfigError("give the number of images (--n N) or images per class (--per-class K), one of the two")
    for what, v in (("--n", n), ("--per-class", per_class)):
        if v is not None and v < 1:
            raise ConfigError(f"{what} must be a positive number of images, got {v}")


def _classifier(g: Generator, device: Any) -> tuple[Any, str]:
    """The domain evaluator that can label this run's images, or (None, why not)."""

    name = auto_evaluator(g.cfg.data.source)
    if not EVALUATORS[name].datasets:  # the fallback (or any evaluator not trained on this data set): no labels
        return None, (f"none ({g.cfg.data.source} is not MNIST or Fashion-MNIST, so atelier has no classifier "
                      "for it)")
    ev = load_evaluator(name, device=device)
    d = g.cfg.data
    try:
        ev.check(d.channels, d.resolution, d.resolution, f"run {g.run_dir.name if g.run_dir else '(in memory)'}")
    except DataError as exc:
        return None, f"none (the {name} classifier cannot read these images: {exc})"
    return ev, f"classifier {name} (atelier's evaluator, weights sha256 {ev.sha256[:16]}...)"


def synthesize(g: Generator, n: int | None = None, *, per_class: int | None = None, seed: int = 0,
               batch_size: int = 256, labels: bool = True, progress: bool | None = None) -> SynthSet:
    """Generate ``n`` images (or ``per_class`` per class) from latents seeded by ``seed``, with labels.

    The same generator, counts and seed give the same images and labels; with ``n`` the images are
    ``g.sample(n, seed)``'s (those of ``atelier sample --n N --seed S``). ``labels=False`` skips labelling an
    unconditional model's images (a conditional model's labels are what it was asked for: always kept).
    """

    _check_counts(n, per_class)
    k = g.num_classes
    if k:
        total = per_class * k if per_class is not None else n
        assert total is not None
        y = torch.arange(total) % k                                   # balanced, and so is every prefix
        chunks = []
        with _progress(total, "synth", progress) as bar:
            for zc, yc in zip(g.latents(total, seed=seed).split(batch_size), y.split(batch_size), strict=True):
                chunks.append(g.generate(zc, batch_size=batch_size, labels=yc))
                bar.update(len(zc))
        out = SynthSet(torch.cat(chunks), y, class_names(g.cfg.data.source, k),
                       "model (class-conditional; balanced labels)")
    else:
        ev, source = _classifier(g, g.device) if (labels or per_class is not None) else (None, "none (not asked)")
        if per_class is not None and ev is None:
            raise ConfigError(f"--per-class needs class labels, and this run has none: its model is unconditional "
                              f"and its label source is {source}. Use --n N instead")
        images, got = _unconditional(g, ev, n, per_class, seed, batch_size, progress)
        classes = class_names(g.cfg.data.source, ev.network.num_classes) if ev is not None else ()
        out = SynthSet(images, got, classes, source)
    fields = g.metadata(workflow="synth", seed=seed, n=len(out.images), labels=out.label_source,
                        training_data=g.cfg.data.source, training_data_license=license_of(g.cfg.data.source))
    if per_class is not None:
        fields["per_class"] = per_class
    out.provenance = build_metadata(fields)
    return out


def _unconditional(g: Generator, ev: Any, n: int | None, per_class: int | None, seed: int, batch_size: int,
                   progress: bool | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Generate, label each batch with ``ev`` (if any) and, for ``per_class``, keep what each class still needs."""
    if per_class is None:
        assert n is not None
        batches = iter(g.latents(n, seed=seed).split(batch_size))
        want = n
    else:
        # Rejection by the classifier's label: an open-ended stream of latents from the same seed.
        stream = torch.Generator().manual_seed(seed)
        num = ev.network.num_classes
        want = per_class * num
        batches = iter(lambda: torch.randn(batch_size, g.z_dim, generator=stream), None)
        have = torch.zeros(num, dtype=torch.long)
    kept_x, kept_y = [], []
    drawn, count = 0, 0
    with _progress(want, "synth", progress) as bar:
        while count < want:
            if per_class is not None and drawn >= want * MAX_DRAWS_PER_IMAGE:
                short = ", ".join(str(c) for c in range(num) if have[c] < per_class)
                raise ConfigError(f"the model drew {drawn:,} images but class(es) {short} stayed under {per_class} "
                                  "each: it rarely makes them. Lower --per-class or use --n")
            z = next(batches)
            x = g.generate(z, batch_size=batch_size)
            drawn += len(z)
            y = ev(x).logits.argmax(1) if ev is not None else None
            if per_class is not None and y is not None:  # (per_class comes with a classifier)
                keep = torch.zeros(len(z), dtype=torch.bool)
                for i, c in enumerate(y.tolist()):
                    if have[c] < per_class:
                        keep[i], have[c] = True, have[c] + 1
                x, y = x[keep], y[keep]
            kept_x.append(x)
            if y is not None:
                kept_y.append(y)
            count += len(x)
            bar.update(len(x))
    return torch.cat(kept_x), (torch.cat(kept_y).long() if kept_y else None)


# ------------------------------------------------------------------------------------------------ output
def output_format(out: str | Path, fmt: str | None = None) -> str:
    """``npz`` for a ``.npz`` path, ``folder`` for a path without a suffix; ``fmt`` forces one."""
    out = Path(out)
    if fmt is not None:
        if fmt not in ("npz", "folder"):
            raise ConfigError(f"unknown format {fmt!r}; use npz or folder")
        if fmt == "npz" and out.suffix.lower() != ".npz":
            raise ConfigError(f"--format npz writes a .npz file: name it like {out.with_suffix('.npz')}")
        return fmt
    if out.suffix.lower() == ".npz":
        return "npz"
    if out.suffix:
        raise ConfigError(f"--out {out}: give a .npz file or a folder name without a suffix (or --format folder)")
    return "folder"


def check_output(out: str | Path, force: bool = False, fmt: str | None = None) -> str:
    """Refuse an output that exists (unless ``force``) or cannot be written, before any work is done.

    Returns the output format (see :func:`output_format`).
    """
    out = Path(out)
    fmt = output_format(out, fmt)
    if out.exists() or out.is_symlink():
        if not force:
            raise ConfigError(f"{out} already exists; pass --force to replace it, or choose another --out")
        if out.is_dir() != (fmt == "folder"):
            raise ConfigError(f"{out} exists and is a {'folder' if out.is_dir() else 'file'}; --force replaces "
                              f"only a {'folder' if fmt == 'folder' else 'file'}: remove it yourself or choose "
                              "another --out")
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder for --out {out}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write into {parent} (permission denied); choose another --out")
    return fmt


def write_npz(s: SynthSet, out: str | Path, strip_metadata: bool = False) -> Path:
    """``images`` uint8 N x H x W (gray) or N x H x W x C, ``labels`` int64, ``classes``, ``provenance``
    (left out with ``strip_metadata``)."""

    out = Path(out)
    arr = s.images.permute(0, 2, 3, 1).contiguous().numpy()                 # (N, H, W, C)
    arrays: dict[str, np.ndarray] = {"images": arr[..., 0] if arr.shape[-1] == 1 else arr}
    if s.labels is not None:
        arrays["labels"] = s.labels.numpy().astype(np.int64)
        arrays["classes"] = np.array(s.classes, dtype=np.str_)
    if not strip_metadata:
        arrays["provenance"] = np.array(json.dumps(s.provenance, sort_keys=True), dtype=np.str_)

    atomic_write(out, lambda fh: np.savez_compressed(fh, **arrays))  # type: ignore[arg-type]  # numpy's stub
    return out


def _folder_name(i: int, name: str, width: int) -> str:
    # The index prefix keeps label order when atelier's folder loader sorts the class folders by name.
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    return f"{i:0{width}d}" + (f"_{slug}" if slug and slug != str(i) else "")


def write_folder(s: SynthSet, out: str | Path, progress: bool | None = None, strip_metadata: bool = False) -> Path:
    """One sub-folder per class (or a flat folder without labels) of PNGs, each through save_image."""

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(out.parent, prefix=f".{out.name}.")
    try:
        width = len(str(max(len(s.classes) - 1, 0)))
        dirs = [_folder_name(i, c, width) for i, c in enumerate(s.classes)]
        arr = s.images.permute(0, 2, 3, 1).numpy()
        meta = {k: v for k, v in s.provenance.items() if k not in ("DigitalSourceType",)}
        with _progress(len(arr), "writing", progress) as bar:
            for i, a in enumerate(arr):
                sub = dirs[int(s.labels[i])] if s.labels is not None else ""
                fields = {**meta, "index": i}
                if s.labels is not None:
                    fields["label"] = int(s.labels[i])
                save_image(a[..., 0] if a.shape[-1] == 1 else a, tmp / sub / f"{i:06d}.png", fields,
                           strip_metadata=strip_metadata)
                bar.update(1)
        atomic_write_text(tmp / ".atelier-synth.json",
                          json.dumps({"n": len(arr), "classes": list(s.classes), "folders": dirs,
                                      "label_source": s.label_source,
                                      "provenance": None if strip_metadata else s.provenance}, indent=2))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
