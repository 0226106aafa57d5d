"""Shopify app webhooks → normalized events (Shopify's webhook reference).

Shopify never says "abandoned": ``checkouts/create|update`` become ``checkout.updated`` and the
core infers the abandonment after the tenant's ``abandon_after`` (``infers_abandonment``).
``orders/create|paid`` become ``checkout.converted`` and ``checkouts/delete`` becomes
``checkout.deleted``, all keyed by Shopify's checkout id so the core links them (see
:func:`plugins.shopify.mapping.checkout_key`). ``refunds/create`` becomes ``checkout.refunded``
for the order it names: the order's conversion recorded the order id (``order_ref``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, fields, post_load, validate

from hub import DemoRequest, InboundRequest, PayloadError, Source, parse_duration, url_field
from plugins.shopify import mapping
from plugins.shopify.signature import (
    SIGNATURE_HEADERS,
    header,
    sign,
    verify_shop_domain,
    verify_signature,
)

CHECKOUT_TOPICS = frozenset({"checkouts/create", "checkouts/update"})
DELETE_TOPIC = "checkouts/delete"
ORDER_TOPICS = frozenset({"orders/create", "orders/paid"})
REFUND_TOPIC = "refunds/create"
OTHER_TOPICS = frozenset({DELETE_TOPIC, REFUND_TOPIC})
TOPIC_HEADERS = ("X-Shopify-Topic", "shopify-topic")
EVENT_ID_HEADERS = ("X-Shopify-Event-Id", "shopify-event-id")
WEBHOOK_ID_HEADERS = ("X-Shopify-Webhook-Id", "shopify-webhook-id")
TRIGGERED_AT_HEADERS = ("X-Shopify-Triggered-At", "shopify-triggered-at")
API_VERSION = "2026-07"


class ShopifyConfig(Schema):
    """``[sources.shopify]`` of a tenant file (``abandon_after`` is the core's key)."""

    shop_domain = fields.String(
        required=True,
        validate=validate.Regexp(
            r"(?i)^[a-z0-9][a-z0-9-]*\.myshopify\.com$",
            error="must be the shop's permanent domain, like acme.myshopify.com",
        ),
    )
    client_secret = fields.String(
        required=True, validate=validate.Length(min=1), metadata={"secret": True}
    )
    previous_client_secret = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1),
        metadata={"secret": True},
    )

    # the conversion probe asks the Admin API with it (scope read_orders); without it, Shopify
    # is not asked
    admin_access_token = fields.String(
        load_default=None, validate=validate.Length(min=1), metadata={"secret": True}
    )
    api_version = fields.String(
        load_default=API_VERSION,
        validate=validate.Regexp(r"^(\d{4}-\d{2}|unstable)$", error="expected YYYY-MM"),
    )
    admin_base = url_field(description="the shop's Admin API origin; tests use a stand-in")

    @post_load
    def _lower_domain(self, data: dict, **_: Any) -> dict:
        data["shop_domain"] = data["shop_domain"].lower()
        return data


def secrets_of(config: Mapping[str, Any]) -> list[str]:
    """The current client secret, plus the previous one while a rotation settles."""
    return [s for s in (config["client_secret"], config.get("previous_client_secret")) if s]


class ShopifySource(Source):
    """A Shopify app's webhooks. Subscribe ``checkouts/create``, ``checkouts/update``,
    ``checkouts/delete``, ``orders/create``, ``orders/paid`` and ``refunds/create``
    (docs/shopify.md)."""

    name = "shopify"
    consent_fields = {
        "email": "customer.email_marketing_consent.state, buyer_accepts_marketing",
        "sms": "customer.sms_marketing_consent.state",
        "whatsapp": "customer.sms_marketing_consent.state",
    }
    config_schema = ShopifyConfig
    infers_abandonment = True
    default_abandon_after = "15m"

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        verify_signature(
            request.body,
            header(request.headers, SIGNATURE_HEADERS),
            secrets_of(config),
        )
        verify_shop_domain(request.headers, config["shop_domain"])

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[dict]:
        topic = header(request.headers, TOPIC_HEADERS)
        if not topic:
            raise PayloadError("missing X-Shopify-Topic header", "X-Shopify-Topic")
        topic = topic.lower()
        if not (topic in CHECKOUT_TOPICS or topic in ORDER_TOPICS or topic in OTHER_TOPICS):
            return []
        payload = request.json()
        if not isinstance(payload, dict):
            raise PayloadError("expected a JSON object", "body")
        delivery = header(request.headers, EVENT_ID_HEADERS) or header(
            request.headers, WEBHOOK_ID_HEADERS
        )
        if not delivery:
            raise PayloadError(
                "missing X-Shopify-Event-Id and X-Shopify-Webhook-Id headers",
                "X-Shopify-Webhook-Id",
            )
        fired_at = _fired_at(request)
        event_key = f"{topic}:{delivery}"
        if topic in CHECKOUT_TOPICS:
            return [self._checkout(payload, event_key, fired_at)]
        if topic == DELETE_TOPIC:
            return [self._deleted(payload, event_key, fired_at)]
        if topic == REFUND_TOPIC:
            return self._refund(payload, event_key, fired_at)
        return [self._order(payload, event_key, fired_at)]

    def _checkout(self, checkout: dict, event_key: str, fired_at: datetime) -> dict:
        checkout_id = mapping.checkout_key(checkout)
        if checkout_id is None:
            raise PayloadError("the checkout has no id, name or token", "id")
        customer = mapping.customer(checkout)
        event = {
            "kind": "checkout.updated",
            "event_key": event_key,
            "checkout_id": checkout_id,
            "occurred_at": mapping.timestamp(checkout, "updated_at", "created_at") or fired_at,
            "customer": customer,
            "cart": mapping.cart(checkout),
            "recovery_url": mapping.recovery_url(checkout),
            "consent": mapping.consent(checkout),
            "stage": "contact" if customer["email"] or customer["phone"] else "cart",
        }
        completed = mapping.timestamp(checkout, "completed_at")
        if completed is not None:
            # a completed checkout is an order, even when orders/* is not subscribed
            event.update(kind="checkout.converted", occurred_at=completed, stage=None)
        return event

    def _deleted(self, checkout: dict, event_key: str, fired_at: datetime) -> dict:
        # the delete payload has no token and no timestamps: only the id links it
        checkout_id = mapping.checkout_key({"id": checkout.get("id")})
        if checkout_id is None:
            raise PayloadError("the deleted checkout has no id", "id")
        return {
            "kind": "checkout.deleted",
            "event_key": event_key,
            "checkout_id": checkout_id,
            "occurred_at": fired_at,
        }

    def _order(self, order: dict, event_key: str, fired_at: datetime) -> dict:
        checkout_id = mapping.order_checkout_key(order)
        if checkout_id is None:
            # POS, draft and API orders have no checkout: the core still stops the open
            # journeys of the same buyer (identity match) within the attribution window
            order_id = mapping.shopify_id(order.get("id"))
            if order_id is None:
                raise PayloadError("the order has no id and no checkout_id", "id")
            checkout_id = f"order:{order_id}"
        return {
            "kind": "checkout.converted",
            "event_key": event_key,
            "checkout_id": checkout_id,
            "occurred_at": mapping.timestamp(order, "created_at", "processed_at") or fired_at,
            "customer": mapping.customer(order),
            "cart": mapping.cart(order, order=True),
            "consent": mapping.consent(order),
            # refunds/create names the order, not the checkout
            "order_ref": mapping.shopify_id(order.get("id")),
        }

    def _refund(self, refund: dict, event_key: str, fired_at: datetime) -> list[dict]:
        """``refunds/create`` → ``checkout.refunded`` for the order (``order_ref``); a refund
        that returned no money (a restock, a refund still pending) is no event."""
        order_id = mapping.shopify_id(refund.get("order_id"))
        if order_id is None:
            raise PayloadError("the refund has no order_id", "order_id")
        cart = mapping.refunded_money(refund)
        if cart is None:
            return []
        return [
            {
                "kind": "checkout.refunded",
                "event_key": event_key,
                "order_ref": order_id,
                "occurred_at": mapping.timestamp(refund, "processed_at", "created_at") or fired_at,
                "cart": cart,
            }
        ]

    def preview_headers(self, config: Mapping[str, Any]) -> Mapping[str, str]:
        """A saved checkout has no delivery id: the event key needs one. The topic, which
        says what the payload is, stays the user's to give."""
        return {EVENT_ID_HEADERS[0]: "preview"}

    def demo_request(self, config: Mapping[str, Any], now: datetime) -> DemoRequest:
        """A ``checkouts/update`` last changed one default window ago, so a tenant without its
        own ``abandon_after`` sees the inferred abandonment right away."""
        stamp = int(now.timestamp())
        token = uuid.uuid4().hex
        updated = (now - parse_duration(self.default_abandon_after)).astimezone(UTC)
        checkout = {
            "id": 900000000000000000 + stamp,
            "token": token,
            "cart_token": uuid.uuid4().hex,
            "name": f"#{900000000000000000 + stamp}",
            "email": "jane.demo@example.com",
            "phone": None,
            "buyer_accepts_marketing": True,
            "buyer_accepts_sms_marketing": False,
            "customer_locale": "en",
            "currency": "EUR",
            "presentment_currency": "EUR",
            "total_price": "49.99",
            "subtotal_price": "49.99",
            "total_discounts": "0.00",
            "line_items": [
                {
                    "title": "Blue Mug",
                    "presentment_title": "Blue Mug",
                    "variant_id": 808950810,
                    "sku": "MUG-BLUE",
                    "quantity": 1,
                    "price": "49.99",
                }
            ],
            "billing_address": {"first_name": "Jane", "last_name": "Demo", "country_code": "DE"},
            "customer": {"id": 603851970716743426, "first_name": "Jane", "last_name": "Demo"},
            "abandoned_checkout_url": (
                f"https://{config['shop_domain']}/548380009/checkouts/{token}/recover?key=demo"
            ),
            "created_at": updated.isoformat(timespec="seconds"),
            "updated_at": updated.isoformat(timespec="seconds"),
            "completed_at": None,
        }
        body = json.dumps(checkout).encode()
        return DemoRequest(
            headers={
                "Content-Type": "application/json",
                "X-Shopify-Topic": "checkouts/update",
                "X-Shopify-Shop-Domain": config["shop_domain"],
                "X-Shopify-API-Version": API_VERSION,
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-Event-Id": str(uuid.uuid4()),
                "X-Shopify-Triggered-At": now.astimezone(UTC).isoformat(timespec="milliseconds"),
                "X-Shopify-Hmac-Sha256": sign(body, config["client_secret"]),
            },
            body=body,
            description="Shopify checkouts/update (Jane Demo, 49.99 EUR)",
        )


def _fired_at(request: InboundRequest) -> datetime:
    """When Shopify says the event fired (advisory, unsigned), else when it reached us; the
    fallback time of a payload that carries none (``checkouts/delete``)."""
    text = header(request.headers, TRIGGERED_AT_HEADERS)
    try:
        fired = datetime.fromisoformat(text) if text else None
    except ValueError:
        fired = None
    if fired is None or fired.tzinfo is None:
        return request.received_at
    return fired.astimezone(UTC)
