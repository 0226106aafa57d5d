"""Shopify checkout and order payloads → the parts of a normalized event.

Authentic Shopify payloads that carry an odd value (an address phone like ``555-555-BILL``, a
malformed image URL) lose that value instead of failing the request: Shopify deletes a
subscription after 8 failed deliveries, so a 400 costs every later checkout of the shop. Money
and times are the exception: a wrong amount or date would mislead flows, so they fail naming
the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, validate

from hub import PayloadError, to_e164, to_minor

_is_email = validate.Email()
_is_url = validate.URL(schemes={"http", "https"})
_CHECKOUT_NAME = re.compile(r"^#(\d+)$")
# customer.email_marketing_consent / sms_marketing_consent ``state``; pending, not_subscribed,
# redacted and invalid say nothing either way
_CONSENT_STATES = {"subscribed": "opt_in", "unsubscribed": "opt_out"}


# ------------------------------------------------------------------------------ checkout ids


def shopify_id(value: Any) -> str | None:
    """Shopify ids are integers (some serialisers send them as digit strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def checkout_key(checkout: Mapping[str, Any]) -> str | None:
    """The id that links a checkout's events to its order and to ``checkouts/delete``.

    Shopify's checkout id is the only key every topic carries: ``checkouts/create|update`` as
    ``id`` (recent published samples leave ``id`` out but keep ``name = "#<id>"``),
    ``checkouts/delete`` as ``id`` (it has no ``token``), orders as ``checkout_id``. A checkout
    with neither falls back to ``token:<token>``, which orders can still match through
    ``checkout_token``.
    """
    key = shopify_id(checkout.get("id"))
    if key:
        return key
    name = checkout.get("name")
    match = _CHECKOUT_NAME.match(name.strip()) if isinstance(name, str) else None
    if match:
        return match.group(1)
    token = checkout.get("token")
    if isinstance(token, str) and token.strip():
        return f"token:{token.strip()}"
    return None


def order_checkout_key(order: Mapping[str, Any]) -> str | None:
    """The checkout an order came from, in the same form :func:`checkout_key` produced."""
    key = shopify_id(order.get("checkout_id"))
    if key:
        return key
    token = order.get("checkout_token")
    if isinstance(token, str) and token.strip():
        return f"token:{token.strip()}"
    return None


# ------------------------------------------------------------------------------ values


def timestamp(payload: Mapping[str, Any], *names: str) -> datetime | None:
    """The first present ISO-8601 time among ``names``, in UTC; naive or garbled times fail."""
    for name in names:
        value = payload.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise PayloadError("expected an ISO-8601 time", name)
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PayloadError("expected an ISO-8601 time", name) from None
        if parsed.tzinfo is None:
            raise PayloadError("expected a time with a UTC offset", name)
        return parsed.astimezone(UTC)
    return None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _valid(value: Any, validator: validate.Validator) -> str | None:
    """``value`` as text when the core's schema would accept it, else ``None`` (dropped)."""
    text = _text(value)
    if text is None:
        return None
    try:
        validator(text)
    except ValidationError:
        return None
    return text


def _email(value: Any) -> str | None:
    return _valid(value, _is_email)


def _url(value: Any) -> str | None:
    return _valid(value, _is_url)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def customer(payload: Mapping[str, Any]) -> dict:
    """Who is buying, from the checkout/order itself, its customer, then its addresses."""
    buyer = _dict(payload.get("customer"))
    billing = _dict(payload.get("billing_address"))
    shipping = _dict(payload.get("shipping_address"))
    default = _dict(buyer.get("default_address"))
    addresses = (billing, shipping, default)
    country = next(
        (c.upper() for a in addresses if (c := _text(a.get("country_code"))) and len(c) == 2),
        None,
    )
    # the SMS marketing number first: it is the one the buyer's SMS consent is about
    phones = (
        payload.get("sms_marketing_phone"),
        payload.get("phone"),
        buyer.get("phone"),
        *(a.get("phone") for a in addresses),
    )
    phone = next((p for p in (to_e164(raw, country) for raw in phones) if p), None)
    emails = (payload.get("email"), payload.get("contact_email"), buyer.get("email"))
    name_from = next(
        (a for a in (buyer, *addresses) if _text(a.get("first_name")) or _text(a.get("last_name"))),
        {},
    )
    return {
        "email": next((e for e in map(_email, emails) if e), None),
        "phone": phone,
        "first_name": _text(name_from.get("first_name")),
        "last_name": _text(name_from.get("last_name")),
        "locale": _text(payload.get("customer_locale")),
        "country": country,
        "external_id": shopify_id(buyer.get("id")),
    }


def consent(payload: Mapping[str, Any]) -> dict:
    """Per-channel consent as Shopify reported it.

    ``buyer_accepts_marketing`` names no channel, so it is e-mail consent only (architecture
    §4); unticked means "not asked or declined", i.e. ``unknown``, never ``opt_out``. The
    customer record's ``unsubscribed`` is an explicit refusal and wins over a ticked box.
    SMS consent is what Shopify collects for phone marketing: it covers SMS and WhatsApp.
    """
    buyer = _dict(payload.get("customer"))
    email_state = _CONSENT_STATES.get(_dict(buyer.get("email_marketing_consent")).get("state"))
    sms_state = _CONSENT_STATES.get(_dict(buyer.get("sms_marketing_consent")).get("state"))

    def decide(box: Any, state: str | None) -> str:
        if state == "opt_out":
            return "opt_out"
        if box is True or state == "opt_in":
            return "opt_in"
        return "unknown"

    email = decide(payload.get("buyer_accepts_marketing"), email_state)
    phone = decide(payload.get("buyer_accepts_sms_marketing"), sms_state)
    return {"email": email, "whatsapp": phone, "sms": phone}


def _minor(amount: Any, currency: str, field: str) -> int:
    if isinstance(amount, bool) or not isinstance(amount, str | int):
        raise PayloadError("expected a decimal string", field)
    try:
        return to_minor(str(amount).strip(), currency)
    except ValueError as exc:
        raise PayloadError(str(exc), field) from None


def _currency(value: Any) -> str | None:
    text = _text(value)
    return text.upper() if text and len(text) == 3 and text.isalpha() else None


def _buyer_money(payload: Mapping[str, Any], field: str) -> tuple[Any, str | None]:
    """An order's amount in the buyer's currency from ``<field>_set``, when Shopify sent one."""
    money = _dict(_dict(payload.get(f"{field}_set")).get("presentment_money"))
    return money.get("amount"), _currency(money.get("currency_code"))


class _Amounts:
    """Reads every amount of one payload in one currency, so totals and items never mix the
    shop's currency with the buyer's."""

    def __init__(self, payload: Mapping[str, Any], order: bool) -> None:
        self.order_in_buyer_currency = False
        if order:
            # order amounts are in the shop's currency; the buyer's are in ``*_set``
            self.currency = _currency(payload.get("currency"))
            amount, buyer_currency = _buyer_money(payload, "total_price")
            if amount is not None and buyer_currency:
                self.currency, self.order_in_buyer_currency = buyer_currency, True
        else:
            self.currency = _currency(payload.get("presentment_currency")) or _currency(
                payload.get("currency")
            )

    def get(self, payload: Mapping[str, Any], field: str, path: str) -> int | None:
        if self.order_in_buyer_currency:
            amount, currency = _buyer_money(payload, field)
            if currency != self.currency:
                return None
        else:
            amount = payload.get(field)
        if amount in (None, ""):
            return None
        return _minor(amount, self.currency, path)


def _image(item: Mapping[str, Any]) -> str | None:
    image = item.get("image")
    if isinstance(image, Mapping):
        image = image.get("src")
    return _url(image) or _url(item.get("image_url"))


def cart(payload: Mapping[str, Any], *, order: bool = False) -> dict | None:
    """The cart in integer minor units, or ``None`` when the payload names no total.

    Checkout amounts are in ``presentment_currency`` (what the buyer saw; ``currency`` when
    absent). Order amounts are in the shop's ``currency``, the buyer's in ``*_set``: an order
    is read in the buyer's currency when Shopify sent it, so it compares with the checkout.
    """
    amounts = _Amounts(payload, order)
    if not amounts.currency:
        return None
    total = amounts.get(payload, "total_price", "total_price")
    if total is None:
        return None
    items = []
    line_items = payload.get("line_items")
    for i, item in enumerate(line_items if isinstance(line_items, list) else []):
        if not isinstance(item, Mapping):
            continue
        quantity = item.get("quantity")
        items.append(
            {
                "name": _text(item.get("presentment_title"))
                or _text(item.get("title"))
                or f"item {i + 1}",
                "quantity": quantity
                if isinstance(quantity, int) and not isinstance(quantity, bool) and quantity >= 0
                else 1,
                "unit_price": amounts.get(item, "price", f"line_items[{i}].price"),
                "sku": _text(item.get("sku")),
                "image": _image(item),
            }
        )
    return {
        "total": total,
        "currency": amounts.currency,
        "items": items,
        "discount": amounts.get(payload, "total_discounts", "total_discounts") or 0,
    }


def recovery_url(checkout: Mapping[str, Any]) -> str | None:
    return _url(checkout.get("abandoned_checkout_url"))


def refunded_money(refund: Mapping[str, Any]) -> dict | None:
    """The money a ``refunds/create`` gave back, as a cart ``{total, currency}``; ``None``
    when it gave none back.

    The money is in ``transactions``: each ``kind: refund`` with ``status: success`` returned
    its ``amount`` (a decimal string) to the buyer; pending, failed and errored ones did not.
    ``refund_line_items`` say which items came back, not what was paid back (a restock
    refunds nothing, shipping and fees change the sum), so they only name the currency when a
    transaction's ``currency`` is null, as in Shopify's published sample.
    """
    transactions = refund.get("transactions")
    paid = [
        (i, t)
        for i, t in enumerate(transactions if isinstance(transactions, list) else [])
        if isinstance(t, Mapping) and t.get("kind") == "refund" and t.get("status") == "success"
    ]
    if not paid:
        return None
    currencies = {_currency(t.get("currency")) for _, t in paid} - {None}
    if len(currencies) > 1:
        raise PayloadError("refund transactions in several currencies", "transactions")
    currency = next(iter(currencies), None) or _refund_lines_currency(refund)
    if currency is None:
        raise PayloadError("the refund names no currency", "transactions[0].currency")
    total = sum(_minor(t.get("amount"), currency, f"transactions[{i}].amount") for i, t in paid)
    return {"total": total, "currency": currency}


def _refund_lines_currency(refund: Mapping[str, Any]) -> str | None:
    lines = refund.get("refund_line_items")
    for line in lines if isinstance(lines, list) else []:
        money = _dict(_dict(_dict(line).get("subtotal_set")).get("presentment_money"))
        if currency := _currency(money.get("currency_code")):
            return currency
    return None
