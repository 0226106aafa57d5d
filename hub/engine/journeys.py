"""Journeys: what an abandonment, a conversion or a deletion does to a checkout's journey.

One journey row per (tenant, checkout); these handlers open, refresh, stop and close it, in
any order the platform's events arrive (a conversion before its abandonment leaves a marker).
Inferred abandonment (``checkout.updated``) lives in ``hub.engine.inferred``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub import attribution
from hub.engine.effects import Effects, StepJob
from hub.engine.flows import CLOSED, Flows
from hub.engine.ledger import SENT_STATUSES, drop_retries
from hub.engine.policy import Policy
from hub.engine.runtime import Runtime
from hub.events import dump_event, identity_of, load_event
from hub.holdout import in_holdout
from hub.store import deliveries, events, journeys, steps
from hub.tenants import Tenant


def stored_form(event: dict) -> dict:
    """The event as a journey row keeps it (JSON, without the raw payload)."""
    return dump_event({**event, "raw": None})


class Journeys:
    """The per-kind handlers of stored events and the journey rows they change."""

    def __init__(self, rt: Runtime, flows: Flows, policy: Policy) -> None:
        self.rt = rt
        self.flows = flows
        self.policy = policy

    def find(self, conn: sa.Connection, tenant: str, checkout_id: str) -> Any:
        """The checkout's journey row, locked for this transaction (or ``None``)."""
        store = self.rt.store
        return conn.execute(
            store.lock(
                conn,
                sa.select(journeys).where(
                    journeys.c.tenant == tenant, journeys.c.checkout_id == checkout_id
                ),
            )
        ).first()

    def save(
        self,
        conn: sa.Connection,
        tenant: Tenant,
        event: dict,
        journey: Any,
        values: dict,
        now: datetime,
    ) -> tuple[int, str]:
        """Insert the checkout's journey, or update the existing row; returns id and token."""
        if journey is not None:
            conn.execute(sa.update(journeys).where(journeys.c.id == journey.id).values(**values))
            return journey.id, journey.token
        journey_id, token = conn.execute(
            sa.insert(journeys)
            .values(
                tenant=tenant.slug,
                checkout_id=event["checkout_id"],
                created_at=now,
                recovered=False,
                **values,
            )
            .returning(journeys.c.id, journeys.c.token)
        ).one()
        return journey_id, token

    def close(
        self,
        conn: sa.Connection,
        journey_id: int,
        status: str,
        reason: str,
        now: datetime,
        **extra: Any,
    ) -> None:
        """Close the journey and cancel its steps that have not fired."""
        conn.execute(
            sa.update(journeys)
            .where(journeys.c.id == journey_id)
            .values(status=status, closed_at=now, closed_reason=reason, **extra)
        )
        conn.execute(
            sa.update(steps)
            .where(steps.c.journey_id == journey_id, steps.c.status.in_(("scheduled", "retrying")))
            .values(status="cancelled", reason=reason, updated_at=now)
        )
        drop_retries(conn, journey_id, reason, now)

    def messages_sent(self, conn: sa.Connection, journey_id: int) -> int:
        """How many messages of the journey went out: a conversion after one is ours."""
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(deliveries.c.journey_id == journey_id, deliveries.c.status.in_(SENT_STATUSES))
        ).scalar_one()

    # ------------------------------------------------------------------ abandoned

    def on_abandoned(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        now = self.rt.clock()
        journey = self.find(conn, tenant.slug, event["checkout_id"])
        email, phone = identity_of(event["customer"])
        stored_event = stored_form(event)
        if journey is not None and journey.status in CLOSED:
            if journey.status == "converted" and journey.abandoned_at is None:
                # the converted marker: this checkout's conversion arrived first
                return self._recovered_late(conn, tenant, event, event_id, journey)
            return f"ignored: checkout already {journey.status}"
        if journey is not None and journey.status in ("open", "no_flow", "finished"):
            # the same cart abandoned again: refresh the running journey, never start a second
            conn.execute(
                sa.update(journeys)
                .where(journeys.c.id == journey.id)
                .values(event=stored_event, event_id=event_id, email=email, phone=phone)
            )
            return f"refreshed journey {journey.id}"
        converted_by = self._converted_later(conn, tenant, event)
        if converted_by:
            key = converted_by.event_key
            values = dict(
                status="converted",
                closed_at=now,
                closed_reason=f"converted before the abandonment arrived ({key})",
            )
        else:
            values = dict(status="open")
        values.update(
            event=stored_event,
            event_id=event_id,
            email=email,
            phone=phone,
            abandoned_at=event["occurred_at"],
            source=event["source"],
        )
        # a pending (inferred) journey becomes abandoned in place
        journey_id, _token = self.save(conn, tenant, event, journey, values, now)
        if converted_by:
            credit = self._credit_late(conn, tenant, event, journey_id, converted_by)
            return f"journey {journey_id} not started: {values['closed_reason']}{credit}"

        superseded = self._supersede_others(conn, tenant, journey_id, email, phone, now)
        flow = self.flows.choose(conn, tenant, event)
        if flow is None:
            conn.execute(
                sa.update(journeys).where(journeys.c.id == journey_id).values(status="no_flow")
            )
            return f"journey {journey_id}: no flow matches"
        # the group is chosen once, here, and kept: a change of the share later moves no one
        held_out = in_holdout(tenant.slug, flow.holdout, email, phone, event["checkout_id"])
        conn.execute(
            sa.update(journeys)
            .where(journeys.c.id == journey_id)
            .values(flow=flow.name, holdout=held_out)
        )
        for step in flow.steps:
            due = self.policy.due_time(tenant, event, max(event["occurred_at"] + step.after, now))
            step_id, token = conn.execute(
                sa.insert(steps)
                .values(
                    journey_id=journey_id,
                    step_index=step.index,
                    due_at=due,
                    status="scheduled",
                    updated_at=now,
                )
                .returning(steps.c.id, steps.c.token)
            ).one()
            effects.steps.append(StepJob(step_id, token, tenant.slug, due))
        extra = f", superseded {superseded}" if superseded else ""
        extra += ", in the holdout group" if held_out else ""
        return (
            f"journey {journey_id} started with flow {flow.name!r} ({len(flow.steps)} steps{extra})"
        )

    def _converted_later(self, conn: sa.Connection, tenant: Tenant, event: dict) -> Any:
        """The first conversion of the same person after this abandonment, within the window
        (it arrived first): its ``events`` row, or ``None``."""
        email, phone = identity_of(event["customer"])
        if not email and not phone:
            return None
        who = []
        if email:
            who.append(events.c.email == email)
        if phone:
            who.append(events.c.phone == phone)
        start = event["occurred_at"]
        return conn.execute(
            sa.select(events.c.id, events.c.event_key, events.c.payload)
            .where(
                events.c.tenant == tenant.slug,
                events.c.kind == "checkout.converted",
                sa.or_(*who),
                events.c.occurred_at >= start,
                events.c.occurred_at <= start + tenant.attribution_window,
            )
            .order_by(events.c.occurred_at, events.c.id)
            .limit(1)
        ).first()

    def _credit_late(
        self, conn: sa.Connection, tenant: Tenant, event: dict, journey_id: int, conversion: Any
    ) -> str:
        """A conversion that arrived before this abandonment recovers it as one that came
        after would have (hub.attribution), unless its revenue already went to another
        journey; the credit is ``none``, as no message could be sent. Returns a note suffix."""
        if attribution.credited_elsewhere(conn, tenant.slug, conversion.id):
            return "; its revenue went to another journey"
        converted = load_event({**conversion.payload, "raw": None})
        values = attribution.recovery_values(
            conn,
            tenant.slug,
            journey_id,
            event["checkout_id"],
            converted,
            conversion.id,
            tenant.attribution_window,
        )
        conn.execute(sa.update(journeys).where(journeys.c.id == journey_id).values(**values))
        return f"; recovered {values['recovered_amount']} {values['recovered_currency']}"

    def _recovered_late(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, marker: Any
    ) -> str:
        """The abandonment of a checkout whose conversion came first: the marker row becomes
        the journey it would have been, closed and recovered, when the conversion followed the
        abandonment within the window. Nothing is scheduled: the purchase is made."""
        conversion_id = marker.conversion_event_id or marker.event_id
        conversion = conn.execute(
            sa.select(
                events.c.id, events.c.event_key, events.c.payload, events.c.occurred_at
            ).where(events.c.id == conversion_id, events.c.tenant == tenant.slug)
        ).first()
        if conversion is None:
            return "ignored: checkout already converted"
        email, phone = identity_of(event["customer"])
        conn.execute(
            sa.update(journeys)
            .where(journeys.c.id == marker.id)
            .values(
                event=stored_form(event),
                event_id=event_id,
                email=email,
                phone=phone,
                abandoned_at=event["occurred_at"],
                source=event["source"],
                closed_reason=(
                    f"converted before the abandonment arrived ({conversion.event_key})"
                ),
            )
        )
        gap = conversion.occurred_at - event["occurred_at"]
        if not -attribution.STAMP_SLACK <= gap <= tenant.attribution_window:
            return f"journey {marker.id} not started: converted, outside the attribution window"
        credit = self._credit_late(conn, tenant, event, marker.id, conversion)
        return f"journey {marker.id} not started: converted before the abandonment arrived{credit}"

    def _supersede_others(
        self,
        conn: sa.Connection,
        tenant: Tenant,
        journey_id: int,
        email: str | None,
        phone: str | None,
        now: datetime,
    ) -> list[int]:
        """A newer abandonment by the same person replaces their older open journeys."""
        who = [journeys.c.email == email] if email else []
        if phone:
            who.append(journeys.c.phone == phone)
        if not who:
            return []
        ids = [
            r.id
            for r in conn.execute(
                sa.select(journeys.c.id).where(
                    journeys.c.tenant == tenant.slug,
                    journeys.c.status == "open",
                    journeys.c.id != journey_id,
                    sa.or_(*who),
                )
            )
        ]
        for other in ids:
            self.close(conn, other, "superseded", f"superseded by journey {journey_id}", now)
        return ids

    # ------------------------------------------------------------------ converted

    def on_converted(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        now = self.rt.clock()
        email, phone = identity_of(event["customer"])
        checkout_ids = [event["checkout_id"]]
        if event.get("recovered_from"):
            checkout_ids.append(event["recovered_from"])
        match = [journeys.c.checkout_id.in_(checkout_ids)]
        # a purchase stops the person's journeys abandoned before it, within the window; an
        # older purchase says nothing about a newer abandonment
        occurred = event["occurred_at"]
        since = occurred - tenant.attribution_window
        # a checkout still waiting out its inferred-abandonment window has no abandoned_at yet;
        # its last update is when the person was last seen there
        opened = sa.func.coalesce(journeys.c.abandoned_at, journeys.c.last_update_at)
        if email:
            match.append(sa.and_(journeys.c.email == email, opened.between(since, occurred)))
        if phone:
            match.append(sa.and_(journeys.c.phone == phone, opened.between(since, occurred)))
        rows = conn.execute(
            self.rt.store.lock(
                conn, sa.select(journeys).where(journeys.c.tenant == tenant.slug, sa.or_(*match))
            )
        ).all()
        stopped = []
        # attribution (hub.attribution): one journey gets the revenue and the credit
        recovered = attribution.recovered_journey(rows, checkout_ids, event)
        for journey in rows:
            if journey.status in ("converted", "deleted"):
                continue
            self.close(
                conn,
                journey.id,
                "converted",
                f"converted ({event['event_key']})",
                now,
                **attribution.conversion_values(
                    conn, journey, recovered, event, event_id, tenant.attribution_window
                ),
            )
            stopped.append(journey.id)
        # out of order: a conversion that arrives first leaves a converted marker behind, so
        # the abandonment that comes later starts nothing
        known = {r.checkout_id for r in rows}
        for checkout_id in checkout_ids:
            if checkout_id not in known:
                conn.execute(
                    sa.insert(journeys).values(
                        tenant=tenant.slug,
                        checkout_id=checkout_id,
                        source=event["source"],
                        status="converted",
                        email=email,
                        phone=phone,
                        event_id=event_id,
                        created_at=now,
                        closed_at=now,
                        recovered=False,
                        closed_reason=f"converted before any abandonment ({event['event_key']})",
                        conversion_event_id=event_id,
                        order_ref=event.get("order_ref"),
                    )
                )
        self._note_order_ref(conn, tenant, checkout_ids, event)
        return f"converted; stopped journeys {stopped}" if stopped else "converted; no open journey"

    def _note_order_ref(
        self, conn: sa.Connection, tenant: Tenant, checkout_ids: list[str], event: dict
    ) -> None:
        """A later conversion of an already converted checkout may be the first to name the
        purchase (Shopify: a completed checkout, then its order): keep it for the refunds."""
        if not event.get("order_ref"):
            return
        conn.execute(
            sa.update(journeys)
            .where(
                journeys.c.tenant == tenant.slug,
                journeys.c.checkout_id.in_(checkout_ids),
                journeys.c.order_ref.is_(None),
            )
            .values(order_ref=event["order_ref"])
        )

    def on_refunded(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        """A refund after a recovery takes its amount back from the revenue (hub.attribution)."""
        return attribution.on_refunded(self.rt.store, conn, tenant.slug, event)

    # ------------------------------------------------------------------ deleted

    def on_deleted(
        self, conn: sa.Connection, tenant: Tenant, event: dict, event_id: int, effects: Effects
    ) -> str:
        now = self.rt.clock()
        journey = self.find(conn, tenant.slug, event["checkout_id"])
        if journey is None:
            conn.execute(
                sa.insert(journeys).values(
                    tenant=tenant.slug,
                    checkout_id=event["checkout_id"],
                    source=event["source"],
                    status="deleted",
                    created_at=now,
                    closed_at=now,
                    recovered=False,
                    closed_reason="deleted before any abandonment",
                )
            )
            return "deleted (no journey yet)"
        if journey.status in CLOSED:
            return f"ignored: checkout already {journey.status}"
        self.close(conn, journey.id, "deleted", "cart deleted", now)
        return f"journey {journey.id} stopped: cart deleted"
