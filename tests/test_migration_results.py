"""Migration 0003_results on a database with rows: journeys recovered before it keep their
recovery and get its time; the new tables hold what the results features promise."""

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


def _at_job_binding(store: Store, schema: str | None) -> datetime:
    if schema:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    with store.migration_lock() as conn:
        command.upgrade(migrations.alembic_config(conn), "0002_job_binding")
    closed = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(days=3)
    with store.engine.begin() as conn:
        for journey_id, status, recovered in ((1, "converted", True), (2, "open", False)):
            conn.execute(
                sa.text(
                    "INSERT INTO journeys (id, tenant, checkout_id, source, status, created_at,"
                    " closed_at, recovered, recovered_amount, recovered_currency, token)"
                    " VALUES (:id, 'acme', :checkout, 'stripe', :status, :at, :closed,"
                    " :recovered, :amount, 'EUR', :token)"
                ),
                {
                    "id": journey_id,
                    "checkout": f"cs_{journey_id}",
                    "status": status,
                    "at": closed - timedelta(hours=1),
                    "closed": closed if recovered else None,
                    "recovered": recovered,
                    "amount": 4990 if recovered else None,
                    "token": f"{journey_id:016x}",
                },
            )
    return closed


def test_recovered_journeys_keep_their_recovery_and_get_its_time(database, store):
    closed = _at_job_binding(store, database[1])

    done = migrations.upgrade(store)
    assert (done.before.current, done.after) == ("0002_job_binding", migrations.head())

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(journeys).order_by(journeys.c.id)).all()
    recovered, still_open = rows
    assert recovered.recovered and recovered.recovered_amount == 4990
    assert recovered.recovered_at == closed.replace(tzinfo=UTC)
    assert (recovered.credit, recovered.refunded_amount) == (None, None)
    assert still_open.recovered_at is None


def test_a_tracking_event_lands_once_per_delivery_and_kind(database, store):
    _at_job_binding(store, database[1])
    migrations.upgrade(store)
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO deliveries (id, tenant, journey_id, step_index, sink, channel,"
                " status, attempts, created_at, updated_at)"
                " VALUES (7, 'acme', 2, 0, 'email', 'email', 'sent', 1, :now, :now)"
            ),
            {"now": now},
        )
        insert = sa.text(
            "INSERT INTO tracking_events (tenant, journey_id, delivery_id, kind, at)"
            " VALUES ('acme', 2, 7, :kind, :now)"
        )
        conn.execute(insert, {"kind": "opened", "now": now})
        conn.execute(insert, {"kind": "clicked", "now": now})
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(insert, {"kind": "opened", "now": now})
