"""What the three ticket sinks (Zendesk, HubSpot, signed webhook) share.

A ticket goes to the shop's own staff, not to the customer: no consent is needed and a ticket is
worth creating even when we know neither an e-mail nor a phone. Every call goes through
:func:`hub.http.safe_session`, because the URL of a CRM instance or a webhook is
tenant-configured. The answer of the remote API is classified here once, the same way for all
three, so the engine can decide on retries and fallback:

=============================  ==================================================================
2xx                            created
3xx                            permanent: redirects are never followed (they could lead anywhere)
429, 5xx                       retryable, honouring ``Retry-After`` (seconds or an HTTP date)
other 4xx                      permanent (401/403 also logged as an error: fix the credentials)
refused destination            permanent (non-public address, ``HUB_ALLOW_PRIVATE_NETWORKS``)
no connection / DNS failure    retryable: nothing left this machine
read timeout, dropped answer   retryable when the provider dedupes on our id, else
                               :class:`~hub.OutcomeUnknown` (a second ticket is worse than none)
=============================  ==================================================================
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from marshmallow import ValidationError, fields, validate

from hub import OutboundMessage, OutcomeUnknown, PermanentError, RetryableError, Sink
from hub.http import blocked_reason, never_connected, retry_after_seconds, safe_session

log = logging.getLogger("hub.tickets")

PRIORITIES = ("low", "normal", "high", "urgent")
UNKNOWN_PROSPECT = "unknown prospect"
CONNECT_TIMEOUT = 5.0
LINE_BREAKS = re.compile(r"[ \t]*[\r\n]+[ \t]*")
EMAIL_IN_TEXT = re.compile(r"([\w.+-])[\w.+-]*@")
MAX_ANSWER_BYTES = 64 * 1024  # a tenant's URL may answer with anything; we need an id at most


def priority_field() -> fields.String:
    """The ``priority`` key every ticket sink takes, in one vocabulary mapped per provider."""
    return fields.String(load_default="normal", validate=validate.OneOf(PRIORITIES))


def timeout_field() -> fields.Float:
    """Seconds to wait for the provider's answer (connecting waits at most 5 s)."""
    return fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=120))


def http_url_field(required: bool = False) -> fields.String:
    """An ``http(s)://host[:port][/path]`` URL. Where it may point is checked at send time,
    after DNS resolution (``127.1`` and ``2130706433`` are loopback too), not here."""

    def check(value: str) -> None:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValidationError(f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
            raise ValidationError("expected an http:// or https:// URL with a host name")
        if parts.username or parts.password:
            raise ValidationError("put credentials in their own keys, not in the URL")

    if required:
        return fields.String(required=True, validate=check)
    return fields.String(load_default=None, validate=check)


def ticket_text(message: OutboundMessage) -> tuple[str, str]:
    """The rendered ``ticket.<locale>.subject`` (one line) and ``ticket.<locale>.txt``."""
    # collapse line breaks only: str.split() would also eat the no-break space in "250,00 €"
    subject = LINE_BREAKS.sub(" ", message.parts.get("subject") or "").strip()
    body = (message.parts.get("txt") or "").strip()
    if not subject or not body:
        raise PermanentError(
            f'the "{message.template}" template needs ticket.<locale>.subject and '
            "ticket.<locale>.txt files"
        )
    return subject, body


def _read_capped(response: requests.Response) -> bytes:
    """At most :data:`MAX_ANSWER_BYTES` of the answer; a body lost after the status line
    arrived reads as empty: the status alone already says what happened."""
    answer = b""
    try:
        for chunk in response.iter_content(8192):
            answer += chunk
            if len(answer) >= MAX_ANSWER_BYTES:
                break
    except requests.exceptions.RequestException:
        answer = b""
    finally:
        response.close()
    return answer


def _error_summary(body: bytes) -> str:
    """The provider's own error code and message, without echoing a whole answer."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
    else:
        if isinstance(data, dict):
            keys = ("error", "category", "errorType", "message", "description")
            text = "; ".join(f"{k}: {data[k]}" for k in keys if isinstance(data.get(k), str))
            text = text or json.dumps(data)
        else:
            text = json.dumps(data)
    # error messages echo what we sent ("Email jane@… is invalid"): keep PII out of the log
    return EMAIL_IN_TEXT.sub(r"\1***@", " ".join(text.split()))[:200]


class HttpTicketSink(Sink):
    """Base class of the ticket sinks: address, one safe session, one classified POST."""

    channel = "ticket"
    needs_consent = False
    audience = "staff"  # tickets are read by the shop's team: tenant's staff_locale

    def __init__(self) -> None:
        self._session: requests.Session | None = None
        self._session_allows: tuple[str, ...] | None = None

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        """Who the ticket is about; never ``None``: staff can act on a ticket without it."""
        return customer.get("email") or customer.get("phone") or UNKNOWN_PROSPECT

    def session(self) -> requests.Session:
        """One SSRF-safe session per sink instance, built with the operator's allowed CIDRs."""
        from hub import current_hub

        allowed = tuple(current_hub().settings.allow_private_networks)
        if self._session is None or self._session_allows != allowed:
            self._session = safe_session(allowed)
            self._session_allows = allowed
        return self._session

    def post(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
        what: str,
        repeatable: bool | None = None,
    ) -> tuple[int, bytes]:
        """POST ``body`` and return ``(status, answer)`` for a 2xx; raise a classified error.

        ``what`` names the call in failure reasons ("Zendesk ticket", "HubSpot contact").
        ``repeatable`` says whether sending this request twice does no harm (an upsert);
        it defaults to the sink's ``idempotent``.
        """
        try:
            response = self.session().post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.RequestException as exc:
            repeat_ok = self.idempotent if repeatable is None else repeatable
            raise _transport_error(exc, what, repeat_ok) from None
        status = response.status_code
        answer = _read_capped(response)
        if 200 <= status < 300:
            return status, answer
        if 300 <= status < 400:
            raise PermanentError(
                f"{what}: HTTP {status} redirect to {response.headers.get('Location', '?')!r} "
                "not followed (configure the final URL)"
            )
        summary = _error_summary(answer)
        if status == 429 or status >= 500:
            raise RetryableError(
                f"{what}: HTTP {status} {summary}".strip(),
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            log.error("%s sink: %s rejected our credentials (HTTP %s)", self.name, what, status)
        raise PermanentError(f"{what}: HTTP {status} {summary}".strip())


def _transport_error(
    exc: requests.exceptions.RequestException, what: str, repeatable: bool
) -> Exception:
    """Retryable when nothing was sent or repeating is harmless; unknown otherwise."""
    refused = blocked_reason(exc)
    if refused:
        return PermanentError(f"{what}: destination refused: {refused}")
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentError(f"{what}: TLS failure: {exc}")
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        isinstance(exc, requests.exceptions.ConnectionError) and never_connected(exc)
    ):
        return RetryableError(f"{what}: could not connect ({exc.__class__.__name__})")
    if isinstance(exc, requests.exceptions.Timeout | requests.exceptions.ConnectionError):
        reason = f"{what}: no answer after sending ({exc.__class__.__name__})"
        if repeatable:
            return RetryableError(f"{reason}; repeating it is safe")
        return OutcomeUnknown(reason)
    return PermanentError(f"{what}: request not possible: {exc}")
