"""Replay with a diff: what the current (or a proposed) flow definition would have done with
the events the hub stored, against what it did.

The checkouts in range are those abandoned (or updated, for inferred abandonment) between
``since`` and ``until``. Their events, and every later event that can stop them (the same
person's conversions and newer abandonments), run through the real engine on a throw-away
database with a fake clock (:mod:`hub.simulation`), each at the moment the hub received it;
the same person's older events are copied in as history (abandon counts), and unsubscribes
are replayed at the moment they happened. The simulation stops at *now*, so both sides are
the same kind of state: messages sent, and steps still scheduled.

Both sides are compared per checkout and step (the engine's own unit: a step fires once per
journey): a message only the replay has is ``added``, only reality ``dropped``; one that both
have but on another sink is ``switched``; one whose step falls due more than a minute apart is
``moved``. Times compared are the steps' due times (quiet hours applied), not the send times,
so a provider's retries or a busy queue do not show up as changes of the flow.

:func:`apply_added` schedules the added messages for real (see its docstring for why it is
safe to run twice).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError

from hub.engine import SENT_STATUSES, Engine, StepJob
from hub.events import load_event
from hub.logs import mask
from hub.simulation import Arrival, simulation
from hub.store import deliveries, events, journeys, steps, suppressions
from hub.tenants import Tenant

log = logging.getLogger("hub.replay")

# a step due this close on both sides has not moved (an event processed a moment after it
# arrived makes an immediate step due a moment later)
MOVE_TOLERANCE = timedelta(minutes=1)
# "unknown": the request may have reached the provider; counted as sent, never sent again
HAPPENED = (*SENT_STATUSES, "unknown")
WAITING = ("scheduled", "retrying")
KINDS = ("added", "dropped", "moved", "switched")
REPLAY_MARK = "added by hub replay"
STARTS = ("checkout.abandoned", "checkout.updated")


@dataclass(frozen=True)
class Message:
    """One step's message on one side: sent (``sink`` set) or still scheduled (``None``)."""

    step_index: int
    due_at: datetime
    sink: str | None = None
    channel: str | None = None
    sent_at: datetime | None = None

    def as_json(self) -> dict:
        return {
            "step": self.step_index,
            "due_at": self.due_at.isoformat(),
            "state": "sent" if self.sink else "scheduled",
            "sink": self.sink,
            "channel": self.channel,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
        }


@dataclass
class Plan:
    """One checkout's journey on one side: its status, flow and messages by step."""

    checkout_id: str
    journey_id: int
    status: str
    flow: str | None
    identity: str  # the e-mail or phone the person is matched on (never printed)
    messages: dict[int, Message] = field(default_factory=dict)

    @property
    def person(self) -> str:
        return mask(self.identity)


@dataclass(frozen=True)
class Change:
    """One difference: ``kind`` is one of :data:`KINDS`; ``before`` is what happened,
    ``after`` what the replay would do."""

    kind: str
    identity: str  # who, unmasked: two people may share a mask (j***@example.com)
    checkout_id: str
    step_index: int
    before: Message | None
    after: Message | None
    flow: str | None = None  # the flow the replay follows

    @property
    def person(self) -> str:
        return mask(self.identity)

    @property
    def moved_by(self) -> timedelta | None:
        if self.before is None or self.after is None:
            return None
        return self.after.due_at - self.before.due_at

    def as_json(self) -> dict:
        moved = self.moved_by
        return {
            "kind": self.kind,
            "person": self.person,
            "checkout_id": self.checkout_id,
            "step": self.step_index,
            "flow": self.flow,
            "before": self.before.as_json() if self.before else None,
            "after": self.after.as_json() if self.after else None,
            "moved_by_seconds": int(moved.total_seconds()) if moved is not None else None,
        }


@dataclass(frozen=True)
class Applied:
    """What ``--apply`` did with one added message: ``scheduled`` or why not."""

    checkout_id: str
    step_index: int
    outcome: str
    due_at: datetime | None = None

    def as_json(self) -> dict:
        return {
            "checkout_id": self.checkout_id,
            "step": self.step_index,
            "outcome": self.outcome,
            "due_at": self.due_at.isoformat() if self.due_at else None,
        }


@dataclass
class Replay:
    """The diff of one tenant's range: changes per person, totals, and what was applied."""

    tenant: str
    since: datetime
    until: datetime
    as_of: datetime
    flows: str  # where the flows came from: the tenant file or the proposal
    checkouts: int = 0
    people: int = 0
    happened: int = 0
    would: int = 0
    unchanged: int = 0
    unreadable: int = 0  # stored events that no longer load (erased, or an older schema)
    changes: list[Change] = field(default_factory=list)
    applied: list[Applied] | None = None

    def totals(self) -> dict[str, int]:
        counts = {kind: 0 for kind in KINDS}
        for change in self.changes:
            counts[change.kind] += 1
        return {
            "checkouts": self.checkouts,
            "people": self.people,
            "happened": self.happened,
            "would": self.would,
            "unchanged": self.unchanged,
            **counts,
        }

    def by_person(self) -> list[list[Change]]:
        """The changes grouped per person (by identity, not by the mask two may share)."""
        grouped: dict[str, list[Change]] = {}
        for change in self.changes:
            grouped.setdefault(change.identity, []).append(change)
        return list(grouped.values())

    def as_json(self) -> dict:
        return {
            "tenant": self.tenant,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "as_of": self.as_of.isoformat(),
            "flows": self.flows,
            "totals": self.totals(),
            "unreadable_events": self.unreadable,
            "people": [
                {"person": cs[0].person, "changes": [c.as_json() for c in cs]}
                for cs in self.by_person()
            ],
            "applied": None if self.applied is None else [a.as_json() for a in self.applied],
        }


# ------------------------------------------------------------------------------ the diff


def replay(
    hub: Any,
    tenant: Tenant,
    since: datetime,
    until: datetime,
    *,
    flows: str | None = None,
    now: datetime | None = None,
) -> Replay:
    """Replay the checkouts abandoned in [since, until) through ``tenant``'s flows (pass a
    copy with proposed flows, named by ``flows``) and diff against what happened.
    Reads the hub's database; writes only to a temporary one."""
    as_of = now or datetime.now(UTC)
    result = Replay(tenant.slug, since, until, as_of, flows or tenant.path)
    with hub.store.begin() as conn:
        checkouts = _checkouts_in_range(conn, tenant.slug, since, until)
        if not checkouts:
            return result
        stored, history = _stored_events(conn, tenant.slug, checkouts, since)
        stops = conn.execute(
            sa.select(suppressions).where(suppressions.c.tenant == tenant.slug)
        ).all()
        real = _plans(conn, tenant.slug, checkouts)
    arrivals = []
    for row in stored:
        event = _loaded(row.payload)
        if event is None:
            result.unreadable += 1
            continue
        arrivals.append(Arrival(row.received_at, event))
    with simulation(hub, tenant) as sim:
        start = min([a.at for a in arrivals] + [since])
        sim.set_clock(start)
        _copy_history(sim.store, history)
        for stop in stops:
            sim.hub.queues.call_at(stop.created_at, _suppress(stop))
        for _done in sim.run(arrivals, as_of):
            pass
        with sim.store.begin() as conn:
            replayed = _plans(conn, tenant.slug, checkouts)
    _diff(result, checkouts, real, replayed)
    return result


def _checkouts_in_range(
    conn: sa.Connection, tenant: str, since: datetime, until: datetime
) -> list[str]:
    return list(
        conn.execute(
            sa.select(events.c.checkout_id)
            .where(
                events.c.tenant == tenant,
                events.c.kind.in_(STARTS),
                events.c.occurred_at >= since,
                events.c.occurred_at < until,
            )
            .distinct()
            .order_by(events.c.checkout_id)
        ).scalars()
    )


def _stored_events(
    conn: sa.Connection, tenant: str, checkouts: list[str], since: datetime
) -> tuple[list[Any], list[Any]]:
    """(the events to replay, the same people's earlier events to copy as history)."""
    people = conn.execute(
        sa.select(events.c.email, events.c.phone).where(
            events.c.tenant == tenant, events.c.checkout_id.in_(checkouts)
        )
    ).all()
    emails = {p.email for p in people if p.email}
    phones = {p.phone for p in people if p.phone}
    same_person = sa.or_(events.c.email.in_(emails), events.c.phone.in_(phones))
    mine = events.c.tenant == tenant
    ordered = (events.c.received_at, events.c.id)
    replayed = conn.execute(
        sa.select(events)
        .where(
            mine,
            sa.or_(
                events.c.checkout_id.in_(checkouts),
                # what can stop them: the person's newer abandonments, anyone's conversion
                # (it may name the checkout in recovered_from only)
                sa.and_(events.c.received_at >= since, same_person),
                sa.and_(events.c.received_at >= since, events.c.kind == "checkout.converted"),
            ),
        )
        .order_by(*ordered)
    ).all()
    history = conn.execute(
        sa.select(events)
        .where(
            mine,
            same_person,
            events.c.received_at < since,
            events.c.checkout_id.not_in(checkouts),
        )
        .order_by(*ordered)
    ).all()
    return replayed, history


def _loaded(payload: dict) -> dict | None:
    try:
        return load_event({**payload, "raw": None})
    except (ValidationError, TypeError, KeyError):
        return None


def _copy_history(store: Any, rows: Iterable[Any]) -> None:
    """Earlier events of the same people, as already processed rows: conditions such as
    ``abandons = {within = "30d", gte = 3}`` count them, nothing runs them again."""
    values = [{k: v for k, v in r._mapping.items() if k != "id"} for r in rows]
    if not values:
        return
    for row in values:
        row.update(status="processed", raw=None)
    with store.begin() as conn:
        conn.execute(sa.insert(events), values)


def _suppress(row: Any) -> Any:
    values = {k: v for k, v in row._mapping.items() if k != "id"}

    def insert(store: Any) -> None:
        with store.begin() as conn:
            conn.execute(store.insert_unless_exists(suppressions).values(**values))

    return insert


def _plans(conn: sa.Connection, tenant: str, checkouts: list[str]) -> dict[str, Plan]:
    """Each checkout's journey with its sent messages and its steps still to fire."""
    rows = conn.execute(
        sa.select(journeys).where(
            journeys.c.tenant == tenant, journeys.c.checkout_id.in_(checkouts)
        )
    ).all()
    plans = {
        r.checkout_id: Plan(r.checkout_id, r.id, r.status, r.flow, r.email or r.phone or "")
        for r in rows
    }
    by_id = {p.journey_id: p for p in plans.values()}
    if not by_id:
        return plans
    step_rows = conn.execute(sa.select(steps).where(steps.c.journey_id.in_(by_id))).all()
    sent = conn.execute(
        sa.select(deliveries)
        .where(deliveries.c.journey_id.in_(by_id), deliveries.c.status.in_(HAPPENED))
        .order_by(deliveries.c.id)
    ).all()
    first_sent: dict[tuple[int, int], Any] = {}
    for d in sent:
        first_sent.setdefault((d.journey_id, d.step_index), d)
    for s in step_rows:
        plan = by_id[s.journey_id]
        d = first_sent.get((s.journey_id, s.step_index))
        if d is not None:
            plan.messages[s.step_index] = Message(
                s.step_index, s.due_at, d.sink, d.channel, d.sent_at or d.updated_at
            )
        elif s.status in WAITING:
            plan.messages[s.step_index] = Message(s.step_index, s.due_at)
    return plans


def _diff(
    result: Replay, checkouts: list[str], real: dict[str, Plan], replayed: dict[str, Plan]
) -> None:
    people = set()
    for checkout in checkouts:
        before, after = real.get(checkout), replayed.get(checkout)
        if before is None and after is None:
            continue
        identity = (before or after).identity  # type: ignore[union-attr]
        people.add(identity)
        flow = after.flow if after else None
        was = before.messages if before else {}
        will = after.messages if after else {}
        result.happened += len(was)
        result.would += len(will)
        for index in sorted(set(was) | set(will)):
            b, a = was.get(index), will.get(index)
            kind = _kind(b, a)
            if kind is None:
                result.unchanged += 1
            else:
                result.changes.append(Change(kind, identity, checkout, index, b, a, flow))
    result.checkouts = len([c for c in checkouts if c in real or c in replayed])
    result.people = len(people)


def _kind(before: Message | None, after: Message | None) -> str | None:
    if before is None:
        return "added"
    if after is None:
        return "dropped"
    if before.sink and after.sink and before.sink != after.sink:
        return "switched"
    if abs(after.due_at - before.due_at) > MOVE_TOLERANCE:
        return "moved"
    return None


# ------------------------------------------------------------------------------ --apply


def apply_added(
    hub: Any, tenant: Tenant, result: Replay, now: datetime | None = None
) -> list[Applied]:
    """Schedule the replay's added messages for real, each as a step row of its journey.

    Only where sending is still right: the journey is open (not converted, deleted,
    unsubscribed, superseded or erased), follows the flow the replay followed, and its
    recovery link and offer outlive the step's due time by the tenant's margin (the
    engine's own dead-link rule). The step row's key (journey, step) is unique, so a
    second run inserts nothing (and a second replay sees the row as scheduled
    or sent, not as added); the worker then fires it like any step, re-checking every stop
    rule, and the delivery ledger's key (journey, step, sink) keeps it to one message. A step
    that already ran (skipped, failed) is left alone: a replay never sends a step twice.
    Meant for the tenant's own flows: the worker follows the tenant file, not a proposal.
    """
    now = now or datetime.now(UTC)
    engine = Engine(hub)
    done = []
    for change in result.changes:
        if change.kind != "added" or change.after is None:
            continue
        outcome, job = _apply_one(engine, tenant, change, now)
        if job is not None:
            try:
                engine.scheduler.schedule(job)
            except Exception:  # the sweep queues overdue scheduled steps from the database
                log.warning("could not queue replayed step %s; the sweep will", job.step_id)
        done.append(Applied(change.checkout_id, change.step_index, outcome, job and job.due))
    return done


def _apply_one(
    engine: Engine, tenant: Tenant, change: Change, now: datetime
) -> tuple[str, StepJob | None]:
    assert change.after is not None
    store = engine.store
    due = max(change.after.due_at, now)
    with store.begin() as conn:
        journey = conn.execute(
            store.lock(
                conn,
                sa.select(journeys).where(
                    journeys.c.tenant == tenant.slug, journeys.c.checkout_id == change.checkout_id
                ),
            )
        ).first()
        refusal = _refusal(engine, tenant, journey, change, due)
        if refusal:
            return f"not applied: {refusal}", None
        inserted = conn.execute(
            store.insert_unless_exists(steps)
            .values(
                journey_id=journey.id,
                step_index=change.step_index,
                due_at=due,
                status="scheduled",
                reason=REPLAY_MARK,
                updated_at=now,
            )
            .returning(steps.c.id, steps.c.token)
        ).first()
        if inserted is None:
            status = conn.execute(
                sa.select(steps.c.status).where(
                    steps.c.journey_id == journey.id, steps.c.step_index == change.step_index
                )
            ).scalar()
            return f"not applied: step already {status}", None
    return "scheduled", StepJob(inserted.id, inserted.token, tenant.slug, due)


def _refusal(
    engine: Engine, tenant: Tenant, journey: Any, change: Change, due: datetime
) -> str | None:
    """Why the added message must not be scheduled, or ``None``. Links are judged by the
    engine's own rule (recovery URL and offer, with the tenant's margin), at the due time."""
    if journey is None:
        return "no journey"
    if journey.status != "open":
        return f"journey {journey.status}"
    if journey.flow != change.flow:
        return f"journey follows flow {journey.flow!r}, the replay {change.flow!r}"
    flow = next((f for f in tenant.flows if f.name == journey.flow), None)
    if flow is None or change.step_index >= len(flow.steps):
        return "step not in the tenant's flow"
    event = _loaded(journey.event) if journey.event else None
    if event is None:
        return "the journey's event is gone (erased)"
    return engine.dead_link(tenant, flow.steps[change.step_index], event, due)
