"""The storefront's side: register and drop push subscriptions, fetch the VAPID public key.

Mounted at ``/plugins/webpush/``:

* ``GET  /<tenant>/vapid-public-key`` → ``{"application_server_key": "<base64url>"}``
* ``POST /<tenant>/subscriptions`` with ``{subscription, checkout_id?, email?, customer_id?}``
* ``DELETE /<tenant>/subscriptions`` with ``{endpoint}`` (or ``{subscription: {endpoint}}``)
* ``/static/…`` the subscribe script and the service worker of docs/webpush.md

The shop's pages call these from the browser, on another origin than the hub's: CORS answers
only the origins listed in the tenant's ``allowed_origins``, and a request that carries any other
``Origin`` is refused outright (a form post would not need a preflight). Requests without an
``Origin`` (the shop's own server, curl) are not browsers and are served.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError

from hub import PayloadError, PluginServices, error_response, parse_json, unstorable_text
from plugins.webpush.config import application_server_key, load_vapid_key, normalize_origin
from plugins.webpush.subscriptions import (
    RegistrationSchema,
    SubscriptionBook,
    UnsubscribeSchema,
    check_identity_proofs,
    subscription_key,
)

log = logging.getLogger("hub.webpush")
MAX_BODY = 16 * 1024  # a subscription is ~500 bytes; anything near this is not one
STATIC_DIR = Path(__file__).parent / "static"


def make_blueprint(services: PluginServices) -> Blueprint:
    """The storefront routes and static files of one hub, acting through ``services``."""
    blueprint = Blueprint(
        "webpush", __name__, static_folder=str(STATIC_DIR), static_url_path="/static"
    )
    routes = (
        ("/<tenant_slug>/subscriptions", preflight, "OPTIONS"),
        ("/<tenant_slug>/vapid-public-key", preflight, "OPTIONS"),
        ("/<tenant_slug>/vapid-public-key", vapid_public_key, "GET"),
        ("/<tenant_slug>/subscriptions", subscribe, "POST"),
        ("/<tenant_slug>/subscriptions", unsubscribe, "DELETE"),
    )
    bound = {view: functools.partial(view, services) for _rule, view, _method in routes}
    for rule, view, method in routes:
        blueprint.add_url_rule(rule, view.__name__, bound[view], methods=[method])
    return blueprint


def _firsterror_response(messages: Any, prefix: str = "") -> tuple[str | None, str]:
    """marshmallow's nested messages → (dotted field path, first message)."""
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            return _firsterror_response(value, path)
    if isinstance(messages, list) and messages:
        return _firsterror_response(messages[0], prefix)
    return (prefix or None), str(messages)


def _cors(response: Response, config: Mapping[str, Any] | None) -> Response:
    origin = request.headers.get("Origin")
    response.vary.add("Origin")
    if origin and config and _origin_allowed(origin, config):
        response.headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
    return response


def _origin_allowed(origin: str, config: Mapping[str, Any]) -> bool:
    wanted = normalize_origin(origin)
    allowed = {normalize_origin(o) for o in config.get("allowed_origins", ())}
    return wanted is not None and wanted in allowed


def _refusal(
    services: PluginServices, slug: str
) -> tuple[Mapping[str, Any] | None, Response | None]:
    """The tenant's config, or the answer for an unknown tenant or a foreign browser origin."""
    config = services.config(slug)
    if config is None:
        return None, error_response(404, "unknown_tenant", f"web push is not enabled for {slug!r}")
    origin = request.headers.get("Origin")
    if origin and not _origin_allowed(origin, config):
        return config, error_response(
            403, "origin_not_allowed", f"{origin} is not in allowed_origins", "Origin"
        )
    return config, None


def _json_body() -> tuple[Any, Response | None]:
    if (request.content_length or 0) > MAX_BODY:
        return None, error_response(413, "too_large", f"the body is limited to {MAX_BODY} bytes")
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:  # chunked bodies carry no Content-Length
        return None, error_response(413, "too_large", f"the body is limited to {MAX_BODY} bytes")
    try:
        data = parse_json(body)
    except PayloadError:  # not UTF-8 JSON, NaN, or nested too deep to parse
        return None, error_response(400, "invalid_json", "the body must be a JSON object")
    if not isinstance(data, dict):
        return None, error_response(400, "invalid_json", "the body must be a JSON object")
    unstorable = unstorable_text(data)
    if unstorable is not None:  # the plugin store could not keep it (PostgreSQL, SQLite alike)
        return None, error_response(400, "invalid_json", "NUL or an unpaired surrogate", unstorable)
    return data, None


def preflight(services: PluginServices, tenant_slug: str) -> Response:
    """CORS preflight: allowed origins get the CORS headers, others an answer without them."""
    return _cors(Response(status=204), services.config(tenant_slug))


def vapid_public_key(services: PluginServices, tenant_slug: str) -> Response:
    """The ``applicationServerKey`` the subscribe script passes to ``pushManager.subscribe``."""
    config, refused = _refusal(services, tenant_slug)
    if refused is not None:
        return _cors(refused, config)
    key = application_server_key(load_vapid_key(config["vapid_private_key"]))
    response = jsonify({"application_server_key": key})
    response.headers["Cache-Control"] = "public, max-age=300"
    return _cors(response, config)


def subscribe(services: PluginServices, tenant_slug: str) -> Response:
    """Register (or refresh) a browser's push subscription and its bindings."""
    config, refused = _refusal(services, tenant_slug)
    if refused is not None:
        return _cors(refused, config)
    data, bad = _json_body()
    if bad is not None:
        return _cors(bad, config)
    try:
        registration = RegistrationSchema().load(data)
        check_identity_proofs(registration, config.get("identity_secret"))
    except ValidationError as exc:
        field, message = _firsterror_response(exc.messages)
        return _cors(error_response(400, "invalid_subscription", message, field), config)
    book = SubscriptionBook(services.data)
    key, created = book.register(tenant_slug, registration)
    bindings = [n for n in ("checkout_id", "email", "customer_id") if registration.get(n)]
    log.info(
        "webpush subscription tenant=%s key=%s bindings=%s created=%s",
        tenant_slug,
        key,
        ",".join(bindings),
        created,
    )
    response = jsonify({"subscribed": True, "bindings": bindings})
    response.status_code = 201 if created else 200
    return _cors(response, config)


def unsubscribe(services: PluginServices, tenant_slug: str) -> Response:
    """The browser unsubscribed (``PushSubscription.unsubscribe()``): forget it at once."""
    config, refused = _refusal(services, tenant_slug)
    if refused is not None:
        return _cors(refused, config)
    data, bad = _json_body()
    if bad is not None:
        return _cors(bad, config)
    try:
        loaded = UnsubscribeSchema().load(data)
    except ValidationError as exc:
        field, message = _firsterror_response(exc.messages)
        return _cors(error_response(400, "invalid_subscription", message, field), config)
    endpoint = loaded.get("endpoint") or loaded["subscription"]["endpoint"]
    book = SubscriptionBook(services.data)
    if not book.remove(tenant_slug, subscription_key(endpoint)):
        return _cors(error_response(404, "unknown_subscription", "no such subscription"), config)
    log.info("webpush unsubscribed tenant=%s key=%s", tenant_slug, subscription_key(endpoint))
    return _cors(Response(status=204), config)
