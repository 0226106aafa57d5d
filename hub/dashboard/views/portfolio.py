"""The first page: one row per client with its results and what needs attention."""

from __future__ import annotations

from typing import Any

import redis
from flask import g, redirect, render_template, url_for

from hub.current import current_hub
from hub.dashboard import alerts, figures
from hub.dashboard.access import clients
from hub.dashboard.site import blueprint
from hub.store import utcnow


@blueprint.get("/")
def portfolio() -> Any:
    user = g.user
    if not user.is_admin:  # a client's viewer has one client: its page is the first page
        return redirect(url_for("dashboard.client_page", slug=user.tenant))
    hub = current_hub()
    now = utcnow()
    visible = clients()
    series, figures_as_of = figures.cached_results(hub, {c.slug: c.zone for c in visible}, now)
    found, alerts_as_of = alerts.cached(
        hub,
        {c.slug: c.tenant for c in visible},
        {c.slug: len(c.issues) for c in visible if c.issues},
        now,
    )
    return render_template(
        "dashboard/portfolio.html",
        clients=visible,
        series=series,
        as_of=min(figures_as_of, alerts_as_of),
        alerts=alerts.by_tenant(found),
        hub_problems=_hub_problems(hub),
        queues=_queue_depths(hub),
    )


def _hub_problems(hub: Any) -> list[str]:
    """Problems of the whole installation (plugins that did not load, settings)."""
    return [*hub.settings_problems, *hub.registry.errors]


def _queue_depths(hub: Any) -> dict[str, Any]:
    """Jobs waiting in Redis now, or why Redis could not be asked."""
    try:
        queues = hub.queues
        return {
            "events": queues.events.count + queues.queued_events(),  # checks + stored events
            "steps": queues.steps.count,
            "scheduled": queues.steps.scheduled_job_registry.count
            + queues.events.scheduled_job_registry.count,
            "failed": queues.steps.failed_job_registry.count
            + queues.events.failed_job_registry.count,
        }
    except redis.RedisError as exc:
        return {"error": f"Redis unreachable ({exc.__class__.__name__})"}
