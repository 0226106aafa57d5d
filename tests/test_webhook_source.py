"""Generic webhook source: Standard Webhooks signatures (rotation, ±300 s, garbled headers), the
normalized event as the body (single or batch), its published JSON Schema, and one run end to
end to a real SMTP server."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from marshmallow import Schema, ValidationError, fields
from samples import tenant_toml

from hub import VerificationError
from hub.events import load_event
from plugins.webhook.schema import event_json_schema, object_schema, schema_text
from plugins.webhook.signature import sign, signed_headers, verify
from plugins.webhook.source import WebhookSource, demo_event

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
OTHER_SECRET = "whsec_bm90IHRoZSBzZWNyZXQgeW91IGFyZSBsb29raW5nIGZvcg=="
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "webhook-event.schema.json"


def tenant(
    smtp_url: str = "smtp://127.0.0.1:1",
    secret: str = SECRET,
    previous: tuple[str, ...] = (),
    after: str = "1h",
    name: str = "Acme Shoes",
) -> str:
    previous_line = f"previous_secrets = {json.dumps(list(previous))}" if previous else ""
    return tenant_toml(
        smtp_url=smtp_url,
        after=after,
        name=name,
        locale="de",
        sources=f'[sources.webhook]\nsecret = "{secret}"\n{previous_line}',
    )


def abandoned(checkout_id: str = "cart_8812", **overrides) -> dict:  # noqa: ANN003
    event = demo_event(datetime.now(UTC) - timedelta(seconds=5), checkout_id)
    event["customer"]["email"] = "jane@example.com"
    event.update(overrides)
    return event


def converted(checkout_id: str = "cart_8812") -> dict:
    return {
        "kind": "checkout.converted",
        "checkout_id": checkout_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "customer": {"email": "jane@example.com"},
        "cart": {"total": 4999, "currency": "EUR"},
    }


def post(  # noqa: ANN201
    harness,  # noqa: ANN001
    payload: dict | list | bytes,
    msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    secret: str = SECRET,
    slug: str = "acme",
    timestamp: int | None = None,
):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = signed_headers(secret, msg_id, body, timestamp)
    return harness.post(slug, "webhook", body, headers)


# ---------------------------------------------------------------------------- signatures


def test_standard_webhooks_known_answer_vector():
    body = b'{"test": 2432232314}'
    msg_id, stamp = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(SECRET, msg_id, stamp, body) == expected
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": expected}
    with time_machine.travel(datetime.fromtimestamp(stamp + 10, UTC), tick=False):
        assert verify(body, headers, [SECRET]) == msg_id
        with pytest.raises(VerificationError, match="no webhook-signature entry matches"):
            verify(body + b" ", headers, [SECRET])
    with pytest.raises(VerificationError, match="300 s"):  # the same request, replayed today
        verify(body, headers, [SECRET])


def test_valid_event_is_stored_under_the_webhook_id(hub_factory):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, abandoned())
    assert answer.status_code == 202
    assert answer.get_json() == {"stored": 1, "duplicates": 0, "ignored": False}
    [row] = harness.rows("events")
    assert (row.source, row.event_key, row.kind) == (
        "webhook",
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "checkout.abandoned",
    )
    assert row.checkout_id == "cart_8812"
    assert row.payload["cart"]["total"] == 4999
    assert row.payload["consent"]["email"] == "opt_in"
    assert row.payload["stage"] == "payment"


def test_tampered_body_is_rejected(hub_factory):
    harness = hub_factory({"acme": tenant()})
    body = json.dumps(abandoned()).encode()
    headers = signed_headers(SECRET, "msg_1", body)
    answer = harness.post("acme", "webhook", body.replace(b"4999", b"4998"), headers)
    assert answer.status_code == 401
    assert answer.get_json()["code"] == "unverified"
    assert harness.rows("events") == []


def test_wrong_secret_is_rejected(hub_factory):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, abandoned(), secret=OTHER_SECRET)
    assert answer.status_code == 401
    assert harness.rows("events") == []


def test_secret_of_one_tenant_is_refused_on_another_tenants_url(hub_factory):
    harness = hub_factory({"acme": tenant(), "globex": tenant(secret=OTHER_SECRET, name="Globex")})
    assert post(harness, abandoned(), secret=SECRET, slug="globex").status_code == 401
    assert post(harness, abandoned(), secret=OTHER_SECRET, slug="globex").status_code == 202
    assert [r.tenant for r in harness.rows("events")] == ["globex"]


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected_naming_it(hub_factory, header):
    harness = hub_factory({"acme": tenant()})
    body = json.dumps(abandoned()).encode()
    headers = signed_headers(SECRET, "msg_1", body)
    del headers[header]
    answer = harness.post("acme", "webhook", body, headers)
    assert answer.status_code == 401
    assert answer.get_json()["message"] == f"missing header {header}"


@pytest.mark.parametrize("offset", [-301, 301, -86400, 86400])
def test_stale_or_future_timestamp_is_rejected(hub_factory, offset):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, abandoned(), timestamp=int(time.time()) + offset)
    assert answer.status_code == 401
    assert "300 s" in answer.get_json()["message"]
    assert harness.rows("events") == []


@pytest.mark.parametrize("offset", [-290, 290])
def test_timestamp_within_five_minutes_either_way_is_accepted(hub_factory, offset):
    harness = hub_factory({"acme": tenant()})
    assert post(harness, abandoned(), timestamp=int(time.time()) + offset).status_code == 202


@pytest.mark.parametrize(
    "signature",
    ["garbage", "v1,a,b", "v1,", "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "v1,%%%"],
)
def test_garbled_signature_header_is_401_never_500(hub_factory, signature):
    harness = hub_factory({"acme": tenant()})
    body = json.dumps(abandoned()).encode()
    headers = {**signed_headers(SECRET, "msg_1", body), "webhook-signature": signature}
    assert harness.post("acme", "webhook", body, headers).status_code == 401


@pytest.mark.parametrize("stamp", ["1e9", "-5", "12.5", "now", "１２３"])
def test_timestamp_that_is_not_unix_seconds_is_rejected(hub_factory, stamp):
    harness = hub_factory({"acme": tenant()})
    body = json.dumps(abandoned()).encode()
    headers = {**signed_headers(SECRET, "msg_1", body), "webhook-timestamp": stamp}
    answer = harness.post("acme", "webhook", body, headers)
    assert answer.status_code == 401


def test_any_matching_entry_among_several_is_accepted(hub_factory):
    harness = hub_factory({"acme": tenant()})
    body = json.dumps(abandoned()).encode()
    headers = signed_headers(SECRET, "msg_1", body)
    stale = sign(OTHER_SECRET, "msg_1", int(headers["webhook-timestamp"]), body)
    headers["webhook-signature"] = f"garbage v1,a,b {stale} {headers['webhook-signature']}"
    assert harness.post("acme", "webhook", body, headers).status_code == 202


def test_non_utf8_body_is_rejected_as_unverifiable(hub_factory):
    """Standard Webhooks signs text: a body that is not UTF-8 cannot be verified (401)."""
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, b"\xff\xfe{}")
    assert answer.status_code == 401
    assert harness.rows("events") == []


def test_rotation_accepts_current_and_previous_secrets_only(hub_factory):
    harness = hub_factory({"acme": tenant(secret=NEW_SECRET, previous=(SECRET,))})
    assert post(harness, abandoned("a"), msg_id="msg_new", secret=NEW_SECRET).status_code == 202
    assert post(harness, abandoned("b"), msg_id="msg_old", secret=SECRET).status_code == 202
    assert post(harness, abandoned("c"), msg_id="msg_x", secret=OTHER_SECRET).status_code == 401
    assert [r.event_key for r in harness.rows("events")] == ["msg_new", "msg_old"]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with whsec_"),
        ("whsec_not base64!", "not base64"),
        ("whsec_c2hvcnQ=", "at least 16 bytes"),
    ],
)
def test_bad_secret_is_a_config_error_naming_the_key(hub_factory, secret, message):
    harness = hub_factory({"acme": tenant(secret=secret)})
    issues = [str(i) for i in harness.hub.config_issues]
    assert any("sources.webhook.secret" in i and message in i for i in issues), issues
    assert "acme" not in harness.hub.tenants


# ---------------------------------------------------------------------------- the body


@pytest.mark.parametrize("body", [b"{not json", b"", b'"text"', b"42", b"null"])
def test_signed_body_that_is_not_an_event_is_400_body(hub_factory, body):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, body)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "body"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cart": {"total": "49.99", "currency": "EUR"}}, "cart.total"),
        ({"cart": {"total": 4999, "currency": "eur"}}, "cart.currency"),
        ({"customer": {"phone": "0151 1234"}}, "customer.phone"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"kind": "checkout.lost"}, "kind"),
        ({"event_key": "mine"}, "event_key"),  # the webhook-id header is the key
        ({"tenant": "globex"}, "tenant"),  # the URL says whose event it is
    ],
)
def test_schema_violation_is_400_naming_the_field(hub_factory, change, field):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, abandoned(**change))
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field
    assert harness.rows("events") == []


def test_missing_required_field_is_named(hub_factory):
    harness = hub_factory({"acme": tenant()})
    event = abandoned()
    del event["checkout_id"]
    answer = post(harness, event)
    assert (answer.status_code, answer.get_json()["field"]) == (400, "checkout_id")


def test_overlong_webhook_id_is_400_naming_the_header(hub_factory):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, abandoned(), msg_id="m" * 241)
    assert (answer.status_code, answer.get_json()["field"]) == (400, "webhook-id")


def test_batch_stores_each_event_under_id_and_index(hub_factory):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, [abandoned("a"), abandoned("b")], msg_id="msg_batch")
    assert answer.get_json() == {"stored": 2, "duplicates": 0, "ignored": False}
    assert [r.event_key for r in harness.rows("events")] == ["msg_batch:0", "msg_batch:1"]
    again = post(harness, [abandoned("a"), abandoned("b")], msg_id="msg_batch")
    assert again.get_json() == {"stored": 0, "duplicates": 2, "ignored": False}


def test_batch_is_all_or_nothing_and_names_the_bad_event(hub_factory):
    harness = hub_factory({"acme": tenant()})
    bad = abandoned("b", cart={"total": 49.99, "currency": "EUR"})
    answer = post(harness, [abandoned("a"), bad])
    assert (answer.status_code, answer.get_json()["field"]) == (400, "[1].cart.total")
    assert harness.rows("events") == []


@pytest.mark.parametrize("size", [0, 101])
def test_batch_size_is_bounded(hub_factory, size):
    harness = hub_factory({"acme": tenant()})
    answer = post(harness, [abandoned(f"c{i}") for i in range(size)])
    assert (answer.status_code, answer.get_json()["field"]) == (400, "body")


def test_the_same_delivery_ten_times_is_one_event_and_one_journey(hub_factory):
    harness = hub_factory({"acme": tenant()})
    body = json.dumps(abandoned()).encode()
    headers = signed_headers(SECRET, "msg_dup", body)
    answers = [harness.post("acme", "webhook", body, headers) for _ in range(10)]
    assert [a.get_json()["duplicates"] for a in answers] == [0] + [1] * 9
    harness.run_burst()
    assert len(harness.rows("events")) == 1
    assert [j.status for j in harness.rows("journeys")] == ["open"]
    assert len(harness.rows("steps")) == 1


def test_conversion_arriving_before_the_abandonment_sends_nothing(hub_factory):
    harness = hub_factory({"acme": tenant(after="1s")})
    assert post(harness, converted(), msg_id="msg_paid").status_code == 202
    assert post(harness, abandoned(), msg_id="msg_left").status_code == 202
    harness.run_burst()
    assert all(e.status == "processed" for e in harness.rows("events"))
    [journey] = harness.rows("journeys")
    assert journey.status == "converted"
    assert harness.rows("steps") == []
    assert harness.rows("deliveries") == []


def test_demo_request_is_accepted(hub_factory):
    harness = hub_factory({"acme": tenant()})
    config = harness.hub.tenants["acme"].sources["webhook"]
    demo = WebhookSource().demo_request(config, datetime.now(UTC))
    assert harness.post("acme", "webhook", demo.body, demo.headers).status_code == 202
    assert harness.rows("events")[0].kind == "checkout.abandoned"


# ---------------------------------------------------------------------------- the schema


def test_committed_schema_file_is_the_generated_one():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "regenerate it: python -m plugins.webhook.schema docs/webhook-event.schema.json"
    )


def test_schema_is_served_by_the_plugin_blueprint(hub_factory):
    harness = hub_factory({"acme": tenant()})
    answer = harness.client.get("/plugins/webhook/schema.json")
    assert answer.status_code == 200
    assert answer.mimetype == "application/schema+json"
    assert answer.get_json() == event_json_schema()


def test_schema_matches_what_the_source_accepts():
    event = event_json_schema()["$defs"]["event"]
    assert event["required"] == ["kind", "occurred_at"]
    # checkout_id as well, except on a refund that names its purchase
    assert event["anyOf"][0] == {"required": ["checkout_id"]}
    assert event["anyOf"][1]["required"] == ["kind", "order_ref"]
    assert set(event["properties"]) == {
        "kind", "checkout_id", "occurred_at", "customer", "cart", "recovery_url",
        "recovery_expires_at", "consent", "stage", "recovered_from", "order_ref", "livemode",
    }  # fmt: skip
    cart = event["properties"]["cart"]
    assert cart["type"] == ["object", "null"] and cart["required"] == ["total", "currency"]
    assert cart["properties"]["total"]["type"] == "integer"
    assert event["properties"]["customer"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("event", "valid"),
    [
        ({"kind": "checkout.refunded", "order_ref": "1001"}, True),
        ({"kind": "checkout.refunded", "checkout_id": "cart_8812"}, True),
        ({"kind": "checkout.refunded"}, False),
        ({"kind": "checkout.converted", "order_ref": "1001"}, False),
    ],
)
def test_only_a_refund_may_name_its_purchase_instead_of_the_checkout(event, valid):
    """The JSON Schema and the hub's own validation say the same."""
    import jsonschema_rs  # schemathesis' validator, already installed

    event = {**event, "occurred_at": "2026-11-02T10:00:00Z"}
    assert jsonschema_rs.validator_for(event_json_schema()).is_valid(event) is valid
    try:
        loaded = load_event({**event, "event_key": "k", "tenant": "acme", "source": "webhook"})
    except ValidationError as exc:
        assert not valid and "checkout_id" in exc.messages
    else:
        assert valid
        assert loaded["checkout_id"] == event.get("checkout_id", "order:1001")


def test_schema_generation_refuses_a_field_type_it_cannot_describe():
    class WithDecimal(Schema):
        amount = fields.Decimal()

    with pytest.raises(TypeError, match="amount: no JSON Schema for Decimal"):
        object_schema(WithDecimal())


# ---------------------------------------------------------------------------- end to end


def test_signed_event_sends_a_recovery_mail_through_a_real_worker(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant(smtp_url=smtp_server.url, after="1s")})
    assert post(harness, abandoned()).status_code == 202
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    assert mail["To"] == "jane@example.com"
    text = mail.get_body(("plain",)).get_content()
    assert "Hi Jane" in text and "€49.99" in text and "Trail runner" in text
    link = text.split("http://hub.test", 1)[1].split()[0]
    assert harness.client.get(link).headers["Location"] == "https://shop.example/cart/recover/demo"
    harness.wait_for(lambda: harness.rows("deliveries")[0].status == "sent", message="sent")
