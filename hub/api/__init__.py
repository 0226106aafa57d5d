"""The REST API under ``/api/v1`` (flask-smorest: marshmallow schemas, an OpenAPI 3 document).

One module per resource, each with a flask-smorest ``blueprint`` of its own; :data:`RESOURCES`
lists them, and :func:`init_app` registers each one behind authentication (:mod:`hub.api.auth`)
and into the document at ``/api/v1/openapi.json`` (read by people at ``/api/v1/docs``). A new
resource is a module with a ``blueprint`` plus its name here; ``tests/test_api_isolation.py``
then asks for a case proving that a tenant key cannot reach another tenant through it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from flask import Flask
from flask_smorest import Api

from hub.api import auth, errors

PREFIX = "/api/v1"
# hub.api.<name> modules, each with a flask_smorest.Blueprint named `blueprint`
RESOURCES = (
    "tenants",
    "journeys",
    "deliveries",
    "events",
    "consent",
    "reports",
    "export",
    "erasures",
)


class HubApi(Api):
    """flask-smorest's ``Api`` answering errors in the hub's one shape.

    flask-smorest would install its own handler for every ``HTTPException`` of the whole app
    (``{"code": 404, "status": …}``); the app's handler and :mod:`hub.api.errors` already answer
    in ``{"code", "message", "field"}``, so only the document learns the shape here.
    """

    ERROR_SCHEMA = errors.ErrorSchema

    def _register_error_handlers(self) -> None:
        errors.register(self._app)


def init_app(app: Flask, hub: Any) -> HubApi:
    """Register the API's resources, authentication, error handlers and document on ``app``."""
    app.config.update(
        API_TITLE="abandonment-hub",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "security": [{"bearer": []}],
            "info": {"description": "See docs/api.md: keys, pagination, errors, examples."},
            "servers": [{"url": "/"}],
        },
    )
    api = HubApi(app)
    # flask-smorest's `openapi print|write` commands: the document is served at its URL, and
    # every `hub` command must meet the CLI's rules (one-line errors, a bad-input case)
    app.cli.commands.pop("openapi", None)
    api.spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "an API key"}
    )
    names = set()
    for name in RESOURCES:
        blueprint = import_module(f"hub.api.{name}").blueprint
        api.register_blueprint(blueprint, url_prefix=f"{PREFIX}/{name}")
        names.add(blueprint.name)
    auth.install(app, hub, names)
    from hub.api import docs

    docs.register(app, api, PREFIX)
    return api
