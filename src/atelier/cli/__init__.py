"""The ``atelier`` command line: small modules that parse arguments and print; the work is in
:mod:`atelier.api`."""

from atelier.cli import commands  # noqa: F401  (registers every subcommand on the group)
from atelier.cli.app import cli, main

__all__ = ["cli", "main"]
