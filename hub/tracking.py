"""Links we put in messages: the tracked recovery link and one-click unsubscribe (RFC 8058).

``POST /u/<token>`` unsubscribes without cookies or a redirect, as mail clients' one-click
button requires; ``GET /u/<token>`` only shows a confirmation page, because link scanners and
prefetchers follow GETs. Tokens are signed with ``HUB_SECRET_KEY``: opaque and unforgeable.
After a key rotation, tokens signed with a key in ``HUB_SECRET_KEY_FALLBACKS`` still verify, so
the links in messages already sent keep working.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, abort, redirect, request
from itsdangerous import BadSignature

from hub import attribution
from hub.current import current_hub
from hub.engine import drop_retries, link_serializer
from hub.events import load_event
from hub.store import delivery_log, journeys, steps, suppressions

blueprint = Blueprint("tracking", __name__)

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> Response:
    return Response(
        PAGE.format(title=escape(title), body=body), status=status, mimetype="text/html"
    )


def _resolve(purpose: str, token: str, fields: int) -> tuple[Any, list] | None:
    """The journey a link names and the link's remaining fields; ``None`` unless it is ours.

    A link is ``[installation, journey id, journey token, *fields]``: one mailed by another
    installation or for an earlier journey with the same id (a restored database) finds
    nothing. Links mailed before links were bound carry only ``[journey id, *fields]`` and
    are still honoured by id, because an unsubscribe link must keep working.
    """
    hub = current_hub()
    try:
        payload = link_serializer(hub.settings.link_keys, purpose).loads(token)
    except BadSignature:
        return None
    if not isinstance(payload, list):
        return None
    if len(payload) == 1 + fields:
        (journey_id, *rest), journey_token = payload, None
    elif len(payload) == 3 + fields:
        installation, journey_id, journey_token, *rest = payload
        if installation != hub.installation[:8]:
            return None
    else:
        return None
    with hub.store.begin() as conn:
        journey = conn.execute(sa.select(journeys).where(journeys.c.id == journey_id)).first()
    if journey is None or journey_token not in (None, journey.token):
        return None
    return journey, rest


def _load(purpose: str, token: str, fields: int) -> tuple[Any, list]:
    """:func:`_resolve`, answering 404 for a link that is not ours."""
    found = _resolve(purpose, token, fields)
    if found is None:
        abort(404)
    return found


def _track(journey: Any, step_index: int, sink: str, kind: str, detail: str | None) -> bool:
    """Record ``kind`` for the ledger row the link names (once per row and kind); a link
    whose row is gone (or never existed: a preview) still gets its line in the log."""
    hub = current_hub()
    now = datetime.now(UTC)
    with hub.store.begin() as conn:
        delivery = attribution.delivery_of(conn, journey.id, step_index, sink)
        if delivery is not None:
            return attribution.record_tracking(conn, hub.store, delivery, kind, now, detail)
        conn.execute(
            sa.insert(delivery_log).values(
                tenant=journey.tenant,
                journey_id=journey.id,
                step_index=step_index,
                sink=sink,
                attempt=0,
                status=kind,
                reason=detail,
                at=now,
            )
        )
    return False


@blueprint.route("/u/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Response:
    journey, (channel,) = _load("unsubscribe", token, 1)
    journey_id = journey.id
    hub = current_hub()
    tenant = hub.tenants.get(journey.tenant)
    shop = escape(tenant.name if tenant else journey.tenant)
    if request.method == "GET":
        return _page(
            "Unsubscribe",
            (
                f"<h1>Unsubscribe</h1><p>Stop {escape(channel)} reminders from {shop}?</p>"
                f'<form method="post"><button type="submit">Unsubscribe from '
                f"{escape(channel)}</button></form>"
                f'<form method="post"><input type="hidden" name="scope" value="all">'
                f'<button type="submit">Unsubscribe from everything</button></form>'
            ),
        )
    scope = "*" if request.form.get("scope") == "all" else channel
    now = datetime.now(UTC)
    with hub.store.begin() as conn:
        for identity in {i for i in (journey.email, journey.phone) if i}:
            exists = conn.execute(
                sa.select(suppressions.c.id).where(
                    suppressions.c.tenant == journey.tenant,
                    suppressions.c.identity == identity,
                    suppressions.c.channel == scope,
                )
            ).first()
            if not exists:
                conn.execute(
                    sa.insert(suppressions).values(
                        tenant=journey.tenant,
                        identity=identity,
                        channel=scope,
                        reason=f"unsubscribed via journey {journey_id}",
                        created_at=now,
                    )
                )
        if journey.status == "open":
            conn.execute(
                sa.update(journeys)
                .where(journeys.c.id == journey_id)
                .values(
                    status="unsubscribed", closed_at=now, closed_reason=f"unsubscribed ({scope})"
                )
            )
            conn.execute(
                sa.update(steps)
                .where(
                    steps.c.journey_id == journey_id, steps.c.status.in_(("scheduled", "retrying"))
                )
                .values(status="cancelled", reason="unsubscribed", updated_at=now)
            )
            drop_retries(conn, journey_id, "unsubscribed", now)
    return _page(
        "Unsubscribed", f"<h1>Unsubscribed</h1><p>You will get no more reminders from {shop}.</p>"
    )


@blueprint.get("/r/<token>")
def recover(token: str) -> Response:
    journey, (step_index, sink) = _load("recovery", token, 2)
    if not journey.event:
        abort(404)
    event = load_event({**journey.event, "raw": None})
    _track(journey, step_index, sink, "clicked", "recovery link")
    expires = event.get("recovery_expires_at")
    if not event.get("recovery_url") or (expires and expires <= datetime.now(UTC)):
        # the cart is gone, the customer is not: send them to the shop when it says where
        tenant = current_hub().tenants.get(journey.tenant)
        if tenant is not None and tenant.links.fallback_url:
            return redirect(tenant.links.fallback_url, code=302)
        return _page("Link expired", "<h1>This link has expired</h1>", 410)
    return redirect(event["recovery_url"], code=302)


# 43 bytes: the smallest transparent GIF every mail client shows (GIF89a, 1×1, one colour)
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


@blueprint.get("/o/<token>.gif")
def opened(token: str) -> Response:
    """The open pixel of an HTML e-mail. Always the GIF, never an error: a mail client shows a
    broken image for a 404, and a forged or stale token simply records nothing. Counted once
    per message; an estimate (mail privacy proxies load every image, see the README)."""
    found = _resolve("open", token, 2)
    if found is not None:
        journey, (step_index, sink) = found
        _track(journey, step_index, sink, "opened", None)
    response = Response(PIXEL, mimetype="image/gif")
    response.headers["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0"
    response.headers["Pragma"] = "no-cache"
    return response


@blueprint.route("/c/<token>", methods=["POST", "GET"])
def clicked(token: str) -> Response:
    """The click beacon a push notification's service worker sends on ``notificationclick``
    (``fetch`` with ``mode: "no-cors"``, so no CORS headers are needed). 204 when recorded or
    already known; 404 for a token that is not ours."""
    journey, (step_index, sink) = _load("click", token, 2)
    _track(journey, step_index, sink, "clicked", "notification click")
    response = Response(status=204)
    response.headers["Cache-Control"] = "no-store"
    return response
