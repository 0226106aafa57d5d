"""Firing one step: re-check the stop rules, honour quiet hours, try the channels in order.

A step may run twice (a retry, the sweep, a restarted worker): what it reads here decides
nothing on its own; the ledger's unique key and the claim's attempt count do.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.engine.attempt import Attempts
from hub.engine.effects import Scheduler, StepJob
from hub.engine.flows import Flows
from hub.engine.ledger import Ledger
from hub.engine.policy import Policy
from hub.engine.probe import CONVERTED_REASON, Prober
from hub.engine.runtime import EARLY_SLACK, Runtime
from hub.store import journeys, steps

log = logging.getLogger("hub.engine")


class StepRunner:
    """Runs one step row (or one retry of it) to its next state."""

    def __init__(
        self,
        rt: Runtime,
        flows: Flows,
        policy: Policy,
        ledger: Ledger,
        attempts: Attempts,
        scheduler: Scheduler,
        prober: Prober,
    ) -> None:
        self.rt = rt
        self.flows = flows
        self.policy = policy
        self.ledger = ledger
        self.attempts = attempts
        self.scheduler = scheduler
        self.prober = prober

    def run(self, step_id: int, attempt: int = 0, expect: Any = None) -> str:
        """Fire the step; ``expect`` (a job's binding) refuses a row of another tenant."""
        now = self.rt.clock()
        # one read-only transaction for what the run needs to decide. No row lock: it would be
        # released at this commit anyway, and only cost a WAL flush; the ledger's unique key and
        # the claim's attempt check keep two runs from sending twice
        with self.rt.store.begin() as conn:
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
            ledger = self.ledger.rows(conn, step_row.journey_id, step_row.step_index)
        # a retry waits for its own time, whoever queued it (sweep, a restarted worker)
        wake = step_row.next_attempt_at or step_row.due_at
        if now < wake - EARLY_SLACK:
            self.scheduler.schedule(StepJob(step_id, step_row.token, journey.tenant, wake, attempt))
            return "early; rescheduled"
        metrics = self.rt.metrics
        if metrics and attempt == 0:
            metrics.step_fired((now - step_row.due_at).total_seconds())
        tenant = self.rt.hub.tenants.get(journey.tenant)
        reason, flow_step = self.flows.stop_reason(tenant, journey, step_row, now)
        if reason:
            return self.ledger.finish_step(step_id, journey, step_row.step_index, "skipped", reason)
        # judge the stored due time, not `now`: RQ may start a job up to ~1 s early
        later = self.policy.quiet_until(tenant, journey.event, max(now, wake))
        if later is not None:
            return self._defer(step_row, journey, attempt, later, now)
        # ask the platform only before the step's first try: a retry already decided to send
        asked = None if attempt or ledger else self.prober.ask(tenant, journey, step_row.step_index)
        if asked == "converted":
            self.prober.close_converted(journey)
            return self.ledger.finish_step(
                step_id, journey, step_row.step_index, "skipped", CONVERTED_REASON
            )
        event = journey.event
        outcomes = []
        for sink_name in flow_step.channels:
            outcome, final = self.attempts.deliver(
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
        return self.ledger.finish_step(
            step_id, journey, step_row.step_index, status, "; ".join(outcomes) or "no channel"
        )

    def _defer(
        self, step_row: Any, journey: Any, attempt: int, later: datetime, now: datetime
    ) -> str:
        """Move the step (and a pending retry) to the end of the quiet hours."""
        values: dict[str, Any] = dict(due_at=later, updated_at=now, reason="deferred: quiet hours")
        if step_row.next_attempt_at is not None:
            values["next_attempt_at"] = later
        with self.rt.store.begin() as conn:
            conn.execute(sa.update(steps).where(steps.c.id == step_row.id).values(**values))
        self.scheduler.schedule(
            StepJob(step_row.id, step_row.token, journey.tenant, later, attempt)
        )
        log.info("step id=%s deferred to %s (quiet hours)", step_row.id, later.isoformat())
        return f"deferred to {later.isoformat()} (quiet hours)"
