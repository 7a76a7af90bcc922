"""The *stylize* workflow: restyle a photo by optimisation (Gatys et al.) or with a trained fast network."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from atelier import families
from atelier.errors import RunError
from atelier.imageio import save_image
from atelier.images import image_format
from atelier.loaded import Stylizer
from atelier.provenance import log_no_metadata
from atelier.style.gatys import describe_source, image_to_tensor, parse_style_spec
from atelier.style.gatys import stylize as optimise

__all__ = ["FastResult", "check_inputs", "stylize", "stylize_fast"]

stylize = optimise  # Gatys et al.'s optimisation: atelier.stylize(content, style, size=..., steps=...)


@dataclass
class FastResult:
    image: Image.Image
    seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def check_inputs(content: str | Path, styles: list[str], out: str | Path | None = None) -> None:
    """Read every input (and check the output name) before any work starts, so a bad file fails at once."""
    if out is not None:
        image_format(Path(out))
    for path, what in [(content, "content image")] + [(parse_style_spec(s)[0], "style image") for s in styles]:
        image_to_tensor(path, 16, what=what)


def stylize_fast(run: str | Path, content: str | Path, out: str | Path | None = None, size: int | None = None,
                 device: str = "cpu", strip_metadata: bool = False) -> FastResult:
    """One forward pass of a trained fast style network (a ``train-style`` run) over a photo."""
    if out is not None:
        image_format(Path(out))
    if not Path(run).is_dir():
        raise RunError(f"--model {run}: run folder not found")
    model = families.load(run, device=device)
    if not isinstance(model, Stylizer):
        raise RunError(f"{run} is a {model.cfg.model['name']} ({model.kind}) run, not a fast style network")
    t0 = time.perf_counter()
    image = model(content, size=size)
    seconds = time.perf_counter() - t0
    name, sha = describe_source(content)
    result = FastResult(image, seconds, model.metadata(content=name, content_sha256=sha))
    if out is not None:
        result.path = save_image(image, out, result.metadata, strip_metadata=strip_metadata)
        if strip_metadata:
            log_no_metadata(run, model.step, [result.path], 1, "stylize")
    return result
