"""The sweep: rebuild lost queue state from the database.

RQ only carries work and Redis may lose it all; every event, step and inferred-abandonment
check the database still owes is queued again from here (``hub sweep``, the worker's timer).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa

from hub.engine.effects import CheckJob, Scheduler, StepJob
from hub.engine.runtime import Runtime
from hub.store import deliveries, events, journeys, steps

log = logging.getLogger("hub.engine")


class Sweep:
    """Finds overdue work in the database and queues it again."""

    def __init__(self, rt: Runtime, scheduler: Scheduler) -> None:
        self.rt = rt
        self.scheduler = scheduler

    def run(self) -> dict[str, int]:
        """Re-queue stored events, overdue steps and closed windows; returns the counts."""
        now = self.rt.clock()
        cutoff = now - timedelta(seconds=self.rt.hub.settings.sweep_after)
        counts = {"events": 0, "steps": 0, "checks": 0}
        with self.rt.store.begin() as conn:
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
            attempts = {
                step_id: _attempts_made(conn, step_id)
                for step_id, _token, status, _tenant in overdue
                if status == "retrying"
            }
        for event_id, tenant_slug in event_ids:
            self.scheduler.enqueue_event(event_id, tenant_slug)
            counts["events"] += 1
        for step_id, token, _status, tenant_slug in overdue:
            self.scheduler.schedule(
                StepJob(step_id, token, tenant_slug, now, attempts.get(step_id, 0))
            )
            counts["steps"] += 1
        for journey in pending:
            tenant = self.rt.hub.tenants.get(journey.tenant)
            window = tenant.abandon_after.get(journey.source) if tenant else None
            if window and journey.last_update_at + window < cutoff:
                self.scheduler.schedule_check(
                    CheckJob(journey.id, journey.token, journey.tenant, journey.last_update_at, now)
                )
                counts["checks"] += 1
        if any(counts.values()):
            log.info("sweep re-queued %s", counts)
        return counts


def _attempts_made(conn: sa.Connection, step_id: int) -> int:
    """The highest attempt count of the step's ledger rows: a re-queued retry claims the next."""
    return (
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
