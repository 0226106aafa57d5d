"""Stripe: our signatures are what Stripe sends (the official package is the oracle), and the
mapping of a Checkout Session to the normalized event."""

from __future__ import annotations

import json
import time

import pytest
import stripe
from samples import STRIPE_SECRET, stripe_completed, stripe_event, stripe_headers, stripe_session
from werkzeug.datastructures import Headers

from hub import VerificationError
from hub.hookspecs import InboundRequest
from hub.testing import SignedSample, check_source_contract
from plugins.stripe.source import StripeSource, sign, to_hub_minor, verify_signature

CONFIG = {"webhook_secret": STRIPE_SECRET, "tolerance": 300, "livemode": "both"}


def request(body: bytes, headers: dict) -> InboundRequest:
    from datetime import UTC, datetime

    return InboundRequest(
        "acme", "stripe", "POST", body, Headers(headers), {}, "application/json", datetime.now(UTC)
    )


def test_known_answer_vector_from_platforms_md():
    body = b'{"id":"evt_test_1","object":"event","type":"checkout.session.expired"}'
    header = sign(body, "whsec_test_secret", 1700000000)
    assert header == (
        "t=1700000000,v1=1a1b3dfd40876c273647e34aa7e8f8c42a1cc5c184922717089ba1e0a1854cc1"
    )


def test_our_signature_is_accepted_by_the_official_stripe_verifier():
    body = stripe_event()
    header = sign(body, STRIPE_SECRET, int(time.time()))
    event = stripe.Webhook.construct_event(body, header, STRIPE_SECRET)
    assert event["type"] == "checkout.session.expired"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body + b" ", header, STRIPE_SECRET)


def test_we_accept_what_the_official_package_signs():
    body = stripe_event()
    stamp = int(time.time())
    payload = f"{stamp}.{body.decode()}"
    official = stripe.WebhookSignature._compute_signature(payload, STRIPE_SECRET)
    verify_signature(body, f"t={stamp},v1={official}", STRIPE_SECRET, 300)


def test_any_of_several_v1_signatures_may_match_during_rotation():
    body = stripe_event()
    stamp = int(time.time())
    good = sign(body, STRIPE_SECRET, stamp).split("v1=")[1]
    old = sign(body, "whsec_old", stamp).split("v1=")[1]
    verify_signature(body, f"t={stamp},v1={old},v1={good},v0=ignored", STRIPE_SECRET, 300)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=,v1=",
        "t=abc,v1=00",
        "v1=abcd",
        "t=1700000000",
        "t=1700000000,v0=1a1b3dfd40876c273647e34aa7e8f8c42a1cc5c184922717089ba1e0a1854cc1",
    ],
)
def test_garbled_headers_are_verification_errors(header):
    with pytest.raises(VerificationError):
        verify_signature(b"{}", header, STRIPE_SECRET, 300, now=1700000000)


def test_the_future_is_as_stale_as_the_past():
    """stripe-python accepts a timestamp far in the future; we do not."""
    body = stripe_event()
    future = int(time.time()) + 10**6
    header = sign(body, STRIPE_SECRET, future)
    stripe.WebhookSignature.verify_header(body.decode(), header, STRIPE_SECRET, tolerance=300)
    with pytest.raises(VerificationError):
        verify_signature(body, header, STRIPE_SECRET, 300)


def test_the_source_passes_the_contract_kit():
    body = stripe_event()
    sample = SignedSample(body, stripe_headers(body))
    events = check_source_contract(
        StripeSource(),
        CONFIG,
        sample,
        tamper=lambda s: SignedSample(s.body.replace(b"4999", b"1"), s.headers),
    )
    assert [e["kind"] for e in events] == ["checkout.abandoned"]


def test_expired_session_maps_to_the_normalized_event():
    body = stripe_event()
    [event] = StripeSource().parse(request(body, {}), CONFIG)
    assert event["kind"] == "checkout.abandoned"
    assert event["event_key"] == "evt_1Expired"
    assert event["checkout_id"] == "cs_test_a1B2c3"
    assert event["stage"] == "payment"
    assert event["cart"] == {"total": 4999, "currency": "EUR", "items": [], "discount": 0}
    assert event["customer"] == {
        "email": "jane@example.com",
        "phone": "+4915112345678",
        "first_name": "Jane",
        "last_name": "Doe",
        "locale": "de",
        "country": "DE",
        "external_id": "cart_8812",
    }
    assert event["consent"] == {"email": "opt_in"}
    assert event["recovery_url"] == "https://buy.stripe.com/r/test_Xyz123"
    assert event["recovery_expires_at"].timestamp() > time.time() + 29 * 86400


def test_line_items_are_mapped_when_expanded():
    session = stripe_session(
        line_items={
            "data": [
                {
                    "description": "Blue Mug",
                    "quantity": 2,
                    "price": {
                        "unit_amount": 1250,
                        "product": {"name": "Mug", "images": ["https://x.example/m.png"]},
                    },
                },
            ]
        }
    )
    [event] = StripeSource().parse(request(stripe_event(session=session), {}), CONFIG)
    assert event["cart"]["items"] == [
        {"name": "Blue Mug", "quantity": 2, "unit_price": 1250, "image": "https://x.example/m.png"}
    ]


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (500, "JPY", 500),
        (4999, "EUR", 4999),
        (123450, "KWD", 123450),
        (10000, "ISK", 100),
    ],
)
def test_stripe_amounts_become_iso_minor_units(amount, currency, minor):
    assert to_hub_minor(amount, currency) == minor


def test_completed_session_is_a_conversion_with_recovered_from():
    body = stripe_completed(recovered_from="cs_old")
    [event] = StripeSource().parse(request(body, {}), CONFIG)
    assert event["kind"] == "checkout.converted"
    assert event["recovered_from"] == "cs_old"


def test_other_event_types_and_test_mode_events_for_live_tenants_are_ignored():
    other = stripe_event("payment_intent.created")
    assert StripeSource().parse(request(other, {}), CONFIG) == []
    assert StripeSource().parse(request(stripe_event(), {}), {**CONFIG, "livemode": "live"}) == []


def test_payload_errors_name_the_field():
    from hub import PayloadError

    broken = json.loads(stripe_event())
    broken["data"]["object"]["amount_total"] = "49.99"
    with pytest.raises(PayloadError) as err:
        StripeSource().parse(request(json.dumps(broken).encode(), {}), CONFIG)
    assert err.value.field == "data.object.amount_total"
