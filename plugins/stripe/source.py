"""Stripe webhooks, verified per Stripe's documented scheme and mapped to normalized events.

The signature is checked here with ``hmac`` rather than ``stripe.Webhook.construct_event``:
the library accepts timestamps far in the future and costs ~0.9 ms building a StripeObject; the
scheme is five lines (Stripe's webhook signature docs). The test suite uses the official package
as the oracle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from marshmallow import Schema, fields, validate

from hub import (
    DemoRequest,
    InboundRequest,
    PayloadError,
    Source,
    VerificationError,
    minor_digits,
    to_e164,
    url_field,
)

# Stripe's own minor-unit conventions (docs.stripe.com/currencies); ISO digits come from Babel
STRIPE_ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
STRIPE_THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
ABANDONED = "checkout.session.expired"
CONVERTED = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
API_VERSION = "2025-01-27.acacia"  # the Stripe-Version the probe pins (and the demo event shows)
REFUNDED = "charge.refunded"


class StripeConfig(Schema):
    webhook_secret = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^whsec_\S+$", error="must be the endpoint's signing secret (whsec_…)"
        ),
        metadata={"secret": True},
    )
    tolerance = fields.Integer(load_default=300, validate=validate.Range(min=1, max=3600))
    livemode = fields.String(load_default="both", validate=validate.OneOf(("live", "test", "both")))
    # the conversion probe reads Checkout Sessions with it; without it, Stripe is not asked
    api_key = fields.String(
        load_default=None,
        validate=validate.Regexp(
            r"^(sk|rk)_(live|test)_\S+$",
            error="must be a secret or restricted API key (sk_… or rk_…)",
        ),
        metadata={"secret": True},
    )
    api_version = fields.String(load_default=API_VERSION, validate=validate.Length(min=1))
    api_base = url_field(description="Stripe's API; tests point it at a stand-in")


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe would send (used by ``hub demo`` and tests)."""
    payload = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    body: bytes, header: str | None, secret: str, tolerance: int, now: float | None = None
) -> None:
    """Raise :class:`VerificationError` unless one ``v1`` matches and ``t`` is within
    ±``tolerance`` seconds (Stripe's library only checks the past side)."""
    if not header:
        raise VerificationError("missing Stripe-Signature header")
    timestamp, signatures = None, []
    for item in header.split(","):
        scheme, _, value = item.strip().partition("=")
        if scheme == "t":
            timestamp = value
        elif scheme == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or not signatures:
        raise VerificationError("Stripe-Signature has no timestamp or no v1 signature")
    payload = timestamp.encode() + b"." + body
    expected = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise VerificationError("no Stripe signature matches this endpoint's secret")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise VerificationError("Stripe-Signature timestamp outside the tolerance")


def to_hub_minor(amount: int, currency: str) -> int:
    """Stripe's amount → ISO minor units (Stripe writes ISK and HUF with two decimals)."""
    stripe_digits = (
        0 if currency in STRIPE_ZERO_DECIMAL else (3 if currency in STRIPE_THREE_DECIMAL else 2)
    )
    value = Decimal(amount).scaleb(-stripe_digits).scaleb(minor_digits(currency))
    return int(value.to_integral_value())


def _ts(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError("expected a unix timestamp", field)
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):  # beyond year 9999
        raise PayloadError("expected a unix timestamp", field) from None


def _obj(value: Any, field: str) -> Mapping[str, Any]:
    """A nested Stripe object, ``{}`` when absent; anything else is the sender's bug."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PayloadError("expected an object", field)
    return value


def _str(value: Any, field: str) -> str:
    """An optional Stripe string, ``""`` when absent."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError("expected a string", field)
    return value


def _customer(session: Mapping[str, Any]) -> dict:
    path = "data.object.customer_details"
    details = _obj(session.get("customer_details"), path)
    address = _obj(details.get("address"), f"{path}.address")
    country = _str(address.get("country"), f"{path}.address.country").upper() or None
    first = last = None
    name = _str(details.get("individual_name") or details.get("name"), f"{path}.name").strip()
    if name:
        first, _, last = name.partition(" ")
    locale = session.get("locale")
    return {
        "email": details.get("email") or session.get("customer_email"),
        "phone": to_e164(details.get("phone"), country),
        "first_name": first or None,
        "last_name": last or None,
        "locale": None if locale in (None, "", "auto") else locale,
        "country": country,
        "external_id": session.get("client_reference_id"),
    }


def _cart(session: Mapping[str, Any]) -> dict | None:
    currency = session.get("currency")
    total = session.get("amount_total")
    if not currency or total is None:
        return None
    if not isinstance(total, int) or isinstance(total, bool):
        raise PayloadError("expected an integer amount", "data.object.amount_total")
    currency = _str(currency, "data.object.currency").upper()
    items = []
    lines = _obj(session.get("line_items"), "data.object.line_items").get("data") or []
    if not isinstance(lines, list):
        raise PayloadError("expected a list", "data.object.line_items.data")
    for i, line in enumerate(lines):
        line = _obj(line, f"data.object.line_items.data.{i}")
        price = _obj(line.get("price"), f"data.object.line_items.data.{i}.price")
        product = price.get("product") if isinstance(price.get("product"), dict) else {}
        unit = price.get("unit_amount")
        items.append(
            {
                "name": line.get("description") or product.get("name") or f"item {i + 1}",
                "quantity": line.get("quantity") or 1,
                "unit_price": to_hub_minor(unit, currency) if isinstance(unit, int) else None,
                "image": (product.get("images") or [None])[0],
            }
        )
    discount = _obj(session.get("total_details"), "data.object.total_details").get(
        "amount_discount"
    )
    discount = discount or 0
    return {
        "total": to_hub_minor(total, currency),
        "currency": currency,
        "items": items,
        "discount": to_hub_minor(discount, currency) if isinstance(discount, int) else 0,
    }


def _id_of(value: Any, field: str) -> str | None:
    """An expandable Stripe reference: the id string, or the expanded object's ``id``."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise PayloadError("expected an id", field)
    return value


def _int(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PayloadError("expected a non-negative integer amount", field)
    return value


def refunded_now(event: Mapping[str, Any], charge: Mapping[str, Any]) -> int | None:
    """The amount *this* ``charge.refunded`` gave back, in Stripe's minor units; ``None``: the
    whole charge.

    ``amount_refunded`` is the charge's running total, so two partial refunds of 10 and 20
    arrive as 10 and 30. Stripe's events carry the total before the refund in
    ``data.previous_attributes.amount_refunded``: the difference is this refund, and the sum
    of the differences stays right whatever order the events arrive in. An event without it
    (Stripe documents ``previous_attributes`` for ``*.updated`` only) counts as the whole
    charge when ``refunded`` says it is fully refunded, else as its running total, which is
    exact for the first refund and never more than the purchase (the core caps at it).
    """
    total = _int(charge.get("amount_refunded"), "data.object.amount_refunded")
    previous = _obj(_obj(event.get("data"), "data").get("previous_attributes"), "data")
    before = previous.get("amount_refunded")
    if before is not None:
        return max(total - _int(before, "data.previous_attributes.amount_refunded"), 0)
    if charge.get("refunded") is True:
        return None
    return total


class StripeSource(Source):
    """Stripe Checkout Sessions. Subscribe the endpoint to ``checkout.session.expired``,
    ``checkout.session.completed``, ``checkout.session.async_payment_succeeded`` and
    ``charge.refunded``."""

    name = "stripe"
    consent_fields = {"email": "checkout.session consent.promotions"}
    config_schema = StripeConfig

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        verify_signature(
            request.body,
            request.headers.get("Stripe-Signature"),
            config["webhook_secret"],
            config["tolerance"],
        )

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[dict]:
        event = request.json()
        if not isinstance(event, dict):
            raise PayloadError("expected a Stripe Event object", "body")
        kind = event.get("type")
        if kind != ABANDONED and kind not in CONVERTED and kind != REFUNDED:
            return []
        livemode = bool(event.get("livemode"))
        if config["livemode"] == "live" and not livemode:
            return []
        if config["livemode"] == "test" and livemode:
            return []
        if kind == REFUNDED:
            return [self._refund(event, livemode)]
        session = _obj(event.get("data"), "data").get("object")
        if not isinstance(session, dict) or not isinstance(session.get("id"), str):
            raise PayloadError("missing the Checkout Session", "data.object.id")
        if not isinstance(event.get("id"), str):
            raise PayloadError("missing event id", "id")
        occurred = _ts(event.get("created"), "created")
        if occurred is None:
            raise PayloadError("missing event time", "created")
        consent = _obj(session.get("consent"), "data.object.consent").get("promotions")
        normalized: dict[str, Any] = {
            "event_key": event["id"],
            "checkout_id": session["id"],
            "occurred_at": occurred,
            "customer": _customer(session),
            "cart": _cart(session),
            "consent": {"email": consent if consent in ("opt_in", "opt_out") else "unknown"},
            "livemode": livemode,
        }
        if kind == ABANDONED:
            expiration = _obj(session.get("after_expiration"), "data.object.after_expiration")
            recovery = _obj(expiration.get("recovery"), "data.object.after_expiration.recovery")
            normalized.update(
                kind="checkout.abandoned",
                stage="payment",
                recovery_url=recovery.get("url") if recovery.get("enabled", True) else None,
                recovery_expires_at=_ts(
                    recovery.get("expires_at"), "data.object.after_expiration.recovery.expires_at"
                ),
            )
        else:
            normalized.update(
                kind="checkout.converted",
                recovered_from=session.get("recovered_from"),
                # the Checkout Session's payment: what charge.refunded names later
                order_ref=_id_of(session.get("payment_intent"), "data.object.payment_intent"),
            )
        return [normalized]

    def _refund(self, event: Mapping[str, Any], livemode: bool) -> dict:
        """``charge.refunded`` → ``checkout.refunded`` naming the payment, not the session:
        the hub finds the journey by the payment the conversion recorded (``order_ref``)."""
        charge = _obj(event.get("data"), "data").get("object")
        if not isinstance(charge, dict) or not isinstance(charge.get("id"), str):
            raise PayloadError("missing the Charge", "data.object.id")
        if not isinstance(event.get("id"), str):
            raise PayloadError("missing event id", "id")
        occurred = _ts(event.get("created"), "created")
        if occurred is None:
            raise PayloadError("missing event time", "created")
        payment = _id_of(charge.get("payment_intent"), "data.object.payment_intent")
        currency = _str(charge.get("currency"), "data.object.currency").upper()
        if not currency:
            raise PayloadError("missing the currency", "data.object.currency")
        amount = refunded_now(event, charge)
        return {
            "kind": "checkout.refunded",
            "event_key": event["id"],
            # a charge made without a payment intent (legacy API) matches no conversion
            "order_ref": payment or charge["id"],
            "occurred_at": occurred,
            "cart": None
            if amount is None
            else {"total": to_hub_minor(amount, currency), "currency": currency},
            "livemode": livemode,
        }

    def demo_request(self, config: Mapping[str, Any], now: datetime) -> DemoRequest:
        stamp = int(now.timestamp())
        session_id = f"cs_demo_{stamp}"
        event = {
            "id": f"evt_demo_{stamp}",
            "object": "event",
            "type": ABANDONED,
            "created": stamp,
            "livemode": config["livemode"] == "live",
            "api_version": API_VERSION,
            "data": {
                "object": {
                    "id": session_id,
                    "object": "checkout.session",
                    "mode": "payment",
                    "status": "expired",
                    "payment_status": "unpaid",
                    "locale": "en",
                    "currency": "eur",
                    "amount_total": 4999,
                    "amount_subtotal": 4999,
                    "customer_details": {
                        "email": "jane.demo@example.com",
                        "name": "Jane Demo",
                        "phone": None,
                        "address": {"country": "DE"},
                    },
                    "consent": {"promotions": "opt_in"},
                    "after_expiration": {
                        "recovery": {
                            "enabled": True,
                            "allow_promotion_codes": True,
                            "url": f"https://buy.stripe.com/r/demo_{stamp}",
                            "expires_at": int((now + timedelta(days=30)).timestamp()),
                        }
                    },
                    "recovered_from": None,
                }
            },
        }
        body = json.dumps(event).encode()
        return DemoRequest(
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": sign(body, config["webhook_secret"], stamp),
            },
            body=body,
            description="Stripe checkout.session.expired (Jane Demo, 49.99 EUR)",
        )
