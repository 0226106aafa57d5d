"""Who is asking: ``Authorization: Bearer <key>`` on every API request, and what they may see.

An agency admin (a key made with ``hub keys create --admin``, or ``HUB_ADMIN_TOKEN`` for
bootstrapping) sees every tenant; a tenant's key sees only its tenant, and a row of another
tenant answers exactly as a row that does not exist (404), so a key can neither read nor count
another tenant's data. Every query of the resource modules goes through :func:`scope`.

Failed attempts are limited per client address with the ``limits`` library (the storage behind
flask-limiter) in the hub's Redis, under ``HUB_QUEUE_PREFIX`` like the queues: after
``HUB_API_AUTH_LIMIT`` failures (default ``10 per minute``) the address gets 429 until the window
ends, whatever it sends. A failure is logged with the address and the reason, never the key.
If Redis cannot be reached the limit is not applied (logged): keys are 256 random bits, so the
limit protects the hub's CPU and logs more than the keys.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import time
from typing import Any

import redis
import sqlalchemy as sa
from flask import Flask, g, request
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

from hub import apikeys
from hub.api.errors import ApiError, not_found
from hub.apikeys import Principal

log = logging.getLogger("hub.api")


class FailedAuthLimit:
    """Counts failed authentications per client address in Redis (one per app)."""

    def __init__(self, redis_url: str, prefix: str, limit: str) -> None:
        self.item = parse(limit)
        pool = redis.ConnectionPool.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        storage = RedisStorage("redis://", connection_pool=pool, key_prefix=f"{prefix}hub-api-auth")
        self.limiter = FixedWindowRateLimiter(storage)

    def refuse_if_exceeded(self, address: str) -> None:
        try:
            if self.limiter.test(self.item, address):
                return
            reset = self.limiter.get_window_stats(self.item, address).reset_time
        except redis.RedisError as exc:
            log.warning("api auth limit not applied: Redis unavailable (%s)", type(exc).__name__)
            return
        wait = max(1, math.ceil(reset - time.time()))
        raise ApiError(
            429,
            "too_many_failed_attempts",
            f"too many failed authentications from this address; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )

    def count_failure(self, address: str) -> None:
        with contextlib.suppress(redis.RedisError):  # logged when the limit is tested
            self.limiter.hit(self.item, address)


def authenticate(hub: Any, limit: FailedAuthLimit) -> Principal:
    """The request's principal, or 401 (429 when the address failed too often)."""
    address = request.remote_addr or "-"
    limit.refuse_if_exceeded(address)
    scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
    presented = presented.strip()
    principal = None
    if scheme.lower() == "bearer" and presented:
        admin_token = hub.settings.admin_token
        if admin_token and hmac.compare_digest(presented.encode(), admin_token.encode()):
            principal = Principal(None, "HUB_ADMIN_TOKEN")
        else:
            principal = apikeys.authenticate(hub.store, _secrets(hub), presented)
    if principal is not None:
        return principal
    limit.count_failure(address)
    reason = "missing" if not presented or scheme.lower() != "bearer" else "rejected"
    log.warning("api auth failed client=%s path=%s credentials=%s", address, request.path, reason)
    raise ApiError(
        401,
        "unauthorized",
        "send an API key as 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": 'Bearer realm="abandonment-hub"'},
    )


def _secrets(hub: Any) -> list[str]:
    return [hub.settings.secret_key, *hub.settings.secret_key_fallbacks]


def install(app: Flask, hub: Any, blueprints: set[str]) -> None:
    """Authenticate every request to one of ``blueprints`` before its view runs."""
    limit = FailedAuthLimit(hub.redis_url, hub.settings.queue_prefix, hub.settings.api_auth_limit)

    @app.before_request
    def _authenticate() -> None:
        if request.blueprint in blueprints:
            g.hub_principal = authenticate(hub, limit)


def principal() -> Principal:
    return g.hub_principal


def scope(query: sa.Select, tenant_column: Any, tenant: str | None = None) -> sa.Select:
    """Limit ``query`` to what the caller may see, and to ``tenant`` when one is asked for.

    A tenant key asking for another tenant gets 404, as for a tenant that does not exist.
    """
    own = principal().tenant
    if own is not None and tenant is not None and tenant != own:
        raise not_found(f"tenant {tenant!r}", "tenant")
    wanted = own if own is not None else tenant
    return query.where(tenant_column == wanted) if wanted is not None else query


def may_see(tenant: str) -> bool:
    own = principal().tenant
    return own is None or own == tenant
