"""Source specs: names of data sources, class names, and what is known of a source's licence."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from atelier.data.dataset import UNKNOWN_LICENSE
from atelier.data.files import folder_license
from atelier.data.mnist import NAMED
from atelier.errors import DataError

__all__ = ["FACADES_LICENSE", "class_names", "expand_source", "parse_spec", "skipped_warning", "source_license"]


def expand_source(spec: str) -> str:
    """Expand ``$VAR`` / ``${VAR}`` and ``~`` in a source spec; an unset variable is a clear error."""
    out = os.path.expanduser(os.path.expandvars(spec))
    if "$" in out:
        raise DataError(f"data source {spec!r} uses an environment variable that is not set "
                        "(e.g. export ATELIER_DATA=/path/to/data)")
    return out


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"mnist:test"`` -> ``("mnist", "test")``; a path -> ``(path, None)``."""
    name, _, split = spec.partition(":")
    if name.lower() in NAMED:
        return name.lower(), (split or "train")
    return spec, None


def class_names(source: str, num_classes: int) -> tuple[str, ...]:
    """Names of ``num_classes`` classes of a model trained on ``source``: a named dataset's ("Trouser"...), else
    the numbers "0".."K-1"."""
    name, split = parse_spec(source)
    names = tuple(NAMED[name].classes) if split is not None else ()
    return names if len(names) == num_classes else tuple(str(i) for i in range(num_classes))


def skipped_warning(name: str, skipped: list[str], what: str = "file") -> None:
    """One summary warning naming (up to five of) the unreadable items a source skipped."""
    shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    warnings.warn(f"{name}: skipped {len(skipped)} unreadable {what}(s): {shown}", UserWarning, stacklevel=3)


# The CMP facades as shipped for pix2pix/CycleGAN carry no licence file; say what is known (../shared/data/SOURCES.md).
FACADES_LICENSE = ("none stated by the source; CMP Facade Database (R. Tyleček, R. Šára, GCPR 2013), "
                   "its own terms not checked")


def source_license(path: Path) -> str:
    if path.is_dir() and (note := folder_license(path)):
        return note
    if any(part.lower().startswith("facades") for part in path.resolve().parts[-3:]):
        return FACADES_LICENSE
    return UNKNOWN_LICENSE


