"""``GET /plugins/webhook/schema.json``: the JSON Schema senders validate against."""

from __future__ import annotations

from flask import Blueprint, Response

from plugins.webhook.schema import schema_text

blueprint = Blueprint("webhook_source", __name__)


@blueprint.get("/schema.json")
def event_schema() -> Response:
    """Public on purpose: it describes the format, not any tenant's data."""
    response = Response(schema_text(), mimetype="application/schema+json")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
