"""Migration 0002_job_binding on a database with rows: every journey and step gets its own
random token, the database gets one installation id, and the hub then starts on it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from hub import migrations
from hub.store import Store


def _at_baseline(store: Store, schema: str | None) -> None:
    """A database as 0001_baseline left it, with two journeys and three steps."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    if schema:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    with store.migration_lock() as conn:
        command.upgrade(migrations.alembic_config(conn), "0001_baseline")
    journeys = sa.table(
        "journeys",
        *(
            sa.column(c)
            for c in ("id", "tenant", "checkout_id", "source", "status", "created_at", "recovered")
        ),
    )
    steps = sa.table(
        "steps",
        *(
            sa.column(c)
            for c in ("id", "journey_id", "step_index", "due_at", "status", "updated_at")
        ),
    )
    with store.engine.begin() as conn:
        for journey_id in (1, 2):
            conn.execute(
                journeys.insert().values(
                    id=journey_id,
                    tenant="acme",
                    checkout_id=f"cs_{journey_id}",
                    source="stripe",
                    status="open",
                    created_at=now,
                    recovered=False,
                )
            )
        for step_id, journey_id, index in ((1, 1, 0), (2, 1, 1), (3, 2, 0)):
            conn.execute(
                steps.insert().values(
                    id=step_id,
                    journey_id=journey_id,
                    step_index=index,
                    due_at=now,
                    status="retrying" if step_id == 1 else "scheduled",
                    updated_at=now,
                )
            )


@pytest.fixture
def store(database):
    store = Store(*database)
    yield store
    store.dispose()


def test_upgrading_a_database_with_rows_gives_each_a_token_and_the_database_an_id(
    database, store, hub_factory
):
    _at_baseline(store, database[1])
    assert migrations.state(store).current == "0001_baseline"

    done = migrations.upgrade(store)
    assert (done.before.current, done.after) == ("0001_baseline", migrations.head())

    with store.engine.connect() as conn:
        steps = conn.execute(sa.text("SELECT id, token, next_attempt_at FROM steps")).all()
        journeys = conn.execute(sa.text("SELECT id, token FROM journeys")).all()
        [(installation,)] = conn.execute(sa.text("SELECT uuid FROM installation")).all()
    tokens = [r.token for r in steps] + [r.token for r in journeys]
    assert all(re.fullmatch(r"[0-9a-f]{16}", t) for t in tokens), tokens
    assert len(set(tokens)) == 5  # one of its own each
    assert [r.next_attempt_at for r in steps] == [None, None, None]
    assert uuid.UUID(installation).version == 4

    hub = hub_factory({}).hub  # the hub starts on the upgraded database and names it
    assert hub.installation == installation
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:  # one row, ever
        conn.execute(
            sa.text("INSERT INTO installation (id, uuid, created_at) VALUES (2, 'x', :at)"),
            {"at": datetime.now(UTC).replace(tzinfo=None)},
        )
