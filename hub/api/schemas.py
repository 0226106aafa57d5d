"""Shared pieces of the resources' schemas: UTC times, and the filters every list has."""

from __future__ import annotations

from marshmallow import Schema, fields

from hub.api.pagination import PageArgsSchema
from hub.events import AwareDateTime


class Time(fields.DateTime):
    """A stored UTC time, written ISO 8601 with its offset."""


class TenantFilterSchema(PageArgsSchema):
    """``tenant``: only this tenant's rows (an admin's choice; a tenant key sees its own)."""

    tenant = fields.String(metadata={"description": "a tenant slug"})


class Range(Schema):
    """``since`` / ``until``: an ISO time range (UTC without an offset), ``until`` excluded."""

    since = AwareDateTime()
    until = AwareDateTime()
