"""``/api/v1/tenants``: the tenants and whether their configuration is valid.

Validity is what ``hub config check`` reports for the tenant's file: its errors (key and
message), whether the tenant is served, and whether it is served from an older version of the
file that still loaded (``stale``: the running hub keeps the last good version of a broken file).
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from hub.api.auth import may_see
from hub.api.errors import Blueprint, not_found
from hub.api.schemas import Time
from hub.current import current_hub

blueprint = Blueprint("tenants", __name__, description="Tenants and their configuration.")


class IssueSchema(Schema):
    key = fields.String(required=True, metadata={"description": "the key in the file, or ''"})
    message = fields.String(required=True)


class ConfigSchema(Schema):
    valid = fields.Boolean(required=True, metadata={"description": "the file has no errors"})
    served = fields.Boolean(required=True)
    stale = fields.Boolean(
        required=True, metadata={"description": "served from an older version of the file"}
    )
    served_since = Time(required=True, allow_none=True)
    file = fields.String(required=True, metadata={"description": "relative to HUB_CONFIG_DIR"})
    issues = fields.List(fields.Nested(IssueSchema), required=True)


class TenantSchema(Schema):
    slug = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    sources = fields.List(fields.String(), required=True)
    sinks = fields.List(fields.String(), required=True)
    flows = fields.List(fields.String(), required=True)
    config = fields.Nested(ConfigSchema, required=True)


class TenantListSchema(Schema):
    items = fields.List(fields.Nested(TenantSchema), required=True)


def _tenants() -> dict[str, dict[str, Any]]:
    """Every tenant file the hub knows (served or not), by slug."""
    hub = current_hub()
    catalog = hub.catalog
    catalog.current()
    found = {}
    for _path, entry in sorted(catalog.files.items()):
        tenant = entry.serving
        found[entry.slug] = {
            "slug": entry.slug,
            "name": tenant.name if tenant else None,
            "sources": sorted(tenant.sources) if tenant else [],
            "sinks": sorted(tenant.sinks) if tenant else [],
            "flows": [flow.name for flow in tenant.flows] if tenant else [],
            "config": {
                "valid": not entry.issues,
                "served": tenant is not None,
                "stale": entry.stale,
                "served_since": entry.served_since,
                "file": str(entry.path.relative_to(hub.settings.config_dir))
                if entry.path.is_relative_to(hub.settings.config_dir)
                else entry.path.name,
                "issues": [{"key": i.key, "message": i.message} for i in entry.issues],
            },
        }
    return found


@blueprint.route("")
class Tenants(MethodView):
    @blueprint.etag
    @blueprint.response(200, TenantListSchema)
    def get(self) -> dict:
        """The tenants the key may see, with their configuration's validity."""
        return {"items": [t for slug, t in _tenants().items() if may_see(slug)]}


@blueprint.route("/<string:slug>")
class TenantBySlug(MethodView):
    @blueprint.etag
    @blueprint.response(200, TenantSchema)
    def get(self, slug: str) -> dict:
        """One tenant and its configuration's validity."""
        tenant = _tenants().get(slug)
        if tenant is None or not may_see(slug):
            raise not_found(f"tenant {slug!r}", "slug")
        return tenant
