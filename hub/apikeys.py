"""API keys for the REST API: made, listed, revoked and checked against ``api_keys``.

A key reads ``hub_<prefix>_<secret>``: the prefix (12 hex digits, unique, shown in listings and
logs) finds the row, the secret (32 random bytes) proves possession. Only a keyed hash of the
whole key is stored, so the key is shown once, when it is made, and never again.

Why HMAC-SHA256 and not a slow password hash (scrypt, argon2): a slow hash protects *guessable*
secrets by making each guess expensive. A key here is 256 random bits, so no guessing is
possible however fast the hash, and a slow hash would only add tens of milliseconds of CPU to
every API request. Keying the hash with ``HUB_SECRET_KEY`` means a copy of the database alone
cannot even be used to check a candidate key. When that secret is rotated, a key hashed with an
older one (still in ``HUB_SECRET_KEY_FALLBACKS``) is accepted and re-hashed with the current one
on its next use.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.store import api_keys, utcnow

# a key's use is recorded at most this often: a busy client must not turn every read into a write
LAST_USED_EVERY = timedelta(minutes=1)
_KEY = re.compile(r"^hub_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an agency admin (``tenant`` is None) or one tenant."""

    tenant: str | None
    name: str
    prefix: str | None = None  # None for HUB_ADMIN_TOKEN

    @property
    def is_admin(self) -> bool:
        return self.tenant is None


def digest(key: str, secret: str) -> str:
    """The stored form of ``key``: HMAC-SHA256 keyed with the hub's secret (see module doc)."""
    mac = hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256${mac}"


def create_key(
    store: Any, secret: str, tenant: str | None, name: str, now: datetime | None = None
) -> tuple[str, str]:
    """Make a key for ``tenant`` (None: agency admin); returns ``(key, prefix)``. The key is
    not stored and cannot be shown again."""
    prefix = secrets.token_hex(6)
    key = f"hub_{prefix}_{secrets.token_urlsafe(32)}"
    with store.begin() as conn:
        conn.execute(
            sa.insert(api_keys).values(
                tenant=tenant,
                name=name,
                prefix=prefix,
                secret_hash=digest(key, secret),
                created_at=now or utcnow(),
            )
        )
    return key, prefix


def list_keys(store: Any) -> list[Any]:
    """Every key's row without its hash, oldest first (revoked ones too: they are history)."""
    columns = [c for c in api_keys.c if c.name != "secret_hash"]
    with store.begin() as conn:
        return list(conn.execute(sa.select(*columns).order_by(api_keys.c.id)).all())


def revoke_key(store: Any, prefix: str, now: datetime | None = None) -> bool:
    """Revoke the key with ``prefix``; False when there is no such key or it was revoked."""
    with store.begin() as conn:
        done = conn.execute(
            sa.update(api_keys)
            .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now or utcnow())
        )
    return bool(done.rowcount)


def authenticate(
    store: Any, secrets_newest_first: Sequence[str], presented: str, now: datetime | None = None
) -> Principal | None:
    """The principal of ``presented``, or None (unknown, malformed, wrong or revoked key).

    ``secrets_newest_first``: the current ``HUB_SECRET_KEY`` first, then its fallbacks.
    """
    match = _KEY.match(presented)
    if match is None:
        return None
    prefix = match.group(1)
    with store.begin() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.prefix == prefix)).first()
    if row is None or row.revoked_at is not None:
        return None
    for index, secret in enumerate(secrets_newest_first):
        if hmac.compare_digest(digest(presented, secret), row.secret_hash):
            _record_use(store, row, presented if index else None, secrets_newest_first[0], now)
            return Principal(row.tenant, row.name, prefix)
    return None


def _record_use(
    store: Any, row: Any, rehash: str | None, secret: str, now: datetime | None
) -> None:
    """Set ``last_used_at`` (throttled), and re-hash a key checked with an older secret."""
    now = now or utcnow()
    values: dict[str, Any] = {}
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        values["last_used_at"] = now
    if rehash is not None:
        values["secret_hash"] = digest(rehash, secret)
    if values:
        with store.begin() as conn:
            conn.execute(sa.update(api_keys).where(api_keys.c.id == row.id).values(**values))
