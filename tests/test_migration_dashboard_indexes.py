"""Migration 0008_dashboard_indexes on a database with rows: the dashboard's two indexes
arrive, the rows stay, and a downgrade takes the indexes away again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from hub import migrations
from hub.store import Store


@pytest.fixture
def store(database):
    store = Store(*database)
    yield store
    store.dispose()


def _at_users(store: Store, schema: str | None) -> None:
    """A database as 0007_order_ref left it, with a journey, its event and a delivery."""
    if schema:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    with store.migration_lock() as conn:
        command.upgrade(migrations.alembic_config(conn), "0007_order_ref")
    now = {"now": datetime.now(UTC).replace(tzinfo=None)}
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO events (id, tenant, source, event_key, kind, checkout_id,"
                " occurred_at, received_at, payload, status) VALUES (1, 'acme', 'stripe',"
                " 'evt_1', 'checkout.abandoned', 'cs_1', :now, :now, '{}', 'processed')"
            ),
            now,
        )
        conn.execute(
            sa.text(
                "INSERT INTO journeys (id, tenant, checkout_id, source, status, created_at,"
                " recovered, token) VALUES (1, 'acme', 'cs_1', 'stripe', 'open', :now, false,"
                " '00000000000000aa')"
            ),
            now,
        )
        conn.execute(
            sa.text(
                "INSERT INTO deliveries (id, tenant, journey_id, step_index, sink, channel,"
                " status, attempts, created_at, updated_at)"
                " VALUES (1, 'acme', 1, 0, 'email', 'email', 'sent', 1, :now, :now)"
            ),
            now,
        )


def _indexes(store: Store, schema: str | None, table: str) -> dict[str, list[str]]:
    found = sa.inspect(store.engine).get_indexes(table, schema=schema)
    return {i["name"]: i["column_names"] for i in found}


def test_the_dashboard_indexes_arrive_on_a_database_with_rows(database, store):
    schema = database[1]
    _at_users(store, schema)
    assert "ix_deliveries_created" not in _indexes(store, schema, "deliveries")

    done = migrations.upgrade(store)

    assert (done.before.current, done.after) == ("0007_order_ref", migrations.head())
    assert _indexes(store, schema, "deliveries")["ix_deliveries_created"] == [
        "tenant",
        "created_at",
    ]
    assert _indexes(store, schema, "events")["ix_events_received"] == [
        "tenant",
        "source",
        "received_at",
    ]
    with store.engine.connect() as conn:
        counts = [
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("events", "journeys", "deliveries")
        ]
    assert counts == [1, 1, 1]


def test_a_downgrade_takes_the_indexes_away(database, store):
    schema = database[1]
    _at_users(store, schema)
    migrations.upgrade(store)
    with store.migration_lock() as conn:
        command.downgrade(migrations.alembic_config(conn), "0007_order_ref")
    assert "ix_deliveries_created" not in _indexes(store, schema, "deliveries")
    assert "ix_events_received" not in _indexes(store, schema, "events")
