"""Every subcommand module, imported so that their commands register on the group."""

from atelier.cli import data, evaluate, project, provenance, sample, segment, serve, style, train, worker  # noqa: F401
