"""Alembic's environment: how the hub and the ``alembic`` command run ``versions/``.

The hub (:func:`hub.migrations.upgrade`) hands over a connection that already holds the
migration lock inside a transaction, so all pending migrations of one start commit or roll
back together, and N processes starting at once take turns. The ``alembic`` command line (for
developers, configured in ``pyproject.toml``) has no connection: it takes the same lock on the
database named by ``DATABASE_URL`` / ``DATABASE_SCHEMA``, as the hub would.

``DATABASE_SCHEMA`` needs nothing here: the store's connections put it first on PostgreSQL's
``search_path``, so ``alembic_version`` and every table land in it, and autogenerate compares
that schema.
"""

from __future__ import annotations

import os
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from hub.store import Store, UTCDateTime, metadata, normalize_url


def render_item(kind: str, obj: Any, _context: Any) -> str | bool:
    """Autogenerate writes UTCDateTime as the column type it is in the database: a migration
    must not import the model, which will move on."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_from_command_line() -> None:
    from hub.app import Settings

    settings = Settings.resolve(None, os.environ)
    if context.is_offline_mode():  # `alembic upgrade --sql`: print the SQL
        context.configure(
            url=normalize_url(settings.database_url),
            target_metadata=metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    store = Store(settings.database_url, settings.database_schema)
    try:
        with store.migration_lock() as connection:
            run(connection)
    finally:
        store.dispose()


if context.config.attributes.get("connection") is not None:
    run(context.config.attributes["connection"])
else:
    run_from_command_line()
