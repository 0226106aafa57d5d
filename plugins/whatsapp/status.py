"""Meta's status webhooks: ``/plugins/whatsapp/<tenant>/status``.

``GET`` answers the subscription handshake with the tenant's ``verify_token``; ``POST``
verifies ``X-Hub-Signature-256`` over the raw body with the tenant's ``app_secret`` and
records each message status (sent, delivered, read, failed) on the delivery whose provider id
is the wamid. Meta retries for days and may send a status twice or out of order: the hub's
ledger only moves forward, and a (wamid, status) pair already recorded is not logged again.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request

from hub import PayloadError, PluginServices, parse_json

log = logging.getLogger("hub.whatsapp")

STATUSES = ("sent", "delivered", "read", "failed")


def make_blueprint(services: PluginServices) -> Blueprint:
    """The status routes of one hub, acting through the plugin's ``services``."""
    blueprint = Blueprint("whatsapp", __name__)
    for view, method in ((handshake, "GET"), (statuses, "POST")):
        bound = functools.partial(view, services)
        blueprint.add_url_rule("/<tenant>/status", view.__name__, bound, methods=[method])
    return blueprint


def handshake(services: PluginServices, tenant: str) -> Response:
    """Meta's subscription check: echo ``hub.challenge`` when the verify token matches."""
    config = services.config(tenant)
    if config is None:
        return services.error_response(404, "not_found", "no such tenant with a WhatsApp sink")
    expected = (config.get("verify_token") or "").encode()
    offered = request.args.get("hub.verify_token", "").encode()
    if (
        request.args.get("hub.mode") != "subscribe"
        or not expected
        or not hmac.compare_digest(offered, expected)
    ):
        return services.error_response(403, "forbidden", "verify token or mode does not match")
    challenge = request.args.get("hub.challenge", "")
    answer = Response(challenge, 200, mimetype="text/plain")
    answer.headers["X-Content-Type-Options"] = "nosniff"
    return answer


def statuses(services: PluginServices, tenant: str) -> Response:
    """Verify the signature over the raw bytes, then record every status in the batch."""
    error = services.error_response
    config = services.config(tenant)
    if config is None:
        return error(404, "not_found", "no such tenant with a WhatsApp sink")
    body = request.get_data(cache=False)
    if not _signed(body, request.headers.get("X-Hub-Signature-256", ""), config):
        return error(401, "unverified", "X-Hub-Signature-256 is missing or wrong")
    try:
        payload = parse_json(body)
    except PayloadError as exc:  # not UTF-8 JSON, or nested too deep to parse
        return error(400, "bad_request", exc.message, "_body")
    if not isinstance(payload, dict) or not isinstance(payload.get("entry", []), list):
        return error(400, "bad_request", "expected an object with an entry list", "entry")

    seen_store = services.data
    recorded = unmatched = repeated = 0
    for wamid, status, reason in _statuses(payload):
        seen = (seen_store.get(tenant, f"status:{wamid}") or {}).get("seen", [])
        if status in seen:
            repeated += 1
            continue
        if services.record_provider_status(wamid, status, reason):
            seen_store.put(tenant, f"status:{wamid}", {"seen": [*seen, status]})
            recorded += 1
        else:  # sent by other software on the same number, or already purged
            unmatched += 1
    log.info(
        "whatsapp statuses tenant=%s recorded=%s repeated=%s unmatched=%s",
        tenant,
        recorded,
        repeated,
        unmatched,
    )
    return jsonify({"recorded": recorded, "repeated": repeated, "unmatched": unmatched})


def _signed(body: bytes, header: str, config: Mapping[str, Any]) -> bool:
    secret = config.get("app_secret")
    if not secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, header[len("sha256=") :].strip().encode("utf-8"))


def _statuses(payload: dict) -> list[tuple[str, str, str | None]]:
    """(wamid, status, reason) of each message status in a notification, in order."""
    found: list[tuple[str, str, str | None]] = []
    for entry in payload.get("entry") or []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict) or change.get("field") != "messages":
                continue
            value = change.get("value")
            items = value.get("statuses") if isinstance(value, dict) else None
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict):
                    continue
                wamid, status = item.get("id"), item.get("status")
                if isinstance(wamid, str) and wamid and status in STATUSES:
                    found.append((wamid, status, _reason(item) if status == "failed" else None))
    return found


def _reason(item: dict) -> str:
    errors = item.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else {}
    if not isinstance(first, dict):
        return "failed"
    details = (first.get("error_data") or {}).get("details")
    text = f"{first.get('code', '-')} {first.get('title') or first.get('message') or 'failed'}"
    return f"{text}: {details}"[:400] if details else text[:400]
