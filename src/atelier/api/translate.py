"""The *translate* workflow: images through a trained image-to-image run (pix2pix)."""

from __future__ import annotations

from pathlib import Path

from atelier import families
from atelier.errors import AtelierError, RunError
from atelier.loaded import Translator
from atelier.provenance import log_no_metadata

__all__ = ["translate"]


def translate(run: str | Path, input: str | Path, out: str | Path, device: str = "cpu",
              strip_metadata: bool = False) -> list[Path]:
    """An image to an image file, or a folder to a folder (resized to the model's resolution and back)."""
    model = families.load(run, device=device)
    if not isinstance(model, Translator):
        raise RunError(f"{run} is a {model.cfg.model['name']} ({model.kind}) run, not an image-to-image "
                       "translation run")
    src, dst = Path(input), Path(out)
    if src.is_dir() and dst.suffix:
        raise AtelierError("a folder input needs a folder output (no file extension)")
    paths = model.translate_path(src, dst, strip_metadata=strip_metadata)
    if strip_metadata:
        log_no_metadata(run, model.step, [dst], len(paths), "translate")
    return paths
