"""Work the engine decided inside a transaction, and handing it to RQ afterwards.

A handler only appends to :class:`Effects`; the façade hands them over once the transaction
that decided them has committed, so a job never runs against rows it cannot see yet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

from hub.engine.runtime import Runtime

log = logging.getLogger("hub.engine")


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


class Scheduler:
    """Puts steps and checks on the hub's queues (read at call time: tests swap them), and
    answers the sweep's question: which of them does Redis still hold?"""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def schedule(self, job: StepJob) -> None:
        self.rt.hub.queues.schedule_step(
            job.step_id, job.due, job.attempt, tenant=job.tenant, token=job.token
        )

    def schedule_check(self, job: CheckJob) -> None:
        self.rt.hub.queues.schedule_check(
            job.journey_id, job.update_at, job.due, tenant=job.tenant, token=job.token
        )

    def enqueue_event(self, event_id: int, tenant: str) -> None:
        self.rt.hub.queues.enqueue_event(event_id, tenant)

    def waiting(self, jobs: Iterable[StepJob | CheckJob]) -> set[StepJob | CheckJob]:
        """The ``jobs`` whose job (by its deterministic id) Redis still holds to run."""
        queues = self.rt.hub.queues
        ids = {
            (
                queues.step_job_id(job.step_id, job.token, job.attempt, job.due)
                if isinstance(job, StepJob)
                else queues.check_job_id(job.journey_id, job.token, job.update_at, job.due)
            ): job
            for job in jobs
        }
        return {ids[job_id] for job_id in queues.waiting(list(ids))}

    def events_waiting(self, event_ids: list[int]) -> set[int]:
        """The stored events whose hand-off to the workers Redis still holds."""
        return self.rt.hub.queues.events_waiting(event_ids)

    def sending(self, step_id: int) -> AbstractContextManager[None]:
        """Hold the step's lease while a sink call runs: a live send, not a crashed one."""
        return self.rt.hub.queues.leases.hold(_lease(step_id))

    def in_flight(self, step_ids: Iterable[int]) -> set[int]:
        """The steps a live process is sending right now (their lease is held)."""
        by_name = {_lease(step_id): step_id for step_id in step_ids}
        return {by_name[name] for name in self.rt.hub.queues.leases.alive(by_name)}


def _lease(step_id: int) -> str:
    return f"step-{step_id}"
