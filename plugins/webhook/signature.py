"""Standard Webhooks signatures (the Standard Webhooks spec), verified with the ``standardwebhooks``
package but never trusting it alone.

The package raises ``ValueError`` on entries like ``garbage`` or ``v1,a,b`` and gives up on the
whole header at the first malformed entry, decodes the body as UTF-8 itself, and has a fixed
5-minute window. So this module checks the headers and the timestamp (both directions) first,
hands the package only well-formed ``v1`` entries, and turns every exception into
:class:`VerificationError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping

from standardwebhooks import Webhook

from hub import VerificationError

TOLERANCE = 300  # seconds, both directions (the spec's 5 minutes)
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
SECRET_PREFIX = "whsec_"
_ENTRY = re.compile(r"^v1,[A-Za-z0-9+/]+={0,2}$")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret: the base64-decoded part after the prefix."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a Standard Webhooks secret starts with whsec_")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value a sender computes: ``v1,<base64 HMAC-SHA256>`` of
    ``{id}.{timestamp}.{body}`` (used by ``hub demo``, the docs and the tests)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict:
    """The three headers for ``body``, as a Standard Webhooks sender would send them."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
        "Content-Type": "application/json",
    }


def verify(
    body: bytes, headers: Mapping[str, str], secrets: Iterable[str], now: float | None = None
) -> str:
    """Raise :class:`VerificationError` unless one ``v1`` entry matches one of ``secrets`` and
    the timestamp is within ±300 s; return the verified ``webhook-id``."""
    values = {name: (headers.get(name) or "").strip() for name in HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise VerificationError(f"missing header {', '.join(missing)}")
    msg_id, stamp = values["webhook-id"], values["webhook-timestamp"]
    if not (stamp.isascii() and stamp.isdigit()):
        raise VerificationError("webhook-timestamp is not whole unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > TOLERANCE:
        raise VerificationError("webhook-timestamp is more than 300 s away from now")
    entries = [e for e in values["webhook-signature"].split(" ") if _ENTRY.match(e)]
    if not entries:
        raise VerificationError("webhook-signature has no v1 entry")
    checked = {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": " ".join(entries),
    }
    for secret in secrets:
        try:
            Webhook(secret).verify(body, checked, json_parse=False)
        except Exception:  # WebhookVerificationError, UnicodeDecodeError, binascii.Error, …
            continue
        return msg_id
    raise VerificationError("no webhook-signature entry matches this endpoint's secrets")
