"""One client: results over time and by flow, source and channel; recent journeys; the
webhook URLs to paste into each platform; plugins and the tenant file's validation result."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import render_template

from hub.current import current_hub
from hub.dashboard import alerts, cache, figures
from hub.dashboard.access import client
from hub.dashboard.site import blueprint
from hub.dashboard.views.journey import journey_rows
from hub.store import events, utcnow


@blueprint.get("/clients/<slug>/")
def client_page(slug: str) -> Any:
    hub = current_hub()
    found = client(slug)
    now = utcnow()
    series, figures_as_of = figures.cached_results(hub, {slug: found.zone}, now)
    problems, alerts_as_of = alerts.cached(
        hub, {slug: found.tenant}, {slug: len(found.issues)} if found.issues else {}, now
    )
    parts, parts_as_of = cache.per_tenant(
        hub, "report", [slug], lambda _slugs: {slug: _breakdowns(hub.store, found, now)}
    )
    return render_template(
        "dashboard/client.html",
        client=found,
        series=series[slug],
        as_of=min(figures_as_of, alerts_as_of, parts_as_of),
        **parts[slug],
        alerts=problems,
        journeys=journey_rows(hub.store, slug, limit=25),
        webhooks=_webhooks(hub, found),
        plugin_errors=[e for e in hub.registry.errors if "is disabled" not in e],
    )


def _breakdowns(store: Any, found: Any, now: Any) -> dict[str, Any]:
    """The report's breakdowns and every message's outcome per channel (JSON-able, cached)."""
    since = now - timedelta(days=figures.DAYS)
    return {
        **figures.breakdowns(store, found.slug, found.zone, now),
        "outcomes": _by_channel(figures.by_channel(store, found.slug, since)),
    }


def _by_channel(rows: list[Any]) -> list[dict[str, Any]]:
    channels: dict[str, dict[str, int]] = {}
    for channel, status, count in rows:
        channels.setdefault(channel, {})[status] = int(count)
    return [{"channel": c, "statuses": s, "total": sum(s.values())} for c, s in channels.items()]


def _webhooks(hub: Any, found: Any) -> list[dict[str, Any]]:
    """Each enabled source's URL and the last valid call (a stored event: only verified
    calls are stored)."""
    if found.tenant is None:
        return []
    since = utcnow() - timedelta(days=figures.DAYS)
    # the last call of each source read backwards from ix_events_received (one index probe
    # per source), and the calls of the last 30 days rather than of all time, which grows
    last = (
        sa.select(sa.func.max(events.c.received_at))
        .where(events.c.tenant == found.slug, events.c.source == sa.bindparam("source"))
        .scalar_subquery()
    )
    recent = (
        sa.select(events.c.source, sa.func.count())
        .where(events.c.tenant == found.slug, events.c.received_at >= since)
        .group_by(events.c.source)
    )
    with hub.store.begin() as conn:
        calls = dict(conn.execute(recent).all())
        seen = {
            s: conn.execute(sa.select(last), {"source": s}).scalar() for s in found.tenant.sources
        }
    base = hub.public_url()
    return [
        {
            "source": source,
            "url": f"{base}/webhooks/{found.slug}/{source}",
            "last": seen[source],
            "calls": calls.get(source, 0),
        }
        for source in found.tenant.sources
    ]
