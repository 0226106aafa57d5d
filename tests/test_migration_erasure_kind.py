"""Migration 0005_erasure_kind on a database with erasure records: they stay, and a retention
run's record (kind ``retention``, nine characters) fits, on PostgreSQL too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from hub import migrations
from hub.store import Store, erasures


@pytest.fixture
def store(database):
    store = Store(*database)
    yield store
    store.dispose()


def test_erasure_records_stay_and_retention_fits(database, store):
    if database[1]:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{database[1]}"'))
    with store.migration_lock() as conn:
        command.upgrade(migrations.alembic_config(conn), "0004_users")
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(erasures).values(
                tenant="acme", identity_digest="ab" * 32, kind="email", erased_at=now, rows={}
            )
        )

    done = migrations.upgrade(store)
    assert (done.before.current, done.after) == ("0004_users", migrations.head())

    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(erasures).values(
                tenant="acme", identity_digest="*", kind="retention", erased_at=now, rows={}
            )
        )
        kinds = conn.execute(sa.select(erasures.c.kind).order_by(erasures.c.id)).scalars()
        assert list(kinds) == ["email", "retention"]
