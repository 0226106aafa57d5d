"""Dashboard accounts: the users table arrives by migration on a database with rows, and
``hub users create/list/delete`` manage it (the only way to make the first admin)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from hub import migrations
from hub.app import create_app
from hub.console import HubGroup
from hub.dashboard.accounts import authenticate
from hub.store import Store, users


@pytest.fixture
def store(database):
    store = Store(*database)
    yield store
    store.dispose()


def test_a_database_at_0003_results_gets_the_users_table_and_keeps_its_rows(database, store):
    if database[1]:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{database[1]}"'))
    with store.migration_lock() as conn:
        command.upgrade(migrations.alembic_config(conn), "0003_results")
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO journeys (id, tenant, checkout_id, source, status, created_at,"
                " recovered, token) VALUES (1, 'acme', 'cs_1', 'stripe', 'open', :now, false,"
                " 'a1b2c3d4e5f60718')"
            ),
            {"now": now},
        )
    now_utc = now.replace(tzinfo=UTC)
    done = migrations.upgrade(store)
    assert (done.before.current, done.after) == ("0003_results", migrations.head())
    with store.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM journeys")).scalar() == 1
        # a viewer without a tenant would see every tenant: the database refuses it
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(
                sa.insert(users).values(
                    email="x@y.example", password_hash="h", role="viewer", created_at=now_utc
                )
            )


def _cli(harness):
    runner = CliRunner()
    group = HubGroup(create_app=lambda create_state: create_app(harness.config))

    def run(*args: str, input: str | None = None):  # noqa: A002
        return runner.invoke(group, list(args), input=input, catch_exceptions=False)

    return run


def test_users_are_created_listed_and_deleted_from_the_command_line(hub_factory):
    harness = hub_factory({})
    hub = _cli(harness)
    made = hub("users", "create", "Boss@Agency.example", "--admin", input="long enough pw\n" * 2)
    assert made.exit_code == 0, made.output
    assert "created boss@agency.example: admin of every tenant" in made.output
    assert authenticate(harness.hub.store, "boss@agency.example", "long enough pw")
    listed = hub("users", "list")
    assert "boss@agency.example" in listed.output and "admin" in listed.output
    assert "long enough pw" not in listed.output
    gone = hub("users", "delete", "boss@agency.example")
    assert gone.exit_code == 0 and "deleted" in gone.output
    assert hub("users", "delete", "boss@agency.example").exit_code == 1


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("a@b.example",), "", "give exactly one of --admin and --tenant SLUG"),
        (("a@b.example", "--tenant", "nope", "--password-stdin"), "long enough pw\n", "no tenant"),
        (("a@b.example", "--admin", "--password-stdin"), "short\n", "at least 12 characters"),
        (("not-an-address", "--admin", "--password-stdin"), "long enough pw\n", "not an e-mail"),
    ],
)
def test_users_create_refuses_what_it_cannot_do(hub_factory, args, stdin, message):
    hub = _cli(hub_factory({}))
    result = hub("users", "create", *args, input=stdin)
    assert result.exit_code != 0
    assert message in result.output


def test_a_second_account_for_the_same_address_is_refused(hub_factory):
    hub = _cli(hub_factory({}))
    args = ("users", "create", "a@b.example", "--admin", "--password-stdin")
    assert hub(*args, input="long enough pw\n").exit_code == 0
    again = hub(*args, input="long enough pw\n")
    assert again.exit_code == 1 and "already an account for a@b.example" in again.output
