"""The sweep: rebuild lost queue state from the database.

RQ only carries work and Redis may lose it all; every event, step and inferred-abandonment
check the database still owes is queued again from here (``hub sweep``, the worker's timer) —
but only what Redis *lost*. Work that is merely late (workers behind a burst) is still on a
queue, and a copy per pass would lengthen the backlog the workers are behind on. So the sweep
rebuilds each job with the id it was first queued under and asks Redis whether that job is
still waiting; and a step whose send is in flight holds a lease, so a slow provider is not
taken for a crashed worker.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.engine.effects import CheckJob, Scheduler, StepJob
from hub.engine.runtime import Runtime
from hub.store import deliveries, events, journeys, steps

log = logging.getLogger("hub.engine")

# ledger rows a step's next run claims again (``Ledger.claim_retry``)
OPEN = ("retrying", "sending")


class Sweep:
    """Finds overdue work in the database and queues again what Redis no longer holds."""

    def __init__(self, rt: Runtime, scheduler: Scheduler) -> None:
        self.rt = rt
        self.scheduler = scheduler

    def run(self) -> dict[str, int]:
        """Re-queue lost events, steps and closed windows; returns the counts."""
        now = self.rt.clock()
        cutoff = now - timedelta(seconds=self.rt.hub.settings.sweep_after)
        with self.rt.store.begin() as conn:
            stored = conn.execute(
                sa.select(events.c.id, events.c.tenant)
                .where(events.c.status == "stored", events.c.received_at < cutoff)
                .limit(1000)
            ).all()
            step_jobs = _overdue_steps(conn, cutoff)
            pending = conn.execute(sa.select(journeys).where(journeys.c.status == "pending")).all()
        check_jobs = self._closed_windows(pending, cutoff)
        counts = {
            "events": self._events(stored),
            "steps": self._steps(step_jobs),
            "checks": self._checks(check_jobs),
        }
        if any(counts.values()):
            log.info("sweep re-queued %s", counts)
        return counts

    def _events(self, stored: list[Any]) -> int:
        waiting = self.scheduler.events_waiting([event_id for event_id, _ in stored])
        lost = [(event_id, tenant) for event_id, tenant in stored if event_id not in waiting]
        for event_id, tenant_slug in lost:
            self.scheduler.enqueue_event(event_id, tenant_slug)
        return len(lost)

    def _steps(self, jobs: list[StepJob]) -> int:
        """Steps neither sending in a live process nor still waiting on a queue.

        A re-queued step keeps the due time and attempt it was queued with, so its job id is
        the one it had: if that job is still queued the step is skipped, and a step the sweep
        queued itself is seen as waiting on the next pass.
        """
        sending = self.scheduler.in_flight(job.step_id for job in jobs)
        jobs = [job for job in jobs if job.step_id not in sending]
        waiting = self.scheduler.waiting(jobs)
        lost = [job for job in jobs if job not in waiting]
        for job in lost:
            self.scheduler.schedule(job)
        return len(lost)

    def _checks(self, jobs: list[CheckJob]) -> int:
        waiting = self.scheduler.waiting(jobs)
        lost = [job for job in jobs if job not in waiting]
        for job in lost:
            self.scheduler.schedule_check(job)
        return len(lost)

    def _closed_windows(self, pending: list[Any], cutoff: datetime) -> list[CheckJob]:
        """Checks of pending journeys whose window closed before ``cutoff``."""
        jobs = []
        for journey in pending:
            tenant = self.rt.hub.tenants.get(journey.tenant)
            window = tenant.abandon_after.get(journey.source) if tenant else None
            update_at = journey.last_update_at
            if window and update_at + window < cutoff:
                jobs.append(
                    CheckJob(
                        journey.id, journey.token, journey.tenant, update_at, update_at + window
                    )
                )
        return jobs


def _overdue_steps(conn: sa.Connection, cutoff: datetime) -> list[StepJob]:
    """Steps whose run (or retry) is overdue, as the job that was queued for it.

    A retry is overdue by its own time, not the first attempt's; its job's attempt is the
    count of the channel the retry claims, not of a channel that already failed.
    """
    next_run = sa.func.coalesce(steps.c.next_attempt_at, steps.c.due_at)
    rows = conn.execute(
        sa.select(
            steps.c.id,
            steps.c.token,
            steps.c.status,
            steps.c.due_at,
            steps.c.next_attempt_at,
            journeys.c.tenant,
        )
        .join(journeys, journeys.c.id == steps.c.journey_id)
        .where(
            steps.c.status.in_(("scheduled", "retrying")),
            next_run < cutoff,
            steps.c.updated_at < cutoff,
        )
        .limit(1000)
    ).all()
    return [
        StepJob(
            row.id,
            row.token,
            row.tenant,
            row.next_attempt_at or row.due_at,
            _open_attempts(conn, row.id) if row.status == "retrying" else 0,
        )
        for row in rows
    ]


def _open_attempts(conn: sa.Connection, step_id: int) -> int:
    """The attempt count of the step's open ledger row: a re-queued retry claims the next."""
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
            .where(steps.c.id == step_id, deliveries.c.status.in_(OPEN))
        ).scalar()
        or 0
    )
