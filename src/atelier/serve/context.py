"""What every group of endpoints shares: the models, the limits, the database-backed services, the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Request
from pydantic import Field

from atelier.api.gallery import Gallery
from atelier.api.jobs import JobQueue
from atelier.api.newmodel import Datasets
from atelier.serve.auth import Access
from atelier.serve.gate import Gate, Limits
from atelier.serve.registry import ModelStore
from atelier.serve.settings import StudioSettings

__all__ = ["ID_MAX", "IdItem", "IdPath", "Studio", "user"]

# Database ids (jobs, images, collections) are integers: bounded here so that a huge number is a 422, not an
# overflow in the database driver.
ID_MAX = 2**53
IdPath = Annotated[int, PathParam(ge=1, le=ID_MAX)]
IdItem = Annotated[int, Field(ge=1, le=ID_MAX)]


@dataclass
class Studio:
    store: ModelStore
    limits: Limits
    gate: Gate
    settings: StudioSettings
    queue: JobQueue
    datasets: Datasets
    gallery: Gallery
    access: Access

    @property
    def runs_dir(self) -> Path | None:
        """Where new runs go: the (first) folder of runs served; None when serving a single run folder."""
        first = self.store.roots[0]
        return None if (first / "config.yaml").is_file() else first


def user(request: Request) -> Any:
    """The signed-in user of a request (None on an open, loopback-only studio)."""
    return getattr(request.state, "user", None)
