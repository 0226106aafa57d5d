"""Graph API answers and transport failures → the hub's retry / fallback / unknown outcomes.

Meta says to build on the error ``code``, not on the HTTP status or message titles
(codes from Meta's error-code page as mirrored by pywa). A code not listed here falls back to
Meta's ``is_transient`` flag and the HTTP status: 429 and 5xx retry, other 4xx are permanent.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from hub import (
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    classify_request_error,
    retry_after_seconds,
)

log = logging.getLogger("hub.whatsapp")

# throttling and transient trouble at Meta: the same request may succeed later
RETRYABLE_CODES = frozenset(
    {
        1,  # API unknown
        2,  # API service
        4,  # app reached its API call limit
        80007,  # WABA rate limit
        130429,  # Cloud API throughput reached
        131000,  # something went wrong
        131016,  # service unavailable
        131056,  # too many messages to the same number (pair rate limit)
        131057,  # account in maintenance
    }
)
# the operator must act (token, permissions, policy, payment, quality): permanent + alert
ALERT_CODES = frozenset(
    {0, 3, 10, 190, 368, 130497, 131031, 131042, 131048, 131063, 132015, 132016}
    | set(range(200, 300))
)
# final for this message whatever the HTTP status: the engine falls back to the next channel
PERMANENT_CODES = frozenset(
    {
        100,  # invalid parameter (Graph API)
        130472,  # user is in a Meta experiment group
        131008,  # required parameter missing
        131009,  # parameter value invalid
        131026,  # undeliverable: not on WhatsApp, old app, terms not accepted
        131047,  # re-engagement: more than 24 h since the customer's last message
        131049,  # per-user marketing cap ("healthy ecosystem"): not within 24 h
        131050,  # the customer stopped marketing messages from this business
        131051,  # unsupported message type
        132000,  # parameter count differs from the template's
        132001,  # no such template (name or language)
        132005,  # translated text too long
        132007,  # content policy
        132012,  # parameter format mismatch
    }
)


def classify_response(response: requests.Response) -> str:
    """Return the message id (wamid) of a success; raise the hub's error for anything else."""
    status = response.status_code
    if 300 <= status < 400:
        raise PermanentError(f"HTTP {status} redirect from the Graph API (never followed)")
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if 200 <= status < 300:
        try:
            wamid = payload["messages"][0]["id"]
        except (TypeError, KeyError, IndexError):
            wamid = None
        if not isinstance(wamid, str) or not wamid:
            # Meta answered but we cannot tell what it did: resending could duplicate
            raise OutcomeUnknown(f"HTTP {status} without a message id")
        return wamid

    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    details = (error.get("error_data") or {}).get("details") if error else None
    text = str(error.get("message") or response.reason or "no error message")
    reason = f"Graph API error {code if code is not None else '-'}: {text}"
    if details:
        reason += f" ({details})"
    reason = f"{reason[:400]} [HTTP {status}]"
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))

    if code in RETRYABLE_CODES:
        raise RetryableError(reason, retry_after)
    if code in ALERT_CODES:
        log.error("whatsapp: the operator must act on the tenant's account: %s", reason)
        raise PermanentError(reason)
    if code in PERMANENT_CODES:
        raise PermanentError(reason)
    if error.get("is_transient") is True or status == 429 or status >= 500:
        raise RetryableError(reason, retry_after)
    raise PermanentError(reason)


def classify_transport(exc: requests.RequestException) -> Exception:
    """A request that got no HTTP answer: the hub's one table (``hub.outbound``). Meta has no
    idempotency key for messages, so an answer lost after sending is an unknown outcome."""
    return classify_request_error(exc, "Graph API", repeatable=False)
