"""Digistore24 IPN source: sha_sign exactly as Digistore24 computes it, the plain-text ``OK``
answer, contact data → abandoned, payment → converted, and one run end to end to a real SMTP
server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from samples import tenant_toml

from plugins.digistore24.ipn import read_form, sign, signed_body, signing_string
from plugins.digistore24.source import Digistore24Source, demo_fields

PASSPHRASE = "acme-ipn-passphrase"
OTHER_PASSPHRASE = "globex-ipn-passphrase"
FORM = "application/x-www-form-urlencoded"


def tenant(
    smtp_url: str = "smtp://127.0.0.1:1",
    passphrase: str = PASSPHRASE,
    after: str = "1h",
    name: str = "Acme Guides",
) -> str:
    return tenant_toml(
        smtp_url=smtp_url,
        after=after,
        name=name,
        locale="de",
        sources=f'[sources.digistore24]\nipn_passphrase = "{passphrase}"',
    )


def contact(**overrides: str) -> dict[str, str]:
    """The order-form contact-data IPN of Jane, who entered e-mail, name and country only."""
    fields = demo_fields(email="Jane@Example.com", address_last_name="Doe", language="en")
    fields.update(overrides)
    return fields


def payment(**overrides: str) -> dict[str, str]:
    fields = {
        "event": "on_payment",
        "event_label": "payment",
        "api_mode": "live",
        "order_id": "A3NXHEHF",
        "transaction_id": "123456789",
        "product_id": "122343",
        "product_name": "Guide to Happiness",
        "orderform_id": "4711",
        "currency": "EUR",
        "amount_brutto": "49.00",
        "email": "jane@example.com",
        "address_first_name": "Jane",
        "address_last_name": "Doe",
        "address_phone_no": "(201) 555-0123",  # national format: country is US
        "address_country": "US",
        "language": "en",
    }
    fields.update(overrides)
    return fields


def post(harness, fields: dict[str, str], passphrase: str = PASSPHRASE, slug: str = "acme"):  # noqa: ANN001, ANN201
    return harness.post(slug, "digistore24", signed_body(fields, passphrase), content_type=FORM)


def assert_ok(answer) -> None:  # noqa: ANN001
    assert answer.status_code == 200
    assert answer.get_data() == b"OK"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"


# ---------------------------------------------------------------------------- the signature


def test_sha_sign_matches_digistore24s_known_answer_vector():
    fields = {
        "event": "on_payment",
        "order_id": "A3NXHEHF",
        "email": "jane@example.com",
        "address_phone_no": "",
        "product_id": "122343",
        "amount_brutto": "49.00",
        "currency": "EUR",
    }
    assert signing_string(fields, "my-passphrase") == (
        "amount_brutto=49.00my-passphrasecurrency=EURmy-passphraseemail=jane@example.com"
        "my-passphraseevent=on_paymentmy-passphraseorder_id=A3NXHEHFmy-passphrase"
        "product_id=122343my-passphrase"
    )
    assert sign(fields, "my-passphrase") == (
        "61A16EC641735A4B4CF9EF7525DDB0D0B2FBB33A33E8E2DC4651A22E324A03AD"
        "750D2BFF983BB01B9E471ECB11C2BB4C6BDBBA7E5287D7BF6B344F7256B47AB1"
    )


def test_zero_is_signed_but_empty_values_and_the_signature_fields_are_not():
    fields = {"b": "0", "a": "", "sha_sign": "X", "SHASIGN": "Y", "C": "x y&z"}
    # upper-case keys sort first, like PHP's SORT_STRING
    assert signing_string(fields, "p") == "C=x y&zpb=0p"


def test_non_utf8_body_is_rejected_as_unverifiable(hub_factory):
    """Digistore24 posts UTF-8 only; hub.testing.check_source_contract cannot be used here as
    its "unsigned" case strips headers, and an IPN carries its signature in the body."""
    harness = hub_factory({"acme": tenant()})
    for body in (b"\xff\xfe" + signed_body(contact(), PASSPHRASE), b"email=%FF&sha_sign=AB"):
        answer = harness.post("acme", "digistore24", body, content_type=FORM)
        assert answer.status_code == 401
        assert answer.get_json()["message"] == "the body is not UTF-8"


# ---------------------------------------------------------------------------- the ingress


def test_contact_data_ipn_becomes_an_abandoned_checkout_with_only_the_filled_fields(hub_factory):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, contact())
    assert_ok(answer)
    [row] = harness.rows("events")
    assert row.kind == "checkout.abandoned"
    assert row.checkout_id == "jane@example.com:122343"
    assert row.event_key.startswith("of_filled_out:")
    event = row.payload
    assert event["stage"] == "contact"
    assert event["consent"] == {"email": "opt_in", "whatsapp": "unknown", "sms": "unknown"}
    assert event["customer"] == {
        "email": "Jane@Example.com",
        "phone": None,  # address_phone_no came empty: the buyer did not fill it
        "first_name": "Jane",
        "last_name": "Doe",
        "locale": "en",
        "country": "US",
        "external_id": None,
    }
    assert event["cart"] == {
        "total": 4900,
        "currency": "EUR",
        "discount": 0,
        "items": [
            {
                "name": "Guide to Happiness",
                "quantity": 1,
                "unit_price": 4900,
                "sku": "122343",
                "url": "https://www.digistore24.com/product/122343",
                "image": None,
            }
        ],
    }
    assert event["recovery_url"] == "https://www.digistore24.com/product/122343"
    assert row.email == "jane@example.com"


def test_contact_data_with_only_an_email_is_enough(hub_factory):
    harness = hub_factory({"acme": tenant()})
    fields = {"event": "of_filled_out", "email": "sam@example.org", "product_id": "9"}
    assert_ok(post(harness, fields))
    [row] = harness.rows("events")
    assert row.checkout_id == "sam@example.org:9"
    assert row.payload["cart"] is None
    assert row.payload["customer"]["first_name"] is None
    assert row.payload["consent"]["email"] == "unknown"


@pytest.mark.parametrize(
    ("choice", "consent"),
    [
        ("single_optin", "opt_in"),
        ("double_optin", "opt_in"),
        ("optout", "opt_out"),
        ("none", "unknown"),
        ("", "unknown"),
    ],
)
def test_newsletter_choice_is_email_consent(hub_factory, choice, consent):
    harness = hub_factory({"acme": tenant()})
    assert_ok(post(harness, contact(newsletter_choice=choice)))
    [row] = harness.rows("events")
    assert row.payload["consent"]["email"] == consent
    assert row.payload["consent"]["whatsapp"] == "unknown"  # names no channel: e-mail only


def test_tampered_ipn_is_rejected_and_nothing_is_stored(hub_factory):
    harness = hub_factory({"acme": tenant()})
    body = signed_body(contact(), PASSPHRASE).replace(b"amount_brutto=49.00", b"amount_brutto=4.00")
    answer = harness.post("acme", "digistore24", body, content_type=FORM)
    assert answer.status_code == 401
    assert answer.get_json()["code"] == "unverified"
    assert answer.get_data() != b"OK"  # anything but OK makes Digistore24 retry
    assert harness.rows("events") == []


def test_ipn_signed_with_another_passphrase_is_rejected(hub_factory):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, contact(), passphrase="not-the-passphrase")
    assert answer.status_code == 401
    assert harness.rows("events") == []


@pytest.mark.parametrize("sha_sign", [None, ""])
def test_ipn_without_sha_sign_is_rejected(hub_factory, sha_sign):
    harness = hub_factory({"acme": tenant()})
    fields = contact()
    if sha_sign is not None:
        fields["sha_sign"] = sha_sign
    answer = harness.post("acme", "digistore24", urlencode(fields), content_type=FORM)
    assert answer.status_code == 401
    assert answer.get_json()["message"] == "missing sha_sign"
    assert harness.rows("events") == []


def test_the_upper_case_shasign_field_is_accepted(hub_factory):
    harness = hub_factory({"acme": tenant()})
    fields = contact()
    body = urlencode({**fields, "SHASIGN": sign(fields, PASSPHRASE)})
    assert_ok(harness.post("acme", "digistore24", body, content_type=FORM))
    assert len(harness.rows("events")) == 1


def test_a_repeated_form_field_is_rejected(hub_factory):
    harness = hub_factory({"acme": tenant()})
    body = signed_body(contact(), PASSPHRASE) + b"&email=mallory%40example.com"
    answer = harness.post("acme", "digistore24", body, content_type=FORM)
    assert answer.status_code == 401
    assert "more than once" in answer.get_json()["message"]


def test_form_with_too_many_fields_is_rejected_before_hashing():
    body = "&".join(f"f{i}=1" for i in range(1001)).encode()
    with pytest.raises(ValueError, match="more than 1000 form fields"):
        read_form(body)


def test_signed_ipn_without_email_is_400_naming_email(hub_factory):
    harness = hub_factory({"acme": tenant()})
    fields = contact()
    del fields["email"]
    answer = post(harness, fields)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "email"
    assert harness.rows("events") == []


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"amount_brutto": "49,00"}, "amount_brutto"),
        ({"amount_brutto": "49.001"}, "amount_brutto"),
        ({"currency": ""}, "currency"),
        ({"quantity": "two"}, "quantity"),
    ],
)
def test_unusable_signed_fields_are_400_naming_the_field(hub_factory, override, field):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, contact(**override))
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field


def test_connection_test_is_answered_ok_and_stores_nothing(hub_factory):
    harness = hub_factory({"acme": tenant()})
    assert_ok(post(harness, {"event": "connection_test", "api_mode": "live"}))
    assert harness.rows("events") == []


@pytest.mark.parametrize("event", ["on_payment_missed", "on_affiliation", "eticket", "brand_new"])
def test_other_events_are_answered_ok_and_ignored(hub_factory, event):
    harness = hub_factory({"acme": tenant()})
    assert_ok(post(harness, payment(event=event)))
    assert harness.rows("events") == []


def test_contact_event_name_comes_from_the_tenant_config(hub_factory):
    text = tenant().replace(
        f'ipn_passphrase = "{PASSPHRASE}"',
        f'ipn_passphrase = "{PASSPHRASE}"\ncontact_events = ["orderform_contact"]',
    )
    harness = hub_factory({"acme": text})
    assert_ok(post(harness, contact(event="of_filled_out")))
    assert harness.rows("events") == []
    assert_ok(post(harness, contact(event="orderform_contact")))
    assert [r.kind for r in harness.rows("events")] == ["checkout.abandoned"]


def test_the_same_ipn_ten_times_is_one_event_and_one_journey(hub_factory):
    harness = hub_factory({"acme": tenant()})
    body = signed_body(contact(), PASSPHRASE)
    for _ in range(10):
        assert_ok(harness.post("acme", "digistore24", body, content_type=FORM))
    assert len(harness.rows("events")) == 1
    harness.run_burst()
    assert [j.status for j in harness.rows("journeys")] == ["open"]
    assert len(harness.rows("steps")) == 1


def test_passphrase_of_one_tenant_is_refused_on_another_tenants_url(hub_factory):
    harness = hub_factory(
        {"acme": tenant(), "globex": tenant(passphrase=OTHER_PASSPHRASE, name="Globex")}
    )
    answer = post(harness, contact(), passphrase=PASSPHRASE, slug="globex")
    assert answer.status_code == 401
    assert_ok(post(harness, contact(), passphrase=OTHER_PASSPHRASE, slug="globex"))
    assert [r.tenant for r in harness.rows("events")] == ["globex"]


def test_payment_of_the_same_buyer_and_product_converts_the_journey(hub_factory):
    harness = hub_factory({"acme": tenant()})
    assert_ok(post(harness, contact()))
    harness.run_burst()
    assert_ok(post(harness, payment()))
    harness.run_burst()
    [journey] = harness.rows("journeys")
    assert journey.checkout_id == "jane@example.com:122343"
    assert journey.status == "converted"
    assert journey.recovered_amount == 4900 and journey.recovered_currency == "EUR"
    assert [s.status for s in harness.rows("steps")] == ["cancelled"]
    converted = harness.rows("events", kind="checkout.converted")[0]
    assert converted.event_key == "on_payment:123456789"
    assert converted.payload["customer"]["phone"] == "+12015550123"


def test_a_refund_after_the_recovered_payment_is_subtracted_and_shown(hub_factory):
    harness = hub_factory({"acme": tenant()})
    assert_ok(post(harness, contact()))
    harness.run_burst()
    assert_ok(post(harness, payment()))
    assert_ok(post(harness, payment(event="on_refund", transaction_id="987", amount_brutto="9.00")))
    harness.run_burst()
    [journey] = harness.rows("journeys")
    assert journey.recovered and journey.credit == "none"  # paid before the first message
    assert (journey.recovered_amount, journey.refunded_amount) == (4900, 900)
    [refund] = harness.rows("events", kind="checkout.refunded")
    assert refund.note == f"refund; journey {journey.id}: refunded 900 of 4900"


def test_payment_arriving_before_the_contact_data_sends_nothing(hub_factory):
    harness = hub_factory({"acme": tenant(after="1s")})
    assert_ok(post(harness, payment()))
    assert_ok(post(harness, contact()))
    harness.run_burst()
    assert all(e.status == "processed" for e in harness.rows("events"))
    [journey] = harness.rows("journeys")
    assert journey.status == "converted"
    assert harness.rows("steps") == []
    assert harness.rows("deliveries") == []


def test_event_key_without_transaction_id_uses_order_and_product(hub_factory):
    harness = hub_factory({"acme": tenant()})
    assert_ok(post(harness, payment(transaction_id="")))
    assert harness.rows("events")[0].event_key == "on_payment:A3NXHEHF:122343"


@pytest.mark.parametrize("event", ["on_refund", "on_chargeback"])
def test_refunds_and_chargebacks_are_recorded_not_acted_on(hub_factory, event):
    harness = hub_factory({"acme": tenant()})
    assert_ok(post(harness, payment(event=event, transaction_id="987")))
    harness.run_burst()
    [row] = harness.rows("events")
    assert (row.kind, row.event_key, row.status) == (
        "checkout.refunded",
        f"{event}:987",
        "processed",
    )
    assert harness.rows("journeys") == []


def test_recovery_url_template_is_configurable_and_can_be_switched_off(hub_factory):
    def with_url(value: str) -> str:
        return tenant().replace(
            f'ipn_passphrase = "{PASSPHRASE}"',
            f'ipn_passphrase = "{PASSPHRASE}"\nrecovery_url = "{value}"',
        )

    harness = hub_factory(
        {
            "acme": with_url("https://shop.acme.example/buy/{orderform_id}?p={product_id}"),
            "globex": with_url(""),
            "broken": with_url("https://x.example/{order}"),
        }
    )
    assert_ok(post(harness, contact()))
    assert_ok(post(harness, contact(), slug="globex"))
    acme, globex = (r.payload for r in harness.rows("events"))
    assert acme["recovery_url"] == "https://shop.acme.example/buy/4711?p=122343"
    assert globex["recovery_url"] is None and globex["cart"]["items"][0]["url"] is None
    issues = [str(i) for i in harness.hub.config_issues]
    assert any("broken.toml: sources.digistore24.recovery_url" in i for i in issues), issues


def test_tenant_without_passphrase_is_a_config_error(hub_factory):
    harness = hub_factory({"acme": tenant(passphrase="")})
    issues = [str(i) for i in harness.hub.config_issues]
    assert any("sources.digistore24.ipn_passphrase" in i for i in issues), issues
    assert post(harness, contact()).status_code == 404  # not served at all


def test_demo_request_is_a_signed_contact_data_sample(hub_factory):
    harness = hub_factory({"acme": tenant()})
    config = harness.hub.tenants["acme"].sources["digistore24"]
    demo = Digistore24Source().demo_request(config, datetime.now(UTC))
    assert_ok(harness.post("acme", "digistore24", demo.body, demo.headers))
    [row] = harness.rows("events")
    assert row.kind == "checkout.abandoned" and row.payload["stage"] == "contact"


# ---------------------------------------------------------------------------- end to end


def test_contact_data_ipn_sends_a_recovery_mail_through_a_real_worker(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant(smtp_url=smtp_server.url, after="1s")})
    posted = time.monotonic()
    assert_ok(post(harness, contact()))
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    assert time.monotonic() - posted >= 0.5  # the step waited for its `after`
    assert mail["To"] == "Jane@Example.com"
    assert mail["From"] == "Acme <shop@acme.example>"
    text = mail.get_body(("plain",)).get_content()
    assert "Hi Jane" in text  # language "en" from the IPN beats the tenant's "de"
    assert "€49.00" in text and "Guide to Happiness" in text
    link = text.split("http://hub.test", 1)[1].split()[0]
    redirect = harness.client.get(link)
    assert redirect.headers["Location"] == "https://www.digistore24.com/product/122343"
    harness.wait_for(lambda: harness.rows("deliveries")[0].status == "sent", message="sent")
