"""The database: events (the durable outbox), journeys, steps, the delivery ledger, suppressions.

SQLAlchemy Core over SQLite (default, ``var/hub.db``) or PostgreSQL (psycopg 3). The database,
not Redis, is the source of truth: every unique constraint below is a guarantee the hub gives
(one stored event per platform event, one journey per checkout, one message per journey, step
and sink), and a sweep rebuilds Redis' queues from these rows.
"""

from __future__ import annotations

import re
import secrets
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()


def new_token() -> str:
    """A random tag for a row that jobs and links name, so a reused id never matches it.

    Ids come back after a database is restored from a backup or reset; a job or link made for
    the old row carries the old token and is refused (see :mod:`hub.binding`).
    """
    return secrets.token_hex(8)


class UTCDateTime(sa.TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no zone, so store naive UTC)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("event_key", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("checkout_id", sa.String(255), nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(20)),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("raw", sa.Text),
    # stored → queued → processed (or failed); the sweep re-queues stored/queued rows
    sa.Column("status", sa.String(16), nullable=False, default="stored"),
    sa.Column("note", sa.Text),
    sa.UniqueConstraint("tenant", "source", "event_key", name="uq_event_key"),
)
sa.Index("ix_events_status", events.c.status, events.c.received_at)
sa.Index("ix_events_identity", events.c.tenant, events.c.email)
sa.Index("ix_events_phone", events.c.tenant, events.c.phone)
sa.Index("ix_events_checkout", events.c.tenant, events.c.checkout_id)
# the dashboard: a source's last call and usual gap (migration 0008_dashboard_indexes)
sa.Index("ix_events_received", events.c.tenant, events.c.source, events.c.received_at)

journeys = sa.Table(
    "journeys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("checkout_id", sa.String(255), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    # pending (inferred, waiting for the window) | open | converted | deleted | unsubscribed |
    # superseded | no_flow | finished
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("flow", sa.String(128)),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(20)),
    sa.Column("event_id", sa.Integer),
    sa.Column("event", sa.JSON),
    sa.Column("abandoned_at", UTCDateTime),
    sa.Column("last_update_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("closed_reason", sa.Text),
    sa.Column("recovered", sa.Boolean, nullable=False, default=False),
    sa.Column("recovered_amount", sa.BigInteger),
    sa.Column("recovered_currency", sa.String(3)),
    sa.Column("token", sa.String(32), nullable=False, default=new_token),
    # attribution (hub results): when the conversion came, which event it was, which message
    # gets the credit and why (clicked | delivered | sent | none = recovered without message),
    # and what refunds later took back (minor units of recovered_currency)
    sa.Column("recovered_at", UTCDateTime),
    sa.Column("conversion_event_id", sa.Integer),
    sa.Column("credited_delivery_id", sa.Integer),
    sa.Column("credit", sa.String(16)),
    sa.Column("refunded_amount", sa.BigInteger),
    # in its flow's holdout group (hub.holdout): tracked like the others, sent nothing
    sa.Column("holdout", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # the platform's id of the purchase that converted it (Stripe payment intent, Shopify
    # order): its refunds name that, not the checkout
    sa.Column("order_ref", sa.String(255)),
    sa.UniqueConstraint("tenant", "checkout_id", name="uq_journey_checkout"),
)
sa.Index("ix_journeys_email", journeys.c.tenant, journeys.c.email)
sa.Index("ix_journeys_phone", journeys.c.tenant, journeys.c.phone)
# reports and the journey list read one tenant's journeys by the time they were abandoned; on
# PostgreSQL the index also holds what a report's aggregates read (index-only scans, 0006),
# and a partial one holds the recovered journeys alone, which the credited-message queries read
REPORT_COLUMNS = [
    "id",
    "flow",
    "source",
    "recovered",
    "recovered_currency",
    "recovered_amount",
    "refunded_amount",
    "credit",
    "credited_delivery_id",
]
sa.Index(
    "ix_journeys_abandoned",
    journeys.c.tenant,
    journeys.c.abandoned_at,
    postgresql_include=REPORT_COLUMNS,
)
sa.Index(
    "ix_journeys_recovered",
    journeys.c.tenant,
    journeys.c.abandoned_at,
    postgresql_include=REPORT_COLUMNS,
    postgresql_where=journeys.c.recovered,
    sqlite_where=journeys.c.recovered,
)
# a refund that names only its purchase finds the journey by it
sa.Index("ix_journeys_order_ref", journeys.c.tenant, journeys.c.order_ref)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("journey_id", sa.Integer, sa.ForeignKey("journeys.id"), nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    # scheduled | running | sent | skipped | failed | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("token", sa.String(32), nullable=False, default=new_token),
    # when a `retrying` step tries again; due_at keeps the first attempt's time
    sa.Column("next_attempt_at", UTCDateTime),
    sa.UniqueConstraint("journey_id", "step_index", name="uq_step"),
)
sa.Index("ix_steps_due", steps.c.status, steps.c.due_at)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("journey_id", sa.Integer, sa.ForeignKey("journeys.id"), nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("sink", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("identity", sa.String(320)),
    # sending | sent | retrying | failed | skipped | unknown (+ provider statuses: delivered …)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("provider_id", sa.String(255)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.UniqueConstraint("journey_id", "step_index", "sink", name="uq_delivery"),
)
sa.Index(
    "ix_deliveries_identity",
    deliveries.c.tenant,
    deliveries.c.identity,
    deliveries.c.channel,
    deliveries.c.sent_at,
)
sa.Index("ix_deliveries_provider", deliveries.c.provider_id)
# the dashboard: one tenant's messages of the last days (never updated_at: see 0005)
sa.Index("ix_deliveries_created", deliveries.c.tenant, deliveries.c.created_at)

delivery_log = sa.Table(
    "delivery_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("journey_id", sa.Integer, nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("sink", sa.String(64)),
    sa.Column("channel", sa.String(32)),
    sa.Column("delivery_id", sa.Integer),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("at", UTCDateTime, nullable=False),
)
sa.Index("ix_delivery_log_journey", delivery_log.c.journey_id)
sa.Index(
    "ix_deliveries_journey",
    deliveries.c.journey_id,
    postgresql_include=["status", "channel", "step_index", "sent_at"],
)

# What happened to a message after it left: opened (pixel, an estimate), clicked (/r/ link or a
# push notification's click beacon), delivered / read (provider callbacks), bounced. One row per
# delivery and kind, the first time it happens: duplicates (a pixel loaded twice, a callback
# retried) are ignored, so counts are counts of messages, not of hits.
tracking_events = sa.Table(
    "tracking_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("journey_id", sa.Integer, sa.ForeignKey("journeys.id"), nullable=False),
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("detail", sa.Text),
    sa.UniqueConstraint("delivery_id", "kind", name="uq_tracking_event"),
)
sa.Index("ix_tracking_events_tenant", tracking_events.c.tenant, tracking_events.c.at)
sa.Index("ix_tracking_events_journey", tracking_events.c.journey_id)

# Consent evidence (hub.consent_evidence): per channel decision of a step, the consent fact it
# relied on (value, the platform field or subscription that gave it, when it was received) and
# the tenant policy that allowed or refused it. Written in the transaction that claims the
# delivery (allowed) or records the skip (refused); erasure scrubs the person, keeps the rest.
consent_evidence = sa.Table(
    "consent_evidence",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("journey_id", sa.Integer, sa.ForeignKey("journeys.id"), nullable=False),
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id")),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("sink", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(20)),
    sa.Column("decision", sa.String(16), nullable=False),  # allowed | refused
    sa.Column("reason", sa.Text),
    sa.Column("policy", sa.Text, nullable=False),
    sa.Column("fact", sa.JSON, nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=False),
)
sa.Index("ix_consent_evidence_email", consent_evidence.c.tenant, consent_evidence.c.email)
sa.Index("ix_consent_evidence_phone", consent_evidence.c.tenant, consent_evidence.c.phone)
sa.Index("ix_consent_evidence_journey", consent_evidence.c.journey_id)

# API keys: an agency admin key (tenant NULL, sees every tenant) or a tenant's key. Only a
# hash of the secret is stored; ``prefix`` (shown in listings) finds the row without it.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64)),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
    sa.UniqueConstraint("prefix", name="uq_api_key_prefix"),
)

# Proof of erasure without the data: a keyed digest of the erased address (so a later request
# for the same person can be matched), when, by whom, and how many rows of each table went.
erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("identity_digest", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # email | phone | retention
    sa.Column("actor", sa.String(128)),
    sa.Column("erased_at", UTCDateTime, nullable=False),
    sa.Column("rows", sa.JSON, nullable=False),
)
sa.Index("ix_erasures_identity", erasures.c.tenant, erasures.c.identity_digest)

# People who sign in to the dashboard: an agency admin (``tenant`` NULL, every tenant) or a
# client's viewer (one tenant, read-only). Only werkzeug's scrypt hash of the password is kept.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # admin | viewer
    sa.Column("tenant", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_sign_in_at", UTCDateTime),
    sa.UniqueConstraint("email", name="uq_user_email"),
    sa.CheckConstraint(
        "(role = 'admin' AND tenant IS NULL) OR (role = 'viewer' AND tenant IS NOT NULL)",
        name="ck_user_role_tenant",
    ),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("identity", sa.String(320), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),  # "*" = every channel
    sa.Column("reason", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("tenant", "identity", "channel", name="uq_suppression"),
)

plugin_data = sa.Table(
    "plugin_data",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("plugin", sa.String(64), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("plugin", "tenant", "key", name="uq_plugin_data"),
)

# One row naming this database: every job and link carries it, so state that outlives the
# database (Redis and its AOF under var/, a mail in an inbox) is never applied to another one.
installation = sa.Table(
    "installation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(36), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("id = 1", name="ck_installation_one_row"),
    sa.UniqueConstraint("uuid", name="uq_installation_uuid"),
)

# Connections the ingress keeps per web process: one per request served at once (gunicorn
# --threads). With SQLAlchemy's default of 5, the 6th concurrent webhook opened a connection and
# closed it after its insert, a PostgreSQL backend started per request (3 % of an ingress
# worker's samples under 8 threads, and the server's CPU on top).
INGEST_POOL = 16
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MIGRATION_LOCK = 4242001  # first key of pg_advisory_lock(int, int): "the hub's migrations"


def _lock_id(schema: str) -> int:
    """The second advisory-lock key: the schema's CRC-32 as a signed 32-bit integer."""
    value = zlib.crc32(schema.encode())
    return value - 2**32 if value >= 2**31 else value


@contextmanager
def _sqlite_migration_transaction(conn: Connection) -> Iterator[None]:
    """SQLite: a transaction without foreign-key enforcement, one full check before the commit.

    Alembic alters a SQLite table by rebuilding it (copy, drop, rename); dropping a table that
    other rows reference fails with enforcement on, and deferring does not help (the rename
    never settles the drop's violations). ``PRAGMA foreign_keys`` is ignored inside a
    transaction, so it is switched on the raw connection before ``BEGIN``.
    """
    raw = conn.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        with conn.begin():
            yield
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise sa.exc.IntegrityError("PRAGMA foreign_key_check", None, ValueError(broken))
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def normalize_url(url: str) -> str:
    """Map ``postgresql://`` / ``postgres://`` to the psycopg 3 driver; leave SQLite alone."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str,
    schema: str | None = None,
    *,
    pre_ping: bool = True,
    autocommit: bool = False,
    pool_size: int = 5,
) -> Engine:
    """An engine for ``url``; with ``schema`` (PostgreSQL) every connection uses that schema.

    ``pre_ping=False, autocommit=True`` (PostgreSQL) makes an engine on which one statement is
    one round trip and its own durable transaction: no ``SELECT 1`` at checkout, no ``BEGIN``
    or ``COMMIT`` of its own (the ingress' insert, see :meth:`Store.insert_event`).
    """
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy own transactions, then take the write lock at BEGIN: two
            # processes (web, worker) never deadlock upgrading a read lock.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # an unreachable database must turn into a 503 while the platform still waits for the
    # answer (Shopify waits 5 s); 2 s is the least libpq and psycopg honour
    connect_args: dict[str, Any] = {"connect_timeout": 2}
    if schema:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid database schema name {schema!r}")
        connect_args["options"] = f"-csearch_path={schema}"
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return sa.create_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=pre_ping,
        pool_size=pool_size,
        max_overflow=10,  # SQLAlchemy's default: opened for a burst, closed after
        **options,
    )


class Store:
    """Thin access to the tables; the engine and ingress own the logic."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self.engine = make_engine(url, schema)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._pinned: ContextVar[Connection | None] = ContextVar(f"pinned-{id(self)}", default=None)
        # the ingress' one-statement path (PostgreSQL): its own pool, no pre-ping
        self._ingest = (
            make_engine(url, schema, pre_ping=False, autocommit=True, pool_size=INGEST_POOL)
            if self.is_postgres
            else None
        )
        self._insert_event = self.insert_unless_exists(events).returning(events.c.id)

    @contextmanager
    def migration_lock(self) -> Iterator[Connection]:
        """A connection inside a transaction that one process at a time holds: for migrations.

        N processes starting at once (gunicorn workers, ``hub worker``s) all want to bring the
        schema up to date; only one may, and the others must wait until it committed.
        PostgreSQL: a session advisory lock (keyed by the schema, so per-test schemas do not
        wait for each other) is taken *before* ``CREATE SCHEMA IF NOT EXISTS``, which is not
        safe concurrently (a unique violation, issue 9), and held until after the commit.
        SQLite: the transaction starts with ``BEGIN IMMEDIATE`` (see :func:`make_engine`), so it
        holds the database's write lock from the first statement to the commit.
        """
        path = self.engine.url.database
        if not self.is_postgres and path and path != ":memory:":
            # the first migration creates the database, in a var/ that may not exist yet
            # (`hub db upgrade` on a fresh install); commands that only read never get here
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        with self.engine.connect() as conn:
            if not self.is_postgres:
                with _sqlite_migration_transaction(conn):
                    yield conn
                return
            key = {"cls": _MIGRATION_LOCK, "obj": _lock_id(self.schema or "")}
            conn.execute(sa.text("SELECT pg_advisory_lock(:cls, :obj)"), key)
            conn.commit()
            try:
                with conn.begin():
                    if self.schema:
                        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                    yield conn
            finally:
                try:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:cls, :obj)"), key)
                    conn.commit()
                except sa.exc.DBAPIError:
                    conn.invalidate()  # a lost session holds no lock; never pool it

    def installation_id(self) -> str:
        """This database's installation UUID, made on first use (read once per process).

        Migration 0002 creates the row; making it here as well covers a database whose row
        went missing (two processes starting together: the loser of the insert re-reads).
        """
        query = sa.select(installation.c.uuid).where(installation.c.id == 1)
        with self.begin() as conn:
            found = conn.execute(query).scalar()
            if found:
                return found
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(installation).values(
                            id=1, uuid=str(uuid.uuid4()), created_at=utcnow()
                        )
                    )
            except sa.exc.IntegrityError:
                pass
            return conn.execute(query).scalar_one()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction, on the connection :meth:`one_connection` holds if there is one."""
        pinned = self._pinned.get()
        if pinned is None or pinned.in_transaction():
            with self.engine.begin() as conn:
                yield conn
            return
        with pinned.begin():
            yield pinned

    @contextmanager
    def one_connection(self) -> Iterator[None]:
        """Run every :meth:`begin` inside on one pooled connection.

        A job makes several short transactions; each checkout from the pool costs a pre-ping
        round trip (``SELECT 1``) on PostgreSQL. Held for one job, the connection is checked
        (and replaced if the server dropped it) once. Transactions stay as short as before:
        between them the connection holds no locks.
        """
        if self._pinned.get() is not None:
            yield
            return
        with self.engine.connect() as conn:
            token = self._pinned.set(conn)
            try:
                yield
            finally:
                self._pinned.reset(token)

    def insert_unless_exists(self, table: sa.Table) -> sa.Insert:
        """``INSERT … ON CONFLICT DO NOTHING`` on this backend: a row that would break a unique
        key is skipped by the statement itself (with ``RETURNING``: no row comes back) instead
        of raising, so callers need no savepoint or second query to tell a duplicate."""
        insert = postgresql.insert if self.is_postgres else sqlite.insert
        return insert(table).on_conflict_do_nothing()

    def insert_event(self, row: dict[str, Any]) -> int | None:
        """Store one event row durably; its id, or ``None`` when its key is already stored.

        One round trip on PostgreSQL: a single autocommit ``INSERT … ON CONFLICT DO NOTHING
        RETURNING id`` is committed (flushed to the WAL) when it answers. The pre-ping, BEGIN,
        INSERT and COMMIT it replaces were four round trips per webhook (profiled). Without
        pre-ping a connection the server dropped fails once; that failure is retried once on a
        fresh connection, so a restarted database costs no webhook a 503.
        """
        if self._ingest is None:  # SQLite: no network; BEGIN IMMEDIATE takes the write lock
            with self.engine.begin() as conn:
                return conn.execute(self._insert_event, row).scalar()
        try:
            with self._ingest.connect() as conn:
                return conn.execute(self._insert_event, row).scalar()
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self._ingest.connect() as conn:
            return conn.execute(self._insert_event, row).scalar()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._ingest is not None:
            self._ingest.dispose()

    def lock(self, conn: Connection, query: sa.Select) -> sa.Select:
        """Row lock on PostgreSQL; SQLite already holds the write lock from BEGIN IMMEDIATE."""
        return query.with_for_update() if self.is_postgres else query


def utcnow() -> datetime:
    return datetime.now(UTC)
