"""The normalized event: the only thing flows and sinks ever see of a platform (contract).

Sources return plain dicts; :func:`load_event` validates them with :class:`EventSchema` once, at
the edge. Inside the hub an event is the loaded dict: money in integer minor units plus an ISO
currency, times aware UTC, phones E.164.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from marshmallow import (
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    missing,
    post_load,
    validate,
    validates,
    validates_schema,
)

KINDS = (
    "checkout.abandoned",
    "checkout.updated",
    "checkout.converted",
    "checkout.deleted",
    "checkout.refunded",
)
CONSENT_VALUES = ("opt_in", "opt_out", "unknown")
# a sink's channel kind as it appears in consent keys and consent_<channel> condition fields
CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
STAGES = ("cart", "contact", "payment")
# amounts and counts end up in 64-bit database columns (BIGINT); larger ones are not money
INT64 = validate.Range(min=-(2**63), max=2**63 - 1, error="Out of the 64-bit integer range.")


class AwareDateTime(fields.AwareDateTime):
    """An ISO datetime or a datetime object, always returned in UTC."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(default_timezone=UTC, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):  # noqa: ANN001
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise self.make_error(
                    "invalid_awareness", awareness=self.AWARENESS, obj_type=self.OBJ_TYPE
                )
            return value.astimezone(UTC)
        return super()._deserialize(value, attr, data, **kwargs).astimezone(UTC)


class CustomerSchema(Schema):
    email = fields.Email(load_default=None, allow_none=True)
    phone = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^\+[1-9]\d{6,14}$", error="Not an E.164 phone number."),
    )
    first_name = fields.String(load_default=None, allow_none=True)
    last_name = fields.String(load_default=None, allow_none=True)
    locale = fields.String(load_default=None, allow_none=True)
    country = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Z]{2}$")
    )
    external_id = fields.String(load_default=None, allow_none=True)


class LineItemSchema(Schema):
    name = fields.String(required=True)
    quantity = fields.Integer(load_default=1, validate=validate.Range(min=0, max=2**63 - 1))
    unit_price = fields.Integer(load_default=None, allow_none=True, validate=INT64)
    url = fields.Url(load_default=None, allow_none=True)
    image = fields.Url(load_default=None, allow_none=True)
    sku = fields.String(load_default=None, allow_none=True)


class CartSchema(Schema):
    total = fields.Integer(required=True, strict=True, validate=INT64)
    currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$"))
    items = fields.List(fields.Nested(LineItemSchema), load_default=list)
    discount = fields.Integer(load_default=0, validate=INT64)


class ConsentSchema(Schema):
    """Consent per channel kind. The channels are open: besides the three named here (for the
    docs and their defaults), any channel a sink registers (``telegram``, ``rcs``, …) is taken
    by its name. A channel no sink of this hub has is kept and harmless: the platform reported
    it, nothing sends on it."""

    class Meta:
        unknown = INCLUDE

    # what the generated JSON Schema says about the other channels (plugins/webhook/schema.py)
    other_keys: ClassVar[dict[str, Any]] = {
        "propertyNames": {"pattern": CHANNEL_NAME.pattern},
        "additionalProperties": {"type": "string", "enum": list(CONSENT_VALUES)},
    }

    email = fields.String(load_default="unknown", validate=validate.OneOf(CONSENT_VALUES))
    whatsapp = fields.String(load_default="unknown", validate=validate.OneOf(CONSENT_VALUES))
    sms = fields.String(load_default="unknown", validate=validate.OneOf(CONSENT_VALUES))

    @validates_schema
    def _other_channels(self, data: dict, **_: Any) -> None:
        errors = {}
        for key, value in data.items():
            if key in self.fields:
                continue
            if not isinstance(key, str) or not CHANNEL_NAME.match(key):
                errors[key] = ["Not a channel name (lower-case letters, digits and _)."]
            elif value not in CONSENT_VALUES:
                errors[key] = [f"Must be one of: {', '.join(CONSENT_VALUES)}."]
        if errors:
            raise ValidationError(errors)


class EventSchema(Schema):
    """The normalized event. ``unknown = RAISE``: a source that invents a field is a bug."""

    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    event_key = fields.String(required=True, validate=validate.Length(min=1, max=255))
    # required, except on a refund that names ``order_ref`` instead (see ``_refund_by_order``)
    checkout_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255))
    occurred_at = AwareDateTime(required=True)
    customer = fields.Nested(CustomerSchema, load_default=dict)
    cart = fields.Nested(CartSchema, load_default=None, allow_none=True)
    recovery_url = fields.Url(load_default=None, allow_none=True)
    recovery_expires_at = AwareDateTime(load_default=None, allow_none=True)
    consent = fields.Nested(ConsentSchema, load_default=dict)
    stage = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(STAGES))
    recovered_from = fields.String(load_default=None, allow_none=True)
    # the platform's id of the purchase a conversion made (an order, a payment): refunds name
    # the purchase, not the checkout, so the conversion records it for them
    order_ref = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=249)
    )
    livemode = fields.Boolean(load_default=True)
    source = fields.String(required=True)
    tenant = fields.String(required=True)
    raw = fields.Raw(load_default=None, allow_none=True)

    @validates("event_key")
    def _no_whitespace(self, value: str, **_: Any) -> None:
        if value != value.strip():
            raise ValidationError("Must not start or end with white space.")

    @validates_schema
    def _refund_by_order(self, data: dict, **_: Any) -> None:
        """A refund knows its purchase, often not its checkout (Stripe's charge, Shopify's
        refund): ``order_ref`` may stand in for ``checkout_id`` there, and only there."""
        if data.get("checkout_id") is not None:
            return
        if data.get("kind") == "checkout.refunded" and data.get("order_ref"):
            return
        raise ValidationError({"checkout_id": ["Missing data for required field."]})

    @post_load
    def _normalize(self, data: dict, **_: Any) -> dict:
        if data["checkout_id"] is None:
            data["checkout_id"] = order_checkout_id(data["order_ref"])
        unstorable = unstorable_text(data)
        if unstorable is not None:
            # PostgreSQL stores neither (SQLite would): refuse on every database alike
            raise ValidationError({unstorable: ["Contains NUL or an unpaired surrogate."]})
        customer = data["customer"]
        if customer.get("email"):
            customer["email"] = customer["email"].strip()
        if data["kind"] == "checkout.abandoned" and not data.get("stage"):
            data["stage"] = "cart"
        return data


def order_checkout_id(order_ref: str) -> str:
    """The checkout id a refund naming only its purchase is filed under (``order:<ref>``), the
    same form a source gives an order that came from no checkout."""
    return f"order:{order_ref}"


def unstorable_text(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string holding NUL or a lone surrogate (JSON's ``\\u0000``
    and ``\\ud800`` escapes allow both), else ``None``; ASCII strings cost one check."""
    if isinstance(value, str):
        if "\x00" in value:
            return path
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = unstorable_text(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


_schema = EventSchema()


class _Unsure(Exception):
    """The fast path cannot vouch for this input: marshmallow itself decides."""


_PLAIN_TYPES = {fields.String: str, fields.Integer: int, fields.Boolean: bool, fields.Raw: object}


def _field_loader(field: fields.Field) -> Callable[[Any], Any]:
    """What ``field.deserialize`` does to a value of its plain type (the field's own
    validators included), as one small function; anything else is :class:`_Unsure`.

    Types are checked exactly (``type(v) is int``): where marshmallow would convert (``"5"``
    for an Integer, ``"true"`` for a Boolean, a bool for an Integer it refuses) it decides.
    """
    validators = tuple(field.validators)
    kind = _PLAIN_TYPES.get(type(field))
    if isinstance(field, fields.Email | fields.Url):
        kind = str
    if isinstance(field, AwareDateTime):

        def convert(value: Any) -> Any:
            if type(value) is datetime and value.tzinfo is not None:
                return value.astimezone(UTC)
            try:  # an ISO string: the field's own parser
                return field.deserialize(value)
            except ValidationError as exc:
                raise _Unsure from exc

    elif kind is object:

        def convert(value: Any) -> Any:
            return value

    elif kind is not None:

        def convert(value: Any) -> Any:
            if type(value) is not kind:
                raise _Unsure
            return value

    else:
        raise TypeError(f"no fast loader for {field!r}")

    def load(value: Any) -> Any:
        if value is None:
            if not field.allow_none:
                raise _Unsure
            return None
        value = convert(value)
        try:
            for validator in validators:
                validator(value)
        except ValidationError as exc:
            raise _Unsure from exc
        return value

    return load


def _object_loader(
    schema: Schema, nested: dict[str, Callable[[Any], Any]] | None = None
) -> Callable[[Any], dict]:
    """``schema.load`` for a dict of known keys whose values the field loaders vouch for."""
    nested = nested or {}
    plan = []
    for name, field in schema.fields.items():
        loader = nested.get(name) or _field_loader(field)
        if nested.get(name) is not None and field.allow_none:
            loader = _none_or(loader)
        default = field.load_default
        plan.append((name, loader, field.required, default, callable(default)))
    keys = frozenset(schema.fields)

    def load(data: Any) -> dict:
        if type(data) is not dict or not keys.issuperset(data):
            raise _Unsure  # not an object, or unknown keys: RAISE or INCLUDE is marshmallow's
        out = {}
        for name, loader, required, default, make in plan:
            if name in data:
                out[name] = loader(data[name])
            elif required:
                raise _Unsure
            elif default is not missing:
                out[name] = default() if make else default
        return out

    return load


def _none_or(loader: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else loader(value)


def _list_of(loader: Callable[[Any], Any]) -> Callable[[Any], list]:
    def load(value: Any) -> list:
        if type(value) is not list:
            raise _Unsure
        return [loader(item) for item in value]

    return load


def _nested(name: str, within: Schema = _schema) -> Schema:
    return within.fields[name].schema  # type: ignore[attr-defined]


_cart = _nested("cart")
_load_event_fields = _object_loader(
    _schema,
    {
        "customer": _object_loader(_nested("customer")),
        "cart": _object_loader(
            _cart,
            {"items": _list_of(_object_loader(_cart.fields["items"].inner.schema))},  # type: ignore[attr-defined]
        ),
        "consent": _object_loader(_nested("consent")),
    },
)


def _load_fast(data: dict) -> dict:
    """:class:`EventSchema`'s result for input it vouches for, else :class:`_Unsure`.

    The same fields, defaults, validators and hooks run, in the same order; only the Schema
    machinery around them (error stores, hook lookup, nested Schema calls) is skipped, which
    was ~75 µs of the ~80 µs ``load`` took per webhook. Anything unusual — an error, an unknown
    key, a consent channel only a plugin declares, a non-dict — goes to marshmallow, which
    gives the error (with its field path) or the result.
    """
    try:
        out = _load_event_fields(data)
        _schema._no_whitespace(out["event_key"])
        _schema._refund_by_order(out)
        return _schema._normalize(out)
    except ValidationError as exc:
        raise _Unsure from exc


def load_event(data: dict) -> dict:
    """Validate and load one event dict; raises ``ValidationError`` with messages per field."""
    try:
        return _load_fast(data)
    except _Unsure:
        return _schema.load(data)


# a loaded event's only values JSON cannot hold as they are
_DATETIME_FIELDS = ("occurred_at", "recovery_expires_at")


def dump_event(event: dict) -> dict:
    """JSON-ready form of a loaded event (datetimes as ISO strings).

    A loaded event is already plain data except for its two datetimes, so this copies it
    instead of running marshmallow's ``dump``: ~2 µs against ~27 µs on every webhook, and
    ``dump`` would drop the consent of channels no field declares (a plugin's ``telegram``),
    which the worker then no longer saw. Nested dicts and lists are copied, so callers may
    change the result freely.
    """
    out = dict(event)
    for key in _DATETIME_FIELDS:
        value = out.get(key)
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    for key in ("customer", "consent"):
        if isinstance(out.get(key), dict):
            out[key] = dict(out[key])
    cart = out.get("cart")
    if isinstance(cart, dict):
        out["cart"] = {**cart, "items": [dict(item) for item in cart.get("items") or []]}
    return out


def first_error_field(messages: Any, prefix: str = "") -> tuple[str, str]:
    """Flatten marshmallow's nested error dict to (dotted field path, first message)."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":  # the value as a whole (e.g. a string for an object)
                return first_error_field(value, prefix)
            path = f"{prefix}.{key}" if prefix else str(key)
            return first_error_field(value, path)
    if isinstance(messages, list) and messages:
        return first_error_field(messages[0], prefix)
    return prefix or "_schema", str(messages)


def identity_of(customer: dict) -> tuple[str | None, str | None]:
    """The identity keys the hub matches a person on: lower-cased e-mail and E.164 phone."""
    email = (customer.get("email") or "").strip().lower() or None
    phone = customer.get("phone") or None
    return email, phone


def is_zero_decimal(currency: str) -> bool:
    """True for currencies without a minor unit (JPY, KRW, …), per Babel's currency data."""
    from babel.numbers import get_currency_precision

    return get_currency_precision(currency.upper()) == 0
