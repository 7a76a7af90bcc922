"""Import diffusers offline: no hub look-ups, no telemetry, no progress bars, and one clear line when the
optional extra is missing.

diffusers and transformers are heavy optional packages (the ``diffusion`` extra), so they are imported here, at
function level, and never at module import time.
"""

from __future__ import annotations

import os
from typing import Any

from atelier.errors import MissingExtraError

__all__ = ["EXTRA_HINT", "diffusers", "offline_environment"]

EXTRA_HINT = "pip install 'atelier[diffusion]'"

# Set before huggingface_hub is first imported: it reads them once. HF_HUB_OFFLINE makes every hub call fail
# fast instead of reaching the network; the telemetry switches stop the usage pings diffusers and
# transformers would otherwise send.
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}


def offline_environment() -> None:
    """Force the Hugging Face libraries offline for this process (a user's own settings cannot turn it back on:
    atelier never downloads weights)."""
    os.environ.update(_OFFLINE)


def diffusers() -> Any:
    """The ``diffusers`` module, imported offline and quiet, or a :class:`MissingExtraError`."""
    offline_environment()
    try:
        import diffusers as _diffusers  # optional extra: imported on first use only
        import transformers  # optional extra: the text encoders and tokenizers
    except ImportError as exc:
        raise MissingExtraError(f"foundation models need diffusers and transformers ({exc.name} is missing); "
                                f"install them with: {EXTRA_HINT}") from None
    # Their own loggers print load reports and progress bars on every call; atelier prints what matters.
    _diffusers.utils.logging.set_verbosity_error()
    _diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return _diffusers
