"""``atelier worker`` (train the studio's queued jobs) and ``atelier user`` (who may sign in to the studio)."""

from __future__ import annotations

import click

from atelier.cli.app import CONTEXT, SubGroup, cli
from atelier.cli.serve import resolve_studio, studio_options


@cli.command(context_settings=CONTEXT)
@studio_options
@click.option("--max-jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Jobs this worker runs at once (e.g. one per GPU of the machine).")
@click.option("--gpus-per-job", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes per job: above 1, each job starts through torchrun (one process per GPU).")
@click.option("--poll", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              help="Seconds between looks at the queue.")
@click.option("--until-idle", is_flag=True, help="Exit when the queue is empty and no job is running.")
def worker(runs, home, db, max_jobs, gpus_per_job, poll, until_idle) -> None:
    """Train the studio's queued jobs, each in its own process, until Ctrl-C / SIGTERM (running jobs then
    checkpoint and become resumable). Run one per machine against the same database and run storage.

    \b
    Examples:
      atelier worker                                   # the studio's default database (runs/.studio)
      atelier worker --max-jobs 2                      # two jobs at once
      atelier worker --db postgresql+psycopg://atelier@db/atelier --gpus-per-job 8
    """
    from atelier.api.worker import run_worker  # SQLAlchemy is part of the optional extra atelier[serve]

    _, settings = resolve_studio(runs, home, db, create=db is None and home is None)
    run_worker(settings.db_url, max_jobs=max_jobs, gpus_per_job=gpus_per_job, poll=poll, until_idle=until_idle,
               echo=click.echo)


@cli.group(cls=SubGroup, context_settings=CONTEXT)
def user() -> None:
    """Studio users: names and passwords (stored as scrypt hashes) for signing in to a shared studio."""


@user.command("add", context_settings=CONTEXT)
@click.argument("name")
@studio_options
@click.password_option(help="The password (asked for, twice, when not given).")
def user_add(name, runs, home, db, password) -> None:
    """Add a user (then the studio asks everyone to sign in)."""
    from atelier.api.users import add_user  # SQLAlchemy: the optional extra atelier[serve]

    _, settings = resolve_studio(runs, home, db, create=db is None and home is None)
    add_user(settings.db_url, name, password)
    click.echo(f"added user {name}")


@user.command("remove", context_settings=CONTEXT)
@click.argument("name")
@studio_options
def user_remove(name, runs, home, db) -> None:
    """Remove a user (their sessions end within seconds)."""
    from atelier.api.users import remove_user  # SQLAlchemy: the optional extra atelier[serve]

    _, settings = resolve_studio(runs, home, db, create=db is None and home is None)
    remove_user(settings.db_url, name)
    click.echo(f"removed user {name}")


@user.command("list", context_settings=CONTEXT)
@studio_options
def user_list(runs, home, db) -> None:
    """List the users."""
    from atelier.api.users import list_users  # SQLAlchemy: the optional extra atelier[serve]

    _, settings = resolve_studio(runs, home, db, create=db is None and home is None)
    for name in list_users(settings.db_url):
        click.echo(name)
