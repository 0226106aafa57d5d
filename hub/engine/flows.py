"""Which flow a journey follows, and the stop rules a step re-checks when it fires.

Both read the tenant's flows and conditions against the same facts and abandon counter, so
``hub flow preview`` asks this module exactly what the engine asks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.conditions import facts_for
from hub.durations import format_duration
from hub.engine.runtime import Runtime
from hub.events import identity_of, load_event
from hub.store import events
from hub.tenants import Flow, Tenant

# a journey in one of these statuses sends nothing more
CLOSED = ("converted", "deleted", "unsubscribed", "superseded")
# the reason a step of a journey in its flow's holdout group is skipped with
HOLDOUT = "holdout"


class Flows:
    """Flow choice (at abandonment) and stop rules (at each step)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def choose(self, conn: sa.Connection, tenant: Tenant, event: dict) -> Flow | None:
        """The first enabled flow whose condition holds for ``event``, if any."""
        facts = facts_for(event, tenant.currency)
        counter = self.abandon_counter(conn, tenant, event)
        for flow in tenant.flows:
            if flow.enabled and (flow.when is None or flow.when.holds(facts, counter)):
                return flow
        return None

    def abandon_counter(
        self, conn: sa.Connection, tenant: Tenant, event: dict
    ) -> Callable[[timedelta], int]:
        """How many checkouts the event's person abandoned within a window before it (at
        least this one): conditions such as ``abandoned_within`` ask it lazily."""
        email, phone = identity_of(event["customer"])

        def count(within: timedelta) -> int:
            who = [events.c.email == email] if email else []
            if phone:
                who.append(events.c.phone == phone)
            if not who:
                return 1
            since = event["occurred_at"] - within
            n = conn.execute(
                sa.select(sa.func.count(sa.distinct(events.c.checkout_id))).where(
                    events.c.tenant == tenant.slug,
                    events.c.kind == "checkout.abandoned",
                    sa.or_(*who),
                    events.c.occurred_at >= since,
                    events.c.occurred_at <= event["occurred_at"],
                )
            ).scalar_one()
            return max(n, 1)

        return count

    def stop_reason(
        self, tenant: Tenant | None, journey: Any, step_row: Any, now: datetime
    ) -> tuple[str | None, Any]:
        """(why the step must not fire, the flow's step): the reason is ``None`` when it may."""
        if tenant is None:
            return "tenant is not configured", None
        if journey.status != "open":
            return journey.status if journey.status in CLOSED else f"journey {journey.status}", None
        if journey.holdout:  # tracked like the others, sent nothing (hub.holdout)
            return HOLDOUT, None
        flow = next((f for f in tenant.flows if f.name == journey.flow), None)
        if flow is None or not flow.enabled:
            return "flow disabled", None
        if step_row.step_index >= len(flow.steps):
            return "step removed from the flow", None
        flow_step = flow.steps[step_row.step_index]
        event = load_event({**journey.event, "raw": None})
        dead = self.dead_link(tenant, flow_step, event, now)
        if dead:
            return dead, None
        if flow_step.when is not None:
            with self.rt.store.begin() as conn:
                counter = self.abandon_counter(conn, tenant, event)
                if not flow_step.when.holds(facts_for(event, tenant.currency), counter):
                    return "condition not met", None
        return None, flow_step

    def dead_link(self, tenant: Tenant, flow_step: Any, event: dict, now: datetime) -> str | None:
        """Why the message would carry a dead link: its recovery URL or its offer dies within
        the tenant's ``[links] margin`` (a deadline exactly at the margin counts as within).

        A customer who clicks an hour later must still find the cart and the code working.
        """
        margin = tenant.links.margin
        for what, ends in (
            ("recovery URL", event.get("recovery_expires_at")),
            ("offer", flow_step.offer_expires_at(event.get("occurred_at"))),
        ):
            if ends is None or ends > now + margin:
                continue
            if ends <= now:
                return f"{what} expired"
            return f"{what} expires within {format_duration(margin)} (at {ends.isoformat()})"
        return None
