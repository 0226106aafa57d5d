"""Leases: a Redis key that says "a live process is working on this right now".

A ledger row in ``sending`` alone cannot tell a send still in flight from one whose worker was
killed: both are old rows nobody updates. Age is no answer either, because a sink may wait up
to its timeout (two minutes) for the provider. So the process that sends holds a lease — a key
with a short TTL that a thread refreshes while the send runs. A killed process stops refreshing
and its lease ends within ``LEASE_TTL``; a slow send keeps its lease as long as it lasts.

A lease is a hint, never the guarantee: the ledger's unique key and attempt count still decide
who sends. With Redis unreachable a send goes ahead without a lease (logged), and after Redis
lost its data every lease is gone: a send in flight then may be taken for a crashed one, which
is what the hub did before leases existed (``unknown``, or a resend where the provider dedupes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import redis

log = logging.getLogger(__name__)

# A killed worker's step is recovered this long after the kill (plus one sweep interval); a
# live one refreshes its key every LEASE_TTL / 3, so two refreshes may fail before it lapses.
LEASE_TTL = 10


class Leases:
    """Leases named by the caller (``step-42``), kept under one key namespace."""

    def __init__(self, connection: redis.Redis, namespace: str, ttl: int = LEASE_TTL) -> None:
        self.connection = connection
        self.namespace = namespace
        self.ttl = ttl

    def key(self, name: str) -> str:
        return f"{self.namespace}lease-{name}"

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lease ``name`` for the duration of the ``with`` block.

        Taken before the block runs, refreshed by a daemon thread while it runs, dropped after.
        Redis errors are logged and do not stop the block: the work matters more than the hint.
        """
        key = self.key(name)
        self._refresh(key)
        stop = threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(key, stop), name=f"lease-{name}", daemon=True
        )
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
            try:
                self.connection.delete(key)
            except (redis.RedisError, OSError) as exc:
                log.warning("lease %s not released (%s); it lapses by itself", name, exc)

    def alive(self, names: Iterable[str]) -> set[str]:
        """The ``names`` whose lease a live process holds (one round trip)."""
        names = list(names)
        if not names:
            return set()
        pipe = self.connection.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.key(name))
        return {name for name, held in zip(names, pipe.execute(), strict=True) if held}

    def _keep(self, key: str, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3):
            self._refresh(key)

    def _refresh(self, key: str) -> None:
        try:
            self.connection.set(key, b"1", ex=self.ttl)
        except (redis.RedisError, OSError) as exc:
            log.warning("lease %s not taken or refreshed (%s)", key, exc)
