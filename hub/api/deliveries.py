"""``/api/v1/deliveries``: the delivery ledger, one row per journey, step and sink."""

from __future__ import annotations

import sqlalchemy as sa
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from hub.api import pagination
from hub.api.auth import scope
from hub.api.errors import Blueprint, not_found
from hub.api.pagination import ROW_ID
from hub.api.schemas import Range, TenantFilterSchema, Time
from hub.current import current_hub
from hub.store import deliveries

blueprint = Blueprint("deliveries", __name__, description="Messages and their outcome.")


class DeliveryArgsSchema(TenantFilterSchema, Range):
    """Filters; ``since``/``until`` apply to ``created_at``."""

    journey_id = fields.Integer(validate=validate.Range(1, pagination.MAX_ROW_ID))
    status = fields.String()
    channel = fields.String()
    sink = fields.String()


class DeliverySchema(Schema):
    id = fields.Integer(required=True)
    tenant = fields.String(required=True)
    journey_id = fields.Integer(required=True)
    step_index = fields.Integer(required=True)
    sink = fields.String(required=True)
    channel = fields.String(required=True)
    identity = fields.String(required=True, allow_none=True)
    status = fields.String(required=True)
    reason = fields.String(required=True, allow_none=True)
    attempts = fields.Integer(required=True)
    provider_id = fields.String(required=True, allow_none=True)
    created_at = Time(required=True)
    updated_at = Time(required=True)
    sent_at = Time(required=True, allow_none=True)


DeliveryPageSchema = pagination.page_schema(DeliverySchema, "DeliveryPage")


@blueprint.route("")
class Deliveries(MethodView):
    @blueprint.arguments(DeliveryArgsSchema, location="query")
    @blueprint.etag
    @blueprint.response(200, DeliveryPageSchema)
    def get(self, args: dict) -> dict:
        """Deliveries, newest first, filtered; follow ``next_cursor`` for more."""
        query = scope(sa.select(deliveries), deliveries.c.tenant, args.get("tenant"))
        for name in ("journey_id", "status", "channel", "sink"):
            if args.get(name) is not None:
                query = query.where(deliveries.c[name] == args[name])
        if args.get("since"):
            query = query.where(deliveries.c.created_at >= args["since"])
        if args.get("until"):
            query = query.where(deliveries.c.created_at < args["until"])
        with current_hub().store.begin() as conn:
            return pagination.paginate(conn, query, deliveries.c.id, args)


@blueprint.route(f"/<{ROW_ID}:delivery_id>")
class DeliveryById(MethodView):
    @blueprint.etag
    @blueprint.response(200, DeliverySchema)
    def get(self, delivery_id: int) -> sa.Row:
        """One delivery."""
        query = scope(sa.select(deliveries), deliveries.c.tenant)
        with current_hub().store.begin() as conn:
            row = conn.execute(query.where(deliveries.c.id == delivery_id)).first()
        if row is None:
            raise not_found(f"delivery {delivery_id}", "delivery_id")
        return row
