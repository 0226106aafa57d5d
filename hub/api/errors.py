"""The API's one error shape, ``{"code", "message", "field"}``, for every status it answers.

The app already answers every ``HTTPException`` in this shape (404, 405, 500 …, see
:func:`hub.app.create_app`); this module adds what the API needs on top: :class:`ApiError` with
a stable code of its own, a field and headers (``WWW-Authenticate``, ``Retry-After``), and
a bad query or body answered as 400 naming the field, like the ingress does (webargs' default
would be 422: :class:`Blueprint` asks for 400, so the OpenAPI document says so too).
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Flask, Response
from marshmallow import Schema, fields
from werkzeug.exceptions import BadRequest, HTTPException

from hub.events import first_error_field
from hub.services import error_response


class ErrorSchema(Schema):
    """What every error response of the API holds (documented in the OpenAPI document)."""

    code = fields.String(required=True, metadata={"description": "stable, machine-readable"})
    message = fields.String(required=True, metadata={"description": "for a person"})
    field = fields.String(
        required=True, allow_none=True, metadata={"description": "the culprit, if there is one"}
    )


class ApiError(HTTPException):
    """An error with its own stable ``error_code`` and optional ``field`` and headers."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = status
        self.error_code = error_code
        self.field = field
        self.extra_headers = headers or {}


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's blueprint, answering invalid arguments with 400 instead of 422."""

    def arguments(self, schema: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("error_status_code", 400)
        return super().arguments(schema, **kwargs)


def not_found(what: str, field: str | None = None) -> ApiError:
    """The one answer for "absent" and "not yours": a tenant key cannot tell them apart."""
    return ApiError(404, "not_found", f"no {what}", field)


def register(app: Flask) -> None:
    """Install the handlers; more specific than the app's ``HTTPException`` handler."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(BadRequest, _invalid_input)


def _api_error(exc: ApiError) -> Response:
    response = error_response(exc.code or 500, exc.error_code, exc.description or "", exc.field)
    response.headers.update(exc.extra_headers)
    return response


def _invalid_input(exc: BadRequest) -> Response:
    """webargs (through flask-smorest) aborts with ``{location: {field: [msg]}}`` as data; any
    other 400 (a malformed body at the ingress) keeps the app's generic answer."""
    data: dict[str, Any] = getattr(exc, "data", None) or {}
    messages = data.get("messages") or {}
    if not messages:
        return error_response(400, "bad_request", exc.description or "")
    if isinstance(messages, dict) and len(messages) == 1:
        messages = next(iter(messages.values()))  # drop the location ("query", "json")
    field, message = first_error_field(messages) if messages else (None, exc.description or "")
    return error_response(400, "invalid_input", message, None if field == "_schema" else field)
