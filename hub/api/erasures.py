"""``/api/v1/erasures``: erase one person from a tenant's data, and the proofs of erasures.

``POST`` runs :func:`hub.erasure.erase_person` (the same as ``hub erase``): the person's rows
are anonymised, counts stay, plugins are told, and a proof is written per identity with the
calling key as its actor. ``GET`` lists proofs (newest first; with ``email``/``phone`` that
person's, matched by keyed digest) or shows one. A proof names no one: its digest is keyed
with the hub's secret, so it proves an erasure to whoever knows the address, and nothing to
whoever does not.

A tenant key erases and sees only in its own tenant; another tenant answers 404 as if it did
not exist, and its people are never touched.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask.views import MethodView
from marshmallow import Schema, fields

from hub.api import pagination
from hub.api.auth import may_see, principal, scope
from hub.api.errors import ApiError, Blueprint, not_found
from hub.api.pagination import ROW_ID
from hub.api.schemas import TenantFilterSchema, Time
from hub.current import current_hub
from hub.erasure import digests, erase_person, normalize
from hub.store import erasures, events

blueprint = Blueprint("erasures", __name__, description="Erasure of a person, and its proofs.")

# the person named by a request: each field is checked on its own, and at least one is needed
PERSON = ("email", "phone")


class ErasureRequestSchema(Schema):
    tenant = fields.String(required=True, metadata={"description": "a tenant slug"})
    email = fields.Email(metadata={"description": "the person's e-mail address"})
    phone = fields.String(metadata={"description": "the person's phone number, +49 151 …"})
    dry_run = fields.Boolean(
        load_default=False, metadata={"description": "report what would go; change nothing"}
    )
    suppress = fields.Boolean(
        load_default=False,
        metadata={"description": "also never message the person again (kept as a digest)"},
    )


class ErasureResultSchema(Schema):
    tenant = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "email, phone or email+phone"})
    dry_run = fields.Boolean(required=True)
    erased_at = fields.String(required=True, metadata={"format": "date-time"})
    digests = fields.List(fields.String(), required=True)
    proof_ids = fields.List(fields.Integer(), required=True)
    rows = fields.Dict(required=True, metadata={"description": "rows changed, per table"})
    complete = fields.Boolean(
        required=True, metadata={"description": "false: a plugin failed, erase again"}
    )
    problems = fields.List(fields.String(), required=True)


class ProofArgsSchema(TenantFilterSchema):
    email = fields.String(metadata={"description": "only this person's proofs (needs tenant)"})
    phone = fields.String(metadata={"description": "only this person's proofs (needs tenant)"})


class ProofSchema(Schema):
    id = fields.Integer(required=True)
    tenant = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "email, phone or retention"})
    identity_digest = fields.String(required=True)
    actor = fields.String(required=True, allow_none=True)
    erased_at = Time(required=True)
    rows = fields.Dict(required=True)


ProofPageSchema = pagination.page_schema(ProofSchema, "ErasureProofPage")


def _tenant_with_data(slug: str) -> None:
    """404 unless the caller may see ``slug`` and it is configured or still has stored data
    (a client removed from the config whose customers may still ask to be erased)."""
    hub = current_hub()
    if may_see(slug) and slug in hub.catalog.current():
        return
    if may_see(slug):
        with hub.store.begin() as conn:
            query = sa.select(events.c.id).where(events.c.tenant == slug).limit(1)
            if conn.execute(query).first() is not None:
                return
    raise not_found(f"tenant {slug!r}", "tenant")


def _person(args: dict) -> dict[str, str]:
    """The identities asked for, normalized; 400 naming the field that is not usable."""
    given = {kind: args[kind] for kind in PERSON if args.get(kind)}
    if not given:
        raise ApiError(400, "invalid_input", "give an e-mail address or a phone number", "email")
    for kind, value in given.items():
        try:
            given[kind] = normalize(kind, value)
        except ValueError as exc:
            raise ApiError(400, "invalid_input", str(exc), kind) from None
    return given


@blueprint.route("")
class Erasures(MethodView):
    @blueprint.arguments(ErasureRequestSchema)
    @blueprint.response(201, ErasureResultSchema)
    @blueprint.alt_response(200, schema=ErasureResultSchema, success=True)
    def post(self, args: dict) -> Any:
        """Erase one person from the tenant's data (201), or with dry_run report what would
        go (200). Safe to repeat: a second erasure finds nothing left and is recorded too."""
        person = _person(args)
        _tenant_with_data(args["tenant"])
        result = erase_person(
            current_hub(),
            args["tenant"],
            **person,
            actor=f"api:{principal().prefix or 'admin token'}",
            dry_run=args["dry_run"],
            suppress=args["suppress"],
        )
        return result.as_dict(), 200 if result.dry_run else 201

    @blueprint.arguments(ProofArgsSchema, location="query")
    @blueprint.etag
    @blueprint.response(200, ProofPageSchema)
    def get(self, args: dict) -> dict:
        """Erasure proofs, newest first (retention runs too); follow ``next_cursor``."""
        query = scope(sa.select(erasures), erasures.c.tenant, args.get("tenant"))
        asked = {kind: args[kind] for kind in PERSON if args.get(kind)}
        if asked:
            if not args.get("tenant"):
                raise ApiError(
                    400, "invalid_input", "a person's proofs are looked up per tenant", "tenant"
                )
            settings = current_hub().settings
            wanted = [
                digest
                for kind, value in _person(asked).items()
                for digest in digests(settings, args["tenant"], kind, value)
            ]
            query = query.where(erasures.c.identity_digest.in_(wanted))
        with current_hub().store.begin() as conn:
            return pagination.paginate(conn, query, erasures.c.id, args)


@blueprint.route(f"/<{ROW_ID}:erasure_id>")
class ErasureById(MethodView):
    @blueprint.etag
    @blueprint.response(200, ProofSchema)
    def get(self, erasure_id: int) -> sa.Row:
        """One erasure proof."""
        query = scope(sa.select(erasures), erasures.c.tenant).where(erasures.c.id == erasure_id)
        with current_hub().store.begin() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise not_found(f"erasure {erasure_id}", "erasure_id")
        return row
