"""The ``[sinks.webpush]`` table of a tenant file and the VAPID key it names.

The VAPID key pair identifies the shop to every push service: the browser is given the public
half as ``applicationServerKey`` when it subscribes, and each push carries a JWT signed with the
private half (RFC 8292). Changing the key orphans every existing subscription, so it is checked
once at start-up (a bad key is a config error naming ``sinks.webpush.vapid_private_key``), not at
the first push hours later.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from marshmallow import Schema, ValidationError, fields, validate, validates
from py_vapid import Vapid

log = logging.getLogger("hub.webpush")

URGENCIES = ("very-low", "low", "normal", "high")
DEFAULT_TTL = 86_400  # a day: long enough for a phone that is off overnight
MAX_TTL = 28 * 86_400  # push services keep messages four weeks at most
STAGES = ("cart", "contact", "payment")
_SUBJECT = re.compile(r"^(mailto:[^@\s]+@[^@\s]+\.[^@\s]+|https://[^\s/]+(/\S*)?)$", re.I)
_TAG = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict base64url (padding optional): ``binascii.Error`` on anything else."""
    text = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text):
        raise binascii.Error("not base64url")
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=64)
def load_vapid_key(text: str) -> Vapid:
    """A PEM key (PKCS#8 or SEC 1) or a raw 32-byte private scalar in base64url → ``Vapid``.

    Environment variables often carry a PEM with literal ``\\n``; those are accepted too.
    Raises ``ValueError`` with a message fit for a config error.
    """
    text = text.strip().replace("\\n", "\n")
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"unreadable PEM private key ({exc})") from None
    else:
        try:
            raw = b64url_decode(text)
        except (binascii.Error, ValueError):
            raise ValueError("expected a PEM key or a base64url raw P-256 private key") from None
        if len(raw) == 32:
            number = int.from_bytes(raw, "big")
            try:
                key = ec.derive_private_key(number, ec.SECP256R1())
            except ValueError:
                raise ValueError("the raw key is not a valid P-256 private scalar") from None
        else:
            try:
                key = serialization.load_der_private_key(raw, password=None)
            except (ValueError, TypeError):
                raise ValueError(
                    "expected a PEM key or a base64url raw 32-byte P-256 private key"
                ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("VAPID keys are ECDSA P-256 (prime256v1) keys")
    return Vapid(private_key=key)


def application_server_key(vapid: Vapid) -> str:
    """The public key as browsers want it for ``applicationServerKey``: base64url X9.62."""
    return b64url(
        vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


def origin_of(url: str) -> str:
    """``https://Push.example:443/x/y`` → ``https://push.example``: scheme://host[:port].

    It is the VAPID ``aud`` of a push endpoint and what browsers send as ``Origin``.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def normalize_origin(value: str) -> str | None:
    """``https://Shop.example/`` → ``https://shop.example``; ``None`` if it is not an origin."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    try:
        return origin_of(value.strip())
    except ValueError:  # a port that is not a number
        return None


class WebPushConfig(Schema):
    """``[sinks.webpush]``: see docs/webpush.md for every key."""

    vapid_private_key = fields.String(required=True, metadata={"secret": True})
    vapid_subject = fields.String(required=True)
    allowed_origins = fields.List(fields.String(), load_default=list)
    ttl = fields.Integer(load_default=DEFAULT_TTL, validate=validate.Range(0, MAX_TTL))
    urgency = fields.String(load_default="normal", validate=validate.OneOf(URGENCIES))
    stage_tags = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    icon = fields.Url(load_default=None, schemes={"https", "http"}, require_tld=False)
    default_url = fields.Url(load_default=None, schemes={"https", "http"}, require_tld=False)
    identity_secret = fields.String(
        load_default=None, validate=validate.Length(min=16), metadata={"secret": True}
    )
    timeout = fields.Float(load_default=10.0, validate=validate.Range(0.1, 60))
    # deprecated (use the operator's HUB_CA_BUNDLE): a PEM bundle that replaces the default CA
    # store for this tenant's pushes; kept working for one release
    ca_bundle = fields.String(load_default=None)

    @validates("vapid_private_key")
    def _key(self, value: str, **_: object) -> None:
        try:
            load_vapid_key(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    @validates("vapid_subject")
    def _subject(self, value: str, **_: object) -> None:
        if not _SUBJECT.match(value):
            raise ValidationError(
                'a contact for the push services: "mailto:ops@shop.example" or an https URL'
            )

    @validates("allowed_origins")
    def _origins(self, value: list[str], **_: object) -> None:
        bad = [v for v in value if normalize_origin(v) is None]
        if bad:
            raise ValidationError(
                f"not an origin (scheme://host[:port], no path): {', '.join(bad)}"
            )

    @validates("ca_bundle")
    def _ca_bundle(self, value: str | None, **_: object) -> None:
        if value is not None and not os.path.isfile(value):
            raise ValidationError(f"no such file: {value}")
        if value is not None:
            log.warning("[sinks.webpush] ca_bundle is deprecated: the operator sets HUB_CA_BUNDLE")

    @validates("stage_tags")
    def _tags(self, value: dict[str, str], **_: object) -> None:
        for stage, tag in value.items():
            if stage not in STAGES:
                raise ValidationError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
            if not _TAG.match(tag):
                raise ValidationError(f"tag {tag!r}: 1-64 letters, digits or _ . : -")
