"""What a data source holds, before training on it: ``atelier data info``.

For a folder or zip every file is decoded once at its own size: how many images, their sizes and
modes, how they use alpha (an alpha channel at all; any transparent pixel; fully opaque), how many
are in colour, the class sub-folders, and duplicates:

* **exact**: the same decoded pixels (RGBA, with the colour of fully transparent pixels ignored, as
  no viewer shows it), whatever the file format or name;
* **near**: the root-mean-square difference of 16x16 colour thumbnails (box-filtered with
  premultiplied alpha, composited over white as a viewer shows them; values in [0, 1]) is at most
  :data:`NEAR_THRESHOLD`. A thumbnail distance catches re-encodes, small resizes and small colour
  edits, the way a perceptual hash does (e.g. Zauner 2010, "Implementation and benchmarking of
  perceptual image hash functions"), but with a graded distance that can be thresholded and shown.

The near-duplicate search compares every pair (chunked matrix products): ~0.3 s for 4,000 images,
and it is skipped above :data:`MAX_NEAR` images unless asked for. ``.npz`` and named datasets are
described from their arrays.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from atelier.data import files
from atelier.data.files import _labels_from_parents
from atelier.data.sources import open_source
from atelier.data.spec import expand_source, parse_spec, source_license
from atelier.errors import DataError, ImageError
from atelier.images import composite, has_alpha, open_image, to_channels

__all__ = ["MAX_NEAR", "NEAR_THRESHOLD", "DataReport", "data_info", "format_report", "near_duplicates"]

THUMB = 16
# RMS thumbnail distance (0..1) at or below which two images count as near duplicates. Measured on 25 emoji
# (128 px): a JPEG re-encode over white (q 75) stays within 0.009 of its image, a 90% resize within 0.015, +4%
# brightness within 0.023; +10% brightness reaches 0.056 and a 2 px shift 0.083 (not near duplicates here).
# Different emoji this close are skin-tone variants of one drawing or e.g. the medium and large black squares
# (0.017): pictures a person would also call near duplicates.
NEAR_THRESHOLD = 0.025
MAX_NEAR = 50_000


@dataclass
class DataReport:
    source: str
    kind: str                                   # folder | zip | npz | named
    n_files: int
    n_images: int
    skipped: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)        # "WxH" -> count, most common first
    short_side: tuple[int, int, int] = (0, 0, 0)               # min, median, max of min(W, H)
    modes: dict[str, int] = field(default_factory=dict)        # Pillow mode (or array layout) -> count
    with_alpha_channel: int = 0                 # images that can hold transparency (alpha band, palette key)
    with_transparency: int = 0                  # images with at least one pixel below alpha 255
    fully_opaque: int = 0                       # images whose every pixel is opaque (or that have no alpha)
    colour: int = 0                             # images that are not gray (R = G = B everywhere)
    classes: dict[str, int] = field(default_factory=dict)      # class folder -> count (empty: unlabelled)
    exact_duplicates: list[list[str]] = field(default_factory=list)
    near_duplicates: list[tuple[str, str, float]] = field(default_factory=list)
    near_threshold: float = NEAR_THRESHOLD
    near_checked: bool = True
    sampled: bool = False                       # statistics from a random sample of the files
    license: str = ""

    @property
    def n_described(self) -> int:
        """The images the statistics are of: all readable ones, or the sample's."""
        return sum(self.modes.values())

    @property
    def transparency_share(self) -> float:
        return self.with_transparency / max(self.n_described, 1)

    @property
    def opaque_share(self) -> float:
        return self.fully_opaque / max(self.n_described, 1)

    @property
    def colour_share(self) -> float:
        return self.colour / max(self.n_described, 1)

    @property
    def median_side(self) -> int:
        return self.short_side[1]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(n_described=self.n_described, transparency_share=self.transparency_share,
                   opaque_share=self.opaque_share, colour_share=self.colour_share)
        return out


@dataclass
class _Facts:
    name: str
    size: tuple[int, int]
    mode: str
    alpha_channel: bool
    transparent: bool
    colour: bool
    digest: bytes
    thumb: np.ndarray  # float32 (THUMB * THUMB * 3,)


def _facts(name: str, img: Image.Image, mode: str, alpha_channel: bool) -> _Facts:

    rgba = to_channels(img, 4)
    arr = np.asarray(rgba)
    alpha = arr[..., 3]
    key = arr.copy()
    key[alpha == 0, :3] = 0  # the colour under a fully transparent pixel is invisible: not part of identity
    digest = hashlib.sha256(f"{arr.shape[1]}x{arr.shape[0]}".encode() + key.tobytes()).digest()
    small = np.asarray(rgba.resize((THUMB, THUMB), Image.Resampling.BOX))  # premultiplied by Pillow
    thumb = composite(small).astype(np.float32) / 255.0  # as shown over white: a flattened copy is a near duplicate
    rgb = arr[..., :3]
    colour = not bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    return _Facts(name, (arr.shape[1], arr.shape[0]), mode, alpha_channel, bool(alpha.min() < 255), colour, digest,
                  thumb.reshape(-1))


def _file_items(path: Path) -> tuple[str, list[tuple[str, Callable[[], bytes]]], Callable[[], None]]:

    if path.is_dir():
        listed = files.list_folder(path)
        return "folder", [(p.relative_to(path).as_posix(), p.read_bytes) for p in listed], lambda: None
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path} is not a readable zip file ({exc})") from None
    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        return lambda: zf.read(info)

    return "zip", [(i.filename, reader(i)) for i in files.zip_members(zf)], zf.close


def _scan_files(items: list[tuple[str, Callable[[], bytes]]]) -> tuple[list[_Facts], list[str]]:

    facts, skipped = [], []
    for name, read in items:
        try:
            data = read()
            if not data:
                raise ImageError(f"{name} is empty")
            img = open_image(data, name=name)
            facts.append(_facts(name, img, img.mode, has_alpha(img)))
        except (ImageError, zipfile.BadZipFile, OSError, EOFError):
            skipped.append(name)
    return facts, skipped


def _scan_arrays(images: np.ndarray, names: list[str]) -> list[_Facts]:
    """uint8 ``(N, H, W, C)`` arrays (an .npz or a named dataset) described like files."""
    c = images.shape[-1]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    out = []
    for name, a in zip(names, images, strict=True):
        img = Image.fromarray(a[..., 0] if c == 1 else a)
        out.append(_facts(name, img, f"{mode} (array)", c == 4))
    return out


def near_duplicates(thumbs: np.ndarray, names: list[str], threshold: float = NEAR_THRESHOLD,
                    chunk: int = 2048) -> list[tuple[str, str, float]]:
    """Pairs ``(a, b, distance)`` whose RMS thumbnail distance is at most ``threshold``, closest first."""
    x = torch.from_numpy(np.ascontiguousarray(thumbs, dtype=np.float32))
    n, dim = x.shape
    sq = (x * x).sum(1)
    pairs = []
    for start in range(0, n, chunk):
        block = x[start : start + chunk]
        # ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, only for j > i (each pair once).
        d2 = (sq[start : start + chunk, None] + sq[None, :] - 2.0 * block @ x.T).clamp_min_(0) / dim
        rows = torch.arange(start, start + len(block))[:, None]
        hit = (d2 <= threshold**2) & (torch.arange(n)[None, :] > rows)
        for i, j in hit.nonzero().tolist():
            pairs.append((names[start + i], names[j], round(float(d2[i, j].sqrt()), 4)))
    return sorted(pairs, key=lambda p: (p[2], p[0], p[1]))


def _summarise(report: DataReport, facts: list[_Facts], near: bool | None, threshold: float) -> DataReport:
    sizes = Counter(f"{w}x{h}" for w, h in (f.size for f in facts))
    report.sizes = dict(sizes.most_common())
    short = sorted(min(f.size) for f in facts)
    if short:
        report.short_side = (short[0], short[len(short) // 2], short[-1])
    report.modes = dict(Counter(f.mode for f in facts).most_common())
    report.with_alpha_channel = sum(f.alpha_channel for f in facts)
    report.with_transparency = sum(f.transparent for f in facts)
    report.fully_opaque = len(facts) - report.with_transparency
    report.colour = sum(f.colour for f in facts)
    groups: dict[bytes, list[str]] = {}
    for f in facts:
        groups.setdefault(f.digest, []).append(f.name)
    report.exact_duplicates = [g for g in groups.values() if len(g) > 1]
    report.near_threshold = threshold
    report.near_checked = bool(near) if near is not None else len(facts) <= MAX_NEAR
    if report.near_checked and facts:
        exact = {frozenset((a, b)) for g in report.exact_duplicates for a in g for b in g if a != b}
        pairs = near_duplicates(np.stack([f.thumb for f in facts]), [f.name for f in facts], threshold)
        report.near_duplicates = [p for p in pairs if frozenset(p[:2]) not in exact]  # exact ones listed already
    return report


def _classes(names: list[str]) -> dict[str, int]:

    labels, classes = _labels_from_parents(names)
    if labels is None:
        return {}
    counts = np.bincount(labels, minlength=len(classes))
    return {c: int(k) for c, k in zip(classes, counts, strict=True)}


def data_info(source: str, *, near: bool | None = None, threshold: float = NEAR_THRESHOLD,
              sample: int | None = None, seed: int = 0) -> DataReport:
    """Describe a data source (see the module docstring). ``near``: search near duplicates (None: when at
    most :data:`MAX_NEAR` images); ``sample``: describe a seeded random sample of that many files only
    (the counts of files and of files per class folder stay exact; shares are the sample's)."""

    name, split = parse_spec(expand_source(source))
    if split is not None:
        ds = open_source(source, channels=1, resolution=28)
        images = ds.images.permute(0, 2, 3, 1).numpy()
        labels = ds.labels.tolist() if ds.labels is not None else None
        tags = [ds.classes[int(y)] if ds.classes else str(y) for y in (labels or [0] * len(images))]
        names = [f"{t}/{i}" for i, t in enumerate(tags)]
        report = DataReport(ds.name, "named", len(images), len(images), license=ds.license)
        return _from_arrays(report, images, names, near, threshold, sample, seed, labels, ds.classes)
    path = Path(name).expanduser()
    if not path.exists():
        raise DataError(f"data source not found: {source}")
    if path.suffix.lower() == ".npz":
        return _from_npz(path, near, threshold, sample, seed)
    if not (path.is_dir() or path.suffix.lower() == ".zip"):
        raise DataError(f"{source} is a file atelier cannot read as a dataset; give a folder, a .zip or an .npz")
    kind, items, close = _file_items(path)
    try:
        if not items:
            raise DataError(f"{path} contains no files; put images (PNG, JPEG, ...) in it")
        picked = _sample(items, sample, seed)
        facts, skipped = _scan_files(picked)
    finally:
        close()
    report = DataReport(str(path), kind, len(items), len(facts), skipped=skipped, sampled=len(picked) < len(items),
                        license=source_license(path))
    if report.sampled:
        report.n_images = len(items) - round(len(skipped) * len(items) / max(len(picked), 1))
    # Readable images per class folder; with a sample, the files per folder (the sample would undercount).
    report.classes = _classes([n for n, _ in items] if report.sampled else [f.name for f in facts])
    return _summarise(report, facts, near, threshold)


def _from_npz(path: Path, near: bool | None, threshold: float, sample: int | None, seed: int) -> DataReport:

    # Read through open_source for its checks (dtype, shape, labels); the channels are the file's own.
    try:
        with np.load(path, allow_pickle=False) as npz:
            shape = npz["images"].shape if "images" in npz.files else (0, 8, 8)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    channels = shape[-1] if len(shape) == 4 else 1
    ds = open_source(str(path), channels=channels, resolution=shape[1] if len(shape) > 2 else 8)
    images = ds.images.permute(0, 2, 3, 1).numpy()
    names = ds.names if len(ds.names) == len(images) else [str(i) for i in range(len(images))]
    if ds.labels is not None:
        tag = (lambda y: ds.classes[y]) if ds.classes else str
        names = [n if "/" in n else f"{tag(int(y))}/{n}" for n, y in zip(names, ds.labels.tolist(), strict=True)]
    report = DataReport(str(path), "npz", len(images), len(images), license=ds.license)
    labels = ds.labels.tolist() if ds.labels is not None else None
    return _from_arrays(report, images, names, near, threshold, sample, seed, labels, ds.classes)


def _sample(items: list, sample: int | None, seed: int) -> list:
    if sample is None or sample >= len(items):
        return items
    idx = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:sample].sort().values
    return [items[i] for i in idx.tolist()]


def _from_arrays(report: DataReport, images: np.ndarray, names: list[str], near: bool | None, threshold: float,
                 sample: int | None, seed: int, labels: list[int] | None = None,
                 classes: tuple[str, ...] = ()) -> DataReport:
    if labels is not None:  # stored labels: every class that occurs, even a single one
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
        report.classes = {(classes[k] if k < len(classes) else str(k)): int(c) for k, c in enumerate(counts) if c}
    else:
        report.classes = _classes(names)
    picked = _sample(list(range(len(images))), sample, seed)
    report.sampled = len(picked) < len(images)
    facts = _scan_arrays(images[picked], [names[i] for i in picked])
    return _summarise(report, facts, near, threshold)


def _iter_lines(report: DataReport, max_pairs: int) -> Iterator[str]:
    described = report.n_described

    def pct(k: int) -> str:
        return f"{k:,} ({k / max(described, 1):.1%})"

    yield f"source:     {report.source} ({report.kind})"
    sampled = " (statistics below from a random sample)" if report.sampled else ""
    yield f"images:     {report.n_images:,} readable of {report.n_files:,} file(s){sampled}"
    if report.skipped:
        shown = ", ".join(report.skipped[:5]) + (" ..." if len(report.skipped) > 5 else "")
        yield f"skipped:    {len(report.skipped)} unreadable: {shown}"
    top = list(report.sizes.items())
    sizes = ", ".join(f"{s}: {c:,}" for s, c in top[:6]) + (f", {len(top) - 6} other size(s)" if len(top) > 6 else "")
    lo, med, hi = report.short_side
    yield f"sizes:      {sizes}  (short side min {lo}, median {med}, max {hi})"
    yield "modes:      " + ", ".join(f"{m}: {c:,}" for m, c in report.modes.items())
    yield (f"alpha:      {report.with_alpha_channel:,} with an alpha channel; transparency used by "
           f"{pct(report.with_transparency)}; fully opaque {pct(report.fully_opaque)}")
    yield f"colour:     {pct(report.colour)} in colour, {described - report.colour:,} grayscale"
    if report.classes:
        shown = ", ".join(f"{c}: {k:,}" for c, k in report.classes.items())
        yield f"classes:    {len(report.classes)} ({shown})"
    else:
        yield "classes:    none (unlabelled: no class sub-folders)"
    dup = sum(len(g) - 1 for g in report.exact_duplicates)
    yield f"exact dups: {len(report.exact_duplicates)} group(s), {dup} redundant image(s) (same decoded pixels)"
    for g in report.exact_duplicates[:max_pairs]:
        yield "            " + " = ".join(g)
    if not report.near_checked:
        yield f"near dups:  not searched ({described:,} images, more than {MAX_NEAR:,}; ask with near=True / --near)"
    else:
        yield (f"near dups:  {len(report.near_duplicates)} pair(s) with RMS distance <= {report.near_threshold:g} "
               f"between {THUMB}x{THUMB} colour thumbnails (alpha over white)")
        for a, b, d in report.near_duplicates[:max_pairs]:
            yield f"            {a} ~ {b} ({d:.3f})"
        if len(report.near_duplicates) > max_pairs:
            yield f"            ... and {len(report.near_duplicates) - max_pairs} more"
    yield f"licence:    {report.license}"


def format_report(report: DataReport, max_pairs: int = 10) -> str:
    """The report as the lines ``atelier data info`` prints."""
    return "\n".join(_iter_lines(report, max_pairs))
