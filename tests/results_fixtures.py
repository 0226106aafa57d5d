"""Rows for report and export tests, written straight into the tables, each one counted by hand.

The bakery (Europe/Berlin) reports on 1–3 November 2026 (CET, UTC+1): local days start at
23:00 UTC the evening before. ``J`` names the journeys; the expected figures in the tests are
counted from this table, not computed by the code under test.

J1  11-02 10:00 (Nov 2)  default shopify  0 email sent+opened+clicked, 1 whatsapp read
    → 5000 EUR, 1000 refunded, credit clicked (step 0)
J2  11-02 22:30 (Nov 2)  default stripe   0 email sent+bounced
J3  11-02 23:30 (Nov 3)  vip     stripe   no message → 3000 USD, recovered without message
J4  11-03 08:00 (Nov 3)  vip     shopify  0 email sent+opened, 1 email failed
    → 2000 USD, credit sent (step 0)
J5  11-03 09:00 (Nov 3)  default shopify  0 email sent, 1 whatsapp delivered+delivered
    → 7000 EUR, credit delivered (step 1)
J6  10-31 23:30 (Nov 1)  no flow stripe   no message

Outside the report: 10-31 22:59 UTC (Oct 31 local), 11-03 23:00 UTC (Nov 4 local), a pending
journey with no abandonment time, and another tenant's journey inside the range.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from hub.store import Store, deliveries, journeys, tracking_events

SINCE, UNTIL = date(2026, 11, 1), date(2026, 11, 3)
TZ = "Europe/Berlin"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event(email: str | None, **extra: Any) -> dict[str, Any]:
    """The stored (JSON) shape of a normalized abandonment event."""
    return {
        "kind": "checkout.abandoned",
        "customer": {"email": email, "first_name": "Anna", "last_name": "Muster"},
        "cart": {"total": 4990, "currency": "EUR", "items": [{"name": "Bread", "quantity": 2}]},
        "consent": {"email": "opt_in", "whatsapp": "unknown"},
        "stage": "payment",
        **extra,
    }


def add_journey(
    conn: sa.Connection,
    *,
    tenant: str = "bakery",
    abandoned: str | None,
    flow: str | None = "default",
    source: str = "shopify",
    status: str = "finished",
    messages: tuple[tuple[int, str, str, tuple[str, ...]], ...] = (),
    recovered: tuple[int, str, str | None, int | None] | None = None,
    credit_step: int | None = None,
    refunded: int | None = None,
    email: str | None = None,
    phone: str | None = None,
    payload: dict[str, Any] | None = None,
) -> int:
    """One journey with its deliveries and tracking events; ``recovered`` is
    ``(amount, currency, credit, _)``; ``credit_step`` names the credited message's step."""
    now = at("2026-11-10T12:00:00")
    amount, currency, credit = recovered[:3] if recovered else (None, None, None)
    journey_id = conn.execute(
        sa.insert(journeys)
        .values(
            tenant=tenant,
            checkout_id=f"co_{tenant}_{abandoned}_{flow}_{source}_{email}",
            source=source,
            status="converted" if recovered else status,
            flow=flow,
            email=email,
            phone=phone,
            event=payload if payload is not None else event(email),
            abandoned_at=at(abandoned) if abandoned else None,
            created_at=now,
            recovered=bool(recovered),
            recovered_amount=amount,
            recovered_currency=currency,
            recovered_at=now if recovered else None,
            credit=credit,
            refunded_amount=refunded,
        )
        .returning(journeys.c.id)
    ).scalar_one()
    for step, channel, state, kinds in messages:
        delivery_id = conn.execute(
            sa.insert(deliveries)
            .values(
                tenant=tenant,
                journey_id=journey_id,
                step_index=step,
                sink=channel,
                channel=channel,
                status=state,
                attempts=1,
                created_at=now,
                updated_at=now,
                sent_at=now if state != "failed" else None,
            )
            .returning(deliveries.c.id)
        ).scalar_one()
        for kind in kinds:
            conn.execute(
                sa.insert(tracking_events).values(
                    tenant=tenant, journey_id=journey_id, delivery_id=delivery_id, kind=kind, at=now
                )
            )
        if step == credit_step:
            conn.execute(
                sa.update(journeys)
                .where(journeys.c.id == journey_id)
                .values(credited_delivery_id=delivery_id)
            )
    return journey_id


def seed_bakery(store: Store) -> dict[str, int]:
    """The table in the module docstring; returns the journeys' ids by name."""
    with store.begin() as conn:
        ids = {
            "J1": add_journey(
                conn,
                abandoned="2026-11-02T10:00:00",
                messages=((0, "email", "sent", ("opened", "clicked")), (1, "whatsapp", "read", ())),
                recovered=(5000, "EUR", "clicked", None),
                credit_step=0,
                refunded=1000,
                email="anna@example.com",
                phone="+4915112345678",
            ),
            "J2": add_journey(
                conn,
                abandoned="2026-11-02T22:30:00",
                source="stripe",
                messages=((0, "email", "sent", ("bounced",)),),
                email="bob@example.com",
            ),
            "J3": add_journey(
                conn,
                abandoned="2026-11-02T23:30:00",
                flow="vip",
                source="stripe",
                recovered=(3000, "USD", "none", None),
                email="carla@example.com",
            ),
            "J4": add_journey(
                conn,
                abandoned="2026-11-03T08:00:00",
                flow="vip",
                messages=((0, "email", "sent", ("opened",)), (1, "email", "failed", ())),
                recovered=(2000, "USD", "sent", None),
                credit_step=0,
                email="Dora@Example.com",
            ),
            "J5": add_journey(
                conn,
                abandoned="2026-11-03T09:00:00",
                messages=((0, "email", "sent", ()), (1, "whatsapp", "delivered", ("delivered",))),
                recovered=(7000, "EUR", "delivered", None),
                credit_step=1,
                email="emil@example.com",
            ),
            "J6": add_journey(
                conn,
                abandoned="2026-10-31T23:30:00",
                flow=None,
                source="stripe",
                status="no_flow",
                email="fritz@example.com",
            ),
        }
        # outside the range, the tenant, or not abandoned
        add_journey(conn, abandoned="2026-10-31T22:59:00", email="early@example.com")
        add_journey(conn, abandoned="2026-11-03T23:00:00", email="late@example.com")
        add_journey(conn, abandoned=None, status="pending", email="pending@example.com")
        add_journey(
            conn,
            tenant="other",
            abandoned="2026-11-02T10:00:00",
            messages=((0, "email", "sent", ("clicked",)),),
            recovered=(999, "EUR", "clicked", None),
            credit_step=0,
            email="anna@example.com",
        )
    return ids
