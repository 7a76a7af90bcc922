"""Generation settings and prompt sheets: a CSV with one row per prompt and, per row, any setting that differs
from the command line's.

    prompt,negative,steps,guidance,seed,size,sampler,n,name
    "a red fox in snow, watercolour",blurry,30,7,0,512x512,dpm++,2,fox
    "a lighthouse at dusk",,,,,768x512,,,

Rows are numbered as a spreadsheet shows them (the header is row 1). The whole sheet is checked before the first
image is made: a bad value stops the batch with one error naming its row.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from atelier.errors import ConfigError

__all__ = ["COLUMNS", "Settings", "parse_size", "read_sheet"]

COLUMNS = ("prompt", "negative", "steps", "guidance", "seed", "size", "sampler", "n", "name")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Settings:
    """What makes one image (with its seed): everything a user can set per prompt."""

    prompt: str
    negative: str = ""
    steps: int = 25
    guidance: float = 6.0
    seed: int = 0
    size: tuple[int, int] | None = None       # (W, H); None = the model's native size
    sampler: str = "default"
    n: int = 1                                # images, with seeds seed, seed + 1, ...
    name: str = ""                            # file name stem; "" = numbered
    where: str = ""                           # where it was read ("sheet.csv row 3"), for error messages

    def check(self) -> None:
        if not self.prompt.strip():
            raise ConfigError("the prompt is empty")
        if not 1 <= self.steps <= 1000:
            raise ConfigError(f"steps {self.steps}: use 1 to 1000")
        if not 0.0 <= self.guidance <= 50.0:
            raise ConfigError(f"guidance {self.guidance:g}: use 0 to 50 (1 turns classifier-free guidance off)")
        if self.seed < 0:
            raise ConfigError(f"seed {self.seed}: seeds are non-negative")
        if not 1 <= self.n <= 256:
            raise ConfigError(f"n {self.n}: use 1 to 256 images per prompt")
        if self.name and not _NAME.match(self.name):
            raise ConfigError(f"name {self.name!r}: use letters, digits, '.', '_' and '-' (a file name stem)")


def parse_size(text: str) -> tuple[int, int]:
    """``"768x512"`` -> ``(768, 512)`` (width x height); ``"512"`` -> ``(512, 512)``."""
    found = re.fullmatch(r"\s*(\d{1,5})\s*(?:[xX*]\s*(\d{1,5}))?\s*", text)
    if not found:
        raise ConfigError(f"size {text!r}: give WIDTHxHEIGHT, e.g. 512x512 or 768x512")
    w = int(found.group(1))
    h = int(found.group(2) or w)
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise ConfigError(f"size {text!r}: width and height must be between 8 and 8192")
    return w, h


def _cell(row: dict[str, str], key: str, base: Settings) -> object:
    raw = (row.get(key) or "").strip()
    if not raw:
        return getattr(base, key)
    if key in ("steps", "seed", "n"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key} {raw!r} is not a whole number") from None
    if key == "guidance":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"guidance {raw!r} is not a number") from None
    if key == "size":
        return parse_size(raw)
    return raw


def read_sheet(path: str | Path, defaults: Settings, samplers: tuple[str, ...] = ()) -> list[Settings]:
    """Every row of a prompt sheet as :class:`Settings`, blank cells taken from ``defaults``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")   # spreadsheets write a BOM
    except FileNotFoundError:
        raise ConfigError(f"prompt sheet not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the prompt sheet {path}: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    if "prompt" not in header:
        raise ConfigError(f"{path.name}: the first row must name the columns and include 'prompt' "
                          f"(columns: {', '.join(COLUMNS)})")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ConfigError(f"{path.name}: unknown column(s) {', '.join(map(repr, unknown))}; "
                          f"use {', '.join(COLUMNS)}")
    reader.fieldnames = header
    rows: list[Settings] = []
    for number, row in enumerate(reader, start=2):
        if None in row:                              # more cells than columns: a stray comma
            raise ConfigError(f"{path.name} row {number}: more cells than columns (quote a prompt with commas)")
        if not any((v or "").strip() for v in row.values()):
            continue                                 # blank line
        try:
            cells: dict[str, Any] = {k: _cell(row, k, defaults) for k in header}
            s = replace(defaults, where=f"{path.name} row {number}", **cells)
            s.check()
            if samplers and s.sampler not in samplers:
                raise ConfigError(f"unknown sampler {s.sampler!r}; use {', '.join(samplers)}")
        except ConfigError as exc:
            raise ConfigError(f"{path.name} row {number}: {exc}") from None
        rows.append(s)
    if not rows:
        raise ConfigError(f"{path.name} has no prompts (one row per prompt under the header)")
    return rows
