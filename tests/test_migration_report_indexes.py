"""Migration 0006_report_indexes on a database with rows: the reports read the same figures
after it, recovered journeys get a partial index, and on PostgreSQL the indexes hold the
columns the aggregates read."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from hub import migrations
from hub.reports import GROUPINGS, report
from hub.store import Store
from tests.results_fixtures import SINCE, TZ, UNTIL, seed_bakery


@pytest.fixture
def store(database):
    store = Store(*database)
    yield store
    store.dispose()


def _at_holdout(store: Store, schema: str | None) -> None:
    if schema:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    with store.migration_lock() as conn:
        command.upgrade(migrations.alembic_config(conn), "0005_holdout_consent")


def _reports(store: Store) -> dict:
    return {by: report(store, "bakery", SINCE, UNTIL, by, TZ).as_dict() for by in GROUPINGS}


def _index_definitions(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            rows = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        else:
            rows = conn.execute(
                sa.text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                )
            )
        return dict(rows.all())


def test_reports_read_the_same_figures_after_the_index_migration(database, store):
    _at_holdout(store, database[1])
    seed_bakery(store)
    before = _reports(store)

    done = migrations.upgrade(store)

    assert (done.before.current, done.after) == ("0005_holdout_consent", migrations.head())
    assert _reports(store) == before
    assert before["flow"]["total"]["abandoned"] == 6


def test_on_postgresql_the_report_indexes_cover_the_aggregates(database, store):
    _at_holdout(store, database[1])
    migrations.upgrade(store)
    found = _index_definitions(store)
    assert found["ix_journeys_recovered"].endswith("WHERE recovered")
    if store.engine.dialect.name != "postgresql":
        assert "ix_journeys_abandoned" in found  # SQLite: the plain index stays
        return
    assert (
        "(tenant, abandoned_at) INCLUDE (id, flow, source, recovered,"
        in (found["ix_journeys_recovered"])
    )
    assert (
        "(tenant, abandoned_at) INCLUDE (id, flow, source, recovered,"
        in (found["ix_journeys_abandoned"])
    )
    assert (
        "(journey_id) INCLUDE (status, channel, step_index, sent_at)"
        in (found["ix_deliveries_journey"])
    )
