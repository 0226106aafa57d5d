"""The ``webpush`` sink: one encrypted, VAPID-signed push to a subscribed browser.

Encryption (RFC 8291, ``aes128gcm``) is pywebpush's ``WebPusher``; the VAPID header (RFC 8292)
is py-vapid's, with claims built fresh for every push (pywebpush's ``webpush()`` mutates and
caches the claims dict, which would send one push service's ``aud`` to another). The request goes
through ``hub.http.safe_session``: endpoints come from browsers, so they may point anywhere.

Why ``idempotent = True``: every push carries ``Topic: delivery-<delivery id>``, the same on
every retry. A push service replaces an undelivered message with a newer one of the same topic
(RFC 8030 §5.4), and a copy that did reach the browser is replaced on screen by the service
worker's ``showNotification`` with the same ``tag``. So resending after a lost answer (read
timeout, a worker killed mid-request) shows the customer one notification, not two.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
from pywebpush import WebPusher, WebPushException

from hub import OutboundMessage, PermanentError, RetryableError, Sink, current_hub
from hub.http import blocked_reason, retry_after_seconds, safe_session
from plugins.webpush.config import WebPushConfig, load_vapid_key, origin_of
from plugins.webpush.subscriptions import PLUGIN, SubscriptionBook

log = logging.getLogger("hub.webpush")

VAPID_LIFETIME = 12 * 3600  # RFC 8292 allows 24 h; half of it leaves room for clock skew
MAX_PLAINTEXT = 3993  # 4096-byte body − 86-byte header − 17 bytes of padding delimiter and tag
CONNECT_TIMEOUT = 5.0


def topic_for(delivery_id: int) -> str:
    """RFC 8030 topic: ≤ 32 characters of the base64url alphabet, stable across retries."""
    return f"delivery-{delivery_id}"


def tag_for(stage: str | None, stage_tags: Mapping[str, str]) -> str:
    """The notification tag for an abandonment stage (``cart``/``contact``/``payment``)."""
    stage = stage or "cart"
    return stage_tags.get(stage, stage)


def build_payload(message: OutboundMessage, config: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON the service worker receives: ``{title, body, url, icon?, tag}``."""
    parts = message.parts
    if not parts.get("title", "").strip() or not parts.get("body", "").strip():
        raise PermanentError("the webpush template needs non-empty .title and .body files")
    payload: dict[str, Any] = {
        "title": " ".join(parts["title"].split()),
        "body": parts["body"].strip(),
        "url": message.context.get("recovery_url") or config.get("default_url"),
        "tag": tag_for(message.context.get("stage"), config.get("stage_tags") or {}),
    }
    if config.get("icon"):
        payload["icon"] = config["icon"]
    return payload


class _NoRedirects:
    """Hands pywebpush a session whose ``post`` never follows a redirect."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.session.post(url, allow_redirects=False, **kwargs)


class WebPushSink(Sink):
    name = "webpush"
    channel = "webpush"
    config_schema = WebPushConfig
    needs_consent = False  # the browser's permission prompt and subscription are the consent
    idempotent = True  # see the module docstring: Topic + tag make a resend harmless
    max_attempts = 5

    def __init__(self) -> None:
        self._sessions: dict[tuple, requests.Session] = {}
        self._lock = threading.Lock()

    def _session(self, allowed: tuple[str, ...], ca_bundle: str | None) -> requests.Session:
        """One pooled SSRF-safe session per worker process (and per test CA)."""
        key = (allowed, ca_bundle)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = safe_session(allowed)
                if ca_bundle:
                    session.verify = ca_bundle
                self._sessions[key] = session
            return session

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        """The key of the subscription registered for this checkout, e-mail or customer id."""
        tenant = (context.get("tenant") or {}).get("slug")
        if not tenant:
            return None
        book = SubscriptionBook(current_hub().plugin_data(PLUGIN))
        return book.find(tenant, context.get("checkout_id"), customer)

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        hub = current_hub()
        book = SubscriptionBook(hub.plugin_data(PLUGIN))
        subscription = book.get(message.tenant, message.to)
        if subscription is None:
            raise PermanentError("subscription gone (unsubscribed before the push)")
        data = json.dumps(build_payload(message, config), ensure_ascii=False).encode()
        if len(data) > MAX_PLAINTEXT:
            raise PermanentError(
                f"payload too large: {len(data)} bytes, push services take {MAX_PLAINTEXT}"
            )
        vapid = load_vapid_key(config["vapid_private_key"])
        claims = {
            "sub": config["vapid_subject"],
            "aud": origin_of(subscription["endpoint"]),
            "exp": int(time.time()) + VAPID_LIFETIME,
        }
        headers = {
            **vapid.sign(claims),
            "Urgency": config["urgency"],
            "Topic": topic_for(message.delivery_id),
        }
        session = self._session(hub.settings.allow_private_networks, config.get("ca_bundle"))
        try:
            pusher = WebPusher(
                {"endpoint": subscription["endpoint"], "keys": subscription["keys"]},
                requests_session=_NoRedirects(session),  # type: ignore[arg-type]
            )
            response = pusher.send(
                data,
                headers,
                ttl=config["ttl"],
                content_encoding="aes128gcm",
                timeout=(CONNECT_TIMEOUT, config["timeout"]),
            )
        except WebPushException as exc:  # a stored subscription that no longer parses
            book.remove(message.tenant, message.to)
            raise PermanentError(f"unusable subscription: {exc.message}") from None
        except requests.exceptions.ConnectTimeout:
            raise RetryableError("push service did not accept the connection in time") from None
        except requests.exceptions.TooManyRedirects as exc:
            # safe_session sets max_redirects = 0, so requests raises on any 3xx even with
            # allow_redirects=False; the redirect was not followed either way
            status = exc.response.status_code if exc.response is not None else "3xx"
            raise PermanentError(
                f"push service redirected (HTTP {status}); redirects are not followed"
            ) from None
        except requests.exceptions.ReadTimeout:
            # it may have arrived; the Topic header makes sending it again replace, not add
            raise RetryableError("push service did not answer in time") from None
        except requests.exceptions.RequestException as exc:
            reason = blocked_reason(exc)
            if reason:
                raise PermanentError(f"refused destination: {reason}") from None
            if isinstance(exc, requests.exceptions.SSLError):
                raise PermanentError(
                    f"TLS verification of the push service failed: {exc}"
                ) from None
            raise RetryableError(f"push service unreachable: {exc.__class__.__name__}") from None
        return self._outcome(response, message, book)

    def _outcome(
        self, response: requests.Response, message: OutboundMessage, book: SubscriptionBook
    ) -> str | None:
        """RFC 8030 answers → sent, retry later, or give up (and fall back)."""
        status = response.status_code
        detail = f"HTTP {status}"
        text = (response.text or "").strip()[:200]
        if text:
            detail += f": {text}"
        if 200 <= status < 300:
            location = response.headers.get("Location")
            return location[:255] if location else None
        if 300 <= status < 400:
            raise PermanentError(f"push service redirected ({detail}); redirects are not followed")
        if status in (404, 410):
            book.remove(message.tenant, message.to)
            raise PermanentError(f"subscription gone ({detail}); deleted")
        if status == 413:
            raise PermanentError(f"payload too large for the push service ({detail})")
        if status == 429:
            raise RetryableError(
                f"push service rate limit ({detail})",
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise RetryableError(
                f"push service error ({detail})",
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status in (400, 401, 403):
            log.error(
                "webpush tenant=%s rejected with %s: check vapid_private_key and vapid_subject",
                message.tenant,
                status,
            )
            raise PermanentError(f"push service rejected the request, VAPID or headers ({detail})")
        raise PermanentError(f"push service refused the message ({detail})")
