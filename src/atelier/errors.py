"""User-facing error types.

Every mistake a user can make (a bad config, a missing file, data that cannot feed the model)
raises a subclass of :class:`AtelierError` whose message says what was wrong and how to fix it.
The CLI prints that message on one line and exits non-zero; programming errors are not caught.
"""

from __future__ import annotations

__all__ = ["AtelierError", "ConfigError", "DataError", "RunError", "DownloadError", "ImageError", "MissingExtraError"]


class AtelierError(Exception):
    """Base class of every error caused by user input rather than by a bug."""

    exit_code = 2


class ConfigError(AtelierError):
    """A config file, override or option is invalid."""


class DataError(AtelierError):
    """A data source is missing, empty, unreadable or does not fit the config."""


class ImageError(DataError):
    """One image file cannot be read, or is outside the allowed size."""


class RunError(AtelierError):
    """A run folder is missing, incomplete or incompatible with the request."""


class DownloadError(AtelierError):
    """A download failed or its checksum did not match."""


class MissingExtraError(AtelierError):
    """An optional feature was used without its extra installed (``pip install 'atelier[serve]'``)."""
