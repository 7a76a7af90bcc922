"""Every subcommand module, imported so that their commands register on the group."""

from atelier.cli import data, evaluate, provenance, sample, segment, serve, style, train, worker  # noqa: F401
