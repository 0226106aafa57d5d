"""Sign-in attempts counted in Redis, so every web process of the hub shares one count.

A fixed window per key (``SET NX EX`` starts it, ``INCR`` counts; one round trip, and it
works on Redis 6, which has no ``EXPIRE NX``): a guesser
gets at most ``limit`` tries per window from one address and against one account, whichever
runs out first. Keys live under the hub's queue namespace (``HUB_QUEUE_PREFIX`` plus the
installation), so two hubs, or two test runs, sharing a Redis database count apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Limit:
    limit: int
    window: int  # seconds


# an office behind one NAT address signs in more than one person; an account has one owner
PER_ADDRESS = Limit(30, 15 * 60)
PER_ACCOUNT = Limit(8, 15 * 60)


class SignInLimiter:
    """Counts attempts per address and per account; ``over()`` says whether to refuse."""

    def __init__(self, connection: redis.Redis, namespace: str) -> None:
        self.connection = connection
        self.namespace = namespace

    def _key(self, kind: str, value: str) -> str:
        # hashed: the account's address is personal data and has no business in Redis
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return f"{self.namespace}dashboard:signin:{kind}:{digest}"

    def hit(self, address: str, account: str) -> bool:
        """Count one attempt; ``True`` when either count is now over its limit."""
        pipe = self.connection.pipeline(transaction=False)
        checks = (("address", address, PER_ADDRESS), ("account", account, PER_ACCOUNT))
        for kind, value, limit in checks:
            key = self._key(kind, value)
            pipe.set(key, 0, ex=limit.window, nx=True)
            pipe.incr(key)
        counts = pipe.execute()[1::2]
        return any(
            count > limit.limit for count, (_k, _v, limit) in zip(counts, checks, strict=True)
        )

    def clear_account(self, account: str) -> None:
        """A successful sign-in forgives the account's earlier typos (not the address's)."""
        self.connection.delete(self._key("account", account))
