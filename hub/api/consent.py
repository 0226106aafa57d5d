"""``/api/v1/consent``: consent evidence, one row per send or skip decision of a channel.

Each item says what the hub knew (``fact``: the consent value, the source and platform field
or subscription that gave it, when it was received), the tenant policy applied (``policy``),
the decision, and what was sent because of it (``delivery_status``). Filter by ``email`` or
``phone`` to export one person's history (newest first; follow ``next_cursor``).
"""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from hub.api import pagination
from hub.api.auth import scope
from hub.api.errors import Blueprint
from hub.api.schemas import Range, TenantFilterSchema
from hub.consent_evidence import entry, history_query
from hub.current import current_hub
from hub.store import consent_evidence

blueprint = Blueprint(
    "consent", __name__, description="What each message relied on: consent facts and policy."
)


class ConsentArgsSchema(TenantFilterSchema, Range):
    """Filters; ``since``/``until`` apply to ``decided_at``."""

    email = fields.String(metadata={"description": "the person's e-mail address, any case"})
    phone = fields.String(metadata={"description": "the person's E.164 phone number"})


class FactSchema(Schema):
    value = fields.String(required=True)
    source = fields.String(required=True)
    field = fields.String(required=True)
    received_at = fields.String(required=True, allow_none=True)
    event_key = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)


class EvidenceSchema(Schema):
    id = fields.Integer(required=True)
    tenant = fields.String(required=True)
    decided_at = fields.String(required=True)
    journey_id = fields.Integer(required=True)
    checkout_id = fields.String(required=True)
    flow = fields.String(required=True, allow_none=True)
    step_index = fields.Integer(required=True)
    sink = fields.String(required=True)
    channel = fields.String(required=True)
    decision = fields.String(required=True, metadata={"description": "allowed | refused"})
    reason = fields.String(required=True, allow_none=True)
    policy = fields.String(required=True, metadata={"description": "e.g. email: opt_in"})
    fact = fields.Nested(FactSchema, required=True)
    delivery_id = fields.Integer(required=True, allow_none=True)
    delivery_status = fields.String(required=True, allow_none=True)
    sent_at = fields.String(required=True, allow_none=True, metadata={"description": "ISO 8601"})


EvidencePageSchema = pagination.page_schema(EvidenceSchema, "ConsentEvidencePage")


@blueprint.route("")
class ConsentEvidence(MethodView):
    @blueprint.arguments(ConsentArgsSchema, location="query")
    @blueprint.etag
    @blueprint.response(200, EvidencePageSchema)
    def get(self, args: dict) -> dict:
        """Consent decisions, newest first, filtered by person; follow ``next_cursor``."""
        query = history_query(args.get("email"), args.get("phone"))
        query = scope(query, consent_evidence.c.tenant, args.get("tenant"))
        if args.get("since"):
            query = query.where(consent_evidence.c.decided_at >= args["since"])
        if args.get("until"):
            query = query.where(consent_evidence.c.decided_at < args["until"])
        with current_hub().store.begin() as conn:
            page = pagination.paginate(conn, query, consent_evidence.c.id, args)
        page["items"] = [entry(row) for row in page["items"]]
        return page
