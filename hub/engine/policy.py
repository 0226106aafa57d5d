"""Contact policy: whether, where and when the hub may contact a person on a channel.

Consent, the suppression list, the address itself, the frequency cap and the quiet hours are
the tenant's rules about people, apart from any flow; the engine and ``hub flow preview`` both
ask them here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.consent_evidence import (
    ALLOWED,
    REFUSED,
    Evidence,
    not_needed_fact,
    platform_fact,
    policy_text,
    received,
    suppression_fact,
)
from hub.durations import format_duration
from hub.engine.ledger import SENT_STATUSES, identity_key
from hub.engine.runtime import Runtime
from hub.erasure import suppression_identities
from hub.events import identity_of
from hub.hookspecs import PermanentError
from hub.quiet_hours import quiet_until, zone_for
from hub.store import deliveries, suppressions
from hub.tenants import Tenant


@dataclass(frozen=True)
class Decision:
    """A channel's verdict: an address to send to, or a skip status and reason; and why."""

    address: str | None
    status: str | None
    reason: str | None
    evidence: Evidence

    @classmethod
    def refused(cls, evidence: Evidence, status: str, reason: str) -> Decision:
        return cls(None, status, reason, evidence.decided(REFUSED, reason))


class Policy:
    """The tenant's contact rules, read against the database's history."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def due_time(self, tenant: Tenant, event: dict, due: datetime) -> datetime:
        """``due`` moved out of the quiet hours of the customer's (or the tenant's) zone."""
        return self.quiet_until(tenant, event, due) or due

    def quiet_until(self, tenant: Tenant, event: dict, when: datetime) -> datetime | None:
        """The end of the quiet hours ``when`` falls in, in the customer's zone; else ``None``."""
        if not tenant.quiet_hours:
            return None
        country = (event.get("customer") or {}).get("country")
        zone = zone_for(country, tenant.timezone, when)
        return quiet_until(when, tenant.quiet_hours, zone)

    def eligibility(
        self, tenant: Tenant, journey: Any, sink: Any, config: Any, event: dict, context: dict
    ) -> tuple[str | None, str | None, str | None]:
        """(address, skip status, reason): why this channel cannot be used, if it cannot."""
        decision = self.decide(tenant, journey, sink, config, event, context)
        return decision.address, decision.status, decision.reason

    def decide(
        self, tenant: Tenant, journey: Any, sink: Any, config: Any, event: dict, context: dict
    ) -> Decision:
        """Whether the channel may be used, with the consent evidence of the decision."""
        customer = event.get("customer") or {}
        channel = sink.channel
        evidence = self._basis(tenant, journey, sink, event)
        if sink.needs_consent:
            refused = self._refusal(tenant, channel, event)
            if refused:
                reason, fact = refused
                if fact is not None:
                    evidence = replace(evidence, fact=fact)
                return Decision.refused(evidence, "skipped", reason)
        try:
            address = sink.address(customer, config, context)
        except PermanentError as exc:
            return Decision.refused(evidence, "failed", f"unusable address: {exc.reason}")
        except Exception as exc:
            return Decision.refused(evidence, "failed", f"address lookup failed: {exc!r}")
        if not address:
            return Decision.refused(evidence, "skipped", "no address")
        if sink.needs_consent:
            capped = self._capped(tenant, journey, channel, address)
            if capped:
                return Decision.refused(evidence, "skipped", capped)
        return Decision(address, None, None, evidence.decided(ALLOWED))

    def _basis(self, tenant: Tenant, journey: Any, sink: Any, event: dict) -> Evidence:
        """The consent fact and tenant policy this channel is judged by (hub.consent_evidence)."""
        country = (event.get("customer") or {}).get("country")
        policy = policy_text(tenant, sink, country)
        if not sink.needs_consent:
            return Evidence(sink.channel, policy, not_needed_fact(sink))
        event_key, at = None, None
        event_id = getattr(journey, "event_id", None)  # a preview's journey has no stored event
        if event_id is not None:
            with self.rt.store.begin() as conn:
                event_key, at = received(conn, event_id)
        source_name = getattr(journey, "source", None) or event.get("source")
        source = self.rt.hub.sources.get(source_name)
        fact = platform_fact(source_name, event, sink.channel, source, event_key, at)
        return Evidence(sink.channel, policy, fact)

    def _refusal(self, tenant: Tenant, channel: str, event: dict) -> tuple[str, dict | None] | None:
        """Why the person may not be contacted on ``channel`` (unsubscribed, or no consent),
        with the suppression that says so (``None``: the platform's consent fact)."""
        customer = event.get("customer") or {}
        ids = suppression_identities(self.rt.hub.settings, tenant.slug, *identity_of(customer))
        if ids:
            with self.rt.store.begin() as conn:
                hit = conn.execute(
                    sa.select(suppressions)
                    .where(
                        suppressions.c.tenant == tenant.slug,
                        suppressions.c.identity.in_(ids),
                        suppressions.c.channel.in_((channel, "*")),
                    )
                    .limit(1)
                ).first()
            if hit:
                return "unsubscribed", suppression_fact(hit)
        given = (event.get("consent") or {}).get(channel, "unknown")
        if given == "opt_out":
            return f"no consent ({channel}: opt_out)", None
        policy = tenant.consent_policy(channel, customer.get("country"))
        if given != "opt_in" and policy == "opt_in":
            return f"no consent ({channel}: {given}, tenant requires opt_in)", None
        return None

    def _capped(self, tenant: Tenant, journey: Any, channel: str, address: str) -> str | None:
        """The frequency cap, when other journeys already reached this address often enough."""
        cap, per = tenant.frequency_cap
        with self.rt.store.begin() as conn:
            recent = conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(
                    deliveries.c.tenant == tenant.slug,
                    deliveries.c.channel == channel,
                    deliveries.c.identity == identity_key(address),
                    deliveries.c.journey_id != journey.id,
                    deliveries.c.status.in_(SENT_STATUSES),
                    deliveries.c.sent_at >= self.rt.clock() - per,
                )
            ).scalar_one()
        if recent >= cap:
            return f"frequency cap ({cap} per {format_duration(per)})"
        return None
