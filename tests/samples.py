"""Payload builders for tests: the platforms' published shapes, signed as they sign."""

from __future__ import annotations

import json
import time
from typing import Any

from plugins.stripe.source import sign as stripe_sign

STRIPE_SECRET = "whsec_test_secret_for_acme"


def stripe_session(session_id: str = "cs_test_a1B2c3", **overrides: Any) -> dict:
    session = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "status": "expired",
        "payment_status": "unpaid",
        "created": int(time.time()) - 3600,
        "expires_at": int(time.time()),
        "livemode": False,
        "locale": "de",
        "currency": "eur",
        "amount_subtotal": 4999,
        "amount_total": 4999,
        "client_reference_id": "cart_8812",
        "customer": None,
        "customer_email": None,
        "customer_details": {
            "email": "jane@example.com",
            "name": "Jane Doe",
            "phone": "+4915112345678",
            "address": {
                "country": "DE",
                "city": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "consent_collection": {"promotions": "auto", "terms_of_service": "none"},
        "consent": {"promotions": "opt_in", "terms_of_service": None},
        "after_expiration": {
            "recovery": {
                "enabled": True,
                "allow_promotion_codes": True,
                "url": "https://buy.stripe.com/r/test_Xyz123",
                "expires_at": int(time.time()) + 30 * 86400,
            }
        },
        "recovered_from": None,
        "metadata": {},
        "url": None,
    }
    session.update(overrides)
    return session


def stripe_event(
    event_type: str = "checkout.session.expired",
    event_id: str = "evt_1Expired",
    session: dict | None = None,
    created: int | None = None,
) -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": created if created is not None else int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": session or stripe_session()},
    }
    return json.dumps(event).encode()


def stripe_completed(
    session_id: str = "cs_test_new",
    recovered_from: str | None = None,
    event_id: str = "evt_1Completed",
    email: str = "jane@example.com",
) -> bytes:
    session = stripe_session(
        session_id,
        status="complete",
        payment_status="paid",
        recovered_from=recovered_from,
        after_expiration=None,
    )
    session["customer_details"]["email"] = email
    return stripe_event("checkout.session.completed", event_id, session)


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> dict:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Stripe-Signature": stripe_sign(body, secret, stamp),
        "Content-Type": "application/json; charset=utf-8",
    }


def tenant_toml(
    *,
    smtp_url: str,
    after: str = "1s",
    consent: str = "opt_in",
    extra: str = "",
    name: str = "Acme Shoes",
    stripe_secret: str = STRIPE_SECRET,
    steps: str | None = None,
    sources: str | None = None,
    locale: str = "en",
) -> str:
    """A tenant file with one e-mail step; ``sources`` replaces the Stripe table."""
    sources = sources or f'[sources.stripe]\nwebhook_secret = "{stripe_secret}"'
    steps = (
        steps
        or f"""
  [[flows.steps]]
  after = "{after}"
  channels = ["email"]
  template = "reminder"
"""
    )
    return f"""
name = "{name}"
timezone = "Europe/Berlin"
locale = "{locale}"
currency = "EUR"
support = "help@acme.example"

[consent]
email = "{consent}"

{sources}

[sinks.email]
smtp_url = "{smtp_url}"
from = "Acme <shop@acme.example>"
{extra}
[[flows]]
name = "default"
{steps}
"""
