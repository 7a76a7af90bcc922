"""Bring your own foundation model: a Stable Diffusion-family checkpoint the user already holds, loaded offline,
for text-to-image, image-to-image and inpainting (``atelier t2i``, ``atelier img2img``, ``atelier sd-inpaint``).

Detection (:func:`detect`) reads only file names, JSON configs and safetensors headers; loading
(:func:`load_foundation`) imports diffusers at function level (the ``diffusion`` extra).
"""

from __future__ import annotations

from atelier.foundation.detect import ModelInfo, detect
from atelier.foundation.model import DTYPES, MODES, SAMPLERS, FoundationModel, load_foundation
from atelier.foundation.sheet import COLUMNS, Settings, parse_size, read_sheet

__all__ = ["COLUMNS", "DTYPES", "MODES", "SAMPLERS", "FoundationModel", "ModelInfo", "Settings", "detect",
           "load_foundation", "parse_size", "read_sheet"]
