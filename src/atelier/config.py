"""Typed run configs: pydantic models, YAML load/save and dotted overrides.

A run is described by one :class:`RunConfig`. Its defaults are the corrected DCGAN of the
TensorFlow tutorial on MNIST (``configs/mnist-dcgan.yaml`` spells the same values out; a test keeps
the two equal). Unknown keys are errors (``extra="forbid"``), so a typo never silently trains the
wrong model. The ``model:`` section belongs to the model family: :func:`atelier.runs.resolve_config`
validates it with the family's config class and checks it against the data (this module sits below
the models and does not know them).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from atelier.errors import ConfigError
from atelier.utils import atomic_write_text

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "EvalConfig",
    "LogConfig",
    "LossConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "parse_set",
    "save_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    # `mnist`, `mnist:test`, `fashion-mnist`, a folder, a .zip or an .npz (see atelier.data).
    source: str = "mnist"
    resolution: int = Field(28, ge=8, le=1024)
    # 1 (grayscale), 3 (RGB) or 4 (RGBA, with data.alpha: keep).
    channels: Literal[1, 3, 4] = 1
    # Transparency: `composite` flattens it over data.background (a colour name or #rrggbb) when the images
    # are read; `keep` trains on RGBA (data.channels: 4) and generated PNGs keep their transparency.
    alpha: Literal["composite", "keep"] = "composite"
    background: str = "white"
    # Train on the first N images only (None: all of them).
    limit: int | None = Field(None, ge=1)
    hflip: bool = False
    # Paired data (image-to-image translation): layout, which half is the input, and pix2pix's
    # "random jitter" (resize to load_size, random-crop back to resolution).
    paired: Literal["side_by_side", "folders"] | None = None
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    load_size: int | None = Field(None, ge=8, le=4096)
    # Held-out data for the fixed progress grid and `atelier evaluate` (e.g. the test split).
    eval_source: str | None = None

    @field_validator("background")
    @classmethod
    def _known_colour(cls, v: str) -> str:
        from PIL import ImageColor  # Pillow only (atelier.images sits beside config, not below it)

        try:
            rgb = ImageColor.getrgb(v.strip())
        except ValueError:
            raise ValueError("unknown colour: give a colour name (white, black, gray, ...) or #rrggbb") from None
        if len(rgb) == 4 and rgb[3] != 255:
            raise ValueError("the background must be opaque (it is what transparency is composited over)")
        return v.strip()

    @model_validator(mode="after")
    def _load_size_fits(self) -> DataConfig:
        if self.load_size is not None and self.load_size < self.resolution:
            raise ValueError(f"data.load_size ({self.load_size}) must be >= data.resolution ({self.resolution})")
        if self.alpha == "keep" and self.channels != 4:
            raise ValueError(f"data.alpha: keep trains on RGBA images: set data.channels: 4 (got {self.channels})")
        if self.channels == 4 and self.alpha != "keep":
            raise ValueError("data.channels: 4 is RGBA: set data.alpha: keep too (or data.channels: 3 to composite "
                             "transparency over data.background)")
        return self


class LossConfig(_Strict):
    # nonsaturating (Goodfellow 2014), hinge (SNGAN), wasserstein (needs gp_weight or spectral norm), lsgan.
    name: Literal["nonsaturating", "hinge", "wasserstein", "lsgan"] = "nonsaturating"
    # WGAN-GP's lambda (10 in Gulrajani et al. 2017); 0: no gradient penalty.
    gp_weight: float = Field(0.0, ge=0)
    # R1 on real images with weight gamma / 2 (Mescheder et al. 2018); lazy: every r1_every D steps.
    r1_gamma: float = Field(0.0, ge=0)
    r1_every: int = Field(16, ge=1)
    # D steps per G step (WGAN-GP uses 5). train.steps counts D steps, so images seen stay comparable.
    n_critic: int = Field(1, ge=1, le=100)
    # Conditional projection D: weight of a cross-entropy on real images over the projection's class
    # scores, so D learns the classes from their labels (0: off, the plain projection discriminator).
    class_weight: float = Field(0.0, ge=0)


AUGMENTS = ("color", "translation", "cutout")


class AugmentConfig(_Strict):
    # DiffAugment (Zhao et al. 2020): the same differentiable augmentation of real and fake images
    # before D, in D's and G's steps. A comma-separated subset of color,translation,cutout ("": off).
    policy: str = ""
    # Probability that an image is augmented: fixed, or ADA's starting value when ada_target is set.
    p: float = Field(1.0, ge=0.0, le=1.0)
    # ADA (Karras et al. 2020): every ada_interval steps, move p by sign(E[sign D(real)] - target) so
    # that p can go from 0 to 1 in ada_kimg thousand images. null: fixed p.
    ada_target: float | None = Field(None, gt=0.0, lt=1.0)
    ada_interval: int = Field(4, ge=1)
    ada_kimg: float = Field(100.0, gt=0)

    @field_validator("policy")
    @classmethod
    def _known_ops(cls, v: str) -> str:
        ops = [o.strip() for o in v.split(",") if o.strip()]
        unknown = [o for o in ops if o not in AUGMENTS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; use a comma-separated subset of {list(AUGMENTS)}")
        return ",".join(ops)

    @model_validator(mode="after")
    def _ada_needs_policy(self) -> AugmentConfig:
        if self.ada_target is not None and not self.policy:
            raise ValueError("augment.ada_target adapts the augmentation probability: set augment.policy too "
                             "(e.g. color,translation,cutout)")
        return self


class OptimConfig(_Strict):
    # Adam at 2e-4 with beta1 = 0.5: Radford et al. 2016 (DCGAN), as the source document uses.
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class TrainConfig(_Strict):
    # Budgets: the run stops at the first one reached (null: no limit of that kind; at least one is set).
    # All three may grow when a run is resumed, so "train for longer" is the same command with a larger budget.
    steps: int | None = Field(2000, ge=1)
    minutes: float | None = Field(None, gt=0)   # of training time (train_seconds), summed over resumes
    images: int | None = Field(None, ge=1)      # images seen (the global batch, all processes together)
    # What train.minutes (and train_seconds) count: "wall" time of the training steps, or "cpu" time of this
    # process (all its threads: core-minutes). "cpu" gives equal budgets on a machine other jobs share, which
    # is how benchmarks compare families "at equal CPU-minutes".
    clock: Literal["wall", "cpu"] = "wall"
    # 256 is the TensorFlow tutorial's batch; it is also the faster per image on a CPU. It is the global
    # batch: under torchrun each of the N processes trains on batch_size / N images per step, so a run
    # means the same maths (and resumes) whatever the number of processes.
    batch_size: int = Field(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # bf16 autocast: 1.6x the images/s of fp32 for the MNIST DCGAN on a 2-core AVX512-BF16 CPU
    # (benchmarks/train_speed.py); weights and optimiser state stay fp32. fp16 (CUDA only) adds one
    # GradScaler per optimiser.
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    channels_last: bool = True
    # EMA of G with a half-life counted in images (StyleGAN2's ema_kimg), ramped up early on so the
    # average does not drag the random init along for the first thousands of images.
    ema_half_life_kimg: float = Field(10.0, ge=0)
    ema_rampup: float | None = Field(0.05, ge=0)
    # CPU threads: auto (the free cores, re-checked while training), off (torch's default: all cores) or N.
    # ATELIER_THREADS in the environment wins (atelier.threads.configure_threads).
    threads: Literal["auto", "off"] | Annotated[int, Field(ge=1, le=1024)] = "auto"

    @model_validator(mode="after")
    def _some_budget(self) -> TrainConfig:
        if self.steps is None and self.minutes is None and self.images is None:
            raise ValueError("train: set a budget: train.steps, train.minutes or train.images")
        return self


class LogConfig(_Strict):
    every: int = Field(50, ge=1)
    sample_every: int = Field(250, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(3, ge=1)
    # The fixed latent batch of the progress grids is grid x grid images.
    grid: int = Field(8, ge=1, le=32)
    tensorboard: bool = True


class EvalConfig(_Strict):
    # FID every N steps (0: off) on eval.n samples of the EMA generator (fixed latents), against eval.ref
    # (default: the test split of a named training set); the best FID's weights are kept as
    # checkpoints/best.safetensors. See atelier.metrics.
    every: int = Field(0, ge=0)
    n: int = Field(5000, ge=10)
    ref: str | None = None
    # auto: digits / fashion for the MNIST family, else random-cnn (atelier.metrics.evaluators).
    evaluator: Literal["auto", "digits", "fashion", "emoji", "random-cnn", "inception"] = "auto"


class RunConfig(_Strict):
    seed: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
    model: dict[str, Any] = Field(default_factory=lambda: {"name": "dcgan"})
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    log: LogConfig = LogConfig()
    eval: EvalConfig = EvalConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def format_validation(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/mnist-dcgan.yaml for every key)"
        elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"   # a whole section (a cross-field check) is not echoed back
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from plain data, turning validation errors into ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_validation(exc)}") from None
    except ValueError as exc:  # raised by our own validators
        raise ConfigError(f"{where}: {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8) file; a config is YAML text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(path, text, exc)) from None
    return {} if data is None else data


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> str:
    """Where a YAML file broke: the line, a caret under the column, and what the parser expected."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"{path} is not valid YAML: {problem}"
    lines = text.splitlines()
    shown = lines[mark.line] if mark.line < len(lines) else ""
    context = getattr(exc, "context", None)
    return (f"{path} is not valid YAML: {problem}{' (' + context + ')' if context else ''} "
            f"at line {mark.line + 1}, column {mark.column + 1}:\n    {shown}\n    {' ' * mark.column}^")


def save_config(cfg: RunConfig, path: str | Path) -> None:

    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write_text(Path(path), text)


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``--set key.sub=value`` items; values are YAML scalars (``64``, ``true``, ``[1, 2]``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects key=value with a dotted key (e.g. model.width=32), got {item!r}")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
    return out


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted keys set (``{"train.steps": 10}``)."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"cannot set {dotted}: {'.'.join(parts[: i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
