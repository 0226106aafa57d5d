"""What a template and a sink see of a journey: the message context, and the signed links.

Every channel of a step gets the same context (architecture §4), so it is built in one place;
the links in it (unsubscribe, recovery) are verified by ``hub.tracking`` with the same
serializer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from itsdangerous import URLSafeSerializer

from hub.engine.runtime import Runtime
from hub.money import format_money
from hub.tenants import Tenant


def link_serializer(secret: str | list[str], purpose: str) -> URLSafeSerializer:
    """Signs and verifies link tokens; a list of keys signs with the last and verifies with
    any (key rotation, see ``Settings.link_keys``)."""
    return URLSafeSerializer(secret, salt=f"abandonment-hub.{purpose}")


class MessageContext:
    """Builds the context of one step's message for one sink."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def build(self, tenant: Tenant, journey: Any, flow_step: Any, sink: Any) -> dict:
        """What every template and sink sees (architecture §4), same for every channel."""
        hub = self.rt.hub
        event = journey.event
        customer = dict(event.get("customer") or {})
        # money and dates in the reader's language: the shop's staff read tickets
        reader = tenant.staff_locale if getattr(sink, "audience", "") == "staff" else None
        locale = (reader or customer.get("locale") or tenant.locale).replace("-", "_")
        customer["name"] = (
            " ".join(p for p in (customer.get("first_name"), customer.get("last_name")) if p)
            or None
        )
        cart = dict(event.get("cart") or {})
        if cart:
            cur = cart["currency"]
            cart["total_display"] = _money(cart["total"], cur, locale)
            cart["items"] = [
                {
                    **item,
                    "unit_price_display": _money(item["unit_price"], cur, locale)
                    if item.get("unit_price") is not None
                    else None,
                }
                for item in cart.get("items") or []
            ]
        base = hub.public_url()
        secret = hub.settings.secret_key
        # links name installation and journey token too: the secret in var/ outlives a change
        # of database, and a restored database reuses journey ids (hub.tracking checks both)
        bound = [hub.installation[:8], journey.id, journey.token]
        unsubscribe = link_serializer(secret, "unsubscribe").dumps([*bound, sink.channel])
        # attribution: the open pixel (unless the tenant switched it off) and the push click
        # beacon name the ledger row as the recovery link does (hub.tracking)
        tracked = [*bound, flow_step.index, sink.name]
        pixel = link_serializer(secret, "open").dumps(tracked) if tenant.track_opens else None
        beacon = link_serializer(secret, "click").dumps(tracked)
        recovery = None
        if event.get("recovery_url"):
            token = link_serializer(secret, "recovery").dumps([*bound, flow_step.index, sink.name])
            recovery = f"{base}/r/{token}"
        return {
            "customer": customer,
            "cart": cart or None,
            "recovery_url": recovery,
            "recovery_expires_at": event.get("recovery_expires_at"),
            "offer": offer_context(flow_step, journey.abandoned_at),
            "unsubscribe_url": f"{base}/u/{unsubscribe}",
            "open_pixel_url": f"{base}/o/{pixel}.gif" if pixel else None,
            "click_beacon_url": f"{base}/c/{beacon}",
            "tenant": {"slug": tenant.slug, "name": tenant.name, "support": tenant.support},
            "stage": event.get("stage"),
            "source": event.get("source"),
            "journey_id": journey.id,
            "step": flow_step.index,
            "checkout_id": journey.checkout_id,
        }


def offer_context(flow_step: Any, abandoned_at: datetime | None) -> dict | None:
    """The step's offer as templates and sinks see it: JSON-safe, with the deadline that holds
    for this journey when it has one (``expires_at`` as ISO text, like ``recovery_expires_at``)."""
    if not flow_step.offer:
        return None
    offer = {k: v for k, v in flow_step.offer.items() if k not in ("expires_at", "valid_for")}
    ends = flow_step.offer_expires_at(abandoned_at)
    if ends is not None:
        offer["expires_at"] = ends.isoformat()
    return offer


def _money(minor: int, currency: str, locale: str) -> str:
    try:
        return format_money(minor, currency, locale)
    except Exception:  # an unknown locale must not stop a message
        return format_money(minor, currency, "en")
