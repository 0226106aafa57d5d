"""Plugin routes that take input: WhatsApp's signed status callbacks and the browser's web push
subscriptions. Malformed signatures and bodies are 4xx with the hub's error shape, never a 5xx,
and a refused request records nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from input_helpers import all_sources_tenant, assert_refused, bounded, module_hub

APP_SECRET = "app_secret_value"
SHOP = "https://shop.example"
VAPID_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)
SINKS = f"""
[sinks.whatsapp]
phone_number_id = "1234567890"
access_token = "EAAG-test-token"
app_secret = "{APP_SECRET}"
verify_token = "verify-me"
[sinks.whatsapp.templates.reminder]
name = "cart_reminder"

[sinks.webpush]
vapid_private_key = '''{VAPID_PEM}'''
vapid_subject = "mailto:ops@acme.example"
allowed_origins = ["{SHOP}"]
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("plugins")
    with module_hub(folder, redis_url, {"acme": all_sources_tenant(extra=SINKS)}) as harness:
        assert not harness.hub.config_issues, harness.hub.config_issues
        yield harness


# ----------------------------------------------------------------------------------- WhatsApp


def meta_signature(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


STATUS = json.dumps(
    {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {"statuses": [{"id": "wamid.unknown", "status": "read"}]},
                    }
                ],
            }
        ],
    }
).encode()

# id → (body, signature header or None for missing, expected status)
WHATSAPP = {
    "missing signature": (STATUS, None, 401),
    "empty signature": (STATUS, "", 401),
    "sha256= only": (STATUS, "sha256=", 401),
    "sha1 scheme": (STATUS, "sha1=" + meta_signature(STATUS)[7:], 401),
    "no scheme": (STATUS, meta_signature(STATUS)[7:], 401),
    "upper-case hex": (STATUS, "sha256=" + meta_signature(STATUS)[7:].upper(), 401),
    "other secret": (STATUS, meta_signature(STATUS, "other"), 401),
    "non-ASCII": (STATUS, "sha256=\u00e9" + meta_signature(STATUS)[8:], 401),
    "huge": (STATUS, "sha256=" + "a" * 60_000, 401),
    "signed, not JSON": (b"{", meta_signature(b"{"), 400),
    "signed, invalid UTF-8": (b'{"a": "\xff"}', meta_signature(b'{"a": "\xff"}'), 400),
    "signed, 100 000 nested arrays": (
        b"[" * 100_000 + b"]" * 100_000,
        meta_signature(b"[" * 100_000 + b"]" * 100_000),
        400,
    ),
    "signed, entry not a list": (b'{"entry": "x"}', meta_signature(b'{"entry": "x"}'), 400),
    "signed, a bare array": (b"[]", meta_signature(b"[]"), 400),
}


@pytest.mark.parametrize("case", WHATSAPP)
def test_whatsapp_status_callbacks_refuse_malformed_input(hub, case):
    body, signature, status = WHATSAPP[case]
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    with bounded(5):
        answer = hub.client.post("/plugins/whatsapp/acme/status", data=body, headers=headers)
    assert_refused(answer, status)
    assert hub.rows("plugin_data") == []


def test_whatsapp_signed_junk_inside_a_valid_envelope_is_ignored_not_an_error(hub):
    """Meta batches statuses; odd items are skipped so the good ones of a batch still count."""
    body = json.dumps(
        {"entry": [1, "x", {"changes": "x"}, {"changes": [None, {"field": "messages"}]}]}
    ).encode()
    answer = hub.client.post(
        "/plugins/whatsapp/acme/status",
        data=body,
        headers={"X-Hub-Signature-256": meta_signature(body)},
    )
    assert answer.status_code == 200
    assert answer.get_json() == {"recorded": 0, "repeated": 0, "unmatched": 0}


def test_whatsapp_unknown_tenant_is_404(hub):
    answer = hub.client.post(
        "/plugins/whatsapp/globex/status",
        data=STATUS,
        headers={"X-Hub-Signature-256": meta_signature(STATUS)},
    )
    assert_refused(answer, 404)


# ----------------------------------------------------------------------------------- web push


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def subscription() -> dict:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": f"https://push.example/send/{b64url(os.urandom(8))}",
        "expirationTime": None,
        "keys": {"p256dh": b64url(point), "auth": b64url(os.urandom(16))},
    }


def registration(**changes: object) -> bytes:
    return json.dumps({"subscription": subscription(), "checkout_id": "cs_1", **changes}).encode()


def nested_nan() -> bytes:
    return registration().replace(b'"expirationTime": null', b'"expirationTime": NaN')


# id → (body, expected status, field or ... for any)
WEBPUSH = {
    "not JSON": (b"{", 400, ...),
    "invalid UTF-8": (b'{"checkout_id": "\xff"}', 400, ...),
    "UTF-16": (registration().decode().encode("utf-16-le"), 400, ...),
    "16 000 nested arrays": (b"[" * 8000 + b"]" * 8000, 400, ...),
    "16 000 unclosed objects": (b'{"a":' * 3000, 400, ...),
    "a bare array": (b"[]", 400, ...),
    "NaN in expirationTime": (nested_nan(), 400, ...),
    "subscription a string": (registration(subscription="x"), 400, "subscription"),
    "keys a list": (
        json.dumps({"subscription": {**subscription(), "keys": []}, "checkout_id": "c"}).encode(),
        400,
        "subscription.keys",
    ),
    "p256dh a number": (
        json.dumps(
            {
                "subscription": {**subscription(), "keys": {"p256dh": 4, "auth": "x"}},
                "checkout_id": "c",
            }
        ).encode(),
        400,
        "subscription.keys.p256dh",
    ),
    "checkout_id a list": (registration(checkout_id=["a"]), 400, "checkout_id"),
    "NUL in checkout_id": (registration(checkout_id="a\x00b"), 400, "checkout_id"),
    "lone surrogate in checkout_id": (
        registration(checkout_id="__S__").replace(b"__S__", b"\\ud800"),
        400,
        "checkout_id",
    ),
    "over 16 KB": (registration(checkout_id="c" * 20_000), 413, ...),
}


@pytest.mark.parametrize("case", WEBPUSH)
def test_webpush_subscriptions_refuse_malformed_json(hub, case):
    body, status, field = WEBPUSH[case]
    with bounded(5):
        answer = hub.client.post(
            "/plugins/webpush/acme/subscriptions",
            data=body,
            headers={"Content-Type": "application/json", "Origin": SHOP},
        )
    assert_refused(answer, status, field)
    assert [r for r in hub.rows("plugin_data") if r.plugin == "webpush"] == []


def test_webpush_valid_subscription_is_stored(hub):
    """The baseline, last: the same route stores a good subscription."""
    answer = hub.client.post(
        "/plugins/webpush/acme/subscriptions",
        data=registration(),
        headers={"Content-Type": "application/json", "Origin": SHOP},
    )
    assert answer.status_code == 201
    assert any(r.plugin == "webpush" for r in hub.rows("plugin_data"))
