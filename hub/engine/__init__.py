"""The recovery engine: what happens to a stored event, and what a step does when it fires.

``process_event`` turns an event into journey state (open, converted, deleted, pending for
inferred abandonment) and schedules steps. ``run_step`` re-checks every stop rule at fire time,
picks the first channel with consent and an address, records the delivery in the ledger
*before* calling the sink, and classifies the outcome. The database decides uniqueness; RQ only
carries work, so any job may safely run twice.

:class:`Engine` is the façade the jobs, the CLI and the tests call; each job of it is a module
of this package, named for what it holds:

* ``journeys`` — the per-kind event handlers (abandoned, converted, deleted) and journey rows;
* ``inferred`` — inferred abandonment (``checkout.updated`` and the window's check);
* ``flows`` — flow choice and the stop rules a step re-checks;
* ``policy`` — contact policy: consent, suppressions, frequency cap, quiet hours;
* ``step`` — firing one step; ``attempt`` — one delivery attempt, its outcome and backoff;
* ``probe`` — asking the platform whether the checkout converted, right before a step fires;
* ``ledger`` — the ``deliveries`` and ``delivery_log`` rows;
* ``render`` — the message context and signed links;
* ``effects`` — work handed to RQ after commit; ``sweep`` — rebuilding lost queue state;
* ``runtime`` — the hub, clock and random source every part shares.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.binding import Binding
from hub.engine.attempt import Attempts
from hub.engine.effects import CheckJob, Effects, Scheduler, StepJob
from hub.engine.flows import CLOSED, Flows
from hub.engine.inferred import Inference, inferred_abandonment
from hub.engine.journeys import Journeys
from hub.engine.ledger import SENT_STATUSES, Ledger, drop_retries
from hub.engine.policy import Policy
from hub.engine.probe import Prober
from hub.engine.render import MessageContext, link_serializer
from hub.engine.runtime import EARLY_SLACK, Runtime, one_connection
from hub.engine.step import StepRunner
from hub.engine.sweep import Sweep
from hub.events import load_event
from hub.logs import mask_ids
from hub.store import events
from hub.tenants import Flow, Tenant

__all__ = [
    "CLOSED",
    "EARLY_SLACK",
    "SENT_STATUSES",
    "CheckJob",
    "Effects",
    "Engine",
    "StepJob",
    "drop_retries",
    "inferred_abandonment",
    "link_serializer",
]

log = logging.getLogger("hub.engine")


class Engine:
    """One per job; holds the hub and a clock (tests of the engine pass their own).

    The parts are built per engine (a few small objects, microseconds against a job's
    milliseconds) so that a test's clock and random source reach every one of them.
    """

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
        rt = Runtime(hub, self.clock, self.rng)
        self.scheduler = Scheduler(rt)
        self.flows = Flows(rt)
        self.policy = Policy(rt)
        self.ledger = Ledger(rt)
        self.messages = MessageContext(rt)
        self.attempts = Attempts(rt, self.ledger, self.policy, self.messages, self.scheduler)
        self.journeys = Journeys(rt, self.flows, self.policy)
        self.prober = Prober(rt, self.journeys, self.ledger)
        self.steps = StepRunner(
            rt, self.flows, self.policy, self.ledger, self.attempts, self.scheduler, self.prober
        )
        self.inference = Inference(rt, self.journeys)
        self.sweeper = Sweep(rt, self.scheduler)

    # ------------------------------------------------------------------ jobs

    @one_connection
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
                    "checkout.abandoned": self.journeys.on_abandoned,
                    "checkout.converted": self.journeys.on_converted,
                    "checkout.updated": self.inference.on_updated,
                    "checkout.deleted": self.journeys.on_deleted,
                    # attribution: a refund after a recovery (hub.attribution)
                    "checkout.refunded": self.journeys.on_refunded,
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

    @one_connection
    def check_abandonment(
        self, journey_id: int, update_at_iso: str, expect: Binding | None = None
    ) -> str:
        """The window of an inferred abandonment closed: emit ``checkout.abandoned``."""
        effects = Effects()
        note = self.inference.check(
            journey_id, datetime.fromisoformat(update_at_iso), effects, expect
        )
        self._apply(effects)
        return note

    @one_connection
    def run_step(self, step_id: int, attempt: int = 0, expect: Binding | None = None) -> str:
        """Fire one step (or one retry of it). Safe to call twice with the same arguments.

        ``expect`` is the job's binding: a step row of another tenant, or with another token
        (an id reused after a restore), raises ``Mismatch`` before anything happens.
        """
        return self.steps.run(step_id, attempt, expect)

    def sweep(self) -> dict[str, int]:
        """Rebuild lost queue state from the database (Redis may have lost it all)."""
        return self.sweeper.run()

    def _apply(self, effects: Effects) -> None:
        for event_id in effects.events:
            self.process_event(event_id)
        for step in effects.steps:
            if step.due <= self.clock() and self._run_inline(step.step_id, step.attempt):
                continue
            try:
                self.scheduler.schedule(step)
            except Exception:  # the sweep reschedules overdue steps from the database
                log.warning("could not schedule step %s; the sweep will", step.step_id)
        for check in effects.checks:
            try:
                self.scheduler.schedule_check(check)
            except Exception:
                log.warning("could not schedule abandonment check for journey %s", check.journey_id)

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

    # ------------------------------------------------------------------ questions
    # what `hub flow preview` and the tests ask without running a job

    def choose_flow(self, conn: sa.Connection, tenant: Tenant, event: dict) -> Flow | None:
        """The flow an abandonment ``event`` would start (see ``Flows.choose``)."""
        return self.flows.choose(conn, tenant, event)

    def abandon_counter(
        self, conn: sa.Connection, tenant: Tenant, event: dict
    ) -> Callable[[timedelta], int]:
        """The person's abandonments within a window before ``event`` (at least 1)."""
        return self.flows.abandon_counter(conn, tenant, event)

    def dead_link(self, tenant: Tenant, flow_step: Any, event: dict, when: datetime) -> str | None:
        """Why a step's message would carry a dead link at ``when`` (see ``Flows.dead_link``)."""
        return self.flows.dead_link(tenant, flow_step, event, when)

    def eligibility(
        self, tenant: Tenant, journey: Any, sink: Any, config: Any, event: dict, context: dict
    ) -> tuple[str | None, str | None, str | None]:
        """(address, skip status, reason) of one channel (see ``Policy.eligibility``)."""
        return self.policy.eligibility(tenant, journey, sink, config, event, context)

    def due_time(self, tenant: Tenant, event: dict, due: datetime) -> datetime:
        """``due`` moved out of the quiet hours of the customer's (or the tenant's) zone."""
        return self.policy.due_time(tenant, event, due)

    def quiet_until(self, tenant: Tenant, event: dict, when: datetime) -> datetime | None:
        """The end of the quiet hours ``when`` falls in, if it falls in them."""
        return self.policy.quiet_until(tenant, event, when)

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds until the next try: the provider's hint (clamped) or exponential ±20 %."""
        return self.attempts.backoff(attempts, retry_after)

    def context(self, tenant: Tenant, journey: Any, flow_step: Any, sink: Any) -> dict:
        """What every template and sink sees (architecture §4), same for every channel."""
        return self.messages.build(tenant, journey, flow_step, sink)
