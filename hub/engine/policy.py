"""Contact policy: whether, where and when the hub may contact a person on a channel.

Consent, the suppression list, the address itself, the frequency cap and the quiet hours are
the tenant's rules about people, apart from any flow; the engine and ``hub flow preview`` both
ask them here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.durations import format_duration
from hub.engine.ledger import SENT_STATUSES, identity_key
from hub.engine.runtime import Runtime
from hub.events import identity_of
from hub.hookspecs import PermanentError
from hub.quiet_hours import quiet_until, zone_for
from hub.store import deliveries, suppressions
from hub.tenants import Tenant


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
        customer = event.get("customer") or {}
        channel = sink.channel
        if sink.needs_consent:
            refused = self._refusal(tenant, channel, event)
            if refused:
                return None, "skipped", refused
        try:
            address = sink.address(customer, config, context)
        except PermanentError as exc:
            return None, "failed", f"unusable address: {exc.reason}"
        except Exception as exc:
            return None, "failed", f"address lookup failed: {exc!r}"
        if not address:
            return None, "skipped", "no address"
        if sink.needs_consent:
            capped = self._capped(tenant, journey, channel, address)
            if capped:
                return None, "skipped", capped
        return address, None, None

    def _refusal(self, tenant: Tenant, channel: str, event: dict) -> str | None:
        """Why the person may not be contacted on ``channel``: unsubscribed, or no consent."""
        customer = event.get("customer") or {}
        ids = [i for i in identity_of(customer) if i]
        if ids:
            with self.rt.store.begin() as conn:
                hit = conn.execute(
                    sa.select(suppressions.c.channel)
                    .where(
                        suppressions.c.tenant == tenant.slug,
                        suppressions.c.identity.in_(ids),
                        suppressions.c.channel.in_((channel, "*")),
                    )
                    .limit(1)
                ).first()
            if hit:
                return "unsubscribed"
        given = (event.get("consent") or {}).get(channel, "unknown")
        if given == "opt_out":
            return f"no consent ({channel}: opt_out)"
        policy = tenant.consent_policy(channel, customer.get("country"))
        if given != "opt_in" and policy == "opt_in":
            return f"no consent ({channel}: {given}, tenant requires opt_in)"
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
