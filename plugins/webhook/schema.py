"""The body the generic webhook source accepts, and its JSON Schema generated from it.

The accepted event is ``hub.events.EventSchema`` without the fields the hub fills in itself:
``tenant`` and ``source`` (from the URL), ``raw`` (the body), and ``event_key`` (the
``webhook-id`` header). The JSON Schema is generated from the marshmallow fields, so it can
never drift from what the hub validates: a field type the converter does not know is an error,
and a test compares the committed ``docs/webhook-event.schema.json`` with this output.

``python -m plugins.webhook.schema [PATH]`` prints (or writes) the schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields, validate

from hub import AwareDateTime, EventSchema

FILLED_BY_THE_HUB = ("tenant", "source", "raw", "event_key")
MAX_BATCH = 100
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# what each field of the normalized event means, shown in the schema and in docs/webhook.md
DESCRIPTIONS: dict[str, str] = {
    "kind": "checkout.abandoned starts a recovery journey, checkout.converted stops it; "
    "checkout.updated, checkout.deleted and checkout.refunded as in the architecture",
    "checkout_id": "your checkout/cart id; links the abandonment to its conversion "
    "(a checkout.refunded may give order_ref instead)",
    "occurred_at": "when it happened, ISO 8601; send the offset (without one it is read as UTC)",
    "customer": "who abandoned: the hub matches people on lower-cased e-mail and E.164 phone",
    "customer.email": "e-mail address",
    "customer.phone": "E.164 phone number, e.g. +4915112345678",
    "customer.first_name": "first name, for the greeting",
    "customer.last_name": "last name",
    "customer.locale": "language of the messages, e.g. de or pt_BR",
    "customer.country": "ISO 3166-1 alpha-2 country, upper case",
    "customer.external_id": "your customer id",
    "cart": "what was left behind",
    "cart.total": "total in minor units (4999 = 49.99 EUR; JPY has no minor unit)",
    "cart.currency": "ISO 4217 currency, upper case",
    "cart.items": "line items",
    "cart.items[].name": "product name",
    "cart.items[].quantity": "how many",
    "cart.items[].unit_price": "price of one, in minor units",
    "cart.items[].url": "product page",
    "cart.items[].image": "product image",
    "cart.items[].sku": "your product id or SKU",
    "cart.discount": "discount already applied, in minor units",
    "recovery_url": "where the customer resumes the checkout",
    "recovery_expires_at": (
        "no message is sent within the tenant's [links] margin (default 1 h) of this time; an "
        "expired tracked link goes to [links] fallback_url"
    ),
    "consent": "what the customer agreed to, per channel, as your shop recorded it",
    "consent.email": "e-mail marketing consent",
    "consent.whatsapp": "WhatsApp consent (only an explicit opt-in field counts)",
    "consent.sms": "SMS consent",
    "stage": "how far they got: cart, contact (e-mail or phone known), payment",
    "recovered_from": "for a conversion: the abandoned checkout_id it came from",
    "order_ref": "your id of the purchase (order, payment): set it on the conversion, and a "
    "refund may name it instead of checkout_id",
    "livemode": "false for test data",
}


def accepted_schema() -> Schema:
    """The marshmallow schema one event of the body must pass (unknown fields are refused)."""
    return EventSchema(exclude=FILLED_BY_THE_HUB)


def _string_rules(field: fields.Field, out: dict[str, Any]) -> None:
    for rule in field.validators:
        if isinstance(rule, validate.OneOf):
            out["enum"] = list(rule.choices)
        elif isinstance(rule, validate.Regexp):
            out["pattern"] = rule.regex.pattern
        elif isinstance(rule, validate.Length):
            if rule.min is not None:
                out["minLength"] = rule.min
            if rule.max is not None:
                out["maxLength"] = rule.max
        elif isinstance(rule, validate.Range):
            if rule.min is not None:
                out["minimum" if rule.min_inclusive else "exclusiveMinimum"] = rule.min
            if rule.max is not None:
                out["maximum" if rule.max_inclusive else "exclusiveMaximum"] = rule.max


def field_schema(field: fields.Field, path: str) -> dict[str, Any]:
    """One marshmallow field → JSON Schema; raises ``TypeError`` for a type it does not know."""
    out: dict[str, Any]
    if isinstance(field, fields.Nested):
        out = object_schema(field.schema, path)
    elif isinstance(field, fields.List):
        out = {"type": "array", "items": field_schema(field.inner, f"{path}[]")}
    elif isinstance(field, AwareDateTime | fields.AwareDateTime):
        out = {"type": "string", "format": "date-time"}
    elif isinstance(field, fields.Email):
        out = {"type": "string", "format": "email"}
    elif isinstance(field, fields.Url):
        out = {"type": "string", "format": "uri"}
    elif isinstance(field, fields.String):
        out = {"type": "string"}
    elif isinstance(field, fields.Boolean):
        out = {"type": "boolean"}
    elif isinstance(field, fields.Integer):
        out = {"type": "integer"}
    elif isinstance(field, fields.Raw) and type(field) is fields.Raw:
        out = {}
    else:
        raise TypeError(f"{path}: no JSON Schema for {type(field).__name__}")
    _string_rules(field, out)
    if path in DESCRIPTIONS:
        out["description"] = DESCRIPTIONS[path]
    default = field.load_default
    if callable(default):
        default = default()
    if default is not fields.missing_ and not isinstance(field, fields.Nested):
        out["default"] = default
    if field.allow_none and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"].append(None)
    return out


def object_schema(schema: Schema, path: str = "") -> dict[str, Any]:
    """A marshmallow schema → a JSON object, closed (marshmallow 4 refuses unknown keys) unless
    the schema declares ``other_keys``."""
    properties = {}
    required = []
    for name, field in schema.fields.items():
        key = field.data_key or name
        properties[key] = field_schema(field, f"{path}.{key}" if path else key)
        if field.required:
            required.append(key)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    # closed unless the schema says what else it takes (the consent of any channel)
    out.update(getattr(schema, "other_keys", None) or {"additionalProperties": False})
    return out


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of a request body: one event, or a batch of 1–100 events."""
    event = object_schema(accepted_schema())
    event["title"] = "Normalized checkout event"
    # checkout_id is required, except on a refund that names its purchase (EventSchema)
    event["anyOf"] = [
        {"required": ["checkout_id"]},
        {
            "required": ["kind", "order_ref"],
            "properties": {"kind": {"const": "checkout.refunded"}, "order_ref": {"type": "string"}},
        },
    ]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "abandonment-hub generic webhook body",
        "description": "One normalized checkout event, or a JSON array of 1 to "
        f"{MAX_BATCH} of them. Sign it per Standard Webhooks (see docs/webhook.md); the "
        "webhook-id header is the event's idempotency key.",
        "oneOf": [
            {"$ref": "#/$defs/event"},
            {
                "type": "array",
                "items": {"$ref": "#/$defs/event"},
                "minItems": 1,
                "maxItems": MAX_BATCH,
            },
        ],
        "$defs": {"event": event},
    }


def schema_text() -> str:
    """The schema exactly as committed in ``docs/webhook-event.schema.json``."""
    return json.dumps(event_json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> None:
    if argv:
        Path(argv[0]).write_text(schema_text(), encoding="utf-8")
    else:
        sys.stdout.write(schema_text())


if __name__ == "__main__":
    main(sys.argv[1:])
