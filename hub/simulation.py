"""A throw-away hub for dry runs, shared by ``hub flow simulate`` and ``hub replay``.

The real engine runs on a temporary SQLite database; RQ is replaced by a heap ordered by due
time, the clock jumps from one due time to the next, and every sink is replaced by a recorder.
Nothing leaves the machine and nothing is written to the hub's own database: what the run
would have done is read back from the temporary database (its journeys, steps and deliveries)
or from the recorded messages.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import sqlalchemy as sa

from hub import migrations
from hub.cliparams import require_database
from hub.engine import Engine
from hub.hookspecs import OutboundMessage
from hub.store import Store


class SimLeases:
    """One process runs every job of a simulation in turn: no send is ever in flight
    elsewhere."""

    def hold(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def alive(self, names: Any) -> set[str]:
        return set()


class SimQueues:
    """Stands in for RQ: jobs go onto a heap ordered by due time."""

    def __init__(self) -> None:
        self.heap: list[tuple[datetime, int, str, tuple]] = []
        self.seq = itertools.count()
        self.url = "simulated"
        self.now = datetime.now(UTC)
        self.leases = SimLeases()

    def _push(self, due: datetime, kind: str, args: tuple) -> None:
        heapq.heappush(self.heap, (max(due, self.now), next(self.seq), kind, args))

    # one throw-away database per simulation: the binding (tenant, token) has nothing to guard
    def enqueue_event(self, event_id: int, tenant: str) -> None:
        self._push(self.now, "event", (event_id,))

    def schedule_step(
        self, step_id: int, due_at: datetime, attempt: int = 0, *, tenant: str, token: str
    ) -> None:
        self._push(due_at, "step", (step_id, attempt))

    def schedule_check(
        self, journey_id: int, update_at: datetime, due_at: datetime, *, tenant: str, token: str
    ) -> None:
        self._push(due_at, "check", (journey_id, update_at.isoformat()))

    def call_at(self, due: datetime, action: Callable[[Store], None]) -> None:
        """Run ``action`` on the simulation's store at ``due`` (history injected in time, such
        as an unsubscribe that happened between two messages)."""
        self._push(due, "call", (action,))


class RecordingSink:
    """A sink's own address logic, but send() only records."""

    def __init__(self, sink: Any, sent: list) -> None:
        self.sink = sink
        self.sent = sent

    def __getattr__(self, name: str) -> Any:  # name, channel, needs_consent, … of the real sink
        return getattr(self.sink, name)

    def address(self, customer: Any, config: Any, context: Any) -> str | None:
        return self.sink.address(customer, config, context)

    def send(self, message: OutboundMessage, config: Any) -> str:
        self.sent.append(message)
        return f"dry-run-{message.delivery_id}"


@dataclass
class SimHub:
    """What the engine reads of a hub, pointing at the throw-away store and queues."""

    settings: Any
    store: Store
    queues: SimQueues
    tenants: dict
    sinks: dict
    sources: dict
    renderer: Any
    installation: str = "simulate"

    def public_url(self, port: int = 8000) -> str:
        return self.settings.public_url or f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Arrival:
    """One event and the moment the hub learned of it: the simulated clock when it is
    processed (a file's ``occurred_at``; a stored event's ``received_at``)."""

    at: datetime
    event: dict
    raw: str | None = None


@dataclass(frozen=True)
class Happening:
    """What one simulated moment did: an event processed (``kind`` is the event's kind) or a
    job run (``step``/``check``), its note, and the messages it sent."""

    at: datetime
    kind: str
    subject: str  # the event's checkout id, or the job's first argument
    note: str | None  # None: a duplicate event, stored before (see ``event_key``)
    sent: tuple[OutboundMessage, ...] = ()
    event_key: str | None = None


class Simulation:
    """The real engine on a throw-away hub with a fake clock (see :func:`simulation`)."""

    def __init__(self, hub: SimHub, sent: list[OutboundMessage]) -> None:
        self.hub = hub
        self.sent = sent
        self.now = datetime.now(UTC)
        self.engine = Engine(hub, clock=lambda: self.now)

    @property
    def store(self) -> Store:
        return self.hub.store

    def set_clock(self, when: datetime) -> None:
        """Move the fake clock (and what the queues take for now) to ``when``."""
        self.now = self.hub.queues.now = when

    def run(self, arrivals: Iterable[Arrival], end: datetime) -> Iterator[Happening]:
        """Feed ``arrivals`` (in time order) and run every job due up to ``end``; yields what
        each moment did. A job runs a second after its due time, as a punctual worker would."""
        from hub.ingress import store_event

        queues = self.hub.queues
        pending = sorted(arrivals, key=lambda a: a.at)
        while pending or queues.heap:
            next_job = queues.heap[0][0] if queues.heap else None
            if pending and (next_job is None or pending[0].at <= next_job):
                arrival = pending.pop(0)
                self.set_clock(arrival.at)
                event = arrival.event
                event_id = store_event(self.store, event, arrival.raw, arrival.at)
                note = None if event_id is None else self.engine.process_event(event_id)
                yield Happening(
                    arrival.at, event["kind"], event["checkout_id"], note, (), event["event_key"]
                )
                continue
            due, _seq, kind, args = heapq.heappop(queues.heap)
            if due > end:
                break
            self.set_clock(due + timedelta(seconds=1))
            before = len(self.sent)
            if kind == "call":
                args[0](self.store)
                continue
            if kind == "event":
                self.engine.process_event(*args)
                continue
            if kind == "step":
                note = self.engine.run_step(*args)
            else:
                note = self.engine.check_abandonment(*args)
            yield Happening(due, kind, str(args[0]), note, tuple(self.sent[before:]))


@contextmanager
def history(hub: Any) -> Iterator[Any]:
    """The hub on its own database when one exists (abandon counts, caps, suppressions and
    plugin data see real history), else on an empty throw-away one for the duration: a
    preview creates no ``var/``. The hub's store itself is swapped because plugins reach it
    through ``current_hub()`` (a web-push subscription lookup)."""
    try:
        require_database(hub)
    except click.ClickException:
        pass
    else:
        yield hub
        return
    real = hub.store
    with tempfile.TemporaryDirectory() as tmp:
        hub.store = Store(f"sqlite:///{tmp}/preview.db")
        try:
            migrations.upgrade(hub.store)
            yield hub
        finally:
            hub.store.dispose()
            hub.store = real


@contextmanager
def dry_run_logging() -> Iterator[None]:
    """Silence the engine's INFO lines while simulating: they are written for production
    (``outcome=sent``) and stamped with the wall clock, so in a dry run they would report
    sends that never happen at times that are not the simulated ones. Warnings still show."""
    logger = logging.getLogger("hub")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _no_sync(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA synchronous=OFF")


@contextmanager
def simulation(hub: Any, tenant: Any) -> Iterator[Simulation]:
    """A :class:`Simulation` of ``tenant`` (give a copy with other flows to try them) on a
    temporary SQLite database, removed afterwards. Plugins still look addresses up through
    the hub's own store (read only), or an empty one when there is none."""
    sent: list[OutboundMessage] = []
    with tempfile.TemporaryDirectory() as tmp, dry_run_logging(), history(hub):
        store = Store(f"sqlite:///{tmp}/simulate.db")
        # a throw-away database needs no durability: a replay of 200 checkouts (400 messages)
        # took 13 s with a flush per commit, 6.3-7.1 s without (measured here, 2 cores)
        sa.event.listen(store.engine, "connect", _no_sync)
        try:
            migrations.upgrade(store)
            sim = SimHub(
                replace(hub.settings, retry_base=60.0),
                store,
                SimQueues(),
                {tenant.slug: tenant},
                {n: RecordingSink(s, sent) for n, s in hub.sinks.items()},
                hub.sources,
                hub.renderer,
            )
            yield Simulation(sim, sent)
        finally:
            store.dispose()
