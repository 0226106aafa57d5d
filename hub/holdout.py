"""Holdout groups: which journeys of a flow get no message, so the rest can be measured.

A flow may declare ``holdout = "10%"``. That share of its journeys is chosen when the journey
starts and stored on it (``journeys.holdout``); its steps are skipped with reason ``holdout``
while everything else (conversion, refunds, attribution with credit ``none``) runs as for any
journey, so :mod:`hub.incremental` can compare the two groups.

The choice is a stable hash, not a random draw, so the same person is always in the same
group (a second checkout of someone held out is held out too, and a message never reaches
half of a person's checkouts):

* the key is the person's lower-cased e-mail address, else their E.164 phone, else (an
  anonymous checkout) the checkout id; prefixed by its kind (``email:``, ``phone:``,
  ``checkout:``) so an e-mail and a checkout id never collide;
* ``SHA-256(tenant slug + NUL + key)``; its first 8 bytes, read as a big-endian integer and
  divided by 2**64, give a number in [0, 1) that is uniform over people;
* the journey is held out when that number is below the flow's share.

The tenant is part of the hash, so one person's group at one shop says nothing about another
shop. The flow is not: with shares of 10 % and 20 % in two flows, the 10 % are held out in
both. That keeps a person in one group however flows are renamed or split.
"""

from __future__ import annotations

import hashlib
import re

# more than half held out would measure the messages on the smaller group: never what a shop
# wants, and most likely a typo ("100%")
MAX_SHARE = 0.5
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_share(value: object) -> float:
    """``"10%"`` → ``0.1``; raises ``ValueError`` with a message for the tenant file's author."""
    match = _SHARE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'expected a percentage like "10%", got {value!r}')
    share = float(match.group(1)) / 100
    if share > MAX_SHARE:
        raise ValueError(f"must be between 0% and {MAX_SHARE:.0%}, got {value!r}")
    return share


def assignment_key(email: str | None, phone: str | None, checkout_id: str) -> str:
    """What the group is chosen by: the person's e-mail, else phone, else the checkout."""
    if email and email.strip():
        return "email:" + email.strip().lower()
    if phone:
        return "phone:" + phone
    return "checkout:" + checkout_id


def bucket(tenant: str, key: str) -> float:
    """A number in [0, 1), the same for the same tenant and key on every machine and run."""
    digest = hashlib.sha256(f"{tenant}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(
    tenant: str, share: float, email: str | None, phone: str | None, checkout_id: str
) -> bool:
    """Whether a journey of a flow holding out ``share`` gets no message."""
    if share <= 0:
        return False
    return bucket(tenant, assignment_key(email, phone, checkout_id)) < share
