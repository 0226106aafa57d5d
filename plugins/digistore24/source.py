"""Digistore24 IPN callbacks mapped to normalized events (Digistore24's IPN documentation).

* order-form contact data (an abandoned cart; event name configurable, ``of_filled_out`` by
  default) → ``checkout.abandoned`` at stage ``contact``;
* ``on_payment`` → ``checkout.converted``;
* ``on_refund`` / ``on_chargeback`` → ``checkout.refunded`` (taken off a recovery);
* ``connection_test`` and every other event → nothing, answered ``OK``.

No order exists for an abandoned cart, so both sides are linked by the checkout id
``<lower-cased e-mail>:<product_id>`` (architecture §2): an ``on_payment`` of the same buyer for
the same product carries the same id and stops the journey, whichever arrives first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from marshmallow import Schema, ValidationError, fields, validate, validates

from hub import (
    DemoRequest,
    InboundRequest,
    IngestOutcome,
    PayloadError,
    Source,
    VerificationError,
    to_e164,
    to_minor,
)
from plugins.digistore24.ipn import (
    FormError,
    fingerprint,
    read_form,
    signature_matches,
    signed_body,
)

log = logging.getLogger("hub.digistore24")

CONVERSION_EVENTS = frozenset({"on_payment"})
REFUND_EVENTS = frozenset({"on_refund", "on_chargeback"})
CONNECTION_TEST = "connection_test"
# Third-party evidence only: DigiMember's Digistore24 event map knows "of_filled_out" (order
# form filled out). Capture one real call and set `contact_events` if your account differs.
DEFAULT_CONTACT_EVENTS = ("of_filled_out",)
# newsletter_choice values are not documented; DigiMember defaults a missing one to "none".
# Anything not listed here is `unknown`, which the tenant's consent policy then decides.
DEFAULT_NEWSLETTER_OPT_IN = ("optin", "single_optin", "double_optin")
DEFAULT_NEWSLETTER_OPT_OUT = ("optout",)
DEFAULT_RECOVERY_URL = "https://www.digistore24.com/product/{product_id}"
RECOVERY_PLACEHOLDERS = ("product_id", "orderform_id", "email")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z]{2})?$")


class Digistore24Config(Schema):
    """``[sources.digistore24]`` of a tenant file."""

    ipn_passphrase = fields.String(
        required=True,
        validate=validate.Length(min=1, error="required: an unsigned IPN could come from anyone"),
        metadata={
            "description": "the SHA passphrase of the tenant's IPN connection",
            "secret": True,
        },
    )
    contact_events = fields.List(
        fields.String(validate=validate.Length(min=1)),
        load_default=lambda: list(DEFAULT_CONTACT_EVENTS),
        validate=validate.Length(min=1),
    )
    newsletter_opt_in = fields.List(
        fields.String(), load_default=lambda: list(DEFAULT_NEWSLETTER_OPT_IN)
    )
    newsletter_opt_out = fields.List(
        fields.String(), load_default=lambda: list(DEFAULT_NEWSLETTER_OPT_OUT)
    )
    recovery_url = fields.String(load_default=DEFAULT_RECOVERY_URL, allow_none=True)

    @validates("recovery_url")
    def _recovery_template(self, value: str | None, **_: Any) -> None:
        if not value:  # "" (TOML has no null): send no link
            return
        if not value.startswith(("https://", "http://")):
            raise ValidationError("must be an http(s) URL")
        try:
            value.format(**{name: "x" for name in RECOVERY_PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValidationError(
                f"unknown placeholder {exc}; use {{product_id}}, {{orderform_id}} or {{email}}"
            ) from None


def _value(form: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` the form carries with a non-blank value (Digistore24 transmits
    only what the buyer filled in, and blank values mean "not given")."""
    for name in names:
        value = (form.get(name) or "").strip()
        if value:
            return value
    return None


def _email(form: Mapping[str, str], required: bool) -> str | None:
    email = _value(form, "email", "address_email", "buyer_email")
    if email is None:
        if required:
            raise PayloadError("the buyer's e-mail address is missing", "email")
        return None
    try:
        validate.Email()(email)
    except ValidationError:
        raise PayloadError("not a valid e-mail address", "email") from None
    return email


def _customer(form: Mapping[str, str], email: str | None) -> dict:
    country = _value(form, "address_country", "country")
    country = country.upper() if country and _COUNTRY.match(country) else None
    locale = _value(form, "language")
    return {
        "email": email,
        "phone": to_e164(_value(form, "address_phone_no", "phone_no"), country),
        "first_name": _value(form, "address_first_name", "billing_first_name"),
        "last_name": _value(form, "address_last_name", "billing_last_name"),
        "locale": locale.lower().replace("-", "_") if locale and _LOCALE.match(locale) else None,
        "country": country,
        "external_id": _value(form, "buyer_id"),
    }


def _cart(form: Mapping[str, str], recovery_url: str | None) -> dict | None:
    """The product as one line item, when the callback says what it costs."""
    amount_field = "amount_brutto" if _value(form, "amount_brutto") else "transaction_amount"
    amount = _value(form, amount_field)
    if amount is None:
        return None
    currency = _value(form, "currency", "transaction_currency")
    if currency is None:
        raise PayloadError("an amount without a currency", "currency")
    currency = currency.upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise PayloadError("not an ISO currency code", "currency")
    try:
        total = to_minor(amount, currency)
    except ValueError as exc:
        raise PayloadError(str(exc), amount_field) from None
    quantity_text = _value(form, "quantity") or "1"
    if not (quantity_text.isascii() and quantity_text.isdigit()) or int(quantity_text) < 1:
        raise PayloadError("not a positive whole number", "quantity")
    quantity = int(quantity_text)
    product_id = _value(form, "product_id")
    items = []
    name = _value(form, "product_name") or (f"Product {product_id}" if product_id else None)
    if name:
        items.append(
            {
                "name": name,
                "quantity": quantity,
                "unit_price": total // quantity if total % quantity == 0 else None,
                "sku": product_id,
                "url": recovery_url,
            }
        )
    return {"total": total, "currency": currency, "items": items}


def checkout_id(email: str | None, form: Mapping[str, str]) -> str | None:
    """``<lower-cased e-mail>:<product_id>``: the one id both an abandoned order form and the
    later payment know (the order-form id names the form, not the buyer's visit)."""
    if not email:
        return None
    product_id = _value(form, "product_id")
    orderform_id = _value(form, "orderform_id")
    suffix = product_id or (f"orderform-{orderform_id}" if orderform_id else "")
    return f"{email.lower()}:{suffix}" if suffix else email.lower()


def event_key(event: str, form: Mapping[str, str]) -> str:
    """``<event>:<transaction_id>``, else ``<event>:<order_id>:<product_id>``."""
    transaction_id = _value(form, "transaction_id")
    if transaction_id:
        return f"{event}:{transaction_id}"
    order_id = _value(form, "order_id")
    if order_id:
        return f"{event}:{order_id}:{_value(form, 'product_id') or ''}"
    raise PayloadError("neither transaction_id nor order_id is given", "transaction_id")


def _consent(form: Mapping[str, str], config: Mapping[str, Any]) -> dict:
    """Digistore24's newsletter choice names no channel, so it is e-mail consent only."""
    choice = (_value(form, "newsletter_choice") or "").lower()
    opt_in = {v.lower() for v in config["newsletter_opt_in"]}
    opt_out = {v.lower() for v in config["newsletter_opt_out"]}
    email = "opt_in" if choice in opt_in else "opt_out" if choice in opt_out else "unknown"
    return {"email": email}


def _recovery_url(
    form: Mapping[str, str], config: Mapping[str, Any], email: str | None
) -> str | None:
    template = config.get("recovery_url")
    if not template:
        return None
    values = {
        "product_id": _value(form, "product_id"),
        "orderform_id": _value(form, "orderform_id"),
        "email": email,
    }
    used = [name for name in RECOVERY_PLACEHOLDERS if "{" + name + "}" in template]
    if any(values[name] is None for name in used):
        return None  # a link to a product we do not know is worse than none
    return template.format(**{k: quote(v or "", safe="") for k, v in values.items()})


class Digistore24Source(Source):
    """Digistore24's IPN ("generic" connection). Answer body is always the text ``OK``."""

    name = "digistore24"
    consent_fields = {"email": "newsletter_choice"}
    config_schema = Digistore24Config

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        try:
            form = read_form(request.body)
        except FormError as exc:
            raise VerificationError(str(exc)) from None
        if not (form.get("sha_sign") or form.get("SHASIGN")):
            raise VerificationError("missing sha_sign")
        if not signature_matches(form, config["ipn_passphrase"]):
            raise VerificationError("sha_sign does not match this connection's passphrase")

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[dict]:
        form = read_form(request.body)
        event = _value(form, "event")
        if event is None:
            raise PayloadError("the IPN names no event", "event")
        if event == CONNECTION_TEST:
            return []
        if event in config["contact_events"]:
            return [self._abandoned(event, form, request, config)]
        if event in CONVERSION_EVENTS:
            return [self._converted(event, form, request, config)]
        if event in REFUND_EVENTS:
            return [self._refunded(event, form, request)]
        log.info("ignored Digistore24 event %r (label %r)", event, form.get("event_label"))
        return []

    def respond(self, outcome: IngestOutcome) -> tuple[str, int, dict[str, str]]:
        # anything but a body starting with OK makes Digistore24 retry for 10 days
        return "OK", 200, {"Content-Type": "text/plain; charset=utf-8"}

    def _common(self, form: Mapping[str, str], request: InboundRequest) -> dict:
        return {
            "occurred_at": request.received_at,  # IPN dates carry no documented time zone
            "livemode": (_value(form, "api_mode") or "live") != "test",
        }

    def _abandoned(
        self,
        event: str,
        form: Mapping[str, str],
        request: InboundRequest,
        config: Mapping[str, Any],
    ) -> dict:
        email = _email(form, required=True)
        recovery_url = _recovery_url(form, config, email)
        return {
            **self._common(form, request),
            "kind": "checkout.abandoned",
            # no order exists yet: a retry repeats exactly the same signed fields
            "event_key": f"{event}:{fingerprint(form)}",
            "checkout_id": checkout_id(email, form),
            "customer": _customer(form, email),
            "cart": _cart(form, recovery_url),
            "consent": _consent(form, config),
            "stage": "contact",
            "recovery_url": recovery_url,
        }

    def _converted(
        self,
        event: str,
        form: Mapping[str, str],
        request: InboundRequest,
        config: Mapping[str, Any],
    ) -> dict:
        email = _email(form, required=True)
        return {
            **self._common(form, request),
            "kind": "checkout.converted",
            "event_key": event_key(event, form),
            "checkout_id": checkout_id(email, form),
            "customer": _customer(form, email),
            "cart": _cart(form, None),
            "consent": _consent(form, config),
        }

    def _refunded(self, event: str, form: Mapping[str, str], request: InboundRequest) -> dict:
        email = _email(form, required=False)
        linked = checkout_id(email, form) or _value(form, "order_id")
        if linked is None:
            raise PayloadError("neither the buyer's e-mail nor order_id is given", "email")
        return {
            **self._common(form, request),
            "kind": "checkout.refunded",
            "event_key": event_key(event, form),
            "checkout_id": linked,
            "customer": _customer(form, email),
            "cart": _cart(form, None),
        }

    def demo_request(self, config: Mapping[str, Any], now: datetime) -> DemoRequest:
        stamp = int(now.timestamp())
        fields = demo_fields(config["contact_events"][0], buyer_id=f"demo-{stamp}")
        return DemoRequest(
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=signed_body(fields, config["ipn_passphrase"]),
            description="Digistore24 order-form contact data (Jane Demo, 49.00 EUR)",
        )


def demo_fields(event: str = DEFAULT_CONTACT_EVENTS[0], **overrides: str) -> dict[str, str]:
    """An order-form contact-data IPN as far as Digistore24 documents it."""
    fields = {
        "event": event,
        "event_label": "order form contact data",
        "api_mode": "live",
        "ipn_version": "1.2",
        "product_id": "122343",
        "product_name": "Guide to Happiness",
        "orderform_id": "4711",
        "currency": "EUR",
        "amount_brutto": "49.00",
        "quantity": "1",
        "email": "jane.demo@example.com",
        "address_first_name": "Jane",
        "address_last_name": "Demo",
        "address_phone_no": "",
        "address_country": "US",
        "language": "en",
        "newsletter_choice": "single_optin",
    }
    fields.update(overrides)
    return fields
