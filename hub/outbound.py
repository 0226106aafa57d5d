"""Contract: outbound HTTP for sinks, bound to the operator's network policy and trust store.

A sink calls URLs that others chose: a tenant configures a CRM instance or a webhook target, a
browser hands us its push endpoint. So every call of every sink, built-in or third-party, goes
through one kind of session and its failures are read by one table. Use it through
:meth:`hub.PluginServices.http_session` (the running hub's policy, one pooled session per plugin)
or subclass :class:`HttpSink`, which does both for you.

**The session** (:func:`new_session`) resolves the host itself and refuses loopback, private,
link-local, shared, reserved and cloud-metadata addresses unless the operator allowed them with
``HUB_ALLOW_PRIVATE_NETWORKS``; it then connects to the address it checked, so DNS cannot be
rebound in between. It follows no redirect, ignores proxy and CA variables of the environment
(``trust_env`` is off: they must not silently change where a tenant's data goes), and verifies TLS
against the default store plus the operator's ``HUB_CA_BUNDLE``.

**The classification** (:func:`classify_request_error`, :func:`classify_status`), in one place
so no two sinks disagree:

=========================================  ===================================================
what happened                              the sink raises
=========================================  ===================================================
destination refused (non-public address)   :class:`~hub.PermanentError`
3xx (redirects are never followed)         :class:`~hub.PermanentError`
certificate not trusted / wrong host name  :class:`~hub.PermanentError` (``HUB_CA_BUNDLE``)
nothing sent: DNS failure, connection      :class:`~hub.RetryableError`
refused or connect timeout
sent, answer lost: read timeout, dropped   :class:`~hub.RetryableError` when repeating the
connection, other TLS failures             request is harmless (``repeatable``), else
                                           :class:`~hub.OutcomeUnknown`
request impossible (bad URL or header)     :class:`~hub.PermanentError`
429, 5xx                                   :class:`~hub.RetryableError` with ``Retry-After``
other 4xx                                  :class:`~hub.PermanentError`
=========================================  ===================================================

A TLS failure other than the certificate check may happen after the request left (on a reused
connection), so it is read like a lost answer; a certificate the store does not know is a
configuration problem no retry fixes.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from marshmallow import ValidationError, fields, validate

from hub.hookspecs import OutcomeUnknown, PermanentError, RetryableError, Sink
from hub.http import blocked_reason, exception_chain, never_connected, retry_after_seconds
from hub.http import safe_session as _safe_session

if TYPE_CHECKING:
    from hub.services import PluginServices

__all__ = [
    "HttpSink",
    "NetworkPolicy",
    "classify_request_error",
    "classify_status",
    "new_session",
    "request_json",
    "retry_after_seconds",
    "timeout_field",
    "tls_context",
    "url_field",
]

log = logging.getLogger("hub.outbound")

CONNECT_TIMEOUT = 5.0
MAX_ANSWER_BYTES = 64 * 1024  # a tenant's URL may answer with anything; a sink needs an id
_EMAIL_IN_TEXT = re.compile(r"([\w.+-])[\w.+-]*@")


@dataclass(frozen=True)
class NetworkPolicy:
    """What the operator allows outbound calls: extra networks and extra trusted CAs.

    ``allow_private_networks`` are CIDRs (``HUB_ALLOW_PRIVATE_NETWORKS``, development only);
    ``ca_bundle`` is a PEM file of CAs trusted *in addition to* the default store
    (``HUB_CA_BUNDLE``), for HTTP sinks and SMTP alike.
    """

    allow_private_networks: tuple[str, ...] = ()
    ca_bundle: str | None = None


def tls_context(policy: NetworkPolicy, *, cafile: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the default store plus ``policy.ca_bundle``.

    For TLS that is not HTTP (SMTP). ``cafile`` *replaces* the default store instead; it exists
    only for the deprecated per-sink keys (``ca_file``, ``ca_bundle``), which meant that.
    """
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    context = ssl.create_default_context()
    if policy.ca_bundle:
        context.load_verify_locations(cafile=policy.ca_bundle)
    return context


def _http_tls_context(policy: NetworkPolicy) -> ssl.SSLContext | None:
    """``requests``' own CA store plus the operator's bundle; ``None`` when there is none."""
    if not policy.ca_bundle:
        return None
    from requests.utils import DEFAULT_CA_BUNDLE_PATH

    context = ssl.create_default_context(cafile=DEFAULT_CA_BUNDLE_PATH)
    context.load_verify_locations(cafile=policy.ca_bundle)
    return context


def new_session(policy: NetworkPolicy, user_agent: str | None = None) -> requests.Session:
    """A new ``requests.Session`` bound to ``policy``; reuse it, it pools connections.

    Always pass ``allow_redirects=False`` and a ``timeout`` to its calls. Plugins normally take
    the pooled one from :meth:`hub.PluginServices.http_session` instead.
    """
    return _safe_session(policy.allow_private_networks, user_agent, _http_tls_context(policy))


def _certificate_refused(exc: BaseException) -> str | None:
    for inner in exception_chain(exc):
        if isinstance(inner, ssl.SSLCertVerificationError):
            return inner.verify_message or str(inner)
        if isinstance(inner, ssl.CertificateError):
            return str(inner)
    return None


def classify_request_error(
    exc: requests.RequestException, what: str, *, repeatable: bool
) -> Exception:
    """The hub's error for a request that got no HTTP answer (see the module's table).

    ``what`` names the call in the reason ("Zendesk ticket"); ``repeatable`` says whether
    sending the request twice does no harm (the provider dedupes, or it is an upsert). Returns
    the exception for the caller to ``raise … from None``.
    """
    refused = blocked_reason(exc)
    if refused:
        return PermanentError(f"{what}: destination refused: {refused}")
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        status = exc.response.status_code if exc.response is not None else "3xx"
        return PermanentError(f"{what}: HTTP {status} redirect not followed")
    untrusted = _certificate_refused(exc)
    if untrusted:
        return PermanentError(
            f"{what}: TLS certificate not trusted ({untrusted}); "
            "for a private CA the operator sets HUB_CA_BUNDLE"
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        isinstance(exc, requests.exceptions.ConnectionError) and never_connected(exc)
    ):
        return RetryableError(f"{what}: could not connect ({exc.__class__.__name__})")
    if isinstance(exc, requests.exceptions.Timeout | requests.exceptions.ConnectionError):
        reason = f"{what}: no answer after sending ({exc.__class__.__name__})"
        if repeatable:
            return RetryableError(f"{reason}; repeating it is safe")
        return OutcomeUnknown(reason)
    return PermanentError(f"{what}: request not possible: {exc.__class__.__name__}: {exc}")


def classify_status(
    status: int, headers: Mapping[str, str], what: str, detail: str = ""
) -> Exception | None:
    """``None`` for a 2xx, else the hub's error for the HTTP status (see the module's table).

    ``detail`` (the provider's own error text, already short and free of PII) ends the
    reason. ``Retry-After`` (seconds or an HTTP date) becomes ``retry_after``.
    """
    if 200 <= status < 300:
        return None
    reason = f"{what}: HTTP {status} {detail}".strip()
    if 300 <= status < 400:
        where = headers.get("Location", "?")
        return PermanentError(f"{reason} redirect to {where!r} not followed")
    if status == 429 or status >= 500:
        return RetryableError(reason, retry_after=retry_after_seconds(headers.get("Retry-After")))
    return PermanentError(reason)


def error_summary(body: bytes) -> str:
    """The provider's own error code and message, short, with e-mail addresses masked."""
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
    return _EMAIL_IN_TEXT.sub(r"\1***@", " ".join(text.split()))[:200]


def _read_capped(response: requests.Response) -> bytes:
    """At most :data:`MAX_ANSWER_BYTES`; a body lost after the status line reads as empty:
    the status alone already says what happened."""
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


class HttpSink(Sink):
    """Base class of sinks that call an HTTP API: the session and the classification built in.

    Construct it with the plugin's services (``hub_sinks(services)`` hands them over) and call
    :meth:`post`; it returns the answer of a 2xx and raises the hub's error for anything else,
    following the module's table. Subclasses set ``name``, ``channel``, ``config_schema``,
    ``idempotent`` and implement ``address`` and ``send`` as for any :class:`~hub.Sink`.
    """

    def __init__(self, services: PluginServices) -> None:
        self.services = services

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
        """POST ``body`` (JSON unless ``headers`` say otherwise); ``(status, answer)`` of a 2xx.

        ``what`` names the call in failure reasons ("Zendesk ticket", "SMS"). ``repeatable``
        says whether sending this request twice does no harm; it defaults to the sink's
        ``idempotent``. Connecting waits at most 5 s (less when ``timeout`` is shorter).
        """
        try:
            response = self.services.http_session().post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.RequestException as exc:
            repeat_ok = self.idempotent if repeatable is None else repeatable
            raise classify_request_error(exc, what, repeatable=repeat_ok) from None
        answer = _read_capped(response)
        error = classify_status(response.status_code, response.headers, what, error_summary(answer))
        if error is None:
            return response.status_code, answer
        if response.status_code in (401, 403):
            status = response.status_code
            log.error("%s sink: %s rejected our credentials (HTTP %s)", self.name, what, status)
        raise error


def request_json(
    session: requests.Session,
    method: str,
    url: str,
    *,
    what: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    body: Any = None,
) -> Any:
    """One read-only call to a platform's API (a :class:`~hub.ConversionProbe`): the parsed
    JSON answer of a 2xx.

    A timeout is raised as ``requests``' own ``Timeout`` (the hub counts it as one); other
    failures as the hub's error for them (the module's table), and an answer that is not JSON
    as ``ValueError``. ``body`` is sent as JSON. No redirect is followed.
    """
    try:
        response = session.request(
            method,
            url,
            headers=headers,
            params=params,
            json=body,
            timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
            allow_redirects=False,
            stream=True,
        )
    except requests.exceptions.Timeout:
        raise
    except requests.exceptions.RequestException as exc:
        raise classify_request_error(exc, what, repeatable=True) from None
    answer = _read_capped(response)
    error = classify_status(response.status_code, response.headers, what, error_summary(answer))
    if error is not None:
        raise error
    try:
        return json.loads(answer)
    except ValueError:
        raise ValueError(f"{what}: the answer is not JSON") from None


def url_field(required: bool = False, **metadata: Any) -> fields.String:
    """A config key holding an ``http(s)://host[:port][/path]`` URL without credentials.

    Where it may point is checked at send time, after DNS resolution (``127.1`` and
    ``2130706433`` are loopback too), not here.
    """

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
        return fields.String(required=True, validate=check, metadata=metadata)
    return fields.String(load_default=None, validate=check, metadata=metadata)


def timeout_field(default: float = 10.0) -> fields.Float:
    """A config key: seconds to wait for the provider's answer (0.1-120)."""
    return fields.Float(load_default=default, validate=validate.Range(min=0.1, max=120))
