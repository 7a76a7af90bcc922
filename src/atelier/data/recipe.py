"""A training recipe chosen from the data: what ``atelier train --data FOLDER`` (no ``--config``) uses.

Every choice comes from a fact :func:`atelier.data.info.data_info` measures on the folder (on a
seeded sample of :data:`SAMPLE` files, so that a large folder is described in seconds), and each one
is returned with its reason, so the CLI can say which recipe it picked and why:

1. **resolution**: the largest of 32 / 64 / 128 px not above the images' median short side, capped
   by the compute budget: :data:`MAX_RESOLUTION` (64 px on a CPU, where a 128-px step costs about 4x
   a 64-px one; 128 px on a GPU). A StyleGAN2 recipe with a CPU time budget under
   :data:`SHORT_CPU_MINUTES` (the default 30 minutes among them) trains at :data:`SHORT_CPU_RESOLUTION`
   px, where it sees 3.3x the images per minute (measured: see :data:`SHORT_CPU_MINUTES`). Smaller images
   train at their own size with the DCGAN (any size) and at 32 px with StyleGAN2 (powers of two).
2. **channels and alpha**: 4 (RGBA, ``data.alpha: keep``) when at least :data:`KEEP_ALPHA_SHARE` of
   the images use transparency (sprites and icons: the generated PNGs keep it); else 1 when at most
   :data:`GRAY_SHARE` of them are in colour; else 3 (transparency, if any, composited over white).
3. **family**: ``stylegan2`` (Karras et al. 2020) for colour; the corrected DCGAN (Radford et al. 2016)
   for grayscale, where it is atelier's measured recipe (MNIST-family data).
4. **size**, from the number of images (:data:`SIZES`): fewer images get a narrower network, which
   overfits less and trains faster. A CPU budget caps it (:data:`CPU_MAX_SIZE`): the StyleGAN2-type model
   stays at the small widths, which are ``configs/emoji-stylegan.yaml``'s. Measured on two kinds of folder at
   equal CPU-minutes of one thread: on the 3,641 emoji (RGBA, 9 classes) after 30, the medium widths scored FID
   86 against the small widths' 46 (44k images seen against 116k); on 1,600 facade photo tiles (RGB) after 15,
   22.7 against 7.6 (docs/stylegan.md).
5. **augmentation**: ADA (Karras et al. 2020, "Training GANs with limited data") below
   :data:`ADA_BELOW` images, where the discriminator otherwise memorises the training set; ADA's own
   control loop leaves ``p`` near 0 when it is not needed, so it costs little when unnecessary.
6. **classes**: a class-conditional model when the folder has at least two class sub-folders with at
   least :data:`MIN_CLASS` images each.

These thresholds are starting points stated in the open. Which recipe wins on quality per CPU-minute
is measured by training (the emoji folder and the facade tiles of ``scripts/make_tiles.py``), and the
table here changes with those measurements, never with the name of a folder.
"""

from __future__ import annotations

from typing import Any

from atelier.data.info import DataReport, data_info
from atelier.errors import DataError

__all__ = ["ADA_BELOW", "CPU_MAX_SIZE", "CPU_MINUTES", "GRAY_SHARE", "KEEP_ALPHA_SHARE", "MAX_RESOLUTION",
           "MIN_CLASS", "SAMPLE", "SHORT_CPU_MINUTES", "SHORT_CPU_RESOLUTION", "SIZES", "recipe_resolution",
           "recommend_recipe"]

RESOLUTIONS = (32, 64, 128)
MAX_RESOLUTION = {"cpu": 64, "gpu": 128}
# The time budget of a CPU recipe when the user gives none.
CPU_MINUTES = 30.0
# A StyleGAN2 recipe on a CPU with a time budget under SHORT_CPU_MINUTES trains at SHORT_CPU_RESOLUTION px: it sees
# 3.3x the images per CPU-minute of 64 px. Measured at equal CPU-minutes of one thread (docs/stylegan.md, "32 px or
# 64 px for a short budget"): on the emoji after 30, 32 px drew faces, heads, flags and keycaps where 64 px drew
# coloured shapes (FID 14.5 against 19.2-35.8 scored at 32 px; 65.9 against 33.2-52.2 at 64 px, where a 32-px
# model's floor is 30.1); on the facade tiles after 15, windows and storeys against streaks (FID 7.4 against 7.0 at
# 64 px). Longer budgets train at the folder's size, since a resumed run keeps its own: at 64 px the emoji model
# draws faces by 90 CPU-minutes and reaches FID 10.7 at 120 (RGB, unconditional).
SHORT_CPU_MINUTES = 60.0
SHORT_CPU_RESOLUTION = 32
KEEP_ALPHA_SHARE = 0.10
GRAY_SHARE = 0.02
ADA_BELOW = 30_000
MIN_CLASS = 10
SAMPLE = 1_000
ADA_POLICY = "color,translation,cutout"
# ADA's target for sign(D(real)) (0.6 in the paper).
ADA_TARGET = 0.6

# (upper bound on the number of images, size name, overrides per family). Widths are the families' own knobs:
# stylegan2's channels at the output resolution (doubling per halving up to width_max), dcgan's base width.
SIZES: tuple[tuple[float, str, dict[str, dict[str, Any]]], ...] = (
    (1_000, "small", {"stylegan2": {"model.width": 16, "model.width_max": 128}, "dcgan": {"model.width": 32}}),
    (10_000, "medium", {"stylegan2": {"model.width": 32, "model.width_max": 256}, "dcgan": {"model.width": 64}}),
    (float("inf"), "large", {"stylegan2": {"model.width": 64, "model.width_max": 512}, "dcgan": {"model.width": 64}}),
)

# The largest size a CPU budget trains, per family (see the module docstring for the StyleGAN2 measurement; the
# DCGAN's medium width 64 is its measured MNIST recipe).
CPU_MAX_SIZE = {"stylegan2": "small", "dcgan": "medium"}


def _budget(device: str) -> str:
    if device == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "gpu", "cuda"):
        raise DataError(f"device must be auto, cpu or gpu, got {device!r}")
    return "gpu" if device in ("gpu", "cuda") else "cpu"


def recipe_resolution(side: int, family: str, *, device: str = "auto", minutes: float | None = CPU_MINUTES
                      ) -> tuple[int, str]:
    """The resolution a ``family`` recipe trains images of median short side ``side`` px at, and why, for a
    compute budget (``device``, and on a CPU the time budget ``minutes``; None: a step or image budget)."""
    budget = _budget(device)
    fits = [r for r in RESOLUTIONS if r <= side]
    why = f"the images' median short side is {side} px"
    if not fits and family == "dcgan" and side >= 8:
        return side, why + ", trained at that size"  # e.g. 28 px digits: the DCGAN takes any size
    res = fits[-1] if fits else RESOLUTIONS[0]
    if not fits:
        why += f", upsampled to {res} px (the smallest size of a {family} recipe)"
    cap = MAX_RESOLUTION[budget]
    short_budget = budget == "cpu" and minutes is not None and minutes < SHORT_CPU_MINUTES
    if family == "stylegan2" and short_budget and res > SHORT_CPU_RESOLUTION:
        short = SHORT_CPU_RESOLUTION
        return short, (f"{why}; a CPU budget of {minutes:g} minutes trains at {short} px, where the model sees 3x the "
                       f"images per minute (a run keeps its size when resumed: for {min(res, cap)} px, give a budget "
                       f"of {SHORT_CPU_MINUTES:g} minutes or more, or set data.resolution)")
    if res > cap:
        return cap, f"{why}; a {budget.upper()} budget caps it at {cap} px"
    return res, why


def _channels(report: DataReport) -> tuple[dict[str, Any], str]:
    t, c = report.transparency_share, report.colour_share
    if t >= KEEP_ALPHA_SHARE:
        return ({"data.channels": 4, "data.alpha": "keep"},
                f"{t:.0%} of the images use transparency (>= {KEEP_ALPHA_SHARE:.0%}): RGBA, and generated PNGs keep it")
    alpha = f"; the {t:.0%} with transparency are composited over white" if t > 0 else ""
    if c <= GRAY_SHARE:
        return {"data.channels": 1, "data.alpha": "composite"}, f"{c:.0%} of the images are in colour: grayscale{alpha}"
    return {"data.channels": 3, "data.alpha": "composite"}, f"{c:.0%} of the images are in colour: RGB{alpha}"


def recommend_recipe(source: str, *, device: str = "auto", report: DataReport | None = None,
                     minutes: float | None = CPU_MINUTES) -> tuple[dict[str, Any], list[str]]:
    """Config overrides (dotted keys, for :func:`atelier.config.load_config`) and one reason per choice.

    ``device``: ``cpu`` / ``gpu`` (the compute budget), or ``auto`` (a GPU when torch sees one).
    ``report``: a :class:`DataReport` already made for ``source`` (else one is made on a sample).
    ``minutes``: the time budget the run will train for (None: a step or image budget), which a CPU recipe's
    resolution follows.
    """
    report = report or data_info(source, near=False, sample=SAMPLE)
    if report.n_images == 0:
        raise DataError(f"{source} holds no readable images: nothing to choose a recipe from")
    budget = _budget(device)
    n = report.n_images
    out: dict[str, Any] = {"data.source": source}
    reasons = []

    channels, why_channels = _channels(report)
    family = "dcgan" if channels["data.channels"] == 1 else "stylegan2"
    res, why = recipe_resolution(report.median_side, family, device=budget, minutes=minutes)
    out["data.resolution"] = res
    reasons.append(f"resolution {res} px: {why}")
    out.update(channels)
    reasons.append(f"channels {channels['data.channels']} (alpha {channels['data.alpha']}): {why_channels}")
    out["model.name"] = family
    reasons.append(f"model {family}: " + ("grayscale images, atelier's measured DCGAN recipe" if family == "dcgan"
                                          else "colour images: a StyleGAN2-type generator (Karras et al. 2020)"))

    size, widths = next((name, table[family]) for bound, name, table in SIZES if n < bound)
    note = f"{n:,} images"
    order = [name for _, name, _ in SIZES]
    cap = CPU_MAX_SIZE[family]
    if budget == "cpu" and order.index(size) > order.index(cap):
        capped = SIZES[order.index(cap)][2][family]
        if capped != widths:
            note += f" would take the {size} size; a CPU budget keeps the {cap} one (more images seen per minute)"
        size, widths = cap, capped
    out.update(widths)
    knobs = ", ".join(f"{key.split('.')[-1]} {value}" for key, value in widths.items())
    reasons.append(f"size {size} ({knobs}): {note}")

    if n < ADA_BELOW:
        out.update({"augment.policy": ADA_POLICY, "augment.p": 0.0, "augment.ada_target": ADA_TARGET})
        reasons.append(f"ADA augmentation ({ADA_POLICY}, target {ADA_TARGET}): fewer than {ADA_BELOW:,} images, "
                       "where D overfits without it")
    else:
        reasons.append(f"no augmentation: {n:,} images (ADA pays below {ADA_BELOW:,})")

    if len(report.classes) >= 2 and min(report.classes.values()) >= MIN_CLASS:
        out["model.num_classes"] = len(report.classes)
        reasons.append(f"class-conditional on {len(report.classes)} class folders (smallest "
                       f"{min(report.classes.values()):,} images)")
    elif report.classes:
        reasons.append(f"unconditional: a class folder has fewer than {MIN_CLASS} images")
    else:
        reasons.append("unconditional: no class sub-folders")
    if report.exact_duplicates:
        dup = sum(len(g) - 1 for g in report.exact_duplicates)
        reasons.append(f"note: {dup} exact duplicate(s) in the sample weigh those images more (atelier data info "
                       "lists them)")
    if report.sampled:
        reasons.append(f"(shares measured on a random sample of {SAMPLE:,} of {report.n_files:,} files)")
    return out, reasons
