"""``/api/v1/reports``: one tenant's recovery report, as ``hub report`` prints it.

The figures and their meaning are :mod:`hub.reports`' (a cohort of checkouts abandoned on the
tenant's local days ``since``–``until``); ``format=csv`` answers the same CSV as
``hub report --format csv``. A report is computed when asked: no ETag, since one would be
computed from the very figures it is meant to spare.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from hub.api.auth import may_see
from hub.api.errors import ApiError, Blueprint, not_found
from hub.api.schemas import DaysSchema
from hub.current import current_hub
from hub.reports import GROUPINGS, ReportError, default_range, report

blueprint = Blueprint("reports", __name__, description="Recovery results of one tenant.")


def money() -> fields.Dict:
    return fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "currency -> minor units; never summed across currencies"},
    )


class ReportArgsSchema(DaysSchema):
    by = fields.String(load_default="day", validate=validate.OneOf(GROUPINGS))
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "csv")),
        metadata={"description": "json, or csv with amounts in minor units"},
    )


class FiguresSchema(Schema):
    abandoned = fields.Integer(required=True)
    messaged = fields.Integer(required=True)
    messages = fields.Integer(required=True)
    delivered = fields.Integer(required=True)
    bounced = fields.Integer(required=True)
    opened = fields.Integer(required=True, metadata={"description": "an estimate"})
    clicked = fields.Integer(required=True)
    recovered = fields.Integer(required=True, metadata={"description": "after a message"})
    recovered_without_message = fields.Integer(required=True)
    revenue = money()
    revenue_without_message = money()
    refunded = money()
    recovery_rate = fields.Float(required=True, allow_none=True)
    messages_per_recovery = fields.Float(required=True, allow_none=True)


class ReportRowSchema(FiguresSchema):
    """One group; only the key of the grouping is present (``flow`` and ``step`` by step)."""

    day = fields.String(metadata={"format": "date"})
    flow = fields.String(allow_none=True)
    step = fields.Integer(allow_none=True, metadata={"description": "null: no message"})
    channel = fields.String(allow_none=True, metadata={"description": "null: no message"})
    source = fields.String(allow_none=True)


class ReportSchema(Schema):
    tenant = fields.String(required=True)
    since = fields.String(required=True, metadata={"format": "date"})
    until = fields.String(required=True, metadata={"format": "date"})
    timezone = fields.String(required=True)
    by = fields.String(required=True)
    currencies = fields.List(fields.String(), required=True)
    rows = fields.List(fields.Nested(ReportRowSchema), required=True)
    total = fields.Nested(FiguresSchema, required=True)


def tenant_config(args: dict) -> Any:
    """The asked tenant as configured (its time zone decides the days); 404 when the caller
    may not see it, exactly as when it does not exist."""
    slug = args["tenant"]
    tenant = current_hub().catalog.current().get(slug) if may_see(slug) else None
    if tenant is None:
        raise not_found(f"tenant {slug!r}", "tenant")
    return tenant


def invalid_range(exc: ReportError) -> ApiError:
    return ApiError(400, "invalid_input", str(exc), "since")


@blueprint.route("")
class Reports(MethodView):
    @blueprint.arguments(ReportArgsSchema, location="query")
    @blueprint.response(200, ReportSchema)
    @blueprint.alt_response(200, schema={"type": "string"}, content_type="text/csv", success=True)
    def get(self, args: dict) -> Any:
        """Abandoned, messaged, delivered, opened, clicked and recovered checkouts, recovery
        rate and revenue per currency (net of refunds), grouped by day, flow, step, channel
        or source (docs/api.md)."""
        tenant = tenant_config(args)
        since, until = default_range(tenant.timezone, args.get("since"), args.get("until"))
        try:
            result = report(
                current_hub().store, tenant.slug, since, until, args["by"], tenant.timezone
            )
        except ReportError as exc:
            raise invalid_range(exc) from exc
        if args["format"] == "csv":
            name = f"report-{tenant.slug}-{since}-{until}-by-{args['by']}.csv"
            return Response(
                result.as_csv(),
                mimetype="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        return result.as_dict()
