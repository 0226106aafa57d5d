"""``hub db …``: the database schema's version (Alembic, see :mod:`hub.migrations`).

``hub`` builds the app of these commands without touching the database (``db`` is in
``hub.console.READ_ONLY``), so they work where every other start refuses: a database behind
the code with ``HUB_AUTO_MIGRATE=0``, or one from a newer release (``hub db current`` names it).
"""

from __future__ import annotations

import click

from hub import migrations
from hub.current import current_hub
from hub.store import Store


@click.group("db")
def db_group() -> None:
    """The database schema: upgrade it, show its revision and the history."""


@db_group.command("upgrade")
def upgrade_command() -> None:
    """Apply every pending migration (under a database lock; safe while others start)."""
    click.echo(migrations.upgrade(_store()).describe())


@db_group.command("current")
def current_command() -> None:
    """Print the database's revision and whether it is behind this code; exit 1 when the
    database is from a newer release."""
    state = migrations.state(_store())
    migrations.refuse_unknown(state)
    note = "up to date" if state.up_to_date else f"behind: `hub db upgrade` goes to {state.head}"
    click.echo(f"{state.label()} ({note})")


@db_group.command("history")
def history_command() -> None:
    """List this code's migrations, oldest first."""
    for script in migrations.history():
        click.echo(f"{script.revision:<24} {script.doc}")


def _store() -> Store:
    return current_hub().store
