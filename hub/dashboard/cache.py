"""A short cache of the aggregate figures in Redis, per tenant, so a page viewed again within
:data:`SECONDS` does not aggregate 30 days of journeys, events and deliveries again.

Per tenant rather than per page: the first page and the client page share a tenant's entries,
and a client's viewer reads only entries under its own tenant's slug. Entries live under the
hub's Redis namespace (``HUB_QUEUE_PREFIX`` plus the installation), so two hubs or two
databases on one Redis never read each other's figures. Each entry carries the time it was
computed; the pages show the oldest one ("as of hh:mm"), so nobody mistakes a figure for live.

When Redis cannot answer, the figures are computed on every view, as without a cache: a slow
page is better than no page while the queue is down.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis

from hub.store import utcnow

SECONDS = 60  # long enough to absorb a morning's clicking around, short for an alert


def per_tenant(
    hub: Any,
    kind: str,
    slugs: list[str],
    compute: Callable[[list[str]], dict[str, Any]],
    seconds: int = SECONDS,
) -> tuple[dict[str, Any], datetime]:
    """``kind``'s value for each of ``slugs`` and the time the oldest of them was computed.

    Values found in Redis are used as they are; the rest are computed in one call of
    ``compute(missing slugs)`` (so one grouped query still serves many tenants), which must
    return a JSON-able value for each slug it was given.
    """
    if not slugs:
        return {}, utcnow()
    try:
        connection = hub.queues.connection
        stored = connection.mget([_key(hub, kind, slug) for slug in slugs])
    except redis.RedisError:
        connection, stored = None, [None] * len(slugs)
    values: dict[str, Any] = {}
    oldest = utcnow()
    for slug, raw in zip(slugs, stored, strict=True):
        if raw is not None:
            entry = json.loads(raw)
            values[slug] = entry["value"]
            oldest = min(oldest, datetime.fromisoformat(entry["at"]))
    missing = [slug for slug in slugs if slug not in values]
    if missing:
        with _aggregating(hub.store):
            computed = compute(missing)
        values.update(computed)
        if connection is not None:
            _store(connection, hub, kind, computed, seconds)
    return values, oldest


@contextmanager
def _aggregating(store: Any) -> Iterator[None]:
    """The figures' queries on one connection, and on PostgreSQL without its JIT compiler.

    The report's queries are estimated above ``jit_above_cost`` (the planner prices the
    hashed alternatives of their ``EXISTS`` subplans it then never runs), so PostgreSQL
    spent ~50 ms compiling a query that runs in ~15 ms (100 k journeys, measured). JIT pays
    off for scans of millions of rows, not for one client's 30 days.
    """
    with store.one_connection():
        if not store.is_postgres:
            yield
            return
        with store.begin() as conn:
            conn.exec_driver_sql("SET jit = off")
        try:
            yield
        finally:
            with store.begin() as conn:  # the connection goes back to the pool as it came
                conn.exec_driver_sql("RESET jit")


def clear(hub: Any) -> None:
    """Forget every cached figure of this hub: the next view computes them afresh."""
    connection = hub.queues.connection
    keys = list(connection.scan_iter(_key(hub, "*", "*")))
    if keys:
        connection.delete(*keys)


def _store(
    connection: redis.Redis, hub: Any, kind: str, computed: dict[str, Any], seconds: int
) -> None:
    at = utcnow().isoformat()
    pipe = connection.pipeline(transaction=False)
    for slug, value in computed.items():
        pipe.set(_key(hub, kind, slug), json.dumps({"at": at, "value": value}), ex=seconds)
    with contextlib.suppress(redis.RedisError):  # the next view computes them again
        pipe.execute()


def _key(hub: Any, kind: str, slug: str) -> str:
    return f"{hub.queues.namespace}dashboard:figures:{kind}:{slug}"
