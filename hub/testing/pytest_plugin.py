"""pytest fixtures for the hub and its plugins (registered via the ``pytest11`` entry point).

* ``redis_url`` (session): ``REDIS_URL`` when set, else an embedded ``redis-server`` for the
  run; either way an empty database number claimed for this run and cleaned afterwards.
* ``database`` (function): ``(url, schema)``: a fresh SQLite file, or with ``DATABASE_URL``
  pointing at PostgreSQL, a fresh schema dropped after the test; ``database_factory`` makes
  more of them.
* ``smtp_server``: a real aiosmtpd server on loopback.
* ``http_stand_in``: a factory for real HTTP servers on 127.0.0.1.
* ``hub_factory``: builds a :class:`hub.testing.HubHarness` from tenant TOML texts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.testing import HttpStandIn, HubHarness, SmtpServer, redis_database


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    embedded = None
    base = os.environ.get("REDIS_URL")
    if not base:
        from hub.queues import EmbeddedRedis

        embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
        base = embedded.start()
    try:
        with redis_database(base) as url:
            yield url
    finally:
        if embedded:
            embedded.stop()


@pytest.fixture
def database_factory(tmp_path: Path) -> Iterator:
    """Makes fresh, empty databases: ``make() -> (url, schema)``, each dropped afterwards.

    SQLite files under ``tmp_path``; with ``DATABASE_URL`` pointing at PostgreSQL, a schema
    each. Tests that need two installations (two hubs on one Redis) take two.
    """
    url = os.environ.get("DATABASE_URL", "")
    postgres = url.startswith(("postgres://", "postgresql://", "postgresql+psycopg://"))
    made: list[str] = []

    def make() -> tuple[str, str | None]:
        if postgres:
            made.append(f"hubtest_{os.getpid()}_{secrets.token_hex(4)}")
            return url, made[-1]
        name = "hub.db" if not made else f"hub{len(made)}.db"
        made.append(name)
        return f"sqlite:///{tmp_path / name}", None

    yield make
    if postgres and made:
        import sqlalchemy as sa

        from hub.store import make_engine

        engine = make_engine(url)
        with engine.begin() as conn:
            for schema in made:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def database(database_factory) -> tuple[str, str | None]:  # noqa: ANN001
    return database_factory()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def http_stand_in() -> Iterator:
    servers: list[HttpStandIn] = []

    def make(handler=None, tls=None) -> HttpStandIn:  # noqa: ANN001
        server = HttpStandIn(handler, tls).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def hub_factory(tmp_path: Path, redis_url: str, database: tuple[str, str | None]) -> Iterator:
    harnesses: list[HubHarness] = []

    def make(
        tenants: dict[str, str],
        settings: dict | None = None,
        templates: dict[str, str] | None = None,
    ) -> HubHarness:
        root = tmp_path / f"hub{len(harnesses)}"
        harness = HubHarness(
            root, redis_url, database[0], database[1], tenants, settings, templates
        )
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.close()
