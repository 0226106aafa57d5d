"""Migration 0007_order_ref on a database with rows: recovered journeys keep their recovery and
have no purchase reference; a refund that names a purchase finds the journey by the new index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command

from hub import migrations
from hub.store import Store, journeys


@pytest.fixture
def store(database):
    store = Store(*database)
    yield store
    store.dispose()


def _at_users(store: Store, schema: str | None) -> None:
    """A database at 0006_report_indexes (the revision before this one) with a recovered journey."""
    if schema:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    with store.migration_lock() as conn:
        command.upgrade(migrations.alembic_config(conn), "0006_report_indexes")
    at = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(days=3)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO journeys (id, tenant, checkout_id, source, status, created_at,"
                " closed_at, recovered, recovered_amount, recovered_currency, recovered_at,"
                " refunded_amount, token)"
                " VALUES (1, 'acme', 'cs_1', 'stripe', 'converted', :at, :at, :yes, 4990,"
                " 'EUR', :at, 1000, '0000000000000001')"
            ),
            {"at": at, "yes": True},
        )


def test_recovered_journeys_keep_their_recovery_and_get_no_order_ref(database, store):
    _at_users(store, database[1])

    done = migrations.upgrade(store)
    assert (done.before.current, done.after) == ("0006_report_indexes", migrations.head())

    with store.engine.connect() as conn:
        [row] = conn.execute(sa.select(journeys)).all()
    assert row.recovered and (row.recovered_amount, row.refunded_amount) == (4990, 1000)
    assert row.order_ref is None


def test_the_order_ref_is_stored_and_indexed_per_tenant(database, store):
    _at_users(store, database[1])
    migrations.upgrade(store)
    with store.engine.begin() as conn:
        conn.execute(sa.update(journeys).values(order_ref="pi_3Test"))
        found = conn.execute(
            sa.select(journeys.c.id).where(
                journeys.c.tenant == "acme", journeys.c.order_ref == "pi_3Test"
            )
        ).scalar()
        indexes = sa.inspect(conn).get_indexes("journeys", schema=database[1])
    assert found == 1
    [index] = [i for i in indexes if i["name"] == "ix_journeys_order_ref"]
    assert index["column_names"] == ["tenant", "order_ref"]
