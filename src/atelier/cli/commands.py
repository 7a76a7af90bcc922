"""Every subcommand module, imported so that their commands register on the group."""

from atelier.cli import (  # noqa: F401
    data,
    diffusion,
    evaluate,
    foundation,
    project,
    provenance,
    sample,
    segment,
    serve,
    style,
    train,
    worker,
)
