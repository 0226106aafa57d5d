"""The schema is versioned by Alembic: first boots of many processes never race, and a database
the previous release created is adopted without losing a row."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import release_0_1_0
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from hub import migrations
from hub.app import create_app
from hub.console import HubGroup
from hub.store import Store, journeys, metadata, steps
from hub.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]

# gunicorn calls this in each worker after it loaded wsgi:app (create_app returned)
_GUNICORN_CONF = """
def post_worker_init(worker):
    worker.log.info("hub-worker-ready %s", worker.pid)
"""


def _env(tmp_path: Path, redis_url: str, database: tuple[str, str | None], **extra: str) -> dict:
    (tmp_path / "config" / "tenants").mkdir(parents=True, exist_ok=True)
    return dict(
        os.environ,
        HUB_CONFIG_DIR=str(tmp_path / "config"),
        HUB_VAR_DIR=str(tmp_path / "var"),
        HUB_SECRET_KEY="test-secret",
        REDIS_URL=redis_url,
        DATABASE_URL=database[0],
        DATABASE_SCHEMA=database[1] or "",
        **extra,
    )


def _status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_gunicorn_with_several_workers_boots_on_a_fresh_database(tmp_path, redis_url, database):
    """Issue 9: every worker of a first boot migrates at once; none may crash the master."""
    workers = 4
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text(_GUNICORN_CONF)
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(conf),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--chdir",
                str(ROOT),
                "wsgi:app",
            ],
            env=_env(tmp_path, redis_url, database),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()
        wait_for(
            lambda: (
                server.poll() is not None
                or log_path.read_text().count("hub-worker-ready") >= workers
            ),
            180,  # a loaded 2-core CI machine: 4 workers took up to 55 s
            message=f"{workers} gunicorn workers booted",
        )
        booted = time.monotonic() - started
        text = log_path.read_text()
        assert server.poll() is None, f"gunicorn exited:\n{text[-4000:]}"
        assert "Worker failed to boot" not in text and "Traceback" not in text, text[-4000:]
        assert _status(port, "/readyz") == 200
        print(f"{workers} workers booted in {booted:.1f}s")
    finally:
        server.terminate()
        server.wait(20)


def _hub(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _revision(database: tuple[str, str | None]) -> str | None:
    store = Store(*database)
    try:
        return migrations.state(store).current
    finally:
        store.dispose()


@pytest.fixture
def store(database):
    store = Store(*database)
    yield store
    store.dispose()


def test_migrations_from_empty_build_exactly_the_metadata(database, store):
    """A column added to hub/store.py without a migration fails here, on SQLite and PG."""
    done = migrations.upgrade(store)
    assert (done.before.label(), done.after) == ("empty", migrations.head())
    fresh = Store(*database)  # a new engine: it sees the schema that now exists
    try:
        with fresh.engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert compare_metadata(context, metadata) == []
    finally:
        fresh.dispose()


def test_history_is_one_line_from_the_baseline():
    """Two migrations with the same down_revision would leave two heads: upgrades stop."""
    scripts = migrations.history()
    assert scripts[0].revision == "0001_baseline" and scripts[0].down_revision is None
    for older, newer in zip(scripts, scripts[1:], strict=False):
        assert newer.down_revision == older.revision
    assert migrations.head() == scripts[-1].revision
    # what start-ups read without importing Alembic is what Alembic reads
    assert migrations.revision_map() == {
        s.revision: (s.down_revision,) if s.down_revision else () for s in scripts
    }


def test_database_of_the_previous_release_is_stamped_then_upgraded_rows_intact(
    database, store, hub_factory
):
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    old = release_0_1_0.metadata
    with store.engine.begin() as conn:
        if database[1]:
            conn.execute(sa.text(f'CREATE SCHEMA "{database[1]}"'))
        old.create_all(conn)
        conn.execute(
            old.tables["journeys"].insert(),
            {
                "id": 7,
                "tenant": "acme",
                "checkout_id": "cs_1",
                "source": "stripe",
                "status": "open",
                "email": "jane@example.com",
                "created_at": now,
            },
        )
        conn.execute(
            old.tables["suppressions"].insert(),
            {"tenant": "acme", "identity": "joe@example.com", "channel": "*", "created_at": now},
        )
    before = migrations.state(store)
    assert before.unversioned and before.current is None

    hub = hub_factory({}).hub  # create_app on that database, as an upgraded deployment would

    assert _revision(database) == migrations.head()
    with hub.store.begin() as conn:
        journey = conn.execute(sa.text("SELECT id, email, created_at FROM journeys")).one()
        assert journey.id == 7 and journey.email == "jane@example.com"
        assert conn.execute(sa.text("SELECT identity FROM suppressions")).scalar_one() == (
            "joe@example.com"
        )


def test_several_hub_db_upgrades_at_once_migrate_once(tmp_path, redis_url, database):
    env = _env(tmp_path, redis_url, database)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "hub", "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [(p.wait(120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in outputs] == [0, 0, 0, 0], outputs
    said = sorted(out.strip() for _, out, _ in outputs)
    head = migrations.head()
    assert said == [f"database is up to date at {head}"] * 3 + [
        f"database upgraded: empty → {head}"
    ], outputs


def test_hub_db_upgrade_twice_is_a_no_op(tmp_path, redis_url, database, monkeypatch):
    for key, value in _env(tmp_path, redis_url, database).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    first = runner.invoke(HubGroup(), ["db", "upgrade"])
    assert first.exit_code == 0 and "upgraded: empty → " in first.output, first.output
    second = runner.invoke(HubGroup(), ["db", "upgrade"])
    assert second.output == f"database is up to date at {migrations.head()}\n"
    current = runner.invoke(HubGroup(), ["db", "current"])
    assert current.output == f"{migrations.head()} (up to date)\n"
    history = runner.invoke(HubGroup(), ["db", "history"])
    assert history.output.startswith("0001_baseline ")


def _from_a_newer_release(store: Store, schema: str | None) -> None:
    migrations.upgrade(store)
    with store.begin() as conn:
        version = sa.table("alembic_version", sa.column("version_num"), schema=schema)
        conn.execute(version.update().values(version_num="0999_from_the_future"))


NEWER = "the database is at schema revision 0999_from_the_future, which this version"


def test_database_from_a_newer_release_is_refused_with_one_line(
    tmp_path, redis_url, database, store, monkeypatch
):
    _from_a_newer_release(store, database[1])
    env = _env(tmp_path, redis_url, database)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for args in (["upgrade"], ["current"]):
        done = CliRunner().invoke(HubGroup(), ["db", *args])
        assert done.exit_code == 1 and done.output.startswith(f"Error: {NEWER}"), done.output
    started = _hub("worker", "--burst", env=env)  # any command that builds the app to work
    assert started.returncode == 1
    assert f"Error: {NEWER}" in started.stderr and "Traceback" not in started.stderr
    assert _revision(database) == "0999_from_the_future"  # untouched


def test_gunicorn_refuses_a_database_from_a_newer_release(tmp_path, redis_url, database, store):
    """The master stops at once with the message instead of respawning refusing workers."""
    _from_a_newer_release(store, database[1])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--workers",
            "2",
            "--chdir",
            str(ROOT),
            "wsgi:app",
        ],
        env=_env(tmp_path, redis_url, database),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "App failed to load" in done.stderr
    assert f"abandonment-hub: {NEWER}" in done.stderr
    # gunicorn 27 prints a traceback of its own (HaltServer raised while halting); ours: none
    assert "SchemaMismatch" not in done.stderr and "hub/app.py" not in done.stderr


def test_without_auto_migrate_a_database_behind_is_refused_until_hub_db_upgrade(
    tmp_path, redis_url, database, monkeypatch
):
    env = _env(tmp_path, redis_url, database, HUB_AUTO_MIGRATE="0")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(migrations.SchemaMismatch) as refused:
        create_app()
    message = refused.value.format_message()
    assert message == (
        f"the database schema is behind this code (empty → {migrations.head()}) and "
        "HUB_AUTO_MIGRATE=0: run `hub db upgrade`, then start again"
    )
    assert _revision(database) is None  # nothing was created

    started = _hub("worker", "--burst", env=env)  # the console script: one line, exit 1
    assert started.returncode == 1 and started.stderr.strip() == f"Error: {message}"
    assert CliRunner().invoke(HubGroup(), ["db", "upgrade"]).exit_code == 0  # while the app refuses
    create_app().extensions["hub"].close()  # now it starts


def test_sqlite_migration_may_rebuild_a_referenced_table_but_never_break_a_key(tmp_path):
    """Alembic alters SQLite tables by rebuilding them; journeys is referenced by steps."""
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    migrations.upgrade(store)
    now = datetime.now(UTC)
    with store.begin() as conn:
        conn.execute(
            journeys.insert(),
            {
                "id": 1,
                "tenant": "a",
                "checkout_id": "c",
                "source": "s",
                "status": "open",
                "created_at": now,
            },
        )
        conn.execute(
            steps.insert(),
            {
                "journey_id": 1,
                "step_index": 0,
                "due_at": now,
                "status": "scheduled",
                "updated_at": now,
            },
        )
    with store.begin() as conn:
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'journeys'")
        create = ddl.scalar_one().replace("journeys", "journeys_new", 1)
    rebuild = [  # what op.batch_alter_table does
        create,
        "INSERT INTO journeys_new SELECT * FROM journeys",
        "DROP TABLE journeys",
        "ALTER TABLE journeys_new RENAME TO journeys",
    ]
    with store.migration_lock() as conn:
        for sql in rebuild:
            conn.exec_driver_sql(sql)
    with pytest.raises(sa.exc.IntegrityError), store.migration_lock() as conn:
        conn.exec_driver_sql("DELETE FROM journeys")
    with store.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(journeys)).scalar() == 1
        with pytest.raises(sa.exc.IntegrityError):  # enforcement is back on afterwards
            conn.execute(journeys.delete())
    store.dispose()
