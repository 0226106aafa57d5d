"""Shared pieces of the resources' schemas: UTC times, and the filters every list has."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validates_schema

from hub.api.pagination import PageArgsSchema
from hub.events import AwareDateTime
from hub.reports import MAX_DAYS


class Time(fields.DateTime):
    """A stored UTC time, written ISO 8601 with its offset."""


class TenantFilterSchema(PageArgsSchema):
    """``tenant``: only this tenant's rows (an admin's choice; a tenant key sees its own)."""

    tenant = fields.String(metadata={"description": "a tenant slug"})


class Range(Schema):
    """``since`` / ``until``: an ISO time range (UTC without an offset), ``until`` excluded."""

    since = AwareDateTime()
    until = AwareDateTime()


class DaysSchema(Schema):
    """``tenant``, ``since``, ``until`` of a report or an export: whole local days of the
    tenant (its ``timezone``), both inclusive; the tenant's month so far when left out.

    ``tenant`` is required with any key, a tenant key's too: a report is of one tenant, and
    naming it keeps a URL meaning the same whoever sends it (another tenant's is 404)."""

    tenant = fields.String(required=True, metadata={"description": "a tenant slug"})
    since = fields.Date(metadata={"description": "first local day (YYYY-MM-DD)"})
    until = fields.Date(metadata={"description": "last local day, inclusive (default: today)"})

    @validates_schema
    def _range(self, data: dict, **_kwargs: object) -> None:
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            raise ValidationError(f"until ({until}) is before since ({since})", "until")
        if since and until and (until - since).days >= MAX_DAYS:
            raise ValidationError(f"a range covers at most {MAX_DAYS} days", "until")
