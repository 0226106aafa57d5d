"""Digistore24 IPN form bodies, each with a ``sha_sign`` computed by Digistore24's own rule:
a body that is not a well-formed UTF-8 form is undecodable (401, as the contract says); a
well-formed, signed form with an unusable value is 400 naming the field. Never a 5xx, nothing
stored, and the answer is the JSON error, not Digistore24's ``OK``.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from input_helpers import (
    DS24_PASSPHRASE,
    FORM,
    all_sources_tenant,
    assert_refused,
    bounded,
    ds24_fields,
    module_hub,
    stored,
)

from plugins.digistore24.ipn import sign


@pytest.fixture(scope="module")
def hub(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("forms")
    with module_hub(folder, redis_url, {"acme": all_sources_tenant()}) as harness:
        yield harness


def signed_raw(text: bytes, signed_fields: dict[str, str]) -> bytes:
    """``text`` as sent, with the sha_sign Digistore24 computes over ``signed_fields``."""
    return text + b"&sha_sign=" + sign(signed_fields, DS24_PASSPHRASE).encode()


def post(hub, body: bytes):
    return hub.post("acme", "digistore24", body, {"Content-Type": FORM})


def test_a_signed_contact_form_is_stored_and_answered_ok(hub):
    fields = ds24_fields()
    with stored(hub, 1):
        answer = post(hub, signed_raw(urlencode(fields).encode(), fields))
    assert (answer.status_code, answer.get_data()) == (200, b"OK")


def undecodable() -> dict[str, bytes]:
    fields = ds24_fields()
    text = urlencode(fields).encode()
    many = {f"f{i}": "x" for i in range(10_000)}
    return {
        "raw invalid UTF-8": signed_raw(text.replace(b"Jane", b"J\xe4ne"), fields),
        "percent-encoded invalid UTF-8": signed_raw(text.replace(b"Jane", b"J%E4ne"), fields),
        "encoded surrogate": signed_raw(text.replace(b"Jane", b"J%ED%A0%80ne"), fields),
        "latin-1 form": signed_raw(
            urlencode({**fields, "address_first_name": "J\u00e4ne"}, encoding="latin-1").encode(),
            {**fields, "address_first_name": "J\u00e4ne"},
        ),
        "repeated key, same value": signed_raw(
            text + b"&email=" + b"jane.demo%40example.com", fields
        ),
        "repeated key, other value (last signed)": signed_raw(
            text + b"&email=mallory%40example.com",
            {**fields, "email": "mallory@example.com"},
        ),
        "10 000 fields": signed_raw(urlencode({**fields, **many}).encode(), {**fields, **many}),
        "raw NUL byte in an unused field": signed_raw(
            text + b"&custom=a\x00b", {**fields, "custom": "a\x00b"}
        ),
        "UTF-16": signed_raw(text.decode().encode("utf-16-le"), fields),
    }


@pytest.mark.parametrize("case", list(undecodable()))
def test_undecodable_forms_are_401(hub, case):
    body = undecodable()[case]
    with bounded(5), stored(hub, 0):
        answer = post(hub, body)
    assert_refused(answer, 401)


# signed forms that decode but carry an unusable value → 400 naming it
UNUSABLE = {
    "no event": ({"event": ""}, "event"),
    "amount 1e999999": ({"amount_brutto": "1e999999"}, "amount_brutto"),
    "amount NaN": ({"amount_brutto": "NaN"}, "amount_brutto"),
    "amount Infinity": ({"amount_brutto": "Infinity"}, "amount_brutto"),
    "amount -Infinity": ({"amount_brutto": "-Infinity"}, "amount_brutto"),
    "amount beyond 64 bits": ({"amount_brutto": "9" * 30}, "amount_brutto"),
    "amount 5000 digits": ({"amount_brutto": "9" * 5000}, "amount_brutto"),
    "amount with words": ({"amount_brutto": "forty-nine"}, "amount_brutto"),
    "amount too precise": ({"amount_brutto": "49.001"}, "amount_brutto"),
    "currency not ISO": ({"currency": "EURO"}, "currency"),
    "currency with NUL": ({"currency": "E\x00R"}, "currency"),
    "quantity zero": ({"quantity": "0"}, "quantity"),
    "quantity negative": ({"quantity": "-1"}, "quantity"),
    "quantity superscript": ({"quantity": "\u00b2"}, "quantity"),
    "quantity beyond 64 bits": ({"quantity": "9" * 30}, {"quantity", "cart.items.0.quantity"}),
    "not an e-mail": ({"email": "jane"}, "email"),
    "e-mail with NUL": ({"email": "jane\x00@example.com"}, "email"),
    "first name with NUL": ({"address_first_name": "Ja\x00ne"}, "customer.first_name"),
    "product name with NUL": ({"product_name": "Guide\x00"}, "cart.items.0.name"),
}


@pytest.mark.parametrize("case", UNUSABLE)
def test_signed_forms_with_unusable_values_are_400(hub, case):
    changes, field = UNUSABLE[case]
    fields = ds24_fields(**changes)
    body = signed_raw(urlencode(fields).encode(), fields)
    with bounded(5), stored(hub, 0):
        answer = post(hub, body)
    assert_refused(answer, 400, field if isinstance(field, set) else {field})
