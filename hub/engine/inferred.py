"""Inferred abandonment: a platform that only reports checkout updates (no "abandoned" event)
gets one when a checkout's window closes with no conversion or deletion.

Each ``checkout.updated`` (re)starts the window on a ``pending`` journey; the check that fires
at its end stores the ``checkout.abandoned`` event, which then runs like a reported one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.engine.effects import CheckJob, Effects
from hub.engine.flows import CLOSED
from hub.engine.journeys import Journeys, stored_form
from hub.engine.runtime import EARLY_SLACK, Runtime
from hub.events import identity_of, load_event
from hub.store import events, journeys
from hub.tenants import Tenant


def inferred_abandonment(update: dict, update_at: datetime, window: timedelta) -> dict:
    """The ``checkout.abandoned`` event (JSON form) that the last ``checkout.updated`` of a
    checkout becomes when its window closes with no conversion or deletion; ``hub flow
    preview`` shows the same event for an update."""
    return {
        **update,
        "kind": "checkout.abandoned",
        "event_key": f"inferred:{update['checkout_id']}:{update_at.isoformat()}",
        "occurred_at": (update_at + window).isoformat(),
        "stage": update.get("stage") or "cart",
    }


class Inference:
    """The ``checkout.updated`` handler and the check at the end of the window."""

    def __init__(self, rt: Runtime, journeys: Journeys) -> None:
        self.rt = rt
        self.journeys = journeys

    def on_updated(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        """Inferred abandonment: (re)start the window at each update of a live checkout."""
        window = tenant.abandon_after.get(event["source"])
        now = self.rt.clock()
        journey = self.journeys.find(conn, tenant.slug, event["checkout_id"])
        email, phone = identity_of(event["customer"])
        if journey is not None and journey.status in CLOSED:
            return f"ignored: checkout already {journey.status}"
        if journey is not None and journey.status != "pending":
            conn.execute(
                sa.update(journeys)
                .where(journeys.c.id == journey.id)
                .values(
                    event=stored_form({**event, "kind": "checkout.abandoned"}),
                    email=email,
                    phone=phone,
                )
            )
            return f"refreshed running journey {journey.id}"
        if window is None:
            return "recorded (this source does not infer abandonment for this tenant)"
        update_at = event["occurred_at"]
        if journey is not None and _known_update_is_newer(journey, update_at, event_id):
            return "ignored: a newer update is already known"
        values = dict(
            status="pending",
            event=stored_form(event),
            event_id=event_id,
            email=email,
            phone=phone,
            last_update_at=update_at,
            source=event["source"],
        )
        journey_id, token = self.journeys.save(conn, tenant, event, journey, values, now)
        effects.checks.append(
            CheckJob(journey_id, token, tenant.slug, update_at, max(update_at + window, now))
        )
        return f"pending journey {journey_id}: abandoned unless converted by {update_at + window}"

    def check(
        self, journey_id: int, update_at: datetime, effects: Effects, expect: Any = None
    ) -> str:
        """The window closed: store the inferred abandonment (its event goes to ``effects``)."""
        store = self.rt.store
        with store.begin() as conn:
            journey = conn.execute(
                store.lock(conn, sa.select(journeys).where(journeys.c.id == journey_id))
            ).first()
            if expect is not None:
                expect.check_row(f"journey {journey_id}", journey)
            if journey is None or journey.status != "pending":
                return "nothing to do"
            if journey.last_update_at != update_at:
                return "a newer update restarted the window"
            tenant = self.rt.hub.tenants.get(journey.tenant)
            window = tenant.abandon_after.get(journey.source) if tenant else None
            if window is None:
                return "tenant or source gone"
            if self.rt.clock() < update_at + window - EARLY_SLACK:
                effects.checks.append(
                    CheckJob(
                        journey_id, journey.token, journey.tenant, update_at, update_at + window
                    )
                )
                return "early; rescheduled"
            loaded = load_event(inferred_abandonment(journey.event, update_at, window))
            new_id = _insert_event(conn, loaded, self.rt.clock())
            if new_id is not None:
                effects.events.append(new_id)
            return f"inferred abandonment emitted (event {new_id})"


def _known_update_is_newer(journey: Any, update_at: datetime, event_id: int) -> bool:
    """Order updates by the platform's time, then by arrival: platforms such as Shopify stamp
    whole seconds, so a create and the update typed a moment later carry one timestamp, and the
    one stored later (the higher event id) is the newer state of the checkout."""
    if journey.last_update_at is None:
        return False
    if journey.last_update_at != update_at:
        return journey.last_update_at > update_at
    return journey.event_id is not None and journey.event_id > event_id


def _insert_event(conn: sa.Connection, event: dict, now: datetime) -> int | None:
    """Store the inferred event once (its key names checkout and update): ``None`` if stored."""
    email, phone = identity_of(event["customer"])
    try:
        with conn.begin_nested():
            return conn.execute(
                sa.insert(events)
                .values(
                    tenant=event["tenant"],
                    source=event["source"],
                    event_key=event["event_key"],
                    kind=event["kind"],
                    checkout_id=event["checkout_id"],
                    occurred_at=event["occurred_at"],
                    received_at=now,
                    email=email,
                    phone=phone,
                    payload=stored_form(event),
                    raw=None,
                    status="stored",
                )
                .returning(events.c.id)
            ).scalar_one()
    except sa.exc.IntegrityError:
        return None
