"""The ``atelier`` command group: one error style, ``--debug`` anywhere, warnings as one plain line.

A user mistake prints one ``error: ...`` line (a usage mistake adds where to look) and exits with status 2;
``--debug`` (before or after the subcommand, or ``ATELIER_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import click

from atelier.errors import AtelierError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_DEBUG = "atelier.debug"

__all__ = ["CONTEXT", "SubGroup", "cli", "debug_option", "main", "no_metadata_option"]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_DEBUG] = True
    return value


def debug_option(f):
    """``--debug`` on a subcommand, the same as before it (``atelier --debug sample ...``)."""
    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                        help="Show full tracebacks for errors.")(f)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(_DEBUG)) or os.environ.get("ATELIER_DEBUG") == "1"


class SubGroup(click.Group):
    """A group of subcommands (``atelier data ...``) whose commands take ``--debug`` too."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(p.name == "debug" for p in cmd.params):
            debug_option(cmd)
        super().add_command(cmd, name)


class AtelierGroup(click.Group):
    """Turns AtelierError into one line on stderr and a non-zero exit; gives every subcommand ``--debug``."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(p.name == "debug" for p in cmd.params) and not isinstance(cmd, click.Group):
            debug_option(cmd)
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                if not any(p.name == "debug" for p in sub.params):
                    debug_option(sub)
        super().add_command(cmd, name)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """click's own errors (a bad option, a missing argument) in atelier's one style: ``error: ...``, exit 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                if not _debug(ctx):
                    # atelier's own warnings (skipped files, fallbacks) as one plain line each.
                    warnings.simplefilter("always", UserWarning)
                    warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except AtelierError as exc:
            if _debug(ctx):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(name="atelier", cls=AtelierGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show full tracebacks for errors.")
@click.version_option(package_name="atelier")
def cli() -> None:
    """atelier: train, sample, evaluate and label image generators.

    \b
    Quick start:
      atelier demo                                  # a DCGAN on MNIST in a few minutes
      atelier train --config configs/mnist-dcgan.yaml --run-dir runs/mnist-dcgan
      atelier sample runs/mnist-dcgan --n 64 --seed 0 --out grid.png
      atelier serve --runs runs/                    # the studio in the browser
    """


# --no-metadata exists on every command that writes images. Commands that use a run folder log it there
# (a {"event": "no-metadata"} line in metrics.jsonl); the others say so on stderr.
def no_metadata_option(run: bool = True):
    help_ = ("Write no metadata (the invisible watermark stays); logged in the run's metrics.jsonl." if run else
             "Write no metadata (the invisible watermark stays).")
    return click.option("--no-metadata", is_flag=True, help=help_)


def note_no_metadata(n: int) -> None:
    click.echo(f"note: {n} image(s) written without metadata (--no-metadata); the watermark stays", err=True)


def main(argv: list[str] | None = None) -> None:
    """The console entry point (the subcommands register when :mod:`atelier.cli` is imported)."""
    cli.main(args=argv, prog_name="atelier")
