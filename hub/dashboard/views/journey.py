"""Journeys: the list and search of one client, and the timeline of one checkout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import abort, g, render_template, request

from hub.current import current_hub
from hub.dashboard.access import client, clients
from hub.dashboard.site import blueprint
from hub.phones import to_e164
from hub.store import (
    Store,
    deliveries,
    delivery_log,
    events,
    journeys,
    steps,
    tracking_events,
)

PAGE = 50


def journey_rows(
    store: Store, tenants: str | list[str], query: str = "", limit: int = PAGE
) -> list[Any]:
    """The newest journeys of ``tenants``, or those whose e-mail, phone or checkout id is
    ``query`` (exact: the indexes make that instant on any number of journeys)."""
    wanted = [tenants] if isinstance(tenants, str) else tenants
    select = (
        sa.select(
            journeys.c.id,
            journeys.c.tenant,
            journeys.c.checkout_id,
            journeys.c.status,
            journeys.c.flow,
            journeys.c.email,
            journeys.c.abandoned_at,
            journeys.c.created_at,
            journeys.c.recovered,
            journeys.c.recovered_amount,
            journeys.c.recovered_currency,
        )
        .where(journeys.c.tenant.in_(wanted))
        .order_by(journeys.c.id.desc())
        .limit(limit)
    )
    query = query.strip()
    if query:
        select = select.where(sa.or_(*_matches(query)))
    with store.begin() as conn:
        return list(conn.execute(select).all())


def _matches(query: str) -> list[Any]:
    found = [journeys.c.checkout_id == query, journeys.c.email == query.lower()]
    phone = to_e164(query)
    if phone:
        found.append(journeys.c.phone == phone)
    return found


@blueprint.get("/clients/<slug>/journeys/")
def journey_list(slug: str) -> Any:
    found = client(slug)
    query = request.args.get("q", "")
    rows = journey_rows(current_hub().store, slug, query)
    return render_template("dashboard/journeys.html", client=found, rows=rows, q=query)


@blueprint.get("/search")
def search() -> Any:
    """Search every client the account may see (an admin: all of them)."""
    visible = {c.slug: c for c in clients()}
    query = request.args.get("q", "")
    rows = journey_rows(current_hub().store, list(visible), query) if query.strip() else []
    return render_template("dashboard/search.html", clients=visible, rows=rows, q=query)


@dataclass
class Entry:
    """One line of a journey's timeline."""

    at: datetime | None
    kind: str  # event | step | attempt | tracking | conversion
    title: str
    detail: str = ""
    status: str = ""
    raw: str | None = None  # the platform's payload, for the admin only


@blueprint.get("/clients/<slug>/journeys/<int:journey_id>")
def journey_page(slug: str, journey_id: int) -> Any:
    found = client(slug)
    store = current_hub().store
    with store.begin() as conn:
        journey = conn.execute(
            sa.select(journeys).where(journeys.c.id == journey_id, journeys.c.tenant == slug)
        ).first()
        if journey is None:
            abort(404)
        timeline = _timeline(conn, journey, g.user.is_admin)
    return render_template(
        "dashboard/journey.html", client=found, journey=journey, timeline=timeline
    )


def _timeline(conn: Any, journey: Any, with_raw: bool) -> list[Entry]:
    entries = [
        Entry(
            row.received_at,
            "event",
            f"{row.kind} from {row.source}",
            f"occurred {row.occurred_at:%Y-%m-%d %H:%M:%S} UTC · {row.status}"
            + (f" · {row.note}" if row.note else ""),
            row.status,
            row.raw if with_raw else None,
        )
        for row in conn.execute(
            sa.select(events)
            .where(events.c.tenant == journey.tenant, events.c.checkout_id == journey.checkout_id)
            .order_by(events.c.received_at)
        )
    ]
    for row in conn.execute(
        sa.select(steps).where(steps.c.journey_id == journey.id).order_by(steps.c.step_index)
    ):
        entries.append(
            Entry(
                row.due_at,
                "step",
                f"step {row.step_index} {'due' if row.status == 'scheduled' else row.status}",
                row.reason or "",
                row.status,
            )
        )
    for row in conn.execute(
        sa.select(delivery_log)
        .where(delivery_log.c.journey_id == journey.id, delivery_log.c.tenant == journey.tenant)
        .order_by(delivery_log.c.id)
    ):
        entries.append(
            Entry(
                row.at,
                "attempt",
                f"step {row.step_index} via {row.sink or '—'} attempt {row.attempt}: {row.status}",
                row.reason or "",
                row.status,
            )
        )
    for row in conn.execute(
        sa.select(tracking_events, deliveries.c.sink, deliveries.c.step_index)
        .join(deliveries, deliveries.c.id == tracking_events.c.delivery_id)
        .where(tracking_events.c.journey_id == journey.id)
        .order_by(tracking_events.c.at)
    ):
        entries.append(
            Entry(
                row.at,
                "tracking",
                f"{row.kind} (step {row.step_index} via {row.sink})",
                row.detail or "",
                row.kind,
            )
        )
    if journey.recovered:
        credited = ""
        if journey.credited_delivery_id:
            credited_row = conn.execute(
                sa.select(deliveries.c.step_index, deliveries.c.sink).where(
                    deliveries.c.id == journey.credited_delivery_id
                )
            ).first()
            if credited_row:
                credited = (
                    f"credited to step {credited_row.step_index} via {credited_row.sink} "
                    f"({journey.credit or 'credit'})"
                )
        elif journey.credit:
            credited = f"credit: {journey.credit}"
        entries.append(
            Entry(
                journey.recovered_at or journey.closed_at,
                "conversion",
                "recovered",
                credited,
                "converted",
            )
        )
    epoch = datetime.min.replace(tzinfo=journey.created_at.tzinfo)
    return sorted(entries, key=lambda e: e.at or epoch)
