"""Shopify's webhook signature, verified against the raw body as received.

Shopify signs the body only: ``base64(HMAC-SHA256(app client secret, raw body))`` in
``X-Shopify-Hmac-Sha256`` (newer "events" subscriptions send the same value unprefixed as
``shopify-hmac-sha256``). There is no signed timestamp, so the event store's unique key is the
replay protection; that is why the shop domain is checked too, after the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from hub import VerificationError

SIGNATURE_HEADERS = ("X-Shopify-Hmac-Sha256", "shopify-hmac-sha256")
SHOP_DOMAIN_HEADERS = ("X-Shopify-Shop-Domain", "shopify-shop-domain")


def header(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    """The first non-empty value among ``names`` (the ``X-Shopify-`` form, then the unprefixed
    one Shopify's newer subscriptions add); ``headers`` is case-insensitive."""
    for name in names:
        value = headers.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def sign(body: bytes, secret: str) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value Shopify would send (used by ``hub demo`` and tests)."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(body: bytes, signature: str | None, secrets: Iterable[str]) -> None:
    """Raise :class:`VerificationError` unless ``signature`` matches one of ``secrets``.

    Several secrets are accepted because Shopify may keep signing with the old client secret
    for up to an hour after a rotation. An empty body fails, as in Shopify's own library.
    """
    if not body:
        raise VerificationError("empty body: Shopify always signs a JSON payload")
    if not signature:
        raise VerificationError("missing X-Shopify-Hmac-Sha256 header")
    offered = signature.encode("utf-8", errors="replace")
    # every secret is tried (no early exit) so timing does not reveal which one matched
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(sign(body, secret).encode("ascii"), offered)
    if not matched:
        raise VerificationError("X-Shopify-Hmac-Sha256 does not match this shop's client secret")


def verify_shop_domain(headers: Mapping[str, str], expected: str) -> None:
    """The shop domain header is not signed, but a signed request for another shop of the same
    app must not reach this tenant: the app's secret is shared by every shop that installed it."""
    domain = header(headers, SHOP_DOMAIN_HEADERS)
    if not domain:
        raise VerificationError("missing X-Shopify-Shop-Domain header")
    if domain.lower() != expected.lower():
        raise VerificationError("X-Shopify-Shop-Domain is not this tenant's shop")
