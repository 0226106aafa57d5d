"""``/api/v1/journeys``: checkouts being won back, filtered and paged, and one with its timeline.

The timeline is everything the hub recorded for the journey: the checkout's stored events, its
steps, its deliveries, each delivery attempt (``delivery_log``) and what happened to messages
after they left (``tracking_events``), each list oldest first.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from hub.api import pagination
from hub.api.auth import scope
from hub.api.deliveries import DeliverySchema
from hub.api.errors import Blueprint, not_found
from hub.api.events import EventSummarySchema
from hub.api.pagination import ROW_ID
from hub.api.schemas import Range, TenantFilterSchema, Time
from hub.current import current_hub
from hub.store import deliveries, delivery_log, events, journeys, steps, tracking_events

blueprint = Blueprint("journeys", __name__, description="Checkouts and their recovery journeys.")

STATUSES = (
    "pending",
    "open",
    "converted",
    "deleted",
    "unsubscribed",
    "superseded",
    "no_flow",
    "finished",
)


class JourneyArgsSchema(TenantFilterSchema, Range):
    """Filters; ``since``/``until`` apply to ``abandoned_at``."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    source = fields.String()
    flow = fields.String()
    email = fields.String(metadata={"description": "exact address, any case"})


class JourneySchema(Schema):
    id = fields.Integer(required=True)
    tenant = fields.String(required=True)
    checkout_id = fields.String(required=True)
    source = fields.String(required=True)
    status = fields.String(required=True)
    flow = fields.String(required=True, allow_none=True)
    email = fields.String(required=True, allow_none=True)
    phone = fields.String(required=True, allow_none=True)
    abandoned_at = Time(required=True, allow_none=True)
    last_update_at = Time(required=True, allow_none=True)
    created_at = Time(required=True)
    closed_at = Time(required=True, allow_none=True)
    closed_reason = fields.String(required=True, allow_none=True)
    holdout = fields.Boolean(
        required=True, metadata={"description": "in its flow's holdout group: sent nothing"}
    )
    recovered = fields.Boolean(required=True)
    recovered_amount = fields.Integer(required=True, allow_none=True)
    recovered_currency = fields.String(required=True, allow_none=True)
    recovered_at = Time(required=True, allow_none=True)
    credited_delivery_id = fields.Integer(required=True, allow_none=True)
    credit = fields.String(required=True, allow_none=True)
    refunded_amount = fields.Integer(required=True, allow_none=True)


class StepSchema(Schema):
    id = fields.Integer(required=True)
    step_index = fields.Integer(required=True)
    status = fields.String(required=True)
    reason = fields.String(required=True, allow_none=True)
    due_at = Time(required=True)
    next_attempt_at = Time(required=True, allow_none=True)
    updated_at = Time(required=True)


class AttemptSchema(Schema):
    id = fields.Integer(required=True)
    step_index = fields.Integer(required=True)
    delivery_id = fields.Integer(required=True, allow_none=True)
    sink = fields.String(required=True, allow_none=True)
    channel = fields.String(required=True, allow_none=True)
    attempt = fields.Integer(required=True)
    status = fields.String(required=True)
    reason = fields.String(required=True, allow_none=True)
    at = Time(required=True)


class TrackingEventSchema(Schema):
    id = fields.Integer(required=True)
    delivery_id = fields.Integer(required=True)
    kind = fields.String(required=True)
    at = Time(required=True)
    detail = fields.String(required=True, allow_none=True)


class JourneyDetailSchema(JourneySchema):
    events = fields.List(fields.Nested(EventSummarySchema), required=True)
    steps = fields.List(fields.Nested(StepSchema), required=True)
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)
    delivery_log = fields.List(fields.Nested(AttemptSchema), required=True)
    tracking_events = fields.List(fields.Nested(TrackingEventSchema), required=True)


JourneyPageSchema = pagination.page_schema(JourneySchema, "JourneyPage")
_COLUMNS = [journeys.c[name] for name in JourneySchema().fields]


@blueprint.route("")
class Journeys(MethodView):
    @blueprint.arguments(JourneyArgsSchema, location="query")
    @blueprint.etag
    @blueprint.response(200, JourneyPageSchema)
    def get(self, args: dict) -> dict:
        """Journeys, newest first, filtered; follow ``next_cursor`` for more."""
        query = scope(sa.select(*_COLUMNS), journeys.c.tenant, args.get("tenant"))
        for name in ("status", "source", "flow"):
            if args.get(name):
                query = query.where(journeys.c[name] == args[name])
        if args.get("email"):
            query = query.where(journeys.c.email == args["email"].strip().lower())
        if args.get("since"):
            query = query.where(journeys.c.abandoned_at >= args["since"])
        if args.get("until"):
            query = query.where(journeys.c.abandoned_at < args["until"])
        with current_hub().store.begin() as conn:
            return pagination.paginate(conn, query, journeys.c.id, args)


@blueprint.route(f"/<{ROW_ID}:journey_id>")
class JourneyById(MethodView):
    @blueprint.etag
    @blueprint.response(200, JourneyDetailSchema)
    def get(self, journey_id: int) -> dict:
        """One journey with its timeline."""
        query = scope(sa.select(*_COLUMNS), journeys.c.tenant).where(journeys.c.id == journey_id)
        with current_hub().store.begin() as conn:
            journey = conn.execute(query).first()
            if journey is None:
                raise not_found(f"journey {journey_id}", "journey_id")
            return {**journey._mapping, **_timeline(conn, journey)}


def _timeline(conn: sa.Connection, journey: sa.Row) -> dict[str, list]:
    def rows(query: sa.Select) -> list:
        return list(conn.execute(query).all())

    conversion = (
        sa.select(journeys.c.conversion_event_id).where(journeys.c.id == journey.id)
    ).scalar_subquery()
    return {
        "events": rows(
            sa.select(events)
            .where(
                events.c.tenant == journey.tenant,
                sa.or_(events.c.checkout_id == journey.checkout_id, events.c.id == conversion),
            )
            .order_by(events.c.occurred_at, events.c.id)
        ),
        "steps": rows(
            sa.select(steps).where(steps.c.journey_id == journey.id).order_by(steps.c.step_index)
        ),
        "deliveries": rows(
            sa.select(deliveries)
            .where(deliveries.c.journey_id == journey.id)
            .order_by(deliveries.c.id)
        ),
        "delivery_log": rows(
            sa.select(delivery_log)
            .where(delivery_log.c.journey_id == journey.id, delivery_log.c.tenant == journey.tenant)
            .order_by(delivery_log.c.id)
        ),
        "tracking_events": rows(
            sa.select(tracking_events)
            .where(tracking_events.c.journey_id == journey.id)
            .order_by(tracking_events.c.at, tracking_events.c.id)
        ),
    }
