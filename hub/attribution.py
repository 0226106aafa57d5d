"""Attribution: what a message did after it left, which one earned a conversion, what it was worth.

Tracking facts (``opened``, ``clicked``, ``delivered``, ``read``, ``bounced``) land in
``tracking_events`` once per delivery and kind: a pixel loaded twice or a callback retried is
the same fact, so counts are counts of messages, not of hits. Every fact also keeps its line in
the delivery log, which is the journey's history.

A conversion recovers *one* journey: the checkout it names (Stripe's ``recovered_from`` first,
then its own checkout id), else the person's latest abandonment within the tenant's
``attribution_window``. Other journeys it stops are closed without the revenue, so one purchase
is never counted twice. The recovered journey credits the last message *clicked*, else the last
*delivered* (or read), else the last *sent*, within the window before the conversion; with none
of them the credit is ``none``: recovered without a message. Refunds (``checkout.refunded``)
after a recovery are added up in ``refunded_amount`` (capped at the recovered amount), never
subtracted from ``recovered_amount``, so reports can show both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.events import order_checkout_id
from hub.store import deliveries, delivery_log, events, journeys, tracking_events

TRACKING_KINDS = ("opened", "clicked", "delivered", "read", "bounced")
# provider statuses that are tracking facts too (a read message was delivered first)
PROVIDER_FACTS = {"delivered": ("delivered",), "read": ("delivered", "read")}
SENT_STATUSES = ("sent", "delivered", "read")
STAMP_SLACK = timedelta(seconds=1)
# journey statuses of a checkout that was really abandoned (a pending one never was)
ABANDONED_STATUSES = ("open", "finished", "no_flow", "unsubscribed", "superseded")


@dataclass(frozen=True)
class Credit:
    """The message credited with a conversion: its ledger row and why (``none``: no message)."""

    delivery_id: int | None
    kind: str


# ---------------------------------------------------------------------------- tracking facts


def record_tracking(
    conn: sa.Connection,
    store: Any,
    delivery: Any,
    kind: str,
    at: datetime,
    detail: str | None = None,
    *,
    log_line: bool = True,
) -> bool:
    """Record that ``kind`` happened to ``delivery`` (a ``deliveries`` row); ``True`` the first
    time. The unique (delivery, kind) key decides, inside the statement: no race, no savepoint.
    ``log_line`` also appends the fact to the delivery log (callers that log it already pass
    ``False``)."""
    if kind not in TRACKING_KINDS:
        raise ValueError(f"unknown tracking kind {kind!r}")
    new = conn.execute(
        store.insert_unless_exists(tracking_events)
        .values(
            tenant=delivery.tenant,
            journey_id=delivery.journey_id,
            delivery_id=delivery.id,
            kind=kind,
            at=at,
            detail=detail,
        )
        .returning(tracking_events.c.id)
    ).scalar()
    if log_line:
        conn.execute(
            sa.insert(delivery_log).values(
                tenant=delivery.tenant,
                journey_id=delivery.journey_id,
                step_index=delivery.step_index,
                sink=delivery.sink,
                channel=delivery.channel,
                delivery_id=delivery.id,
                attempt=delivery.attempts,
                status=kind,
                reason=detail if new is not None else f"again{f': {detail}' if detail else ''}",
                at=at,
            )
        )
    return new is not None


def delivery_of(conn: sa.Connection, journey_id: int, step_index: int, sink: str) -> Any:
    """The ledger row a link names (journey, step, sink: the ledger's unique key), or None."""
    return conn.execute(
        sa.select(deliveries).where(
            deliveries.c.journey_id == journey_id,
            deliveries.c.step_index == step_index,
            deliveries.c.sink == sink,
        )
    ).first()


# ---------------------------------------------------------------------------- conversions


def credit_for(
    conn: sa.Connection, journey_id: int, converted_at: datetime, window: timedelta
) -> Credit:
    """The last message clicked, else delivered (or read), else sent, in ``[converted_at -
    window, converted_at]``; ``Credit(None, "none")`` when the journey sent nothing in it.

    The end gets one second of slack: platforms stamp whole seconds (Stripe's ``created``),
    so a purchase in the second of the click carries a time up to 1 s before it.
    """
    since = converted_at - window
    converted_at = converted_at + STAMP_SLACK
    for kind, kinds in (("clicked", ("clicked",)), ("delivered", ("delivered", "read"))):
        row = conn.execute(
            sa.select(tracking_events.c.delivery_id)
            .where(
                tracking_events.c.journey_id == journey_id,
                tracking_events.c.kind.in_(kinds),
                tracking_events.c.at.between(since, converted_at),
            )
            .order_by(tracking_events.c.at.desc(), tracking_events.c.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            return Credit(row.delivery_id, kind)
    row = conn.execute(
        sa.select(deliveries.c.id)
        .where(
            deliveries.c.journey_id == journey_id,
            deliveries.c.status.in_(SENT_STATUSES),
            deliveries.c.sent_at.between(since, converted_at),
        )
        .order_by(deliveries.c.sent_at.desc(), deliveries.c.id.desc())
        .limit(1)
    ).first()
    if row is not None:
        return Credit(row.id, "sent")
    return Credit(None, "none")


def recovered_journey(rows: Sequence[Any], checkout_ids: Sequence[str], event: dict) -> Any:
    """Which of the journeys a conversion stops gets its revenue: the checkout named by
    ``recovered_from``, then the conversion's own checkout, then the latest abandonment of the
    same person (the rows were found within the window). ``None``: none was abandoned."""
    candidates = [r for r in rows if r.status in ABANDONED_STATUSES and r.abandoned_at]
    for named in (event.get("recovered_from"), event["checkout_id"]):
        for row in candidates:
            if named is not None and row.checkout_id == named:
                return row
    others = [r for r in candidates if r.checkout_id not in checkout_ids]
    return max(others, key=lambda r: (r.abandoned_at, r.id), default=None)


def conversion_values(
    conn: sa.Connection,
    journey: Any,
    recovered: Any,
    event: dict,
    event_id: int,
    window: timedelta,
) -> dict[str, Any]:
    """The journey columns a conversion sets: revenue and credit on the recovered journey,
    only the closing event on the others."""
    if recovered is None or journey.id != recovered.id:
        return dict(recovered=False, conversion_event_id=event_id)
    return recovery_values(
        conn, journey.tenant, journey.id, journey.checkout_id, event, event_id, window
    )


def recovery_values(
    conn: sa.Connection,
    tenant: str,
    journey_id: int,
    checkout_id: str,
    event: dict,
    event_id: int,
    window: timedelta,
) -> dict[str, Any]:
    """Revenue, credit and purchase reference of the journey a conversion recovered, with the
    refunds of that purchase that arrived before it. Also used when the conversion arrived
    before the abandonment (``hub.engine.journeys``): one rule whatever the order."""
    cart = event.get("cart") or {}
    converted_at = event["occurred_at"]
    credit = credit_for(conn, journey_id, converted_at, window)
    currency = cart.get("currency")
    named = {checkout_id, event["checkout_id"]}
    if event.get("order_ref"):
        named.add(order_checkout_id(event["order_ref"]))
    return dict(
        recovered=True,
        recovered_amount=cart.get("total"),
        recovered_currency=currency,
        recovered_at=converted_at,
        conversion_event_id=event_id,
        credited_delivery_id=credit.delivery_id,
        credit=credit.kind,
        order_ref=event.get("order_ref"),
        refunded_amount=_refunds_already_stored(conn, tenant, named, currency),
    )


def credited_elsewhere(conn: sa.Connection, tenant: str, conversion_event_id: int) -> bool:
    """Whether this conversion already gave its revenue to a journey (a purchase counts once)."""
    return (
        conn.execute(
            sa.select(journeys.c.id).where(
                journeys.c.tenant == tenant,
                journeys.c.conversion_event_id == conversion_event_id,
                journeys.c.recovered.is_(True),
            )
        ).first()
        is not None
    )


def _refunds_already_stored(
    conn: sa.Connection, tenant: str, checkout_ids: Iterable[str], currency: str | None
) -> int | None:
    """Refunds that arrived before their conversion (platforms reorder): counted at once. A
    refund that named only its purchase is filed under ``order:<order_ref>``."""
    rows = conn.execute(
        sa.select(events.c.payload).where(
            events.c.tenant == tenant,
            events.c.kind == "checkout.refunded",
            events.c.checkout_id.in_(list(checkout_ids)),
            events.c.status == "processed",
        )
    ).all()
    total = sum(
        (r.payload.get("cart") or {}).get("total") or 0
        for r in rows
        if (r.payload.get("cart") or {}).get("currency") == currency
    )
    return total or None


# ---------------------------------------------------------------------------- refunds


def on_refunded(store: Any, conn: sa.Connection, tenant: str, event: dict) -> str:
    """A refund of a recovered purchase: add it to the journey's ``refunded_amount``.

    The refund names the checkout, the converting checkout (which the conversion event
    recorded) or the purchase (``order_ref``, which the conversion stored on the journey); its
    ``cart.total`` is the amount of *this* refund, or the whole purchase when absent. A refund
    in another currency than the recovery is recorded but not counted. Duplicate deliveries
    never get here: the ingress stores one event per event key.
    """
    checkout_id = event["checkout_id"]
    converting = sa.select(events.c.id).where(
        events.c.tenant == tenant,
        events.c.kind == "checkout.converted",
        events.c.checkout_id == checkout_id,
    )
    named = [
        journeys.c.checkout_id == checkout_id,
        journeys.c.conversion_event_id.in_(converting),
    ]
    if event.get("order_ref"):
        named.append(journeys.c.order_ref == event["order_ref"])
    rows = conn.execute(
        store.lock(
            conn,
            sa.select(journeys).where(
                journeys.c.tenant == tenant,
                journeys.c.recovered.is_(True),
                sa.or_(*named),
            ),
        )
    ).all()
    if not rows:
        return "recorded; no recovered journey for this checkout (yet)"
    cart = event.get("cart") or {}
    notes = []
    for journey in rows:
        already = journey.refunded_amount or 0
        whole = journey.recovered_amount or 0
        if cart and journey.recovered_currency and cart["currency"] != journey.recovered_currency:
            notes.append(f"journey {journey.id}: refund in {cart['currency']}, not counted")
            continue
        amount = cart.get("total") if cart else None
        refunded = whole if amount is None else min(whole, already + max(amount, 0))
        conn.execute(
            sa.update(journeys).where(journeys.c.id == journey.id).values(refunded_amount=refunded)
        )
        notes.append(f"journey {journey.id}: refunded {refunded} of {whole}")
    return "refund; " + "; ".join(notes)
