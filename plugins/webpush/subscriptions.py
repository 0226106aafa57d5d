"""Push subscriptions: what a browser registers, validated, and where the sink finds it again.

A browser's ``PushSubscription`` is stored once under ``sub:<hash of the endpoint>``; small
index entries (``checkout:<id>``, ``email:<address>``, ``customer:<id>``) point at it so the sink
can find it from an abandoned checkout. Everything lives in the hub's per-plugin, per-tenant
key → JSON store (the plugin's ``services.data``), so one tenant never sees another's
subscriptions. The newest registration for an index key wins: one browser per checkout or
person gets the push (the one they used last).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from plugins.webpush.config import b64url_decode

MAX_ENDPOINT = 2048
BINDINGS = (("checkout_id", "checkout"), ("email", "email"), ("customer_id", "customer"))


class KeysSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # browsers may add keys; we need only these two

    p256dh = fields.String(required=True)
    auth = fields.String(required=True)

    @validates("p256dh")
    def _p256dh(self, value: str, **_: object) -> None:
        try:
            raw = b64url_decode(value)
        except (binascii.Error, ValueError):
            raise ValidationError("not base64url") from None
        if len(raw) != 65 or raw[0] != 4:
            raise ValidationError("expected an uncompressed P-256 point (65 bytes, base64url)")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise ValidationError("not a point on the P-256 curve") from None

    @validates("auth")
    def _auth(self, value: str, **_: object) -> None:
        try:
            raw = b64url_decode(value)
        except (binascii.Error, ValueError):
            raise ValidationError("not base64url") from None
        if len(raw) != 16:
            raise ValidationError("expected a 16-byte auth secret (base64url)")


class PushSubscriptionSchema(Schema):
    """``PushSubscription.toJSON()`` as the browser gives it."""

    class Meta:
        unknown = EXCLUDE

    endpoint = fields.String(required=True, validate=validate.Length(max=MAX_ENDPOINT))
    expirationTime = fields.Raw(load_default=None, allow_none=True)  # noqa: N815 (browser's)
    keys = fields.Nested(KeysSchema, required=True)

    @validates("endpoint")
    def _endpoint(self, value: str, **_: object) -> None:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValidationError("the endpoint's port is not a number") from None
        if parts.scheme != "https" or not parts.hostname:
            raise ValidationError("push endpoints are https URLs")
        if parts.username or parts.password:
            raise ValidationError("credentials in the endpoint URL are not allowed")


class RegistrationSchema(Schema):
    """The body of ``POST /plugins/webpush/<tenant>/subscriptions``."""

    subscription = fields.Nested(PushSubscriptionSchema, required=True)
    checkout_id = fields.String(load_default=None, validate=validate.Length(1, 200))
    email = fields.Email(load_default=None, validate=validate.Length(max=254))
    email_hmac = fields.String(load_default=None)
    customer_id = fields.String(load_default=None, validate=validate.Length(1, 200))
    customer_id_hmac = fields.String(load_default=None)

    @validates_schema
    def _binding(self, data: dict, **_: object) -> None:
        if not any(data.get(name) for name, _prefix in BINDINGS):
            raise ValidationError(
                "give checkout_id, email or customer_id so the hub can find this subscription",
                "checkout_id",
            )


class UnsubscribeSchema(Schema):
    """The body of ``DELETE``: the endpoint alone, or the whole subscription object."""

    endpoint = fields.String(load_default=None)
    subscription = fields.Nested(PushSubscriptionSchema(only=("endpoint",)), load_default=None)

    @validates_schema
    def _one(self, data: dict, **_: object) -> None:
        if not data.get("endpoint") and not data.get("subscription"):
            raise ValidationError("give the subscription's endpoint", "endpoint")


def identity_hmac(secret: str, value: str) -> str:
    """What the shop's server signs to vouch for an e-mail or customer id (hex HMAC-SHA256)."""
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def check_identity_proofs(data: Mapping[str, Any], secret: str | None) -> None:
    """E-mail and customer-id bindings must be vouched for by the shop's server.

    Anyone can call the route, so without a proof a stranger could bind their own browser to
    someone else's e-mail and receive that person's cart. Checkout ids are unguessable and known
    only to the customer's browser, so they need no proof. Raises ``ValidationError`` keyed by
    the field at fault.
    """
    for name in ("email", "customer_id"):
        value = data.get(name)
        if not value:
            continue
        proof_field = f"{name}_hmac"
        if not secret:
            raise ValidationError(
                {
                    name: [
                        f"{name} bindings need identity_secret in [sinks.webpush] and {proof_field}"
                    ]
                }
            )
        canonical = value.strip().lower() if name == "email" else value
        proof = data.get(proof_field) or ""
        if not hmac.compare_digest(proof.lower(), identity_hmac(secret, canonical)):
            raise ValidationError({proof_field: [f"missing or wrong HMAC for {name}"]})


def subscription_key(endpoint: str) -> str:
    return "sub:" + hashlib.sha256(endpoint.encode()).hexdigest()[:40]


def _index_key(prefix: str, value: str) -> str:
    if prefix == "email":
        value = value.strip().lower()
    return f"{prefix}:{value}"


class SubscriptionBook:
    """Subscriptions of all tenants, over one plugin's key → JSON store."""

    def __init__(self, plugin_data: Any) -> None:
        self.data = plugin_data

    def register(self, tenant: str, registration: Mapping[str, Any]) -> tuple[str, bool]:
        """Store (or refresh) a subscription and point its bindings at it.

        Returns ``(subscription key, created)``.
        """
        sub = registration["subscription"]
        key = subscription_key(sub["endpoint"])
        existing = self.data.get(tenant, key)
        now = datetime.now(UTC).isoformat()
        bindings = dict(existing.get("bindings", {})) if existing else {}
        for name, prefix in BINDINGS:
            if registration.get(name):
                bindings[prefix] = _index_key(prefix, registration[name])
        record = {
            "endpoint": sub["endpoint"],
            "keys": {"p256dh": sub["keys"]["p256dh"], "auth": sub["keys"]["auth"]},
            "bindings": bindings,
            "created_at": existing.get("created_at", now) if existing else now,
            "updated_at": now,
        }
        self.data.put(tenant, key, record)
        for index in bindings.values():
            self.data.put(tenant, index, {"subscription": key})
        return key, existing is None

    def get(self, tenant: str, key: str) -> dict | None:
        return self.data.get(tenant, key) if key.startswith("sub:") else None

    def find(self, tenant: str, checkout_id: str | None, customer: Mapping[str, Any]) -> str | None:
        """The subscription for this checkout, else for this person's e-mail or customer id."""
        candidates = [
            ("checkout", checkout_id),
            ("email", customer.get("email")),
            ("customer", customer.get("external_id")),
        ]
        for prefix, value in candidates:
            if not value:
                continue
            index = self.data.get(tenant, _index_key(prefix, str(value)))
            if index and self.data.get(tenant, index["subscription"]) is not None:
                return index["subscription"]
        return None

    def remove(self, tenant: str, key: str) -> bool:
        """Forget a subscription and every index entry that still points at it."""
        record = self.data.get(tenant, key)
        if record is None:
            return False
        for index in record.get("bindings", {}).values():
            pointer = self.data.get(tenant, index)
            if pointer and pointer.get("subscription") == key:
                self.data.delete(tenant, index)
        return self.data.delete(tenant, key)

    def remove_endpoint(self, tenant: str, endpoint: str) -> bool:
        return self.remove(tenant, subscription_key(endpoint))

    def forget_person(
        self, tenant: str, email: str | None, checkout_ids: list[str], dry_run: bool = False
    ) -> int:
        """Forget the subscriptions bound to this e-mail or these checkouts, and the index
        entries naming them (erasure of a person); how many entries went (or would go)."""
        indexes = [_index_key("checkout", c) for c in checkout_ids]
        if email:
            indexes.append(_index_key("email", email))
        doomed: set[str] = set()
        for index in indexes:
            pointer = self.data.get(tenant, index)
            if pointer is None:
                continue
            doomed.add(index)
            record = self.data.get(tenant, pointer["subscription"])
            if record is not None:
                doomed.add(pointer["subscription"])
                doomed.update(record.get("bindings", {}).values())
        if not dry_run:
            for key in sorted(doomed):
                self.data.delete(tenant, key)
        return len(doomed)
