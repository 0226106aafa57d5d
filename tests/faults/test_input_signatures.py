"""Malformed signatures, per source: more than 20 broken headers each (or broken ``sha_sign``
fields for Digistore24, which signs inside the form). Each must be a 401 (400 only where the
contract names a field), never a 5xx, with no event stored; the good request of each table
proves the same body is otherwise accepted.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from input_helpers import (
    DS24_PASSPHRASE,
    SHOP_DOMAIN,
    WEBHOOK_SECRET,
    all_sources_tenant,
    assert_refused,
    bounded,
    ds24_fields,
    module_hub,
    shopify_headers,
    stored,
    valid_body,
)
from samples import STRIPE_SECRET

from plugins.digistore24.ipn import sign as ds24_sign
from plugins.shopify.signature import sign as shopify_sign
from plugins.stripe.source import sign as stripe_sign
from plugins.webhook.signature import sign as webhook_sign

OTHER_WHSEC = "whsec_bm90IHRoZSBzZWNyZXQgeW91IGFyZSBsb29raW5nIGZvcg=="


@pytest.fixture(scope="module")
def hub(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("signatures")
    with module_hub(folder, redis_url, {"acme": all_sources_tenant()}) as harness:
        yield harness


def refused(hub, source: str, body: bytes, headers: dict, status: int = 401, field=...) -> None:
    with bounded(5), stored(hub, 0):
        answer = hub.post("acme", source, body, headers)
    assert_refused(answer, status, field)


# ----------------------------------------------------------------------------------- Stripe


def stripe_cases(body: bytes) -> dict[str, str | None]:
    now = int(time.time())
    good = stripe_sign(body, STRIPE_SECRET, now)  # "t=…,v1=…"
    sig = good.split("v1=")[1]
    return {
        "missing": None,
        "empty": "",
        "blank": "   ",
        "garbage": "garbage",
        "t= only": "t=",
        "t=abc,v1=": "t=abc,v1=",
        "no v1": f"t={now}",
        "no t": f"v1={sig}",
        "empty v1": f"t={now},v1=",
        "wrong scheme v0": f"t={now},v0={sig}",
        "scheme case": f"T={now},V1={sig}",
        "semicolons": f"t={now};v1={sig}",
        "upper-case hex": f"t={now},v1={sig.upper()}",
        "space inside the value": f"t={now},v1= {sig[:32]} {sig[32:]}",
        "other secret": stripe_sign(body, "whsec_other", now),
        "other body": stripe_sign(body + b" ", STRIPE_SECRET, now),
        "stale (301 s)": stripe_sign(body, STRIPE_SECRET, now - 301),
        "future (301 s)": stripe_sign(body, STRIPE_SECRET, now + 301),
        "far future": stripe_sign(body, STRIPE_SECRET, now + 10 * 365 * 86400),
        "negative t": f"t=-{now},v1={sig}",
        "5000-digit t": f"t={'9' * 5000},v1={sig}",
        "superscript digit t": f"t=\u00b2,v1={sig}",
        "non-ASCII v1": f"t={now},v1=\u00e9{sig[1:]}",
        "huge v1": f"t={now},v1={'a' * 60_000}",
        "1000 wrong v1": f"t={now}," + ",".join(f"v1={i:064x}" for i in range(1000)),
        "t twice, last wrong": f"t={now},t=1,v1={sig}",
    }


STRIPE_CASES = list(stripe_cases(b"{}"))


@pytest.mark.parametrize("case", STRIPE_CASES)
def test_stripe_malformed_signatures_are_401(hub, case):
    """Every way a Stripe-Signature can be broken is an authentication failure."""
    body = valid_body("stripe")
    value = stripe_cases(body)[case]
    headers = {"Content-Type": "application/json"}
    if value is not None:
        headers["Stripe-Signature"] = value
    refused(hub, "stripe", body, headers)


def test_stripe_good_signature_is_accepted_by_the_hub_and_by_stripes_library(hub):
    import stripe

    body = valid_body("stripe")
    header = stripe_sign(body, STRIPE_SECRET, int(time.time()))
    stripe.Webhook.construct_event(body, header, STRIPE_SECRET)  # the official oracle
    with stored(hub, 1):
        answer = hub.post("acme", "stripe", body, {"Stripe-Signature": header})
    assert answer.status_code == 202


# ----------------------------------------------------------------------------------- Shopify


def shopify_cases(body: bytes) -> dict[str, dict]:
    good = shopify_headers(body)
    sig = good["X-Shopify-Hmac-Sha256"]

    def variant(**changes: str | None) -> dict:
        headers = dict(good)
        for key, value in changes.items():
            name = key.replace("_", "-")
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        return headers

    hmac_header = "X_Shopify_Hmac_Sha256"
    return {
        "missing": variant(**{hmac_header: None}),
        "empty": variant(**{hmac_header: ""}),
        "garbage": variant(**{hmac_header: "garbage"}),
        "hex instead of base64": variant(**{hmac_header: bytes.hex(sig.encode())}),
        "lower-cased": variant(**{hmac_header: sig.lower()}),
        "padding removed": variant(**{hmac_header: sig.rstrip("=")}),
        "sha256= prefix": variant(**{hmac_header: f"sha256={sig}"}),
        "two signatures": variant(**{hmac_header: f"{sig},{sig}"}),
        "other secret": variant(**{hmac_header: shopify_sign(body, "other")}),
        "other body": variant(**{hmac_header: shopify_sign(body + b" ", "shpss_acme")}),
        "truncated": variant(**{hmac_header: sig[:20]}),
        "non-ASCII": variant(**{hmac_header: "\u00e9" + sig[1:]}),
        "huge": variant(**{hmac_header: "A" * 60_000}),
        "base64 of nothing": variant(**{hmac_header: "===="}),
        "no shop domain": variant(X_Shopify_Shop_Domain=None),
        "empty shop domain": variant(X_Shopify_Shop_Domain=""),
        "other shop": variant(X_Shopify_Shop_Domain="globex.myshopify.com"),
        "shop as a suffix": variant(X_Shopify_Shop_Domain=f"evil-{SHOP_DOMAIN}"),
        "non-ASCII shop": variant(X_Shopify_Shop_Domain="\u00e4cme.myshopify.com"),
        "huge shop": variant(X_Shopify_Shop_Domain="a" * 60_000),
        "empty new-style header, no old one": {
            **variant(**{hmac_header: None}),
            "shopify-hmac-sha256": "",
        },
        "new-style header wrong": {
            **variant(**{hmac_header: None}),
            "shopify-hmac-sha256": shopify_sign(body, "other"),
        },
    }


SHOPIFY_CASES = list(shopify_cases(b"{}"))


@pytest.mark.parametrize("case", SHOPIFY_CASES)
def test_shopify_malformed_signatures_are_401(hub, case):
    body = valid_body("shopify")
    refused(hub, "shopify", body, shopify_cases(body)[case])


def test_shopify_empty_body_is_401_even_when_signed(hub):
    refused(hub, "shopify", b"", shopify_headers(b""))


# ----------------------------------------------------------------------------------- webhook


def webhook_cases(body: bytes) -> dict[str, dict]:
    now = int(time.time())
    msg = "msg_fault_1"
    sig = webhook_sign(WEBHOOK_SECRET, msg, now, body)
    good = {"webhook-id": msg, "webhook-timestamp": str(now), "webhook-signature": sig}

    def variant(**changes: str | None) -> dict:
        headers = dict(good)
        for key, value in changes.items():
            name = key.replace("_", "-")
            if value is None:
                headers.pop(name)
            else:
                headers[name] = value
        return headers

    return {
        "no id": variant(webhook_id=None),
        "no timestamp": variant(webhook_timestamp=None),
        "no signature": variant(webhook_signature=None),
        "empty signature": variant(webhook_signature=""),
        "garbage": variant(webhook_signature="garbage"),
        "v1,a,b": variant(webhook_signature="v1,a,b"),
        "v1,": variant(webhook_signature="v1,"),
        "v1 without comma": variant(webhook_signature="v1" + sig[3:]),
        "wrong scheme v2": variant(webhook_signature="v2," + sig[3:]),
        "v1a scheme": variant(webhook_signature="v1a," + sig[3:]),
        "other secret": variant(webhook_signature=webhook_sign(OTHER_WHSEC, msg, now, body)),
        "other id signed": variant(webhook_signature=webhook_sign(WEBHOOK_SECRET, "x", now, body)),
        "garbage then wrong v1": variant(webhook_signature="garbage v1,AAAA v1,a,b"),
        "1000 wrong entries": variant(webhook_signature=" ".join(["v1,AAAA"] * 1000)),
        "non-ASCII entry": variant(webhook_signature="v1,\u00e9" + sig[4:]),
        "huge entry": variant(webhook_signature="v1," + "A" * 60_000),
        "timestamp abc": variant(webhook_timestamp="abc"),
        "timestamp superscript": variant(webhook_timestamp="\u00b2"),
        "timestamp negative": variant(webhook_timestamp=f"-{now}"),
        "timestamp 5000 digits": variant(webhook_timestamp="9" * 5000),
        "timestamp float": variant(webhook_timestamp=f"{now}.0"),
        "stale (301 s)": {
            **variant(webhook_timestamp=str(now - 301)),
            "webhook-signature": webhook_sign(WEBHOOK_SECRET, msg, now - 301, body),
        },
        "future (301 s)": {
            **variant(webhook_timestamp=str(now + 301)),
            "webhook-signature": webhook_sign(WEBHOOK_SECRET, msg, now + 301, body),
        },
    }


WEBHOOK_CASES = list(webhook_cases(b"{}"))


@pytest.mark.parametrize("case", WEBHOOK_CASES)
def test_webhook_malformed_signatures_are_401(hub, case):
    body = valid_body("webhook")
    headers = {"Content-Type": "application/json", **webhook_cases(body)[case]}
    refused(hub, "webhook", body, headers)


def test_webhook_overlong_id_is_400_naming_the_header_even_when_signed(hub):
    """The contract's one 400 among the headers: an authentic id too long to be a key."""
    body = valid_body("webhook")
    now = int(time.time())
    msg = "m" * 241
    headers = {
        "webhook-id": msg,
        "webhook-timestamp": str(now),
        "webhook-signature": webhook_sign(WEBHOOK_SECRET, msg, now, body),
    }
    refused(hub, "webhook", body, headers, 400, "webhook-id")


# ----------------------------------------------------------------------------------- Digistore24


def ds24_cases() -> dict[str, bytes]:
    fields = ds24_fields()
    good = ds24_sign(fields, DS24_PASSPHRASE)

    def body(*extra: tuple[str, str], base: dict | None = None) -> bytes:
        return urlencode([*(base or fields).items(), *extra]).encode()

    return {
        "missing": body(),
        "empty": body(("sha_sign", "")),
        "blank": body(("sha_sign", "   ")),
        "garbage": body(("sha_sign", "garbage")),
        "lower-case hex": body(("sha_sign", good.lower())),
        "truncated": body(("sha_sign", good[:64])),
        "padded with spaces": body(("sha_sign", f" {good} ")),
        "other passphrase": body(("sha_sign", ds24_sign(fields, "other"))),
        "SHA-256 instead of SHA-512": body(("sha_sign", good[:64])),
        "tampered field": body(("sha_sign", good), base={**fields, "amount_brutto": "1.00"}),
        "extra field after signing": body(("sha_sign", good), ("coupon", "FREE")),
        "sha_sign twice": body(("sha_sign", good), ("sha_sign", good)),
        "SHASIGN wrong": body(("SHASIGN", "0" * 128)),
        "non-ASCII": body(("sha_sign", "\u00e9" + good[1:])),
        "huge": body(("sha_sign", "A" * 200_000)),
        "only sha_sign": urlencode({"sha_sign": good}).encode(),
        "no passphrase in the hash": body(
            ("sha_sign", ds24_sign({k: v for k, v in fields.items()}, ""))
        ),
        "percent-encoded NUL": body(("sha_sign", good + "%00")).replace(b"%2500", b"%00"),
        "invalid UTF-8 value": body(("sha_sign", good)).replace(b"Jane", b"J%FFne", 1),
        "raw invalid UTF-8": body(("sha_sign", good)).replace(b"Jane", b"J\xffne", 1),
        "not a form": b"\x00\x01\x02 not a form",
        "JSON instead of a form": b'{"sha_sign": "' + good.encode() + b'"}',
    }


DS24_CASES = list(ds24_cases())


@pytest.mark.parametrize("case", DS24_CASES)
def test_digistore24_malformed_sha_sign_is_401(hub, case):
    body = ds24_cases()[case]
    refused(hub, "digistore24", body, {"Content-Type": "application/x-www-form-urlencoded"})
