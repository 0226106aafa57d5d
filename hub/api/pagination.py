"""Cursor pagination: newest first, keyed on the row id, with an opaque cursor.

Why the id and not ``abandoned_at``: a journey's ``abandoned_at`` is set or moved after it is
created (an inferred abandonment, a later update), and a keyset on a column that changes skips
or repeats rows between pages. Ids only grow, in the order rows were created, so ``id < last``
is stable and served by the primary key. The cursor is base64 of ``{"id": …}``: opaque so that
clients do not build it (its content may change), unsigned because forging one reveals nothing
(every query is still scoped to the caller's tenant).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from marshmallow import Schema, fields, validate

from hub.api.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageArgsSchema(Schema):
    """Query arguments every list takes."""

    cursor = fields.String(metadata={"description": "next_cursor of the previous page"})
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"items per page, 1-{MAX_LIMIT}"},
    )


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    """``{"items": [item], "next_cursor": str | null}`` for ``item`` (named for the document)."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(
                required=True,
                allow_none=True,
                metadata={"description": "pass as cursor for the next page; null on the last"},
            ),
        },
        name=name,
    )


def encode(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode().rstrip("=")


# the database's ids are 32-bit integers (PostgreSQL `integer`): a bigger one in a path or a
# cursor names no row, and must be a 404 or a 400 here, not an "integer out of range" error there
MAX_ROW_ID = 2**31 - 1
# a path argument that is a row id: `@blueprint.route(f"/<{ROW_ID}:journey_id>")`
ROW_ID = f"int(min=1, max={MAX_ROW_ID})"


def decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)["id"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid_cursor", "not a cursor this API made", "cursor") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_ROW_ID + 1:
        raise ApiError(400, "invalid_cursor", "not a cursor this API made", "cursor")
    return value


def paginate(conn: Any, query: sa.Select, id_column: Any, args: dict) -> dict:
    """Run ``query`` for one page (``args``: cursor, limit); ``{"items", "next_cursor"}``."""
    if args.get("cursor"):
        query = query.where(id_column < decode(args["cursor"]))
    limit = args["limit"]
    rows: Sequence[Any] = conn.execute(query.order_by(id_column.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": encode(rows[-1].id) if more else None}
