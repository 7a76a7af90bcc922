"""The studio's settings: where its database and files live, which folders designers may pick data from, the
access token, and the bounds on uploads."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from atelier.api.studio_db import default_url
from atelier.api.uploads import UploadLimits

__all__ = ["StudioSettings", "is_loopback"]

TOKEN_ENV = "ATELIER_TOKEN"
MIN_TOKEN = 16


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the studio on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StudioSettings:
    """``home``: the studio's own folder (default ``<runs>/.studio``): the SQLite database (the gallery's images
    are in it), uploaded datasets, the worker's log. ``db_url``: any SQLAlchemy URL (default: SQLite in ``home``).
    ``data_roots``: server folders a designer may pick training data from (none by default; uploads always
    work). ``token``: the access token (default: the ``ATELIER_TOKEN`` environment variable); with a token,
    or with users in the database, every API request must authenticate."""

    home: Path | None = None
    db_url: str | None = None
    data_roots: tuple[Path, ...] = ()
    token: str | None = field(default=None, repr=False)
    upload: UploadLimits = UploadLimits()
    stale_after: float = 30.0  # seconds without a heartbeat before a worker counts as gone

    def resolved(self, roots: list[Path]) -> StudioSettings:
        """These settings with the defaults filled in for a studio serving ``roots``."""
        home = self.home
        if home is None:
            first = roots[0] if roots else Path("runs")
            home = (first.parent if (first / "config.yaml").is_file() else first) / ".studio"
        home = Path(home).resolve()
        token = self.token if self.token is not None else (os.environ.get(TOKEN_ENV) or None)
        return replace(self, home=home, db_url=self.db_url or default_url(home), token=token,
                       data_roots=tuple(Path(p).resolve() for p in self.data_roots))

    @property
    def datasets_dir(self) -> Path:
        assert self.home is not None
        return self.home / "datasets"
