"""Shopify source: signatures, mapping, and inferred abandonment end to end with a real worker.

Payloads follow the shapes of Shopify's published webhook samples and are
signed exactly as Shopify signs: base64 HMAC-SHA256 of the raw body with the app client secret.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from samples import tenant_toml
from werkzeug.datastructures import Headers

from hub import InboundRequest, PayloadError
from hub.events import load_event
from hub.testing import SignedSample, check_source_contract
from plugins.shopify.signature import sign, verify_signature
from plugins.shopify.source import ShopifySource

SECRET = "shpss_acme_client_secret"
OLD_SECRET = "shpss_acme_client_secret_before_rotation"
SHOP = "acme.myshopify.com"
CHECKOUT_ID = 981820079255243537
TOKEN = "123123123"
BERLIN = timezone(timedelta(hours=1))
CONFIG = {"shop_domain": SHOP, "client_secret": SECRET, "previous_client_secret": None}


# ------------------------------------------------------------------------------ payloads


def shopify_time(moment: datetime | None = None) -> str:
    """Shopify writes times with the shop's UTC offset and whole seconds."""
    return (moment or datetime.now(UTC)).astimezone(BERLIN).isoformat(timespec="seconds")


def checkout(updated_at: datetime | None = None, **overrides: object) -> dict:
    """The `checkouts/update` sample of Shopify's webhook reference."""
    stamp = shopify_time(updated_at)
    payload = {
        "id": CHECKOUT_ID,
        "token": TOKEN,
        "cart_token": "eeafa272cebfd4b22385bc4b645e762c",
        "name": f"#{CHECKOUT_ID}",
        "email": "jane@example.com",
        "phone": "+4915112345678",
        "sms_marketing_phone": None,
        "buyer_accepts_marketing": True,
        "buyer_accepts_sms_marketing": False,
        "customer_locale": "de-DE",
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
        "billing_address": {"first_name": "Jane", "last_name": "Doe", "country_code": "DE"},
        "customer": {
            "id": 603851970716743426,
            "first_name": "Jane",
            "last_name": "Doe",
            "email": "jane@example.com",
        },
        "abandoned_checkout_url": (
            f"https://acme.example/548380009/checkouts/{TOKEN}/recover?key=abc"
        ),
        "created_at": stamp,
        "updated_at": stamp,
        "completed_at": None,
        "closed_at": None,
    }
    payload.update(overrides)
    return payload


def order(created_at: datetime | None = None, **overrides: object) -> dict:
    """An `orders/create` payload linked to the checkout (Shopify REST order sample fields)."""
    stamp = shopify_time(created_at)
    payload = {
        "id": 450789469,
        "name": "#1001",
        "checkout_id": CHECKOUT_ID,
        "checkout_token": TOKEN,
        "cart_token": "eeafa272cebfd4b22385bc4b645e762c",
        "email": "jane@example.com",
        "contact_email": "jane@example.com",
        "buyer_accepts_marketing": True,
        "currency": "EUR",
        "presentment_currency": "EUR",
        "total_price": "49.99",
        "total_price_set": {
            "shop_money": {"amount": "49.99", "currency_code": "EUR"},
            "presentment_money": {"amount": "49.99", "currency_code": "EUR"},
        },
        "financial_status": "paid",
        "line_items": [{"title": "Blue Mug", "quantity": 1, "price": "49.99", "sku": "MUG-BLUE"}],
        "customer": {"id": 603851970716743426, "email": "jane@example.com"},
        "created_at": stamp,
        "processed_at": stamp,
    }
    payload.update(overrides)
    return payload


def deleted() -> dict:
    """Shopify's `checkouts/delete` sample: no token, no e-mail, no timestamps."""
    return {
        "id": CHECKOUT_ID,
        "presentment_currency": "EUR",
        "buyer_accepts_sms_marketing": False,
        "sms_marketing_phone": None,
        "total_discounts": "0.00",
        "total_line_items_price": "49.99",
        "total_price": "49.99",
        "total_tax": "0.00",
        "subtotal_price": "49.99",
        "cart_token": "eeafa272cebfd4b22385bc4b645e762c",
        "total_duties": None,
        "reservation_token": None,
    }


def encode(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def shopify_headers(
    body: bytes,
    topic: str = "checkouts/update",
    *,
    secret: str = SECRET,
    shop: str = SHOP,
    event_id: str | None = "auto",
    webhook_id: str | None = "auto",
) -> dict:
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "X-Shopify-Hmac-Sha256": sign(body, secret),
    }
    if webhook_id:
        headers["X-Shopify-Webhook-Id"] = str(uuid.uuid4()) if webhook_id == "auto" else webhook_id
    if event_id:
        headers["X-Shopify-Event-Id"] = str(uuid.uuid4()) if event_id == "auto" else event_id
    return headers


def shopify_tenant(
    smtp_url: str,
    *,
    abandon_after: str | None = "2s",
    after: str = "1s",
    shop: str = SHOP,
    secret: str = SECRET,
    previous: str | None = None,
) -> str:
    table = f'[sources.shopify]\nshop_domain = "{shop}"\nclient_secret = "{secret}"\n'
    if previous:
        table += f'previous_client_secret = "{previous}"\n'
    if abandon_after:
        table += f'abandon_after = "{abandon_after}"\n'
    return tenant_toml(smtp_url=smtp_url, after=after, extra=table)


def parse(payload: dict | bytes, topic: str = "checkouts/update", **header_args) -> list[dict]:
    """Verify and parse one signed callback with the plugin alone, then load the events with
    the core's schema (what the ingress does before storing)."""
    body = payload if isinstance(payload, bytes) else encode(payload)
    source = ShopifySource()
    request = InboundRequest(
        tenant="acme",
        source="shopify",
        method="POST",
        body=body,
        headers=Headers(shopify_headers(body, topic, **header_args)),
        query={},
        content_type="application/json",
        received_at=datetime.now(UTC),
    )
    source.verify(request, CONFIG)
    return [
        load_event({**e, "tenant": "acme", "source": "shopify"})
        for e in source.parse(request, CONFIG)
    ]


# ------------------------------------------------------------------------------ signature


def test_signature_matches_the_known_answer_vector_of_platforms_md():
    body = b'{"token":"123123123","cart_token":"eeafa272cebfd4b22385bc4b645e762c"}'
    assert sign(body, "shpss_test_secret") == "fkfxhVzcxxWiFtOWPa74qfGBTwjAci/d2X7drOri32c="
    verify_signature(body, "fkfxhVzcxxWiFtOWPa74qfGBTwjAci/d2X7drOri32c=", ["shpss_test_secret"])


def test_source_passes_the_contract_kit():
    body = encode(checkout())

    def tamper(sample: SignedSample) -> SignedSample:
        return SignedSample(sample.body.replace(b"49.99", b"0.01"), sample.headers)

    [event] = check_source_contract(
        ShopifySource(), CONFIG, SignedSample(body, shopify_headers(body)), tamper
    )
    assert event["kind"] == "checkout.updated"
    assert event["checkout_id"] == str(CHECKOUT_ID)


def test_signed_checkout_update_is_stored_as_a_checkout_update(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    headers = shopify_headers(body, event_id="9b1f3a44-2c2b-4b61-8f3a-6a3c2c0d9e77")
    answer = harness.post("acme", "shopify", body, headers)
    assert answer.status_code == 202
    assert answer.get_json() == {"stored": 1, "duplicates": 0, "ignored": False}
    [row] = harness.rows("events")
    assert row.kind == "checkout.updated"
    assert row.event_key == "checkouts/update:9b1f3a44-2c2b-4b61-8f3a-6a3c2c0d9e77"
    assert row.checkout_id == str(CHECKOUT_ID)
    assert row.email == "jane@example.com" and row.phone == "+4915112345678"


def test_tampered_body_is_rejected(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    headers = shopify_headers(body)
    answer = harness.post("acme", "shopify", body.replace(b"49.99", b"0.01"), headers)
    assert answer.status_code == 401
    assert answer.get_json()["code"] == "unverified"
    assert harness.rows("events") == []


def test_body_signed_with_another_secret_is_rejected(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    answer = harness.post("acme", "shopify", body, shopify_headers(body, secret="shpss_other"))
    assert answer.status_code == 401
    assert harness.rows("events") == []


@pytest.mark.parametrize(
    "mutilate",
    [
        pytest.param(lambda h: h.pop("X-Shopify-Hmac-Sha256"), id="missing signature"),
        pytest.param(lambda h: h.update({"X-Shopify-Hmac-Sha256": "not base64 !"}), id="garbled"),
        pytest.param(lambda h: h.update({"X-Shopify-Hmac-Sha256": "ü"}), id="non-ascii"),
        pytest.param(lambda h: h.pop("X-Shopify-Shop-Domain"), id="missing shop domain"),
    ],
)
def test_missing_or_garbled_headers_are_rejected(hub_factory, smtp_server, mutilate):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    headers = shopify_headers(body)
    mutilate(headers)
    assert harness.post("acme", "shopify", body, headers).status_code == 401
    assert harness.rows("events") == []


def test_empty_body_is_rejected_even_when_signed(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    answer = harness.post("acme", "shopify", b"", shopify_headers(b""))
    assert answer.status_code == 401
    assert "empty body" in answer.get_json()["message"]


def test_correct_signature_for_another_shop_is_rejected(hub_factory, smtp_server):
    """A public app's secret is shared by every shop that installed it."""
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    answer = harness.post("acme", "shopify", body, shopify_headers(body, shop="evil.myshopify.com"))
    assert answer.status_code == 401
    assert answer.get_json()["message"] == "X-Shopify-Shop-Domain is not this tenant's shop"
    assert harness.rows("events") == []


def test_tenant_a_request_on_tenant_b_url_is_rejected(hub_factory, smtp_server):
    harness = hub_factory(
        {
            "acme": shopify_tenant(smtp_server.url),
            "beta": shopify_tenant(
                smtp_server.url, shop="beta.myshopify.com", secret="shpss_beta_secret"
            ),
        }
    )
    body = encode(checkout())
    headers = shopify_headers(body)  # acme's secret and acme's shop domain
    assert harness.post("beta", "shopify", body, headers).status_code == 401
    # acme's secret with beta's domain claims does not pass either
    spoofed = shopify_headers(body, shop="beta.myshopify.com")
    assert harness.post("beta", "shopify", body, spoofed).status_code == 401
    assert harness.rows("events") == []
    assert harness.post("acme", "shopify", body, headers).status_code == 202
    assert [r.tenant for r in harness.rows("events")] == ["acme"]


def test_previous_client_secret_is_accepted_during_rotation(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, previous=OLD_SECRET)})
    old = encode(checkout())
    assert (
        harness.post("acme", "shopify", old, shopify_headers(old, secret=OLD_SECRET)).status_code
        == 202
    )
    new = encode(checkout(updated_at=datetime.now(UTC) + timedelta(seconds=1)))
    assert harness.post("acme", "shopify", new, shopify_headers(new)).status_code == 202
    stranger = shopify_headers(new, secret="shpss_neither")
    assert harness.post("acme", "shopify", new, stranger).status_code == 401
    assert len(harness.rows("events")) == 2


def test_previous_secret_is_refused_once_the_rotation_is_over(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    answer = harness.post("acme", "shopify", body, shopify_headers(body, secret=OLD_SECRET))
    assert answer.status_code == 401


def test_unprefixed_event_headers_are_accepted(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    headers = {
        "Content-Type": "application/json",
        "shopify-topic": "checkouts/update",
        "shopify-shop-domain": SHOP,
        "shopify-api-version": "2026-07",
        "shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "shopify-hmac-sha256": sign(body, SECRET),
    }
    assert harness.post("acme", "shopify", body, headers).status_code == 202
    [row] = harness.rows("events")
    assert row.event_key == "checkouts/update:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"


# ------------------------------------------------------------------------------ bad payloads


@pytest.mark.parametrize("body", [b"{not json", b'["a", "list"]', b"\xff\xfe"])
def test_malformed_body_is_a_400_naming_the_body(hub_factory, smtp_server, body):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    answer = harness.post("acme", "shopify", body, shopify_headers(body))
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "body"
    assert harness.rows("events") == []


def test_missing_delivery_ids_are_a_400_naming_the_header(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    answer = harness.post(
        "acme", "shopify", body, shopify_headers(body, event_id=None, webhook_id=None)
    )
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "X-Shopify-Webhook-Id"
    assert "X-Shopify-Event-Id" in answer.get_json()["message"]


def test_missing_topic_is_a_400_naming_the_header(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode(checkout())
    headers = shopify_headers(body)
    del headers["X-Shopify-Topic"]
    answer = harness.post("acme", "shopify", body, headers)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "X-Shopify-Topic"


def test_webhook_id_is_the_key_when_event_id_is_absent():
    [event] = parse(checkout(), event_id=None, webhook_id="5e1a8d0c-7d5a-4d0e-9c39-0d8f3f0c2a11")
    assert event["event_key"] == "checkouts/update:5e1a8d0c-7d5a-4d0e-9c39-0d8f3f0c2a11"


def test_event_id_is_the_key_when_both_are_present():
    [event] = parse(checkout(), event_id="evt-1", webhook_id="delivery-1")
    assert event["event_key"] == "checkouts/update:evt-1"


def test_unknown_topic_is_answered_2xx_and_stores_nothing(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url)})
    body = encode({"id": 1, "title": "Blue Mug"})
    answer = harness.post("acme", "shopify", body, shopify_headers(body, "products/update"))
    assert answer.status_code == 202
    assert answer.get_json() == {"stored": 0, "duplicates": 0, "ignored": True}
    assert harness.rows("events") == []


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"total_price": "forty"}, "total_price"),
        ({"total_price": "49.999"}, "total_price"),
        ({"updated_at": "yesterday"}, "updated_at"),
        ({"updated_at": "2026-01-02T11:15:00"}, "updated_at"),  # no UTC offset
    ],
)
def test_unusable_money_or_time_is_a_400_naming_the_field(override, field):
    with pytest.raises(PayloadError) as caught:
        parse({**checkout(), **override})
    assert caught.value.field == field


def test_invalid_config_is_reported_with_its_key(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, shop="acme.example.com")})
    issues = [str(i) for i in harness.hub.config_issues]
    assert any("sources.shopify.shop_domain" in i for i in issues), issues


# ------------------------------------------------------------------------------ mapping


def test_checkout_fields_map_to_the_normalized_event():
    updated = datetime(2026, 1, 2, 10, 15, tzinfo=UTC)
    [event] = parse(checkout(updated_at=updated, phone="0151 12345678"))
    assert event["kind"] == "checkout.updated"
    assert event["checkout_id"] == "981820079255243537"
    assert event["occurred_at"] == updated  # "2026-01-02T11:15:00+01:00" → UTC
    assert event["customer"] == {
        "email": "jane@example.com",
        "phone": "+4915112345678",  # national number read in the billing country
        "first_name": "Jane",
        "last_name": "Doe",
        "locale": "de-DE",
        "country": "DE",
        "external_id": "603851970716743426",
    }
    assert event["cart"] == {
        "total": 4999,
        "currency": "EUR",
        "discount": 0,
        "items": [
            {
                "name": "Blue Mug",
                "quantity": 1,
                "unit_price": 4999,
                "sku": "MUG-BLUE",
                "image": None,
                "url": None,
            }
        ],
    }
    assert event["recovery_url"] == (
        "https://acme.example/548380009/checkouts/123123123/recover?key=abc"
    )
    assert event["consent"] == {"email": "opt_in", "whatsapp": "unknown", "sms": "unknown"}
    assert event["stage"] == "contact"


def test_shopifys_published_sample_without_id_links_by_name_and_drops_unusable_phones():
    """Shopify's current published checkouts/update sample has no `id`, keeps
    `name = "#<id>"`, and carries address phones like 555-555-BILL."""
    sample = checkout(
        email="example@email.com",
        phone=None,
        buyer_accepts_marketing=False,
        customer_locale=None,
        currency="USD",
        presentment_currency="USD",
        total_price="421.88",
        total_discounts="0.00",
        billing_address={
            "first_name": "Bob",
            "last_name": "Biller",
            "phone": "555-555-BILL",
            "country_code": "US",
        },
        shipping_address={"first_name": "Steve", "phone": "555-555-SHIP", "country_code": "US"},
        customer={"id": 603851970716743426, "first_name": "John", "last_name": "Smith"},
        abandoned_checkout_url=(
            "https://checkout.local/548380009/checkouts/123123123/recover?key=example-secret-token"
        ),
    )
    del sample["id"]
    [event] = parse(sample)
    assert event["checkout_id"] == "981820079255243537"
    assert event["customer"]["phone"] is None
    assert event["customer"]["first_name"] == "John" and event["customer"]["country"] == "US"
    assert event["cart"]["total"] == 42188 and event["cart"]["currency"] == "USD"
    # an unticked box is not a refusal
    assert event["consent"]["email"] == "unknown"


def test_checkout_without_id_or_name_falls_back_to_the_token_orders_also_carry():
    sample = checkout()
    del sample["id"], sample["name"]
    [update] = parse(sample)
    linked = order()
    del linked["checkout_id"]
    [conversion] = parse(linked, "orders/create")
    assert update["checkout_id"] == conversion["checkout_id"] == "token:123123123"


def test_presentment_currency_and_zero_decimal_amounts():
    [event] = parse(
        checkout(
            currency="EUR",
            presentment_currency="JPY",
            total_price="5000",
            total_discounts="500",
            line_items=[{"title": "Tea", "quantity": 2, "price": "2750", "sku": None}],
        )
    )
    assert event["cart"]["currency"] == "JPY"
    assert event["cart"]["total"] == 5000 and event["cart"]["discount"] == 500
    assert event["cart"]["items"][0]["unit_price"] == 2750
    assert event["cart"]["items"][0]["quantity"] == 2


def test_line_item_images_are_kept_when_they_are_urls():
    [event] = parse(
        checkout(
            line_items=[
                {
                    "title": "A",
                    "quantity": 1,
                    "price": "1.00",
                    "image_url": "https://cdn.example/a.jpg",
                },
                {
                    "title": "B",
                    "quantity": 1,
                    "price": "1.00",
                    "image": {"src": "https://cdn.example/b.jpg"},
                },
                {"title": "C", "quantity": 1, "price": "1.00", "image": "not a url"},
            ]
        )
    )
    assert [i["image"] for i in event["cart"]["items"]] == [
        "https://cdn.example/a.jpg",
        "https://cdn.example/b.jpg",
        None,
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"buyer_accepts_marketing": True}, "opt_in"),
        ({"buyer_accepts_marketing": False}, "unknown"),
        ({"customer": {"email_marketing_consent": {"state": "subscribed"}}}, "opt_in"),
        ({"customer": {"email_marketing_consent": {"state": "not_subscribed"}}}, "unknown"),
        ({"customer": {"email_marketing_consent": {"state": "unsubscribed"}}}, "opt_out"),
        (
            {
                "buyer_accepts_marketing": True,
                "customer": {"email_marketing_consent": {"state": "unsubscribed"}},
            },
            "opt_out",
        ),
    ],
)
def test_email_consent(fields, expected):
    [event] = parse(checkout(**{"buyer_accepts_marketing": False, **fields}))
    assert event["consent"]["email"] == expected


def test_sms_consent_covers_whatsapp_and_sms_and_prefers_the_sms_marketing_phone():
    [event] = parse(
        checkout(buyer_accepts_sms_marketing=True, sms_marketing_phone="+4917612345678")
    )
    assert event["consent"] == {"email": "opt_in", "whatsapp": "opt_in", "sms": "opt_in"}
    assert event["customer"]["phone"] == "+4917612345678"
    [refused] = parse(checkout(customer={"sms_marketing_consent": {"state": "unsubscribed"}}))
    assert refused["consent"]["whatsapp"] == refused["consent"]["sms"] == "opt_out"


def test_stage_is_cart_until_an_email_or_phone_is_known():
    [anonymous] = parse(checkout(email=None, phone=None, customer=None))
    assert anonymous["stage"] == "cart"
    assert anonymous["customer"]["email"] is None
    [phone_only] = parse(checkout(email=None, customer=None))
    assert phone_only["stage"] == "contact"


def test_orders_convert_the_checkout_they_came_from():
    created = datetime(2026, 1, 2, 10, 20, tzinfo=UTC)
    for topic in ("orders/create", "orders/paid"):
        [event] = parse(order(created_at=created), topic)
        assert event["kind"] == "checkout.converted"
        assert event["checkout_id"] == "981820079255243537"
        assert event["occurred_at"] == created
        assert event["cart"]["total"] == 4999 and event["cart"]["currency"] == "EUR"
        assert event["customer"]["email"] == "jane@example.com"


def test_order_amounts_are_read_in_the_buyers_currency():
    [event] = parse(
        order(
            currency="EUR",
            presentment_currency="USD",
            total_price="46.00",
            total_price_set={
                "shop_money": {"amount": "46.00", "currency_code": "EUR"},
                "presentment_money": {"amount": "49.99", "currency_code": "USD"},
            },
        ),
        "orders/paid",
    )
    assert event["cart"]["total"] == 4999 and event["cart"]["currency"] == "USD"
    # the line's shop-currency price is not passed off as dollars
    assert event["cart"]["items"][0]["unit_price"] is None


def test_order_without_a_checkout_still_converts_by_identity():
    [event] = parse(order(checkout_id=None, checkout_token=None), "orders/create")
    assert event["checkout_id"] == "order:450789469"
    assert event["customer"]["email"] == "jane@example.com"


def test_checkout_delete_stops_by_checkout_id():
    fired = datetime(2026, 1, 2, 10, 30, tzinfo=UTC)
    body = encode(deleted())
    source = ShopifySource()
    headers = shopify_headers(body, "checkouts/delete")
    headers["X-Shopify-Triggered-At"] = "2026-01-02T10:30:00.000Z"
    request = InboundRequest(
        "acme", "shopify", "POST", body, Headers(headers), {}, "application/json", fired
    )
    source.verify(request, CONFIG)
    [event] = source.parse(request, CONFIG)
    assert event["kind"] == "checkout.deleted"
    assert event["checkout_id"] == "981820079255243537"
    assert event["occurred_at"] == fired


def test_completed_checkout_counts_as_a_conversion():
    completed = datetime(2026, 1, 2, 10, 25, tzinfo=UTC)
    [event] = parse(checkout(completed_at=shopify_time(completed)))
    assert event["kind"] == "checkout.converted"
    assert event["occurred_at"] == completed


# ------------------------------------------------------------------------------ end to end


def start_ready_worker(harness) -> None:
    """A worker that already listens, so a 2 s window is not eaten by its start-up."""
    harness.start_worker()
    harness.wait_for(lambda: "Listening on" in harness.worker_logs(), message="worker listening")


def start_of_next_second() -> datetime:
    """Shopify's times have whole seconds: posting at the start of one makes the window close
    a full ``abandon_after`` after the post instead of up to 1 s earlier."""
    time.sleep(1 - datetime.now(UTC).microsecond / 1e6)
    return datetime.now(UTC).replace(microsecond=0)


def wait_processed(harness, count: int) -> list:
    return harness.wait_for(
        lambda: (
            len(rows := harness.rows("events")) >= count
            and all(r.status == "processed" for r in rows)
            and rows
        ),
        message=f"{count} processed events",
    )


def test_checkout_left_alone_is_inferred_abandoned_and_mailed(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="2s")})
    harness.start_worker()
    updated_at = datetime.now(UTC).replace(microsecond=0)
    body = encode(checkout(updated_at=updated_at))
    assert harness.post("acme", "shopify", body, shopify_headers(body)).status_code == 202
    [mail] = smtp_server.wait_for_messages(1)
    assert mail["To"] == "jane@example.com"
    text = mail.get_body(("plain",)).get_content()
    assert "49,99\xa0€" in text  # customer_locale de-DE
    link = text.split("http://hub.test", 1)[1].split()[0]
    redirect = harness.client.get(link)
    assert redirect.headers["Location"] == (
        "https://acme.example/548380009/checkouts/123123123/recover?key=abc"
    )
    [journey] = harness.rows("journeys")
    assert journey.checkout_id == str(CHECKOUT_ID) and journey.status == "open"
    [update, abandoned] = harness.rows("events")
    assert update.kind == "checkout.updated" and abandoned.kind == "checkout.abandoned"
    # the window counts from Shopify's updated_at, the step from the inferred abandonment
    assert abandoned.event_key == f"inferred:{CHECKOUT_ID}:{updated_at.isoformat()}"
    assert abandoned.occurred_at == updated_at + timedelta(seconds=2)
    assert abandoned.payload["stage"] == "contact"
    [step] = harness.rows("steps")
    assert step.due_at >= updated_at + timedelta(seconds=3)  # later only if the worker lagged


def test_duplicate_delivery_ten_times_makes_one_journey_and_one_mail(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="2s")})
    body = encode(checkout())
    headers = shopify_headers(body)
    answers = [harness.post("acme", "shopify", body, headers) for _ in range(10)]
    assert [a.status_code for a in answers] == [202] * 10
    assert [a.get_json()["duplicates"] for a in answers] == [0] + [1] * 9
    harness.start_worker()
    smtp_server.wait_for_messages(1)
    harness.wait_for(lambda: all(s.status == "sent" for s in harness.rows("steps")))
    time.sleep(1.5)  # room for a wrongly duplicated job to send again
    assert len(smtp_server.messages) == 1
    assert len(harness.rows("journeys")) == 1
    assert [r.kind for r in harness.rows("events")] == ["checkout.updated", "checkout.abandoned"]


def test_a_second_update_restarts_the_window(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="2s")})
    start_ready_worker(harness)
    first_at = start_of_next_second()
    first = encode(checkout(updated_at=first_at))
    harness.post("acme", "shopify", first, shopify_headers(first, "checkouts/create"))
    wait_processed(harness, 1)
    time.sleep(0.5)
    second_at = first_at + timedelta(seconds=1)  # the buyer typed their address
    second = encode(checkout(updated_at=second_at, total_price="59.99"))
    harness.post("acme", "shopify", second, shopify_headers(second))
    [mail] = smtp_server.wait_for_messages(1)
    assert "59,99" in mail.get_body(("plain",)).get_content()
    [journey] = harness.rows("journeys")
    abandoned = [r for r in harness.rows("events") if r.kind == "checkout.abandoned"]
    assert len(abandoned) == 1
    assert abandoned[0].occurred_at == second_at + timedelta(seconds=2)
    time.sleep(1.5)
    assert len(smtp_server.messages) == 1


def test_an_update_in_the_same_second_wins_over_the_create(hub_factory, smtp_server):
    """Shopify's ``updated_at`` has whole seconds: the buyer typing an e-mail right after the
    checkout was created gives two callbacks with one timestamp; the later arrival wins."""
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="2s")})
    start_ready_worker(harness)
    same_second = start_of_next_second()
    created = encode(checkout(updated_at=same_second, email=None, customer=None, phone=None))
    harness.post("acme", "shopify", created, shopify_headers(created, "checkouts/create"))
    wait_processed(harness, 1)
    typed = encode(checkout(updated_at=same_second, email="late@example.com", phone=None))
    harness.post("acme", "shopify", typed, shopify_headers(typed))
    [mail] = smtp_server.wait_for_messages(1)
    assert mail["To"] == "late@example.com"
    [journey] = harness.rows("journeys")
    assert journey.email == "late@example.com"


def test_an_older_update_arriving_late_is_still_ignored(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="2s")})
    start_ready_worker(harness)
    newer_at = start_of_next_second()
    newer = encode(checkout(updated_at=newer_at, email="new@example.com"))
    harness.post("acme", "shopify", newer, shopify_headers(newer))
    wait_processed(harness, 1)
    older = encode(checkout(updated_at=newer_at - timedelta(seconds=1), email="old@example.com"))
    harness.post("acme", "shopify", older, shopify_headers(older))
    [mail] = smtp_server.wait_for_messages(1)
    assert mail["To"] == "new@example.com"


@pytest.mark.parametrize(
    ("topic", "payload", "status", "kind"),
    [
        pytest.param("orders/create", order, "converted", "checkout.converted", id="order"),
        pytest.param("checkouts/delete", deleted, "deleted", "checkout.deleted", id="delete"),
    ],
)
def test_order_or_delete_before_the_window_closes_sends_nothing(
    hub_factory, smtp_server, topic, payload, status, kind
):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="2s")})
    start_ready_worker(harness)
    body = encode(checkout(updated_at=start_of_next_second()))
    harness.post("acme", "shopify", body, shopify_headers(body))
    stop = encode(payload())
    assert harness.post("acme", "shopify", stop, shopify_headers(stop, topic)).status_code == 202
    wait_processed(harness, 2)
    [journey] = harness.rows("journeys")  # linked by the checkout id: no second journey
    assert journey.status == status
    time.sleep(3.5)  # past the window and the step
    assert smtp_server.messages == []
    assert [r.kind for r in harness.rows("events")] == ["checkout.updated", kind]
    assert harness.rows("steps") == []


def test_order_from_another_checkout_of_the_same_buyer_stops_the_waiting_one(
    hub_factory, smtp_server
):
    """The buyer left checkout A on the phone and bought through checkout B on the laptop:
    B's order names only B, but A's window must not end in a mail to someone who bought."""
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="2s")})
    start_ready_worker(harness)
    body = encode(checkout(updated_at=start_of_next_second()))
    harness.post("acme", "shopify", body, shopify_headers(body))
    paid = encode(order(checkout_id=CHECKOUT_ID + 1, checkout_token="other-device"))
    harness.post("acme", "shopify", paid, shopify_headers(paid, "orders/create"))
    wait_processed(harness, 2)
    time.sleep(3.5)  # past A's window and the step
    [waiting] = harness.rows("journeys", checkout_id=str(CHECKOUT_ID))
    assert waiting.status == "converted"
    assert harness.rows("steps", journey_id=waiting.id) == []
    assert smtp_server.messages == []


def test_order_after_the_abandonment_but_before_the_step_sends_nothing(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="1s", after="6s")})
    start_ready_worker(harness)  # its start-up must not eat the step's 6 s
    body = encode(checkout())
    harness.post("acme", "shopify", body, shopify_headers(body))
    harness.wait_for(
        lambda: harness.rows("steps") and harness.rows("journeys")[0].status == "open",
        message="inferred abandonment with a scheduled step",
    )
    [step] = harness.rows("steps")
    paid = encode(order())
    harness.post("acme", "shopify", paid, shopify_headers(paid, "orders/paid"))
    harness.wait_for(lambda: harness.rows("steps")[0].status == "cancelled", message="cancel")
    assert harness.rows("journeys")[0].status == "converted"
    time.sleep(max(0.0, (step.due_at - datetime.now(UTC)).total_seconds()) + 1.5)
    assert smtp_server.messages == []
    assert harness.rows("deliveries") == []


def test_late_update_after_the_order_changes_nothing(hub_factory, smtp_server):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after="1s")})
    harness.start_worker()
    paid = encode(order())
    harness.post("acme", "shopify", paid, shopify_headers(paid, "orders/create"))
    wait_processed(harness, 1)
    # Shopify retries carry the original payload, so an update may arrive after the order
    late = encode(checkout(updated_at=datetime.now(UTC) + timedelta(seconds=1)))
    harness.post("acme", "shopify", late, shopify_headers(late))
    [_, update] = wait_processed(harness, 2)
    assert update.note == "ignored: checkout already converted"
    time.sleep(3)  # past the window and the step
    assert smtp_server.messages == []
    [journey] = harness.rows("journeys")
    assert journey.status == "converted"


def test_demo_sample_verifies_and_is_abandoned_at_once_with_the_default_window(
    hub_factory, smtp_server
):
    harness = hub_factory({"acme": shopify_tenant(smtp_server.url, abandon_after=None)})
    config = harness.hub.tenants["acme"].sources["shopify"]
    sample = ShopifySource().demo_request(config, datetime.now(UTC))
    answer = harness.post("acme", "shopify", sample.body, dict(sample.headers))
    assert answer.status_code == 202
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    assert mail["To"] == "jane.demo@example.com"
