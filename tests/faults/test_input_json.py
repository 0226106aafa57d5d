"""Authentic but malformed JSON bodies: every case is signed exactly as the platform signs, so
it passes verification and reaches the parser; the answer must be a 400 (401 where the
verifying library itself must decode the body) with the JSON error shape, never a 5xx, and no
event row. A valid request per source first proves that accepted means stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from input_helpers import (
    JSON_SOURCES,
    all_sources_tenant,
    assert_refused,
    bounded,
    module_hub,
    shopify_checkout,
    signed,
    stored,
    valid_body,
    valid_request,
    webhook_event,
)
from samples import STRIPE_SECRET, stripe_event, stripe_session


@pytest.fixture(scope="module")
def hub(tmp_path_factory, redis_url):
    with module_hub(
        tmp_path_factory.mktemp("json"), redis_url, {"acme": all_sources_tenant()}
    ) as h:
        yield h


def post(hub, source: str, body: bytes, headers: dict | None = None):
    return hub.post("acme", source, body, headers if headers is not None else signed(source, body))


@pytest.mark.parametrize("source", JSON_SOURCES)
def test_a_valid_signed_event_is_stored(hub, source):
    """The baseline: the same tenant, source and signing accept and store a good event."""
    body, headers = valid_request(source)
    with stored(hub, 1):
        assert post(hub, source, body, headers).status_code == 202


def deep(opening: bytes, closing: bytes, depth: int = 100_000) -> bytes:
    return opening * depth + closing * depth


# id → body builder (given the source's valid body). Default answer: 400 naming "body".
BODIES: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda b: b[: len(b) // 2],
    "not JSON at all": lambda b: b"checkout expired, please help",
    "trailing garbage": lambda b: b + b"}",
    "two documents": lambda b: b + b"\n" + b,
    "single quotes": lambda b: b.replace(b'"', b"'"),
    "JSON null": lambda b: b"null",
    "a bare string": lambda b: b'"checkout.session.expired"',
    "a bare number": lambda b: b"42",
    "an empty array": lambda b: b"[]",
    "an array of numbers": lambda b: b"[1, 2, 3]",
    "invalid UTF-8": lambda b: b.replace(b"jane", b"j\xffne", 1),
    "UTF-8-encoded surrogate": lambda b: b.replace(b"jane", b"j\xed\xa0\x80ne", 1),
    "UTF-16 (valid UTF-8 bytes full of NULs)": lambda b: b.decode().encode("utf-16-le"),
    "UTF-32": lambda b: b.decode().encode("utf-32"),
    "100 000 nested arrays": lambda b: deep(b"[", b"]"),
    "100 000 unclosed arrays": lambda b: b"[" * 100_000,
    "100 000 nested objects": lambda b: deep(b'{"a":', b"}")[:-100_000] + b"1" + b"}" * 100_000,
    "deep nesting inside the event": lambda b: b[:-1] + b', "x": ' + deep(b"[", b"]") + b"}",
    "NUL byte between tokens": lambda b: b.replace(b",", b",\x00", 1),
    "control character in a string": lambda b: b.replace(b"jane", b"ja\x01ne", 1),
    "whitespace only": lambda b: b" \r\n\t ",
}
# (source, case) → (status, field) where the contract differs from "400, body"
EXCEPTIONS = {
    # the Standard Webhooks library decodes the body as UTF-8 before it checks the signature
    ("webhook", "invalid UTF-8"): (401, None),
    ("webhook", "UTF-8-encoded surrogate"): (401, None),
    ("webhook", "UTF-32"): (401, None),
    # a batch holds 1..100 event objects: the culprit is the first item
    ("webhook", "an array of numbers"): (400, "[0]"),
}


@pytest.mark.parametrize("case", BODIES)
@pytest.mark.parametrize("source", JSON_SOURCES)
def test_malformed_json_with_a_valid_signature_is_refused(hub, source, case):
    """Nothing the parser meets may turn into a 5xx, a hang, or a stored event."""
    body = BODIES[case](valid_body(source))
    status, field = EXCEPTIONS.get((source, case), (400, "body"))
    with bounded(5), stored(hub, 0):
        answer = post(hub, source, body)
    assert_refused(answer, status, field)


# A numeric field of each source, as its platform writes it, and the names a 400 may give.
NUMBER_FIELDS = {
    "stripe": ("amount_total", {"body", "data.object.amount_total", "cart.total"}),
    "shopify": ("total_price", {"body", "total_price", "cart.total"}),
    "webhook": ("total", {"body", "cart.total"}),
}
NUMBERS = {
    "1e999999 (float overflow)": "1e999999",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "5000-digit integer": "9" * 5000,
    "10**30": str(10**30),
    "-10**30": str(-(10**30)),
    "2**63": str(2**63),
    "a fraction for an integer": "4999.5",
    "1e400 as a string": '"1e400"',
    "Infinity as a string": '"Infinity"',
}


def with_number(source: str, literal: str) -> bytes:
    """The source's valid event with its amount replaced by ``literal`` verbatim (json.dumps
    cannot write most of these)."""
    marker = "__NUMBER__"
    if source == "stripe":
        return stripe_event(session=stripe_session(amount_total=marker)).replace(
            f'"{marker}"'.encode(), literal.encode()
        )
    if source == "shopify":
        text = json.dumps(shopify_checkout(total_price=marker))
    else:
        event = webhook_event()
        event["cart"]["total"] = marker
        text = json.dumps(event)
    return text.replace(f'"{marker}"', literal).encode()


@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("source", JSON_SOURCES)
def test_out_of_range_numbers_are_refused_naming_a_field(hub, source, number):
    """Amounts that overflow floats, are not numbers, or do not fit a 64-bit column are 400."""
    _, fields = NUMBER_FIELDS[source]
    body = with_number(source, NUMBERS[number])
    with bounded(5), stored(hub, 0):
        answer = post(hub, source, body)
    assert_refused(answer, 400, fields)


# (source, dotted path, wrong value, field names a 400 may give)
WRONG_TYPES = [
    ("stripe", "id", 123, {"id"}),
    ("stripe", "id", None, {"id"}),
    ("stripe", "created", "yesterday", {"created"}),
    ("stripe", "created", 10**30, {"created"}),
    ("stripe", "created", True, {"created"}),
    ("stripe", "data", [], {"data", "data.object", "data.object.id"}),
    ("stripe", "data", "x", {"data", "data.object", "data.object.id"}),
    ("stripe", "data.object", [1], {"data.object", "data.object.id"}),
    ("stripe", "data.object.id", {"a": 1}, {"data.object.id"}),
    ("stripe", "data.object.amount_total", "49.99", {"data.object.amount_total"}),
    ("stripe", "data.object.currency", 978, {"data.object.currency", "cart.currency"}),
    ("stripe", "data.object.customer_details", "jane", {"data.object.customer_details"}),
    (
        "stripe",
        "data.object.customer_details.email",
        ["jane@example.com"],
        {"data.object.customer_details.email", "customer.email"},
    ),
    ("stripe", "data.object.after_expiration", 1, {"data.object.after_expiration"}),
    ("stripe", "data.object.line_items", {"data": "x"}, {"data.object.line_items.data"}),
    ("shopify", "total_price", True, {"total_price"}),
    ("shopify", "total_price", [49.99], {"total_price"}),
    ("shopify", "updated_at", 1700000000, {"updated_at"}),
    ("shopify", "updated_at", "2026-13-45T99:00:00Z", {"updated_at"}),
    ("webhook", "kind", 7, {"kind"}),
    ("webhook", "checkout_id", ["a"], {"checkout_id"}),
    ("webhook", "occurred_at", 1700000000, {"occurred_at"}),
    ("webhook", "customer", "jane", {"customer"}),
    ("webhook", "customer.email", {"a": 1}, {"customer.email"}),
    ("webhook", "cart.total", "4999", {"cart.total"}),
    ("webhook", "cart.total", True, {"cart.total"}),
    ("webhook", "cart.items", {"name": "x"}, {"cart.items"}),
    ("webhook", "consent.email", False, {"consent.email"}),
]


def with_value(source: str, path: str, value: object) -> bytes:
    event = (
        json.loads(valid_body(source))
        if source != "shopify"
        else shopify_checkout(line_items=[{"title": "Mug", "quantity": 1, "price": "49.99"}])
    )
    *parents, last = path.split(".")
    node = event
    for name in parents:
        node = node[name]
    node[last] = value
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("source", "path", "value", "fields"),
    WRONG_TYPES,
    ids=[f"{s}-{p}={v!r}"[:60] for s, p, v, _ in WRONG_TYPES],
)
def test_wrong_types_are_400_naming_the_field(hub, source, path, value, fields):
    """A field of the wrong type is the sender's bug; the answer says which field."""
    body = with_value(source, path, value)
    with bounded(5), stored(hub, 0):
        answer = post(hub, source, body)
    assert_refused(answer, 400, fields)


# strings a database may refuse to store even though JSON allows them
STRINGS = {
    "NUL escape": "\\u0000",
    "lone high surrogate": "\\ud800",
    "lone low surrogate": "\\udfff",
    "reversed surrogate pair": "\\ude00\\ud83d",
}
STRING_FIELDS = {
    "stripe": ("data.object.customer_details.name", "id"),
    "shopify": ("billing_address", "token"),
    "webhook": ("customer.first_name", "checkout_id"),
}


@pytest.mark.parametrize("key", [0, 1], ids=["a name", "an id"])
@pytest.mark.parametrize("escape", STRINGS)
@pytest.mark.parametrize("source", JSON_SOURCES)
def test_strings_no_database_can_store_are_400_not_503(hub, source, escape, key):
    """JSON may carry ``\\u0000`` and lone surrogates; PostgreSQL stores neither. Refusing them
    at the edge keeps the answer the same on every database and stops a 503 that would make
    the platform retry the same request for days."""
    marker = "__STRING__"
    path = STRING_FIELDS[source][key]
    if source == "shopify" and key == 0:
        body = json.dumps(
            shopify_checkout(id=None, billing_address={"first_name": marker, "country_code": "DE"})
        )
    elif source == "shopify":
        body = json.dumps(shopify_checkout(id=None, name=None, token=marker))
    else:
        body = with_value(source, path, marker).decode()
    body = body.replace(marker, f"x{STRINGS[escape]}x").encode()
    with bounded(5), stored(hub, 0):
        answer = post(hub, source, body)
    assert_refused(answer, 400)


def test_duplicate_keys_are_read_as_the_platforms_own_library_reads_them(hub):
    """RFC 8259 leaves duplicate names to the parser; a signed body comes from the secret's
    holder, and refusing them would need a per-object hook that doubles the parse on every
    request. So the hub reads them as Stripe's own library does (the last one wins) and stores
    one event under that id, nothing else."""
    import stripe

    from plugins.stripe.source import sign

    body = stripe_event(event_id="evt_dup_first")
    body = body[:-1] + b', "id": "evt_dup_last"}'
    header = sign(body, STRIPE_SECRET, int(time.time()))
    oracle = stripe.Webhook.construct_event(body, header, STRIPE_SECRET)
    assert oracle["id"] == "evt_dup_last"
    with bounded(5), stored(hub, 1):
        answer = post(hub, "stripe", body, {"Stripe-Signature": header})
    assert answer.status_code == 202
    assert [r.event_key for r in hub.rows("events", event_key="evt_dup_last")] == ["evt_dup_last"]
    assert hub.rows("events", event_key="evt_dup_first") == []
