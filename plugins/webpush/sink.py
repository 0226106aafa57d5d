"""The ``webpush`` sink: one encrypted, VAPID-signed push to a subscribed browser.

Encryption (RFC 8291, ``aes128gcm``) is pywebpush's ``WebPusher``; the VAPID header (RFC 8292)
is py-vapid's, with claims built fresh for every push (pywebpush's ``webpush()`` mutates and
caches the claims dict, which would send one push service's ``aud`` to another). The request goes
through the plugin's outbound session (``hub.outbound``): endpoints come from browsers, so they
may point anywhere, and failures are read by the hub's one table.

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

from hub import (
    NetworkPolicy,
    OutboundMessage,
    PermanentError,
    PluginServices,
    Sink,
    classify_request_error,
    classify_status,
    new_session,
)
from plugins.webpush.config import WebPushConfig, load_vapid_key, origin_of
from plugins.webpush.subscriptions import SubscriptionBook

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
    """The JSON the service worker receives: ``{title, body, url, icon?, tag, click?}``."""
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
    if message.context.get("click_beacon_url"):
        # the service worker reports the click here (the hub counts it once per push)
        payload["click"] = message.context["click_beacon_url"]
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

    def __init__(self, services: PluginServices) -> None:
        self.services = services
        self._legacy_sessions: dict[str, requests.Session] = {}
        self._lock = threading.Lock()

    def _session(self, ca_bundle: str | None) -> requests.Session:
        """The plugin's pooled session; with the deprecated per-tenant ``ca_bundle``, one that
        trusts only that bundle (its old meaning), kept per bundle."""
        if not ca_bundle:
            return self.services.http_session()
        with self._lock:
            session = self._legacy_sessions.get(ca_bundle)
            if session is None:
                allowed = self.services.network_policy.allow_private_networks
                session = new_session(NetworkPolicy(allowed))
                session.verify = ca_bundle
                self._legacy_sessions[ca_bundle] = session
            return session

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        """The key of the subscription registered for this checkout, e-mail or customer id."""
        tenant = (context.get("tenant") or {}).get("slug")
        if not tenant:
            return None
        book = SubscriptionBook(self.services.data)
        return book.find(tenant, context.get("checkout_id"), customer)

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        book = SubscriptionBook(self.services.data)
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
        session = self._session(config.get("ca_bundle"))
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
        except requests.exceptions.RequestException as exc:
            # a lost answer may be repeated: the Topic header makes a resend replace, not add
            raise classify_request_error(exc, "push service", repeatable=self.idempotent) from None
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
        if status in (400, 401, 403):
            log.error(
                "webpush tenant=%s rejected with %s: check vapid_private_key and vapid_subject",
                message.tenant,
                status,
            )
            raise PermanentError(f"push service rejected the request, VAPID or headers ({detail})")
        raise classify_status(status, response.headers, "push service", text) or PermanentError(
            f"push service answered HTTP {status}"
        )
