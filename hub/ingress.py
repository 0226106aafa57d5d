"""``POST /webhooks/<tenant>/<source>``: verify, parse, validate, store, hand off, answer.

The answer comes as soon as the event row is committed: the row is the outbox. If Redis is down
the event stays ``stored`` and the workers' sweep enqueues it later; if the database is down the
platform gets 503 and retries. Status codes (contract): 401 unverifiable, 400 unusable (naming
the field), 413 too large, 404 unknown tenant or source not enabled, 2xx for new events,
ignored event types and duplicates alike.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Blueprint, Flask, Request, Response, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from marshmallow import ValidationError
from werkzeug.datastructures import Headers
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from hub.current import current_hub
from hub.events import dump_event, first_error_field, identity_of, load_event
from hub.hookspecs import InboundRequest, IngestOutcome, PayloadError, VerificationError
from hub.logs import mask, mask_ids

log = logging.getLogger("hub.ingress")
blueprint = Blueprint("ingress", __name__)
WEBHOOK_PATH = "/webhooks/"


class NoSessionOnWebhooks(SecureCookieSessionInterface):
    """Flask's cookie session everywhere but on webhook routes.

    A platform sends no cookie and reads none back, yet Flask opens a session for every
    request, building a signing serializer each time (~4 % of an ingress worker's CPU when
    profiled). ``None`` makes Flask use its null session, which it never saves.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(WEBHOOK_PATH):
            return None
        return super().open_session(app, request)


def error(
    status: int, code: str, message: str, field: str | None = None, headers: dict | None = None
) -> Response:
    response = jsonify({"code": code, "message": message, "field": field})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@blueprint.post("/webhooks/<tenant_slug>/<source_name>")
def receive(tenant_slug: str, source_name: str) -> Response:
    hub = current_hub()
    tenant = hub.tenants.get(tenant_slug)
    if tenant is None:
        return error(404, "unknown_tenant", f"no tenant {tenant_slug!r}")
    source = hub.sources.get(source_name)
    if source is None or source_name not in tenant.sources:
        return error(
            404, "unknown_source", f"source {source_name!r} is not enabled for this tenant"
        )
    config = tenant.sources[source_name]

    body = read_body(hub.settings.max_body_bytes)
    inbound = InboundRequest(
        tenant=tenant.slug,
        source=source_name,
        method=request.method,
        body=body,
        headers=Headers(request.headers),
        query=request.args.to_dict(),
        content_type=request.mimetype or "",
        received_at=datetime.now(UTC),
    )

    try:
        source.verify(inbound, config)
    except VerificationError as exc:
        log.info("rejected tenant=%s source=%s reason=%s", tenant.slug, source_name, exc)
        return error(401, "unverified", str(exc) or "signature verification failed")
    except Exception as exc:  # a verifier's own bug or a library leaking exceptions
        log.info("rejected tenant=%s source=%s reason=%r", tenant.slug, source_name, exc)
        return error(401, "unverified", "signature verification failed")

    try:
        parsed = source.parse(inbound, config)
    except PayloadError as exc:
        return error(400, "invalid_payload", exc.message, exc.field)
    except Exception as exc:
        log.exception("source %s failed to parse tenant=%s", source_name, tenant.slug)
        return error(400, "invalid_payload", f"cannot parse the payload: {exc.__class__.__name__}")

    loaded = []
    for item in parsed:
        try:
            loaded.append(load_event({**item, "tenant": tenant.slug, "source": source_name}))
        except ValidationError as exc:
            field, message = first_error_field(exc.messages)
            return error(400, "invalid_payload", message, field)

    raw_text = body.decode("utf-8", errors="replace")
    stored_ids: list[int] = []
    duplicates = 0
    try:
        for event in loaded:
            event_id = store_event(hub.store, event, raw_text, inbound.received_at)
            if event_id is None:
                duplicates += 1
                log.info(
                    "duplicate tenant=%s source=%s key=%s",
                    tenant.slug,
                    source_name,
                    event["event_key"],
                )
            else:
                stored_ids.append(event_id)
                log.info(
                    "stored tenant=%s source=%s key=%s kind=%s checkout=%s customer=%s id=%s",
                    tenant.slug,
                    source_name,
                    event["event_key"],
                    event["kind"],
                    mask_ids(event["checkout_id"]),
                    mask(event["customer"].get("email")),
                    event_id,
                )
    except sa.exc.SQLAlchemyError:
        log.exception("database unavailable; asking the platform to retry")
        return error(
            503, "unavailable", "storage unavailable, retry later", headers={"Retry-After": "30"}
        )

    for event_id in stored_ids:
        try:
            hub.queues.enqueue_event(event_id, tenant.slug)
        except Exception:  # Redis down: the row is stored, the sweep enqueues it later
            log.warning("enqueue failed for event %s; the sweep will pick it up", event_id)

    outcome = IngestOutcome(len(stored_ids), duplicates, not loaded, tuple(stored_ids))
    request.environ["hub.ingest_outcome"] = outcome  # counted by hub.metrics
    custom = None
    try:
        custom = source.respond(outcome)
    except Exception:
        log.exception("source %s failed in respond()", source_name)
    if custom is not None:
        text, status, headers = custom
        return Response(text, status=status, headers=headers)
    return jsonify(
        {"stored": outcome.stored, "duplicates": outcome.duplicates, "ignored": outcome.ignored}
    ), 202


def read_body(limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes, else 413 — for chunked bodies too; 400 when the
    server cannot decode the framing (gunicorn raises from ``read`` on a bad chunk).

    A declared Content-Length over the limit is refused by Flask before we read anything; a
    chunked body has none, so read one byte past the limit and refuse if it arrives
    (werkzeug's own limit is not applied to every chunked stream under gunicorn).
    """
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    chunks, size = [], 0
    stream = request.environ["wsgi.input"] if request.content_length is None else request.stream
    try:
        while True:
            chunk = stream.read(min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge()
    except RequestEntityTooLarge:
        raise
    except Exception as exc:  # the server's body parser: a bad chunk size, a cut connection
        log.info("unreadable body: %r", exc)
        raise BadRequest("the request body is malformed") from None
    return b"".join(chunks)


def store_event(store, event: dict, raw: str | None, received_at: datetime) -> int | None:  # noqa: ANN001
    """Insert one loaded event; returns its id, or ``None`` when it was stored before.

    A duplicate is found by the insert itself (``ON CONFLICT DO NOTHING``), not by catching
    the unique violation and selecting again: one statement either way.
    """
    email, phone = identity_of(event["customer"])
    payload = dump_event({**event, "raw": None})
    row = {
        "tenant": event["tenant"],
        "source": event["source"],
        "event_key": event["event_key"],
        "kind": event["kind"],
        "checkout_id": event["checkout_id"],
        "occurred_at": event["occurred_at"],
        "received_at": received_at,
        "email": email,
        "phone": phone,
        "payload": payload,
        "raw": raw,
        "status": "stored",
    }
    return store.insert_event(row)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> Response:
    hub = current_hub()
    checks = {}
    try:
        hub.store.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        hub.queues.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
        if hub.redis_unset_reason():  # the web process never starts a Redis: say why
            checks["redis"] += f": {hub.redis_unset_reason()}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503
    )
