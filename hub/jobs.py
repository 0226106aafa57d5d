"""RQ job functions. Workers run inside the app context (``hub worker``), so a job reaches the
hub through ``current_app``; job arguments are only ids, never data that could go stale."""

from __future__ import annotations

from hub import current_hub
from hub.engine import Engine


def process_event(event_id: int) -> str:
    return Engine(current_hub()).process_event(event_id)


def run_step(step_id: int, attempt: int = 0) -> str:
    return Engine(current_hub()).run_step(step_id, attempt)


def check_abandonment(journey_id: int, update_at_iso: str) -> str:
    return Engine(current_hub()).check_abandonment(journey_id, update_at_iso)
