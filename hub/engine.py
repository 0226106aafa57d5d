"""The recovery engine: what happens to a stored event, and what a step does when it fires.

``process_event`` turns an event into journey state (open, converted, deleted, pending for
inferred abandonment) and schedules steps. ``run_step`` re-checks every stop rule at fire time,
picks the first channel with consent and an address, records the delivery in the ledger
*before* calling the sink, and classifies the outcome. The database decides uniqueness; RQ only
carries work, so any job may safely run twice.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from itsdangerous import URLSafeSerializer

from hub.binding import Binding
from hub.conditions import facts_for
from hub.durations import format_duration
from hub.erasure import suppression_identities
from hub.events import identity_of, load_event
from hub.hookspecs import OutboundMessage, OutcomeUnknown, PermanentError, RetryableError
from hub.logs import mask, mask_ids
from hub.money import format_money
from hub.quiet_hours import quiet_until, zone_for
from hub.store import deliveries, delivery_log, events, journeys, steps, suppressions
from hub.templates import TemplateMissing, message_locales
from hub.tenants import Flow, Tenant

log = logging.getLogger("hub.engine")

CLOSED = ("converted", "deleted", "unsubscribed", "superseded")
SENT_STATUSES = ("sent", "delivered", "read")
# RQ stores due times in whole seconds and may start a job ~1 s early
EARLY_SLACK = timedelta(seconds=1.5)


@dataclass(frozen=True)
class _Attempt:
    """One try of one ledger row: what every record of its outcome needs."""

    delivery_id: int
    journey: Any
    step_index: int
    step_id: int
    step_token: str
    sink: str
    channel: str
    attempts: int


@dataclass(frozen=True)
class StepJob:
    """A step to hand to RQ: the row (id, token, tenant) and when to run which attempt."""

    step_id: int
    token: str
    tenant: str
    due: datetime
    attempt: int = 0


@dataclass(frozen=True)
class CheckJob:
    """An inferred-abandonment check of one journey row at ``due``."""

    journey_id: int
    token: str
    tenant: str
    update_at: datetime
    due: datetime


@dataclass
class Effects:
    """Work to hand to RQ once the transaction that decided it has committed."""

    steps: list[StepJob] = field(default_factory=list)
    checks: list[CheckJob] = field(default_factory=list)
    events: list[int] = field(default_factory=list)


def _one_connection(method: Callable) -> Callable:
    """Run a job's transactions on one pooled connection (see ``Store.one_connection``)."""

    @functools.wraps(method)
    def wrapper(self: Engine, *args: Any, **kwargs: Any) -> Any:
        with self.store.one_connection():
            return method(self, *args, **kwargs)

    return wrapper


def link_serializer(secret: str | list[str], purpose: str) -> URLSafeSerializer:
    """Signs and verifies link tokens; a list of keys signs with the last and verifies with
    any (key rotation, see ``Settings.link_keys``)."""
    return URLSafeSerializer(secret, salt=f"abandonment-hub.{purpose}")


class Engine:
    """One per job; holds the hub and a clock (tests of the engine pass their own)."""

    def __init__(
        self,
        hub: Any,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.hub = hub
        self.store = hub.store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rng = rng or random.Random()
        # hub.metrics on a real hub; `hub flow simulate`'s stand-in hub has none: counts nothing
        self.metrics = getattr(hub, "metrics", None)

    # ------------------------------------------------------------------ events

    @_one_connection
    def process_event(self, event_id: int, expect: Binding | None = None) -> str:
        """Apply one stored event; returns a short note of what happened (also stored).

        ``expect`` is the job's binding: an event of another tenant raises ``Mismatch``.
        """
        effects = Effects()
        with self.store.begin() as conn:
            row = conn.execute(
                self.store.lock(conn, sa.select(events).where(events.c.id == event_id))
            ).first()
            if expect is not None:
                expect.check_row(f"event {event_id}", row)
            if row is None or row.status == "processed":
                return "nothing to do"
            tenant = self.hub.tenants.get(row.tenant)
            if tenant is None:
                note = "tenant is not configured (any more)"
                status = "failed"
            else:
                event = load_event({**row.payload, "raw": None})
                handler = {
                    "checkout.abandoned": self._on_abandoned,
                    "checkout.converted": self._on_converted,
                    "checkout.updated": self._on_updated,
                    "checkout.deleted": self._on_deleted,
                    "checkout.refunded": lambda *_: "recorded (refunds are not acted on)",
                }[event["kind"]]
                note = handler(conn, tenant, event, row.id, effects)
                status = "processed"
            conn.execute(
                sa.update(events).where(events.c.id == event_id).values(status=status, note=note)
            )
        log.info(
            "event id=%s tenant=%s kind=%s outcome=%s",
            event_id,
            row.tenant,
            row.kind,
            mask_ids(note),
        )
        self._apply(effects)
        return note

    def _apply(self, effects: Effects) -> None:
        for event_id in effects.events:
            self.process_event(event_id)
        for step in effects.steps:
            if step.due <= self.clock() and self._run_inline(step.step_id, step.attempt):
                continue
            try:
                self._schedule(step)
            except Exception:  # the sweep reschedules overdue steps from the database
                log.warning("could not schedule step %s; the sweep will", step.step_id)
        for check in effects.checks:
            try:
                self._schedule_check(check)
            except Exception:
                log.warning("could not schedule abandonment check for journey %s", check.journey_id)

    def _schedule(self, job: StepJob) -> None:
        self.hub.queues.schedule_step(
            job.step_id, job.due, job.attempt, tenant=job.tenant, token=job.token
        )

    def _schedule_check(self, job: CheckJob) -> None:
        self.hub.queues.schedule_check(
            job.journey_id, job.update_at, job.due, tenant=job.tenant, token=job.token
        )

    def _run_inline(self, step_id: int, attempt: int) -> bool:
        """Run a step that is already due inside the job that decided it.

        A second RQ job would cost more than the send itself (measured here: ~7 ms and ~63
        Redis commands per job against ~1 ms for one local POST). The step's own guarantees
        do not depend on the job: the ledger row makes a later run of the same step a no-op.
        If the step fails unexpectedly it goes to the queue as usual (False).
        """
        try:
            self.run_step(step_id, attempt)
        except Exception:
            log.exception("step %s failed inline; handing it to the queue", step_id)
            return False
        return True

    def _journey(self, conn: sa.Connection, tenant: str, checkout_id: str) -> Any:
        return conn.execute(
            self.store.lock(
                conn,
                sa.select(journeys).where(
                    journeys.c.tenant == tenant, journeys.c.checkout_id == checkout_id
                ),
            )
        ).first()

    def _converted_later(self, conn: sa.Connection, tenant: Tenant, event: dict) -> str | None:
        """A conversion of the same person after this abandonment (it arrived first)."""
        email, phone = identity_of(event["customer"])
        if not email and not phone:
            return None
        who = []
        if email:
            who.append(events.c.email == email)
        if phone:
            who.append(events.c.phone == phone)
        start = event["occurred_at"]
        hit = conn.execute(
            sa.select(events.c.event_key)
            .where(
                events.c.tenant == tenant.slug,
                events.c.kind == "checkout.converted",
                sa.or_(*who),
                events.c.occurred_at >= start,
                events.c.occurred_at <= start + tenant.attribution_window,
            )
            .limit(1)
        ).first()
        return hit.event_key if hit else None

    def _on_abandoned(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        now = self.clock()
        journey = self._journey(conn, tenant.slug, event["checkout_id"])
        email, phone = identity_of(event["customer"])
        stored_event = _jsonable(event)
        if journey is not None and journey.status in CLOSED:
            return f"ignored: checkout already {journey.status}"
        if journey is not None and journey.status in ("open", "no_flow", "finished"):
            # the same cart abandoned again: refresh the running journey, never start a second
            conn.execute(
                sa.update(journeys)
                .where(journeys.c.id == journey.id)
                .values(event=stored_event, event_id=event_id, email=email, phone=phone)
            )
            return f"refreshed journey {journey.id}"
        converted_by = self._converted_later(conn, tenant, event)
        if converted_by:
            values = dict(
                status="converted",
                closed_at=now,
                closed_reason=f"converted before the abandonment arrived ({converted_by})",
            )
        else:
            values = dict(status="open")
        values.update(
            event=stored_event,
            event_id=event_id,
            email=email,
            phone=phone,
            abandoned_at=event["occurred_at"],
            source=event["source"],
        )
        # a pending (inferred) journey becomes abandoned in place
        journey_id, _token = self._save_journey(conn, tenant, event, journey, values, now)
        if converted_by:
            return f"journey {journey_id} not started: {values['closed_reason']}"

        superseded = self._supersede_others(conn, tenant, journey_id, email, phone, now)
        flow = self._choose_flow(conn, tenant, event)
        if flow is None:
            conn.execute(
                sa.update(journeys).where(journeys.c.id == journey_id).values(status="no_flow")
            )
            return f"journey {journey_id}: no flow matches"
        conn.execute(sa.update(journeys).where(journeys.c.id == journey_id).values(flow=flow.name))
        for step in flow.steps:
            due = self.due_time(tenant, event, max(event["occurred_at"] + step.after, now))
            step_id, token = conn.execute(
                sa.insert(steps)
                .values(
                    journey_id=journey_id,
                    step_index=step.index,
                    due_at=due,
                    status="scheduled",
                    updated_at=now,
                )
                .returning(steps.c.id, steps.c.token)
            ).one()
            effects.steps.append(StepJob(step_id, token, tenant.slug, due))
        extra = f", superseded {superseded}" if superseded else ""
        return (
            f"journey {journey_id} started with flow {flow.name!r} ({len(flow.steps)} steps{extra})"
        )

    def _save_journey(
        self,
        conn: sa.Connection,
        tenant: Tenant,
        event: dict,
        journey: Any,
        values: dict,
        now: datetime,
    ) -> tuple[int, str]:
        """Insert the checkout's journey, or update the existing row; returns id and token."""
        if journey is not None:
            conn.execute(sa.update(journeys).where(journeys.c.id == journey.id).values(**values))
            return journey.id, journey.token
        journey_id, token = conn.execute(
            sa.insert(journeys)
            .values(
                tenant=tenant.slug,
                checkout_id=event["checkout_id"],
                created_at=now,
                recovered=False,
                **values,
            )
            .returning(journeys.c.id, journeys.c.token)
        ).one()
        return journey_id, token

    def _supersede_others(
        self,
        conn: sa.Connection,
        tenant: Tenant,
        journey_id: int,
        email: str | None,
        phone: str | None,
        now: datetime,
    ) -> list[int]:
        """A newer abandonment by the same person replaces their older open journeys."""
        who = [journeys.c.email == email] if email else []
        if phone:
            who.append(journeys.c.phone == phone)
        if not who:
            return []
        ids = [
            r.id
            for r in conn.execute(
                sa.select(journeys.c.id).where(
                    journeys.c.tenant == tenant.slug,
                    journeys.c.status == "open",
                    journeys.c.id != journey_id,
                    sa.or_(*who),
                )
            )
        ]
        for other in ids:
            self._close(conn, other, "superseded", f"superseded by journey {journey_id}", now)
        return ids

    def _choose_flow(self, conn: sa.Connection, tenant: Tenant, event: dict) -> Flow | None:
        facts = facts_for(event, tenant.currency)
        counter = self._abandon_counter(conn, tenant, event)
        for flow in tenant.flows:
            if flow.enabled and (flow.when is None or flow.when.holds(facts, counter)):
                return flow
        return None

    def _abandon_counter(
        self, conn: sa.Connection, tenant: Tenant, event: dict
    ) -> Callable[[timedelta], int]:
        email, phone = identity_of(event["customer"])

        def count(within: timedelta) -> int:
            who = [events.c.email == email] if email else []
            if phone:
                who.append(events.c.phone == phone)
            if not who:
                return 1
            since = event["occurred_at"] - within
            n = conn.execute(
                sa.select(sa.func.count(sa.distinct(events.c.checkout_id))).where(
                    events.c.tenant == tenant.slug,
                    events.c.kind == "checkout.abandoned",
                    sa.or_(*who),
                    events.c.occurred_at >= since,
                    events.c.occurred_at <= event["occurred_at"],
                )
            ).scalar_one()
            return max(n, 1)

        return count

    def _close(
        self,
        conn: sa.Connection,
        journey_id: int,
        status: str,
        reason: str,
        now: datetime,
        **extra: Any,
    ) -> None:
        conn.execute(
            sa.update(journeys)
            .where(journeys.c.id == journey_id)
            .values(status=status, closed_at=now, closed_reason=reason, **extra)
        )
        conn.execute(
            sa.update(steps)
            .where(steps.c.journey_id == journey_id, steps.c.status.in_(("scheduled", "retrying")))
            .values(status="cancelled", reason=reason, updated_at=now)
        )

    def _on_converted(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        now = self.clock()
        cart = event.get("cart") or {}
        email, phone = identity_of(event["customer"])
        checkout_ids = [event["checkout_id"]]
        if event.get("recovered_from"):
            checkout_ids.append(event["recovered_from"])
        match = [journeys.c.checkout_id.in_(checkout_ids)]
        # a purchase stops the person's journeys abandoned before it, within the window; an
        # older purchase says nothing about a newer abandonment
        occurred = event["occurred_at"]
        since = occurred - tenant.attribution_window
        # a checkout still waiting out its inferred-abandonment window has no abandoned_at yet;
        # its last update is when the person was last seen there
        opened = sa.func.coalesce(journeys.c.abandoned_at, journeys.c.last_update_at)
        if email:
            match.append(sa.and_(journeys.c.email == email, opened.between(since, occurred)))
        if phone:
            match.append(sa.and_(journeys.c.phone == phone, opened.between(since, occurred)))
        rows = conn.execute(
            self.store.lock(
                conn, sa.select(journeys).where(journeys.c.tenant == tenant.slug, sa.or_(*match))
            )
        ).all()
        stopped = []
        for journey in rows:
            if journey.status in ("converted", "deleted"):
                continue
            sent = conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(
                    deliveries.c.journey_id == journey.id, deliveries.c.status.in_(SENT_STATUSES)
                )
            ).scalar_one()
            named = journey.checkout_id in checkout_ids
            self._close(
                conn,
                journey.id,
                "converted",
                f"converted ({event['event_key']})",
                now,
                recovered=bool(sent)
                or (
                    named
                    and event.get("recovered_from") is not None
                    and journey.checkout_id == event["recovered_from"]
                ),
                recovered_amount=cart.get("total"),
                recovered_currency=cart.get("currency"),
            )
            stopped.append(journey.id)
        # out of order: a conversion that arrives first leaves a converted marker behind, so
        # the abandonment that comes later starts nothing
        known = {r.checkout_id for r in rows}
        for checkout_id in checkout_ids:
            if checkout_id not in known:
                conn.execute(
                    sa.insert(journeys).values(
                        tenant=tenant.slug,
                        checkout_id=checkout_id,
                        source=event["source"],
                        status="converted",
                        email=email,
                        phone=phone,
                        event_id=event_id,
                        created_at=now,
                        closed_at=now,
                        recovered=False,
                        closed_reason=f"converted before any abandonment ({event['event_key']})",
                    )
                )
        return f"converted; stopped journeys {stopped}" if stopped else "converted; no open journey"

    def _on_deleted(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        now = self.clock()
        journey = self._journey(conn, tenant.slug, event["checkout_id"])
        if journey is None:
            conn.execute(
                sa.insert(journeys).values(
                    tenant=tenant.slug,
                    checkout_id=event["checkout_id"],
                    source=event["source"],
                    status="deleted",
                    created_at=now,
                    closed_at=now,
                    recovered=False,
                    closed_reason="deleted before any abandonment",
                )
            )
            return "deleted (no journey yet)"
        if journey.status in CLOSED:
            return f"ignored: checkout already {journey.status}"
        self._close(conn, journey.id, "deleted", "cart deleted", now)
        return f"journey {journey.id} stopped: cart deleted"

    def _on_updated(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        """Inferred abandonment: (re)start the window at each update of a live checkout."""
        window = tenant.abandon_after.get(event["source"])
        now = self.clock()
        journey = self._journey(conn, tenant.slug, event["checkout_id"])
        email, phone = identity_of(event["customer"])
        if journey is not None and journey.status in CLOSED:
            return f"ignored: checkout already {journey.status}"
        if journey is not None and journey.status != "pending":
            conn.execute(
                sa.update(journeys)
                .where(journeys.c.id == journey.id)
                .values(
                    event=_jsonable({**event, "kind": "checkout.abandoned"}),
                    email=email,
                    phone=phone,
                )
            )
            return f"refreshed running journey {journey.id}"
        if window is None:
            return "recorded (this source does not infer abandonment for this tenant)"
        update_at = event["occurred_at"]
        if journey is not None and _known_update_is_newer(journey, update_at, event_id):
            return "ignored: a newer update is already known"
        values = dict(
            status="pending",
            event=_jsonable(event),
            event_id=event_id,
            email=email,
            phone=phone,
            last_update_at=update_at,
            source=event["source"],
        )
        journey_id, token = self._save_journey(conn, tenant, event, journey, values, now)
        effects.checks.append(
            CheckJob(journey_id, token, tenant.slug, update_at, max(update_at + window, now))
        )
        return f"pending journey {journey_id}: abandoned unless converted by {update_at + window}"

    @_one_connection
    def check_abandonment(
        self, journey_id: int, update_at_iso: str, expect: Binding | None = None
    ) -> str:
        """The window of an inferred abandonment closed: emit ``checkout.abandoned``."""
        update_at = datetime.fromisoformat(update_at_iso)
        effects = Effects()
        with self.store.begin() as conn:
            journey = conn.execute(
                self.store.lock(conn, sa.select(journeys).where(journeys.c.id == journey_id))
            ).first()
            if expect is not None:
                expect.check_row(f"journey {journey_id}", journey)
            if journey is None or journey.status != "pending":
                return "nothing to do"
            if journey.last_update_at != update_at:
                return "a newer update restarted the window"
            tenant = self.hub.tenants.get(journey.tenant)
            window = tenant.abandon_after.get(journey.source) if tenant else None
            if window is None:
                return "tenant or source gone"
            if self.clock() < update_at + window - EARLY_SLACK:
                effects.checks.append(
                    CheckJob(
                        journey_id, journey.token, journey.tenant, update_at, update_at + window
                    )
                )
                note = "early; rescheduled"
            else:
                loaded = load_event(inferred_abandonment(journey.event, update_at, window))
                new_id = _insert_event(conn, loaded, self.clock())
                if new_id is not None:
                    effects.events.append(new_id)
                note = f"inferred abandonment emitted (event {new_id})"
        self._apply(effects)
        return note

    # ------------------------------------------------------------------ steps

    @_one_connection
    def run_step(self, step_id: int, attempt: int = 0, expect: Binding | None = None) -> str:
        """Fire one step (or one retry of it). Safe to call twice with the same arguments.

        ``expect`` is the job's binding: a step row of another tenant, or with another token
        (an id reused after a restore), raises ``Mismatch`` before anything happens.
        """
        now = self.clock()
        # one read-only transaction for what the run needs to decide. No row lock: it would be
        # released at this commit anyway, and only cost a WAL flush; the ledger's unique key and
        # the claim's attempt check keep two runs from sending twice
        with self.store.begin() as conn:
            step_row = conn.execute(sa.select(steps).where(steps.c.id == step_id)).first()
            journey = None
            if step_row is not None:
                journey = conn.execute(
                    sa.select(journeys).where(journeys.c.id == step_row.journey_id)
                ).first()
            if expect is not None:
                expect.check_row(f"step {step_id}", step_row, journey.tenant if journey else None)
            if step_row is None or step_row.status not in ("scheduled", "retrying"):
                return "nothing to do"
            ledger = {
                row.sink: row
                for row in conn.execute(
                    sa.select(deliveries).where(
                        deliveries.c.journey_id == step_row.journey_id,
                        deliveries.c.step_index == step_row.step_index,
                    )
                )
            }
        # a retry waits for its own time, whoever queued it (sweep, a restarted worker)
        wake = _next_run(step_row)
        if now < wake - EARLY_SLACK:
            self._schedule(StepJob(step_id, step_row.token, journey.tenant, wake, attempt))
            return "early; rescheduled"
        if self.metrics and attempt == 0:
            self.metrics.step_fired((now - step_row.due_at).total_seconds())
        tenant = self.hub.tenants.get(journey.tenant)
        reason, flow_step = self._stop_reason(tenant, journey, step_row, now)
        if reason:
            return self._finish_step(step_id, journey, step_row.step_index, "skipped", reason)
        # judge the stored due time, not `now`: RQ may start a job up to ~1 s early
        later = self.quiet_until(tenant, journey.event, max(now, wake))
        if later is not None:
            values: dict[str, Any] = dict(
                due_at=later, updated_at=now, reason="deferred: quiet hours"
            )
            if step_row.next_attempt_at is not None:
                values["next_attempt_at"] = later
            with self.store.begin() as conn:
                conn.execute(sa.update(steps).where(steps.c.id == step_id).values(**values))
            self._schedule(StepJob(step_id, step_row.token, journey.tenant, later, attempt))
            log.info("step id=%s deferred to %s (quiet hours)", step_id, later.isoformat())
            return f"deferred to {later.isoformat()} (quiet hours)"
        event = journey.event
        outcomes = []
        for sink_name in flow_step.channels:
            outcome, final = self._deliver(
                tenant,
                journey,
                flow_step,
                step_row,
                sink_name,
                attempt,
                event,
                ledger.get(sink_name),
            )
            outcomes.append(f"{sink_name}: {outcome}")
            if final:
                return "; ".join(outcomes)
        status = "failed" if any("failed" in o for o in outcomes) else "skipped"
        return self._finish_step(
            step_id, journey, step_row.step_index, status, "; ".join(outcomes) or "no channel"
        )

    def due_time(self, tenant: Tenant, event: dict, due: datetime) -> datetime:
        """``due`` moved out of the quiet hours of the customer's (or the tenant's) zone."""
        return self.quiet_until(tenant, event, due) or due

    def quiet_until(self, tenant: Tenant, event: dict, when: datetime) -> datetime | None:
        if not tenant.quiet_hours:
            return None
        country = (event.get("customer") or {}).get("country")
        zone = zone_for(country, tenant.timezone, when)
        return quiet_until(when, tenant.quiet_hours, zone)

    def _stop_reason(
        self, tenant: Tenant | None, journey: Any, step_row: Any, now: datetime
    ) -> tuple[str | None, Any]:
        if tenant is None:
            return "tenant is not configured", None
        if journey.status != "open":
            return journey.status if journey.status in CLOSED else f"journey {journey.status}", None
        flow = next((f for f in tenant.flows if f.name == journey.flow), None)
        if flow is None or not flow.enabled:
            return "flow disabled", None
        if step_row.step_index >= len(flow.steps):
            return "step removed from the flow", None
        flow_step = flow.steps[step_row.step_index]
        event = load_event({**journey.event, "raw": None})
        expires = event.get("recovery_expires_at")
        if expires is not None and expires <= now:
            return "recovery URL expired", None
        if flow_step.when is not None:
            with self.store.begin() as conn:
                counter = self._abandon_counter(conn, tenant, event)
                if not flow_step.when.holds(facts_for(event, tenant.currency), counter):
                    return "condition not met", None
        return None, flow_step

    def _finish_step(
        self, step_id: int, journey: Any, step_index: int, status: str, reason: str
    ) -> str:
        with self.store.begin() as conn:
            conn.execute(
                sa.update(steps)
                .where(steps.c.id == step_id)
                .values(status=status, reason=reason, updated_at=self.clock())
            )
            if status == "skipped":
                self._log(conn, journey, step_index, None, None, None, 0, "skipped", reason)
        log.info("step id=%s journey=%s outcome=%s reason=%s", step_id, journey.id, status, reason)
        return f"{status}: {reason}"

    def _log(
        self,
        conn: sa.Connection,
        journey: Any,
        step_index: int,
        sink: str | None,
        channel: str | None,
        delivery_id: int | None,
        attempt: int,
        status: str,
        reason: str | None,
    ) -> None:
        conn.execute(
            sa.insert(delivery_log).values(
                tenant=journey.tenant,
                journey_id=journey.id,
                step_index=step_index,
                sink=sink,
                channel=channel,
                delivery_id=delivery_id,
                attempt=attempt,
                status=status,
                reason=reason,
                at=self.clock(),
            )
        )

    def _skip_delivery(
        self,
        journey: Any,
        step_index: int,
        sink_name: str,
        channel: str,
        identity: str | None,
        status: str,
        reason: str,
    ) -> None:
        now = self.clock()
        with self.store.begin() as conn:
            try:
                with conn.begin_nested():
                    delivery_id = conn.execute(
                        sa.insert(deliveries)
                        .values(
                            tenant=journey.tenant,
                            journey_id=journey.id,
                            step_index=step_index,
                            sink=sink_name,
                            channel=channel,
                            identity=identity,
                            status=status,
                            reason=reason,
                            attempts=0,
                            created_at=now,
                            updated_at=now,
                        )
                        .returning(deliveries.c.id)
                    ).scalar_one()
            except sa.exc.IntegrityError:
                return
            self._log(conn, journey, step_index, sink_name, channel, delivery_id, 0, status, reason)
        if self.metrics:
            self.metrics.delivery(journey.tenant, sink_name, status, reason)
        log.info(
            "delivery journey=%s step=%s sink=%s outcome=%s reason=%s",
            journey.id,
            step_index,
            sink_name,
            status,
            reason,
        )

    def _eligibility(
        self, tenant: Tenant, journey: Any, sink: Any, config: Any, event: dict, context: dict
    ) -> tuple[str | None, str | None, str | None]:
        """(address, skip status, reason): why this channel cannot be used, if it cannot."""
        customer = event.get("customer") or {}
        channel = sink.channel
        email, phone = identity_of(customer)
        if sink.needs_consent:
            with self.store.begin() as conn:
                ids = suppression_identities(self.hub.settings, tenant.slug, email, phone)
                if ids:
                    hit = conn.execute(
                        sa.select(suppressions.c.channel)
                        .where(
                            suppressions.c.tenant == tenant.slug,
                            suppressions.c.identity.in_(ids),
                            suppressions.c.channel.in_((channel, "*")),
                        )
                        .limit(1)
                    ).first()
                    if hit:
                        return None, "skipped", "unsubscribed"
            given = (event.get("consent") or {}).get(channel, "unknown")
            if given == "opt_out":
                return None, "skipped", f"no consent ({channel}: opt_out)"
            policy = tenant.consent_policy(channel, customer.get("country"))
            if given != "opt_in" and policy == "opt_in":
                return None, "skipped", f"no consent ({channel}: {given}, tenant requires opt_in)"
        try:
            address = sink.address(customer, config, context)
        except PermanentError as exc:
            return None, "failed", f"unusable address: {exc.reason}"
        except Exception as exc:
            return None, "failed", f"address lookup failed: {exc!r}"
        if not address:
            return None, "skipped", "no address"
        if sink.needs_consent:
            cap, per = tenant.frequency_cap
            with self.store.begin() as conn:
                recent = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.tenant == tenant.slug,
                        deliveries.c.channel == channel,
                        deliveries.c.identity == _identity_key(address),
                        deliveries.c.journey_id != journey.id,
                        deliveries.c.status.in_(SENT_STATUSES),
                        deliveries.c.sent_at >= self.clock() - per,
                    )
                ).scalar_one()
            if recent >= cap:
                return None, "skipped", f"frequency cap ({cap} per {format_duration(per)})"
        return address, None, None

    def _deliver(
        self,
        tenant: Tenant,
        journey: Any,
        flow_step: Any,
        step_row: Any,
        sink_name: str,
        attempt: int,
        event: dict,
        existing: Any,
    ) -> tuple[str, bool]:
        """Try one channel; returns (outcome, whether the step is settled).

        ``existing`` is this channel's ledger row as :meth:`run_step` read it (or ``None``).
        """
        step_id = step_row.id
        sink = self.hub.sinks.get(sink_name)
        config = tenant.sinks.get(sink_name)
        channel = sink.channel if sink else "?"
        step_index = flow_step.index
        if existing is not None:
            if existing.status in SENT_STATUSES:
                return "already sent", True
            if existing.status in ("failed", "skipped"):
                return f"{existing.status} ({existing.reason})", False
            if existing.status == "unknown":
                return "outcome unknown; not resent", True
            if existing.status == "sending" and not (sink and sink.idempotent):
                self._record(
                    _Attempt(
                        existing.id,
                        journey,
                        step_index,
                        step_id,
                        step_row.token,
                        sink_name,
                        channel,
                        existing.attempts,
                    ),
                    "unknown",
                    "interrupted while sending; not resent (provider has no dedupe)",
                )
                self._finish_step(step_id, journey, step_index, "unknown", "interrupted in flight")
                return "unknown", True
        if sink is None or config is None:
            self._skip_delivery(
                journey,
                step_index,
                sink_name,
                channel,
                None,
                "skipped",
                "sink not installed or not configured",
            )
            return "skipped (sink not installed or not configured)", False

        context = self.context(tenant, journey, flow_step, sink)
        if existing is None:
            address, status, reason = self._eligibility(
                tenant, journey, sink, config, event, context
            )
            if address is None:
                self._skip_delivery(journey, step_index, sink_name, channel, None, status, reason)
                return f"{status} ({reason})", False
            now = self.clock()
            with self.store.begin() as conn:
                # the ledger's unique key decides who sends; a conflict inserts nothing (no
                # savepoint and IntegrityError round trips)
                delivery_id = conn.execute(
                    self.store.insert_unless_exists(deliveries)
                    .values(
                        tenant=tenant.slug,
                        journey_id=journey.id,
                        step_index=step_index,
                        sink=sink_name,
                        channel=channel,
                        identity=_identity_key(address),
                        status="sending",
                        attempts=1,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(deliveries.c.id)
                ).scalar()
                if delivery_id is None:
                    return "claimed by another run", True
                conn.execute(
                    sa.update(steps)
                    .where(steps.c.id == step_id)
                    .values(status="retrying", updated_at=now)
                )
            attempts = 1
        else:
            address = existing.identity
            with self.store.begin() as conn:
                claimed = conn.execute(
                    sa.update(deliveries)
                    .where(
                        deliveries.c.id == existing.id,
                        deliveries.c.attempts == attempt,
                        deliveries.c.status.in_(("retrying", "sending")),
                    )
                    .values(status="sending", attempts=attempt + 1, updated_at=self.clock())
                ).rowcount
            if not claimed:
                return "retry claimed by another run", True
            delivery_id, attempts = existing.id, attempt + 1
            address = self._address_again(sink, config, event, context) or address

        attempt_row = _Attempt(
            delivery_id, journey, step_index, step_id, step_row.token, sink_name, channel, attempts
        )
        locales = message_locales(sink, tenant, event)
        try:
            if sink.renders_templates:
                locale, parts = self.hub.renderer.render(
                    tenant.slug, flow_step.template, channel, locales, context
                )
            else:  # the text lives at the provider (WhatsApp templates): nothing to render
                locale, parts = locales[0], {}
        except TemplateMissing as exc:
            return self._failed(attempt_row, f"template missing: {exc}")
        except Exception as exc:
            return self._failed(attempt_row, f"template error: {exc}")
        message = OutboundMessage(
            tenant=tenant.slug,
            journey_id=journey.id,
            step_index=step_index,
            delivery_id=delivery_id,
            channel=channel,
            to=address,
            locale=locale,
            parts=parts,
            context=context,
            template=flow_step.template,
        )
        try:
            provider_id = sink.send(message, config)
        except RetryableError as exc:
            if attempts >= sink.max_attempts:
                return self._failed(attempt_row, f"gave up after {attempts} attempts: {exc.reason}")
            delay = self.backoff(attempts, exc.retry_after)
            return self._retry_later(attempt_row, delay, f"{exc.reason}; retry in {delay:.0f}s")
        except PermanentError as exc:
            return self._failed(attempt_row, exc.reason)
        except Exception as exc:  # OutcomeUnknown or a plugin's own bug mid-send
            reason = exc.args[0] if isinstance(exc, OutcomeUnknown) and exc.args else repr(exc)
            if not isinstance(exc, OutcomeUnknown):
                log.exception("sink %s raised", sink_name)
            if sink.idempotent and attempts < sink.max_attempts:
                return self._retry_later(
                    attempt_row,
                    self.backoff(attempts, None),
                    f"{reason}; provider dedupes, retrying",
                )
            self._record(attempt_row, "unknown", f"outcome unknown: {reason}")
            self._finish_step(step_id, journey, step_index, "unknown", str(reason))
            return "unknown", True
        self._record(attempt_row, "sent", None, provider_id=provider_id, step_done=True)
        log.info(
            "delivery journey=%s step=%s sink=%s to=%s outcome=sent attempt=%s",
            journey.id,
            step_index,
            sink_name,
            mask(address),
            attempts,
        )
        return "sent", True

    def _address_again(self, sink: Any, config: Any, event: dict, context: dict) -> str | None:
        try:
            return sink.address(event.get("customer") or {}, config, context)
        except Exception:
            return None

    def _failed(self, attempt: _Attempt, reason: str) -> tuple[str, bool]:
        """A permanent failure of this channel: the step goes on with the next one."""
        self._record(attempt, "failed", reason)
        return f"failed ({reason})", False

    def _retry_later(self, attempt: _Attempt, delay: float, reason: str) -> tuple[str, bool]:
        """Schedule the step again; the retry job claims the ledger row by its attempt count.

        The step row keeps the retry's time (``next_attempt_at``) so that whatever else queues
        the step (the sweep, a restarted worker) waits for it instead of retrying at once.
        """
        self._record(attempt, "retrying", reason)
        now = self.clock()
        at = now + timedelta(seconds=delay)
        with self.store.begin() as conn:
            conn.execute(
                sa.update(steps)
                .where(steps.c.id == attempt.step_id)
                .values(next_attempt_at=at, updated_at=now)
            )
        self._schedule(
            StepJob(
                attempt.step_id, attempt.step_token, attempt.journey.tenant, at, attempt.attempts
            )
        )
        return "retrying", True

    def _record(
        self,
        attempt: _Attempt,
        status: str,
        reason: str | None,
        provider_id: str | None = None,
        step_done: bool = False,
    ) -> None:
        """Update the ledger row and append the attempt to the delivery log; with
        ``step_done`` the step is marked ``status`` in the same transaction (one commit)."""
        now = self.clock()
        values: dict[str, Any] = dict(status=status, reason=reason, updated_at=now)
        if status == "sent":
            values.update(sent_at=now, provider_id=provider_id)
        with self.store.begin() as conn:
            conn.execute(
                sa.update(deliveries).where(deliveries.c.id == attempt.delivery_id).values(**values)
            )
            if step_done:
                conn.execute(
                    sa.update(steps)
                    .where(steps.c.id == attempt.step_id)
                    .values(status=status, reason=f"{status} via {attempt.sink}", updated_at=now)
                )
            self._log(
                conn,
                attempt.journey,
                attempt.step_index,
                attempt.sink,
                attempt.channel,
                attempt.delivery_id,
                attempt.attempts,
                status,
                reason,
            )
        if self.metrics:
            self.metrics.delivery(attempt.journey.tenant, attempt.sink, status, reason)
        if status != "sent":
            log.info(
                "delivery journey=%s step=%s sink=%s outcome=%s attempt=%s reason=%s",
                attempt.journey.id,
                attempt.step_index,
                attempt.sink,
                status,
                attempt.attempts,
                reason,
            )

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds until the next try: the provider's hint (clamped) or exponential ±20 %."""
        settings = self.hub.settings
        if retry_after is not None:
            return min(max(float(retry_after), 1.0), settings.retry_max)
        base = settings.retry_base * (2 ** (attempts - 1))
        return min(base * self.rng.uniform(0.8, 1.2), settings.retry_max)

    # ------------------------------------------------------------------ rendering

    def context(self, tenant: Tenant, journey: Any, flow_step: Any, sink: Any) -> dict:
        """What every template and sink sees (architecture §4), same for every channel."""
        event = journey.event
        customer = dict(event.get("customer") or {})
        # money and dates in the reader's language: the shop's staff read tickets
        reader = tenant.staff_locale if getattr(sink, "audience", "") == "staff" else None
        locale = (reader or customer.get("locale") or tenant.locale).replace("-", "_")
        customer["name"] = (
            " ".join(p for p in (customer.get("first_name"), customer.get("last_name")) if p)
            or None
        )
        cart = dict(event.get("cart") or {})
        if cart:
            cur = cart["currency"]
            cart["total_display"] = _money(cart["total"], cur, locale)
            cart["items"] = [
                {
                    **item,
                    "unit_price_display": _money(item["unit_price"], cur, locale)
                    if item.get("unit_price") is not None
                    else None,
                }
                for item in cart.get("items") or []
            ]
        base = self.hub.public_url()
        secret = self.hub.settings.secret_key
        # links name installation and journey token too: the secret in var/ outlives a change
        # of database, and a restored database reuses journey ids (hub.tracking checks both)
        bound = [self.hub.installation[:8], journey.id, journey.token]
        unsubscribe = link_serializer(secret, "unsubscribe").dumps([*bound, sink.channel])
        recovery = None
        if event.get("recovery_url"):
            token = link_serializer(secret, "recovery").dumps([*bound, flow_step.index, sink.name])
            recovery = f"{base}/r/{token}"
        return {
            "customer": customer,
            "cart": cart or None,
            "recovery_url": recovery,
            "recovery_expires_at": event.get("recovery_expires_at"),
            "offer": dict(flow_step.offer) if flow_step.offer else None,
            "unsubscribe_url": f"{base}/u/{unsubscribe}",
            "tenant": {"slug": tenant.slug, "name": tenant.name, "support": tenant.support},
            "stage": event.get("stage"),
            "source": event.get("source"),
            "journey_id": journey.id,
            "step": flow_step.index,
            "checkout_id": journey.checkout_id,
        }

    # ------------------------------------------------------------------ sweep

    def sweep(self) -> dict[str, int]:
        """Rebuild lost queue state from the database (Redis may have lost it all)."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.hub.settings.sweep_after)
        counts = {"events": 0, "steps": 0, "checks": 0}
        with self.store.begin() as conn:
            event_ids = conn.execute(
                sa.select(events.c.id, events.c.tenant)
                .where(events.c.status == "stored", events.c.received_at < cutoff)
                .limit(1000)
            ).all()
            # a retry is overdue by its own time, not the first attempt's
            next_run = sa.func.coalesce(steps.c.next_attempt_at, steps.c.due_at)
            overdue = conn.execute(
                sa.select(steps.c.id, steps.c.token, steps.c.status, journeys.c.tenant)
                .join(journeys, journeys.c.id == steps.c.journey_id)
                .where(
                    steps.c.status.in_(("scheduled", "retrying")),
                    next_run < cutoff,
                    steps.c.updated_at < cutoff,
                )
                .limit(1000)
            ).all()
            pending = conn.execute(sa.select(journeys).where(journeys.c.status == "pending")).all()
            attempts = {}
            for step_id, _token, status, _tenant in overdue:
                if status == "retrying":
                    attempts[step_id] = (
                        conn.execute(
                            sa.select(sa.func.max(deliveries.c.attempts))
                            .select_from(
                                steps.join(
                                    deliveries,
                                    sa.and_(
                                        deliveries.c.journey_id == steps.c.journey_id,
                                        deliveries.c.step_index == steps.c.step_index,
                                    ),
                                )
                            )
                            .where(steps.c.id == step_id)
                        ).scalar()
                        or 0
                    )
        for event_id, tenant_slug in event_ids:
            self.hub.queues.enqueue_event(event_id, tenant_slug)
            counts["events"] += 1
        for step_id, token, _status, tenant_slug in overdue:
            self._schedule(StepJob(step_id, token, tenant_slug, now, attempts.get(step_id, 0)))
            counts["steps"] += 1
        for journey in pending:
            tenant = self.hub.tenants.get(journey.tenant)
            window = tenant.abandon_after.get(journey.source) if tenant else None
            if window and journey.last_update_at + window < cutoff:
                self._schedule_check(
                    CheckJob(journey.id, journey.token, journey.tenant, journey.last_update_at, now)
                )
                counts["checks"] += 1
        if any(counts.values()):
            log.info("sweep re-queued %s", counts)
        return counts


def _known_update_is_newer(journey: Any, update_at: datetime, event_id: int) -> bool:
    """Order updates by the platform's time, then by arrival: platforms such as Shopify stamp
    whole seconds, so a create and the update typed a moment later carry one timestamp, and the
    one stored later (the higher event id) is the newer state of the checkout."""
    if journey.last_update_at is None:
        return False
    if journey.last_update_at != update_at:
        return journey.last_update_at > update_at
    return journey.event_id is not None and journey.event_id > event_id


def inferred_abandonment(update: dict, update_at: datetime, window: timedelta) -> dict:
    """The ``checkout.abandoned`` event (JSON form) that the last ``checkout.updated`` of a
    checkout becomes when its window closes with no conversion or deletion; ``hub flow
    preview`` shows the same event for an update."""
    return {
        **update,
        "kind": "checkout.abandoned",
        "event_key": f"inferred:{update['checkout_id']}:{update_at.isoformat()}",
        "occurred_at": (update_at + window).isoformat(),
        "stage": update.get("stage") or "cart",
    }


def _next_run(step_row: Any) -> datetime:
    """When the step should run next: its retry's time if one is pending, else its due time."""
    return step_row.next_attempt_at or step_row.due_at


def _identity_key(address: str) -> str:
    return address.strip().lower()


def _money(minor: int, currency: str, locale: str) -> str:
    try:
        return format_money(minor, currency, locale)
    except Exception:  # an unknown locale must not stop a message
        return format_money(minor, currency, "en")


def _jsonable(event: dict) -> dict:
    from hub.events import dump_event

    return dump_event({**event, "raw": None})


def _insert_event(conn: sa.Connection, event: dict, now: datetime) -> int | None:
    email, phone = identity_of(event["customer"])
    try:
        with conn.begin_nested():
            return conn.execute(
                sa.insert(events)
                .values(
                    tenant=event["tenant"],
                    source=event["source"],
                    event_key=event["event_key"],
                    kind=event["kind"],
                    checkout_id=event["checkout_id"],
                    occurred_at=event["occurred_at"],
                    received_at=now,
                    email=email,
                    phone=phone,
                    payload=_jsonable(event),
                    raw=None,
                    status="stored",
                )
                .returning(events.c.id)
            ).scalar_one()
    except sa.exc.IntegrityError:
        return None
