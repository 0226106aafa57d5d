"""Refunds from Stripe and Shopify end to end: signed webhooks through the real ingress and a
real RQ worker. A refund names the purchase (Stripe's payment intent, Shopify's order), not
the checkout; the conversion recorded that purchase on the journey it recovered. The report
shows the revenue net of refunds."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import stripe
from samples import STRIPE_SECRET, stripe_completed, stripe_event, stripe_headers, tenant_toml
from test_shopify import checkout, encode, order, shopify_headers, shopify_tenant

from hub.reports import report
from plugins.shopify.mapping import refunded_money

PAYMENT = "pi_3RecoveredPayment"
EXPIRED = "cs_test_a1B2c3"  # stripe_session()'s id


def charge_refunded(
    event_id: str, amount_refunded: int, before: int | None, *, whole: bool = False
) -> bytes:
    """A ``charge.refunded`` as Stripe sends it: the Charge with its running
    ``amount_refunded``, and the total before this refund in ``previous_attributes``."""
    data: dict = {
        "object": {
            "id": "ch_3RecoveredCharge",
            "object": "charge",
            "amount": 4999,
            "amount_captured": 4999,
            "amount_refunded": amount_refunded,
            "currency": "eur",
            "payment_intent": PAYMENT,
            "refunded": whole,
            "status": "succeeded",
            "livemode": False,
        }
    }
    if before is not None:
        data["previous_attributes"] = {"amount_refunded": before, "refunded": False}
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_1", "idempotency_key": None},
        "type": "charge.refunded",
        "data": data,
    }
    return json.dumps(event).encode()


def completed() -> bytes:
    body = json.loads(stripe_completed(recovered_from=EXPIRED))
    body["data"]["object"]["payment_intent"] = PAYMENT
    return json.dumps(body).encode()


def post_stripe(harness, body: bytes) -> dict:  # noqa: ANN001
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 202
    return answer.get_json()


def processed(harness, count: int) -> list:  # noqa: ANN001
    return harness.wait_for(
        lambda: (
            len(rows := harness.rows("events")) >= count
            and all(r.status == "processed" for r in rows)
            and rows
        ),
        message=f"{count} processed events",
    )


def recovered(harness, checkout_id: str = EXPIRED):  # noqa: ANN001, ANN201
    [journey] = harness.rows("journeys", checkout_id=checkout_id)
    return journey


def net_revenue(harness) -> tuple[dict, dict]:  # noqa: ANN001
    """Today's report: revenue net of refunds (credited to a message, or recovered without
    one), and the refunds."""
    today = datetime.now(UTC).date()
    total = report(harness.hub.store, "acme", today, today, "day", "Europe/Berlin").total
    revenue = {**total.revenue}
    for currency, amount in total.revenue_without_message.items():
        revenue[currency] = revenue.get(currency, 0) + amount
    return revenue, total.refunded


# ---------------------------------------------------------------------------- Stripe


@pytest.fixture
def stripe_hub(hub_factory, smtp_server):
    """A recovered Stripe checkout: expired, mailed, bought through the recovery session."""
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    harness.start_worker()
    post_stripe(harness, stripe_event())
    smtp_server.wait_for_messages(1)
    harness.wait_for(lambda: [r for r in harness.rows("deliveries") if r.status == "sent"])
    post_stripe(harness, completed())
    processed(harness, 2)
    journey = recovered(harness)
    assert journey.recovered and journey.credit == "sent" and journey.order_ref == PAYMENT
    return harness


def test_our_refund_webhooks_are_signed_as_stripe_signs(stripe_hub):
    body = charge_refunded("evt_refund_1", 1000, 0)
    header = stripe_headers(body)["Stripe-Signature"]
    event = stripe.Webhook.construct_event(body, header, STRIPE_SECRET)  # the oracle
    assert event.type == "charge.refunded"


def test_a_partial_stripe_refund_takes_its_amount_off_the_revenue(stripe_hub):
    post_stripe(stripe_hub, charge_refunded("evt_refund_1", 1000, 0))
    [*_, refund] = processed(stripe_hub, 3)
    assert refund.kind == "checkout.refunded" and refund.checkout_id == f"order:{PAYMENT}"
    journey = recovered(stripe_hub)
    assert (journey.recovered_amount, journey.refunded_amount) == (4999, 1000)
    assert journey.recovered and journey.credit == "sent"  # the recovery itself stays
    assert net_revenue(stripe_hub) == ({"EUR": 3999}, {"EUR": 1000})


def test_two_partial_stripe_refunds_count_each_refund_not_the_running_total(stripe_hub):
    post_stripe(stripe_hub, charge_refunded("evt_refund_1", 1000, 0))
    post_stripe(stripe_hub, charge_refunded("evt_refund_2", 3000, 1000))
    processed(stripe_hub, 4)
    assert recovered(stripe_hub).refunded_amount == 3000  # 1000 + 2000, not 1000 + 3000
    assert net_revenue(stripe_hub) == ({"EUR": 1999}, {"EUR": 3000})


def test_two_partial_stripe_refunds_arriving_in_reverse_order_add_up_the_same(stripe_hub):
    post_stripe(stripe_hub, charge_refunded("evt_refund_2", 3000, 1000))
    post_stripe(stripe_hub, charge_refunded("evt_refund_1", 1000, 0))
    processed(stripe_hub, 4)
    assert recovered(stripe_hub).refunded_amount == 3000


def test_a_duplicate_stripe_refund_delivery_counts_once(stripe_hub):
    body = charge_refunded("evt_refund_1", 1000, 0)
    answers = [post_stripe(stripe_hub, body) for _ in range(3)]
    assert [a["duplicates"] for a in answers] == [0, 1, 1]
    processed(stripe_hub, 3)
    time.sleep(0.5)  # room for a wrongly queued second job
    assert recovered(stripe_hub).refunded_amount == 1000
    assert len(stripe_hub.rows("events", kind="checkout.refunded")) == 1


def test_a_full_stripe_refund_takes_back_the_whole_purchase(stripe_hub):
    post_stripe(stripe_hub, charge_refunded("evt_refund_1", 4999, 0, whole=True))
    processed(stripe_hub, 3)
    assert recovered(stripe_hub).refunded_amount == 4999
    assert net_revenue(stripe_hub) == ({"EUR": 0}, {"EUR": 4999})


def test_a_full_refund_without_previous_attributes_is_the_whole_purchase(stripe_hub):
    post_stripe(stripe_hub, charge_refunded("evt_refund_1", 4999, None, whole=True))
    processed(stripe_hub, 3)
    assert recovered(stripe_hub).refunded_amount == 4999


def test_a_stripe_refund_before_its_conversion_is_counted_when_the_conversion_lands(
    hub_factory, smtp_server
):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="1h")})
    harness.start_worker()
    post_stripe(harness, stripe_event())
    post_stripe(harness, charge_refunded("evt_refund_1", 1500, 0))
    [_, refund] = processed(harness, 2)
    assert refund.note.startswith("recorded; no recovered journey")
    post_stripe(harness, completed())
    processed(harness, 3)
    journey = recovered(harness)
    assert journey.recovered and (journey.refunded_amount, journey.credit) == (1500, "none")


def test_a_stripe_conversion_before_its_abandonment_recovers_it_without_message(
    hub_factory, smtp_server
):
    """Stripe does not keep order: the recovery session's completion can arrive before the
    expiry of the session it came from."""
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    harness.start_worker()
    post_stripe(harness, completed())
    processed(harness, 1)
    post_stripe(harness, stripe_event(created=int(time.time()) - 600))  # expired before
    [_, abandoned] = processed(harness, 2)
    assert "converted before the abandonment arrived" in abandoned.note
    journey = recovered(harness)
    assert journey.status == "converted" and journey.recovered
    assert (journey.recovered_amount, journey.credit, journey.order_ref) == (4999, "none", PAYMENT)
    assert journey.abandoned_at is not None and harness.rows("steps") == []
    post_stripe(harness, charge_refunded("evt_refund_1", 999, 0))
    processed(harness, 3)
    assert recovered(harness).refunded_amount == 999
    time.sleep(1.5)  # the 1 s step would have fired by now
    assert smtp_server.messages == []


# ---------------------------------------------------------------------------- Shopify

ORDER_ID = 450789469  # order()'s id


def refund(amount: str = "10.00", status: str = "success", **overrides: object) -> dict:
    """A ``refunds/create`` payload (Shopify's published sample fields): the money is in
    ``transactions``; the items in ``refund_line_items``."""
    payload = {
        "id": 509562969,
        "order_id": ORDER_ID,
        "created_at": "2026-11-02T11:00:00+01:00",
        "processed_at": "2026-11-02T11:00:00+01:00",
        "note": "it broke",
        "restock": False,
        "user_id": None,
        "refund_line_items": [
            {
                "id": 104689539,
                "line_item_id": 703073504,
                "quantity": 1,
                "restock_type": "no_restock",
                "subtotal": 10.0,
                "subtotal_set": {
                    "shop_money": {"amount": "10.00", "currency_code": "EUR"},
                    "presentment_money": {"amount": "10.00", "currency_code": "EUR"},
                },
            }
        ],
        "transactions": [
            {
                "id": 179259969,
                "order_id": ORDER_ID,
                "kind": "refund",
                "gateway": "shopify_payments",
                "status": status,
                "amount": amount,
                "currency": "EUR",
            }
        ],
        "order_adjustments": [],
    }
    payload.update(overrides)
    return payload


def post_shopify(harness, payload: dict, topic: str, event_id: str = "auto") -> dict:  # noqa: ANN001
    body = encode(payload)
    answer = harness.post("acme", "shopify", body, shopify_headers(body, topic, event_id=event_id))
    assert answer.status_code == 202
    return answer.get_json()


@pytest.fixture
def shopify_hub(hub_factory, smtp_server):
    """A Shopify checkout inferred abandoned, then ordered: recovered with the order's id."""
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="1s", after="1h")})
    harness.start_worker()
    post_shopify(harness, checkout(), "checkouts/update")
    harness.wait_for(
        lambda: harness.rows("journeys") and harness.rows("journeys")[0].status == "open",
        message="inferred abandonment",
    )
    post_shopify(harness, order(), "orders/create")
    processed(harness, 3)
    [journey] = harness.rows("journeys")
    assert journey.recovered and journey.order_ref == str(ORDER_ID)
    return harness


def test_a_shopify_refund_finds_the_journey_by_its_order(shopify_hub):
    post_shopify(shopify_hub, refund("10.00"), "refunds/create")
    [*_, stored] = processed(shopify_hub, 4)
    assert stored.kind == "checkout.refunded" and stored.checkout_id == f"order:{ORDER_ID}"
    [journey] = shopify_hub.rows("journeys")
    assert (journey.recovered_amount, journey.refunded_amount) == (4999, 1000)
    assert net_revenue(shopify_hub) == ({"EUR": 3999}, {"EUR": 1000})


def test_two_shopify_refunds_and_a_duplicate_delivery(shopify_hub):
    post_shopify(shopify_hub, refund("10.00"), "refunds/create", event_id="refund-1")
    post_shopify(shopify_hub, refund("10.00"), "refunds/create", event_id="refund-1")  # again
    post_shopify(shopify_hub, refund("39.99", id=509562970), "refunds/create", event_id="refund-2")
    processed(shopify_hub, 5)
    [journey] = shopify_hub.rows("journeys")
    assert journey.refunded_amount == 4999  # 10.00 once, then the rest
    assert net_revenue(shopify_hub) == ({"EUR": 0}, {"EUR": 4999})


def test_a_shopify_refund_that_returned_no_money_is_no_event(shopify_hub):
    for payload in (refund(status="pending"), refund(transactions=[], restock=True)):
        assert post_shopify(shopify_hub, payload, "refunds/create")["stored"] == 0
    [journey] = shopify_hub.rows("journeys")
    assert journey.refunded_amount is None


def test_shopify_refund_money_is_the_successful_refund_transactions():
    two = refund(
        transactions=[
            {"kind": "refund", "status": "success", "amount": "5.00", "currency": None},
            {"kind": "refund", "status": "failure", "amount": "7.00", "currency": None},
            {"kind": "refund", "status": "success", "amount": "2.50", "currency": None},
            {"kind": "sale", "status": "success", "amount": "49.99", "currency": None},
        ]
    )
    # the published sample's transactions carry no currency: the refunded items' one names it
    assert refunded_money(two) == {"total": 750, "currency": "EUR"}
