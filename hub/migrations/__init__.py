"""The database schema's versions (Alembic), and bringing a database up to this code's.

Adding a migration (every change to the tables in ``hub/store.py``)
-------------------------------------------------------------------
1. Change the tables in ``hub/store.py``: its ``metadata`` is the model.
2. Write ``hub/migrations/versions/0002_<name>.py`` with ``revision = "0002_<name>"`` and
   ``down_revision`` = the newest revision so far (``"0001_baseline"``; ``hub db history``
   lists them). Alembic can draft it from a database at the current head (``pyproject.toml``
   configures the ``alembic`` command; ``DATABASE_URL`` says which database)::

       export DATABASE_URL=sqlite:///var/dev.db
       alembic upgrade head
       alembic revision --autogenerate --rev-id 0002_<name> -m "<what it does>"
       ruff format hub/migrations && ruff check --fix hub/migrations

   then read and fix the draft. History stays one line: two scripts with the same
   ``down_revision`` fail ``test_migrations``.
3. A migration describes the schema as it was then: literal types (``sa.DateTime()`` for
   ``UTCDateTime``, as autogenerate writes it), never an import of ``hub.store``, whose
   model moves on. SQLite alters a table by rebuilding it: use ``op.batch_alter_table``
   (autogenerate does); foreign keys are checked once, before the commit.
4. ``pytest tests/test_migrations.py``: the database the migrations build must equal the
   metadata (``compare_metadata`` finds no difference) on SQLite and PostgreSQL, so a column
   without a migration fails CI.

Every start (``create_app``) applies pending migrations under a database lock unless
``HUB_AUTO_MIGRATE=0``; then it refuses to start while the database is behind and
``hub db upgrade`` is the way. All pending migrations run in one transaction: on a failure
the database stays at the revision it had.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.store import Store

if TYPE_CHECKING:  # Alembic is imported only to migrate: it costs every process ~0.3 s
    from alembic.config import Config
    from alembic.script import Script

BASELINE = "0001_baseline"
VERSION_TABLE = "alembic_version"  # Alembic's default; in DATABASE_SCHEMA (the search_path)
HERE = Path(__file__).resolve().parent
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)
# a table the previous release (metadata.create_all, no Alembic) always created
_LEGACY_MARKER = "events"


class SchemaMismatch(click.ClickException):
    """The database's schema does not fit this code, and the hub will not serve on it.

    A ClickException so that the ``hub`` command (which builds the app inside Click) prints
    the one-line message and exits 1 instead of showing a traceback; ``wsgi.py`` does the same
    for gunicorn.
    """


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands against this code's migrations."""

    current: str | None  # the revision in alembic_version; None when it has none
    head: str  # this code's newest revision
    unversioned: bool  # the previous release's tables without alembic_version
    known: bool  # False: a revision from a newer release

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def label(self) -> str:
        if self.current:
            return self.current
        return "unversioned (previous release)" if self.unversioned else "empty"


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: ``before`` is the state it found, ``after`` the revision now."""

    before: SchemaState
    after: str

    def describe(self) -> str:
        if self.before.current == self.after:
            return f"database is up to date at {self.after}"
        return f"database upgraded: {self.before.label()} → {self.after}"


def upgrade(store: Store) -> Upgrade:
    """Apply every pending migration, holding the migration lock throughout.

    The first of N processes starting together migrates; the others wait for the lock and
    then find nothing to do. A database the previous release created (its tables, no
    ``alembic_version``) is stamped at the baseline first, so its rows stay where they are.
    Raises :class:`SchemaMismatch` for a database migrated by a newer release.
    """
    with store.migration_lock() as conn:
        before = _state(conn, store.schema)
        refuse_unknown(before)
        if before.up_to_date:  # every start but the first after a release: no Alembic
            return Upgrade(before, before.current or before.head)
        # Alembic's INFO lines (plugins set up on import, context impl) tell an operator
        # nothing; the caller logs one line saying from which revision to which
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from alembic import command

        config = alembic_config(conn)
        if before.unversioned:
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
        return Upgrade(before, _state(conn, store.schema).current or before.head)


def require_current(store: Store) -> SchemaState:
    """Return the state when the database is at this code's head, else raise
    :class:`SchemaMismatch` saying what to do (``HUB_AUTO_MIGRATE=0`` start-ups)."""
    current = state(store)
    refuse_unknown(current)
    if not current.up_to_date:
        raise SchemaMismatch(
            f"the database schema is behind this code ({current.label()} → {current.head}) "
            "and HUB_AUTO_MIGRATE=0: run `hub db upgrade`, then start again"
        )
    return current


def state(store: Store) -> SchemaState:
    """Read where the database stands; takes no lock and changes nothing."""
    with store.engine.connect() as conn:
        return _state(conn, store.schema)


def head() -> str:
    """This code's newest revision: the one no other names as its ``down_revision``."""
    revisions = revision_map()
    named = {down for downs in revisions.values() for down in downs}
    # two heads is a broken history (test_migrations fails); max() keeps starts deterministic
    return max(set(revisions) - named, default=BASELINE)


def revision_map() -> dict[str, tuple[str, ...]]:
    """Each revision in ``versions/`` with its ``down_revision``, read from the scripts'
    text rather than through Alembic, whose import would slow every start
    (``test_migrations`` checks that Alembic reads the same)."""
    found: dict[str, tuple[str, ...]] = {}
    for path in (HERE / "versions").glob("*.py"):
        fields = {k: ast.literal_eval(v) for k, v in _ASSIGNMENT.findall(path.read_text())}
        if fields.get("revision"):
            down = fields.get("down_revision") or ()
            found[fields["revision"]] = (down,) if isinstance(down, str) else tuple(down)
    return found


def history() -> list[Script]:
    """This code's revisions as Alembic reads them, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return list(reversed(list(scripts.walk_revisions())))


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an ini file: the scripts ship inside the package.

    ``env.py`` runs the migrations on ``connection``, which must hold the migration lock.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def _state(conn: Connection, schema: str | None) -> SchemaState:
    # read alembic_version by hand: a MigrationContext would log two INFO lines per start
    inspector = sa.inspect(conn)
    current = None
    if inspector.has_table(VERSION_TABLE, schema=schema):
        version = sa.table(VERSION_TABLE, sa.column("version_num"), schema=schema)
        current = conn.execute(sa.select(version.c.version_num)).scalars().first()
    known = current is None or current in revision_map()
    unversioned = current is None and inspector.has_table(_LEGACY_MARKER, schema=schema)
    return SchemaState(current, head(), unversioned, known)


def refuse_unknown(state: SchemaState) -> None:
    """Raise :class:`SchemaMismatch` when a newer release migrated the database: this code
    cannot know what its tables look like."""
    if not state.known:
        raise SchemaMismatch(
            f"the database is at schema revision {state.current}, which this version of "
            f"abandonment-hub does not know (its newest is {state.head}): a newer release "
            "migrated it; run that release, or point DATABASE_URL at another database"
        )
