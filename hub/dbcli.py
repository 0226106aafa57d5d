"""``hub db …``: the database schema's version (Alembic, see :mod:`hub.migrations`).

These commands work without building the app: ``hub`` adds them to its own command group, so
they run before (and instead of) ``create_app``, which would refuse a database that is
behind (``HUB_AUTO_MIGRATE=0``) or newer than the code. Under ``flask --app wsgi db …`` they
use the loaded app's database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import has_app_context

from hub import migrations
from hub.store import Store


@click.group("db")
def db_group() -> None:
    """The database schema: upgrade it, show its revision and the history."""


@db_group.command("upgrade")
def upgrade_command() -> None:
    """Apply every pending migration (under a database lock; safe while others start)."""
    with _store() as store:
        click.echo(migrations.upgrade(store).describe())


@db_group.command("current")
def current_command() -> None:
    """Print the database's revision and whether it is behind this code; exit 1 when the
    database is from a newer release."""
    with _store() as store:
        state = migrations.state(store)
    migrations.refuse_unknown(state)
    note = "up to date" if state.up_to_date else f"behind: `hub db upgrade` goes to {state.head}"
    click.echo(f"{state.label()} ({note})")


@db_group.command("history")
def history_command() -> None:
    """List this code's migrations, oldest first."""
    for script in migrations.history():
        click.echo(f"{script.revision:<24} {script.doc}")


@contextmanager
def _store() -> Iterator[Store]:
    if has_app_context():
        from hub import current_hub

        yield current_hub().store
        return
    from dotenv import load_dotenv

    from hub.app import Settings

    load_dotenv(override=False)
    settings = Settings.resolve(None, os.environ)
    store = Store(settings.database_url, settings.database_schema)
    try:
        yield store
    finally:
        store.dispose()
