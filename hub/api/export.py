"""``/api/v1/export``: one tenant's abandoned checkouts as CSV, streamed (``hub export``).

The rows and columns are :mod:`hub.export`'s. The answer is streamed page by page, so a
million rows never sit in the web worker's memory; everything that can be refused (the key,
the tenant, the range) is checked before the first byte, so a bad request is still a 400 or 404
in the API's JSON error shape rather than a broken download.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import fields

from hub.api.errors import Blueprint
from hub.api.reports import invalid_range, tenant_config
from hub.api.schemas import DaysSchema
from hub.current import current_hub
from hub.export import COLUMNS, export_csv
from hub.reports import ReportError, default_range

blueprint = Blueprint("export", __name__, description="Abandoned checkouts as CSV.")

DISPOSITION = {
    "Content-Disposition": {
        "description": 'attachment; filename="checkouts-<tenant>-<since>-<until>.csv"',
        "schema": {"type": "string"},
        "required": True,
    }
}


class ExportArgsSchema(DaysSchema):
    email = fields.List(
        fields.String(),
        metadata={"description": "only this customer, any case (repeatable)"},
    )
    bom = fields.Boolean(
        load_default=False,
        metadata={"description": "start with a UTF-8 byte-order mark (for Excel)"},
    )


@blueprint.route("")
class Export(MethodView):
    @blueprint.arguments(ExportArgsSchema, location="query")
    @blueprint.response(
        200,
        {"type": "string", "description": "RFC 4180; columns: " + ", ".join(n for n, _ in COLUMNS)},
        content_type="text/csv",
        headers=DISPOSITION,
    )
    def get(self, args: dict) -> Any:
        """The tenant's checkouts abandoned on the local days since-until, one CSV row each:
        contact, cart, stage, consent, status, messages and their outcome, recovered revenue.
        Cells that would start a spreadsheet formula get a leading ' (docs/api.md)."""
        tenant = tenant_config(args)
        since, until = default_range(tenant.timezone, args.get("since"), args.get("until"))
        try:
            chunks = export_csv(
                current_hub().store,
                tenant.slug,
                since,
                until,
                args.get("email") or (),
                tenant.timezone,
                bom=args["bom"],
            )
        except ReportError as exc:
            raise invalid_range(exc) from exc
        name = f"checkouts-{tenant.slug}-{since}-{until}.csv"
        return Response(
            chunks,
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
