"""RQ job functions. Workers run inside the app context (``hub worker``), so a job reaches the
hub through ``current_app``; job arguments are only ids, never data that could go stale.

Every job carries ``bound``, the :class:`~hub.binding.Binding` it was made for. A job made for
another database, tenant or an earlier row with the same id is dropped here with one warning
naming the job, and never run: run against the wrong rows it would message the wrong person.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rq import get_current_job

from hub.binding import Binding, Mismatch
from hub.current import current_hub
from hub.engine import Engine

log = logging.getLogger("hub.jobs")


def process_event(event_id: int, bound: Any = None) -> str:
    return _bound_run(bound, lambda engine, b: engine.process_event(event_id, expect=b))


def process_handed_off(entries: list[tuple[Any, Any]]) -> int:
    """Process events a worker took from the event list (``Queues.take_events``), one after
    the other, each as its own job would; returns how many ran.

    The binding is checked as for a job. An event that fails stays ``stored``: the sweep hands
    it off again, as it does for an RQ job that failed.
    """
    hub = current_hub()
    ran = 0
    for event_id, bound in entries:
        try:
            if not isinstance(event_id, int):
                raise Mismatch(f"not an event entry: {bound!r}")
            binding = Binding.from_job(bound)
            binding.check_installation(hub.installation)
            Engine(hub).process_event(event_id, expect=binding)
            ran += 1
        except Mismatch as exc:
            log.warning("dropped event %s: %s", event_id, exc)
        except Exception:
            log.exception("event %s failed; the sweep hands it off again", event_id)
    return ran


def run_step(step_id: int, attempt: int = 0, bound: Any = None) -> str:
    return _bound_run(bound, lambda engine, b: engine.run_step(step_id, attempt, expect=b))


def check_abandonment(journey_id: int, update_at_iso: str, bound: Any = None) -> str:
    return _bound_run(
        bound, lambda engine, b: engine.check_abandonment(journey_id, update_at_iso, expect=b)
    )


def _bound_run(bound: Any, work: Callable[[Engine, Binding], str]) -> str:
    """Run ``work`` if the job belongs to this database; otherwise log why and drop it.

    The installation is compared here without touching the database; tenant and row token
    where the engine reads the row anyway. A dropped job ends successfully: retrying it could
    never make it match.
    """
    hub = current_hub()
    try:
        binding = Binding.from_job(bound)
        binding.check_installation(hub.installation)
        return work(Engine(hub), binding)
    except Mismatch as exc:
        job = get_current_job()
        log.warning("dropped job %s: %s", job.id if job else "(no job)", exc)
        return f"dropped: {exc}"
