"""Consent evidence: for every channel a step decided on, what we knew and which rule applied.

When a step fires, each channel is either tried (the delivery is claimed: ``allowed``) or not
(``refused``: no consent, unsubscribed, no address, the frequency cap). Either way one
``consent_evidence`` row records, in the same transaction as the claim or the skip:

* the **fact** relied on: the consent value, where it came from (the source and the platform
  field that gave it, as the source plugin names it in ``Source.consent_fields``; the
  suppression list; a push subscription) and when the hub received it;
* the tenant **policy** that allowed or refused it, in the words of the tenant file
  (``email: not_opted_out``, ``whatsapp: opt_in (customer in DE, an opt_in country)``);
* the decision and, for a refusal, the reason the delivery ledger shows.

:func:`history` exports one person's rows with what was sent because of them (the delivery's
status), for ``hub consent`` and ``GET /api/v1/consent``. Erasure scrubs the person from these
rows (:func:`erase`) and keeps the decisions, so counts still add up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.store import consent_evidence, deliveries, events, journeys

ALLOWED = "allowed"
REFUSED = "refused"


@dataclass(frozen=True)
class Evidence:
    """One channel's consent basis; :meth:`decided` adds the outcome, :meth:`write` stores it."""

    channel: str
    policy: str
    fact: dict[str, Any]
    decision: str = REFUSED
    reason: str | None = None

    def decided(self, decision: str, reason: str | None = None) -> Evidence:
        return replace(self, decision=decision, reason=reason)

    def write(
        self,
        conn: sa.Connection,
        journey: Any,
        step_index: int,
        sink: str,
        delivery_id: int | None,
        now: datetime,
    ) -> None:
        """Insert the row inside the caller's transaction (the claim's or the skip's)."""
        conn.execute(
            sa.insert(consent_evidence).values(
                tenant=journey.tenant,
                journey_id=journey.id,
                delivery_id=delivery_id,
                step_index=step_index,
                sink=sink,
                channel=self.channel,
                email=journey.email,
                phone=journey.phone,
                decision=self.decision,
                reason=self.reason,
                policy=self.policy,
                fact=self.fact,
                decided_at=now,
            )
        )


def policy_text(tenant: Any, sink: Any, country: str | None) -> str:
    """The tenant rule that decides ``sink``'s channel for a customer from ``country``."""
    channel = sink.channel
    if not sink.needs_consent:
        why = (
            "the recipient is the shop's staff"
            if sink.audience == "staff"
            else "the subscription is the consent"
        )
        return f"{channel}: no consent needed ({why})"
    policy = tenant.consent_policy(channel, country)
    if country and country in tenant.opt_in_countries:
        return f"{channel}: {policy} (customer in {country}, an opt_in country)"
    return f"{channel}: {policy}"


def received(conn: sa.Connection, event_id: int | None) -> tuple[str | None, str | None]:
    """(event key, ISO time the hub received it) of the event a journey's consent came from."""
    if event_id is None:
        return None, None
    row = conn.execute(
        sa.select(events.c.event_key, events.c.received_at).where(events.c.id == event_id)
    ).first()
    if row is None:
        return None, None
    return row.event_key, row.received_at.isoformat()


def platform_fact(
    source_name: str | None,
    event: dict,
    channel: str,
    source: Any,
    event_key: str | None,
    at: str | None,
) -> dict[str, Any]:
    """The consent the platform reported for ``channel`` on the journey's latest event."""
    named = getattr(source, "consent_fields", None) or {}
    return {
        "value": (event.get("consent") or {}).get(channel, "unknown"),
        "source": source_name,
        "field": named.get(channel) or f"consent.{channel}",
        "event_key": event_key,
        "received_at": at,
    }


def suppression_fact(row: Any) -> dict[str, Any]:
    """An entry of the suppression list (an unsubscribe, a provider's opt-out)."""
    return {
        "value": "unsubscribed",
        "source": "suppression list",
        "field": f"suppressions.channel = {row.channel}",
        "detail": row.reason,
        "received_at": row.created_at.isoformat(),
    }


def not_needed_fact(sink: Any) -> dict[str, Any]:
    """A sink that asks no consent: a push subscription, or a message to the shop's staff."""
    staff = sink.audience == "staff"
    return {
        "value": "not_required" if staff else "subscribed",
        "source": sink.name,
        "field": "staff recipient" if staff else "push subscription",
        "received_at": None,
    }


def history(
    conn: sa.Connection, tenant: str | None, email: str | None = None, phone: str | None = None
) -> list[dict[str, Any]]:
    """One person's evidence, oldest first: what we knew, when, and what was sent because of
    it. ``tenant`` ``None`` reads every tenant (an agency admin)."""
    if not email and not phone:
        return []
    query = history_query(email, phone).order_by(
        consent_evidence.c.decided_at, consent_evidence.c.id
    )
    if tenant is not None:
        query = query.where(consent_evidence.c.tenant == tenant)
    return [entry(row) for row in conn.execute(query)]


def history_query(email: str | None = None, phone: str | None = None) -> sa.Select:
    """Evidence rows with their journey's checkout and flow and their delivery's outcome;
    only the person's when an e-mail or phone is given (either matches)."""
    query = (
        sa.select(
            consent_evidence,
            journeys.c.checkout_id,
            journeys.c.flow,
            deliveries.c.status.label("delivery_status"),
            deliveries.c.sent_at,
        )
        .join(journeys, journeys.c.id == consent_evidence.c.journey_id)
        .outerjoin(deliveries, deliveries.c.id == consent_evidence.c.delivery_id)
    )
    who = []
    if email:
        who.append(consent_evidence.c.email == email.strip().lower())
    if phone:
        who.append(consent_evidence.c.phone == phone)
    return query.where(sa.or_(*who)) if who else query


def entry(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant": row.tenant,
        "decided_at": row.decided_at.isoformat(),
        "journey_id": row.journey_id,
        "checkout_id": row.checkout_id,
        "flow": row.flow,
        "step_index": row.step_index,
        "sink": row.sink,
        "channel": row.channel,
        "decision": row.decision,
        "reason": row.reason,
        "policy": row.policy,
        "fact": row.fact,
        "delivery_id": row.delivery_id,
        "delivery_status": row.delivery_status,
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
    }


def erase(conn: sa.Connection, journey_ids: list[int], scrubber: Any) -> int:
    """Take the person out of their journeys' evidence (identity, texts naming them); the
    decisions, policies and fact values stay. How many rows were touched."""
    rows = conn.execute(
        sa.select(consent_evidence.c.id, consent_evidence.c.reason, consent_evidence.c.fact).where(
            consent_evidence.c.journey_id.in_(journey_ids)
        )
    ).all()
    for row in rows:
        conn.execute(
            sa.update(consent_evidence)
            .where(consent_evidence.c.id == row.id)
            .values(
                email=None,
                phone=None,
                reason=scrubber.text(row.reason),
                fact=scrubber.json(row.fact),
            )
        )
    return len(rows)
