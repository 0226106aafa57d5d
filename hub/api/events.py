"""``/api/v1/events``: one stored platform event, and its replay through the engine.

Replay hands the stored event to the workers again, which apply it with
``Engine.process_event`` exactly as if it had just arrived. It is for events that were not
applied: ``failed`` (e.g. the tenant was not configured when it came) or still ``stored``
(Redis lost its job and the sweep has not run yet). An event that was ``processed`` is not
replayed (409 ``already_processed``): applying it twice could open a second journey or move one
back, and the engine's own guard would make it a no-op anyway. Replaying an event already
waiting is harmless: the job id names the event, and the engine locks the row and skips it once
processed, so a replay sent twice applies the event once.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask.views import MethodView
from marshmallow import Schema, fields

from hub.api.auth import principal, scope
from hub.api.errors import ApiError, Blueprint, not_found
from hub.api.pagination import ROW_ID
from hub.api.schemas import Time
from hub.current import current_hub
from hub.store import events

log = logging.getLogger("hub.api")
blueprint = Blueprint("events", __name__, description="Stored platform events and replay.")


class EventSummarySchema(Schema):
    id = fields.Integer(required=True)
    tenant = fields.String(required=True)
    source = fields.String(required=True)
    event_key = fields.String(required=True)
    kind = fields.String(required=True)
    checkout_id = fields.String(required=True)
    occurred_at = Time(required=True)
    received_at = Time(required=True)
    status = fields.String(required=True, metadata={"description": "stored | processed | failed"})
    note = fields.String(required=True, allow_none=True)


class EventSchema(EventSummarySchema):
    email = fields.String(required=True, allow_none=True)
    phone = fields.String(required=True, allow_none=True)
    payload = fields.Dict(required=True, metadata={"description": "the normalized event"})


class ReplaySchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)


def _event(conn: sa.Connection, event_id: int) -> sa.Row:
    query = scope(sa.select(events), events.c.tenant).where(events.c.id == event_id)
    row = conn.execute(query).first()
    if row is None:
        raise not_found(f"event {event_id}", "event_id")
    return row


@blueprint.route(f"/<{ROW_ID}:event_id>")
class EventById(MethodView):
    @blueprint.etag
    @blueprint.response(200, EventSchema)
    def get(self, event_id: int) -> sa.Row:
        """One stored event, normalized (the platform's raw body is not served)."""
        with current_hub().store.begin() as conn:
            return _event(conn, event_id)


@blueprint.route(f"/<{ROW_ID}:event_id>/replay")
class EventReplay(MethodView):
    @blueprint.response(202, ReplaySchema)
    def post(self, event_id: int) -> dict:
        """Queue a stored, not yet applied event for the engine again (see the module doc)."""
        hub = current_hub()
        with hub.store.begin() as conn:
            row = _event(conn, event_id)
            if row.status == "processed":
                raise ApiError(
                    409,
                    "already_processed",
                    f"event {event_id} was applied ({row.note}); it is not applied twice",
                    "event_id",
                )
            conn.execute(
                sa.update(events)
                .where(events.c.id == event_id, events.c.status != "processed")
                .values(status="stored", note=None)
            )
        try:
            hub.queues.enqueue_event(event_id, row.tenant)
        except Exception:  # Redis down: the row is stored, the sweep enqueues it later
            log.warning("replay of event %s not queued; the sweep will pick it up", event_id)
        log.info(
            "event id=%s tenant=%s replayed by key=%s",
            event_id,
            row.tenant,
            principal().prefix or "admin token",
        )
        return {"id": event_id, "status": "stored"}
