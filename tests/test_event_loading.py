"""``load_event`` takes a fast path for plain input; marshmallow's ``EventSchema`` is the oracle.

Every input gives exactly what ``EventSchema().load`` gives: the same loaded event, or the same
error messages keyed by the same fields.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from hub.events import EventSchema, load_event

FULL = {
    "kind": "checkout.abandoned",
    "event_key": "evt_1",
    "checkout_id": "cs_1",
    "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    "customer": {
        "email": " Jane@Example.com ",
        "phone": "+4915112345678",
        "first_name": "Jane",
        "last_name": "Doe",
        "locale": "de",
        "country": "DE",
        "external_id": "c_1",
    },
    "cart": {
        "total": 4999,
        "currency": "EUR",
        "items": [
            {"name": "Shoe", "quantity": 2, "unit_price": 2000, "url": "https://shop.example/s"},
            {"name": "Sock"},
        ],
        "discount": 1,
    },
    "recovery_url": "https://shop.example/r/1",
    "recovery_expires_at": "2026-01-09T03:04:05Z",
    "consent": {"email": "opt_in", "sms": "opt_out"},
    "stage": "payment",
    "recovered_from": None,
    "livemode": False,
    "source": "stripe",
    "tenant": "acme",
    "raw": {"id": "evt_1"},
}
MINIMAL = {
    "kind": "checkout.converted",
    "event_key": "k",
    "checkout_id": "c",
    "occurred_at": "2026-01-02T03:04:05+00:00",
    "source": "webhook",
    "tenant": "acme",
}


def changed(path: str, value: object, base: dict = FULL) -> dict:
    """``base`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return data


CASES = [
    FULL,
    MINIMAL,
    changed("cart", None),
    changed("customer", {}),
    changed("consent", {"telegram": "opt_in"}),  # a plugin's channel
    changed("consent", {"Telegram!": "opt_in"}),
    changed("consent", {"email": "maybe"}),
    changed("kind", "checkout.exploded"),
    changed("event_key", " evt_1"),
    changed("event_key", ""),
    changed("event_key", b"evt_1"),
    changed("event_key", 5),
    changed("checkout_id", ...),
    changed("checkout_id", None),
    changed("occurred_at", datetime(2026, 1, 2, 3, 4, 5)),  # naive
    changed("occurred_at", datetime(2026, 1, 2, tzinfo=UTC)),
    changed("occurred_at", "2026-01-02"),
    changed("occurred_at", "yesterday"),
    changed("occurred_at", 1767323045),
    changed("customer.email", "not an address"),
    changed("customer.email", None),
    changed("customer.phone", "0151 123"),
    changed("customer.country", "de"),
    changed("customer.nickname", "J"),
    changed("customer", "jane@example.com"),
    changed("customer", None),
    changed("cart.total", "4999"),
    changed("cart.total", 49.99),
    changed("cart.total", True),
    changed("cart.total", 2**63),
    changed("cart.discount", "1"),
    changed("cart.currency", "euro"),
    changed("cart.items", ({"name": "Shoe"},)),
    changed("cart.items", None),
    changed("cart.items", [{"name": "Shoe", "colour": "red"}]),
    changed("cart.items", ["Shoe"]),
    changed("cart.items.0.quantity", -1),
    changed("cart.items.0.quantity", 2.0),
    changed("cart.items.0.url", "not a url"),
    changed("cart.items.0.name", ...),
    changed("recovery_url", "ftp:/broken"),
    changed("stage", "shipping"),
    changed("stage", None),
    changed("livemode", "true"),
    changed("livemode", 1),
    changed("livemode", None),
    changed("unknown", 1),
    changed("tenant", ...),
    changed("checkout_id", "cs\x00"),
    changed("customer.first_name", "\ud800"),
    changed("kind", "checkout.abandoned", MINIMAL),
    [FULL],
    "not an object",
]


@pytest.mark.parametrize("data", CASES)
def test_load_event_gives_what_the_schema_gives(data: object) -> None:
    try:
        expected = EventSchema().load(copy.deepcopy(data))
    except ValidationError as exc:
        with pytest.raises(ValidationError) as raised:
            load_event(copy.deepcopy(data))
        assert raised.value.messages == exc.messages
    else:
        assert load_event(copy.deepcopy(data)) == expected
