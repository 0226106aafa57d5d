"""The generic webhook source: any shop posts the hub's own normalized event, signed per
Standard Webhooks (the Standard Webhooks spec).

For shops without a platform plugin. The body is one event or a JSON array of up to 100 events
(a batch is all or nothing: one bad event refuses the whole request, naming ``[i].field``).
The ``webhook-id`` header is the idempotency key: a single event gets it as its event key, the
events of a batch get ``<webhook-id>:<index>``, so a retried batch is recognised event by event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from hub import DemoRequest, InboundRequest, PayloadError, Source, first_error_field
from plugins.webhook.schema import MAX_BATCH, accepted_schema
from plugins.webhook.signature import secret_key, signed_headers, verify

MIN_SECRET_BYTES = 16
# event keys are at most 255 characters; leave room for ":<index>" of a batch
MAX_ID_LENGTH = 240


def _check_secret(value: str) -> None:
    try:
        key = secret_key(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValidationError(f"the key must be at least {MIN_SECRET_BYTES} bytes")


class WebhookConfig(Schema):
    """``[sources.webhook]`` of a tenant file."""

    secret = fields.String(
        required=True, metadata={"description": "whsec_… signing secret", "secret": True}
    )
    previous_secrets = fields.List(
        fields.String(),
        load_default=list,
        validate=validate.Length(max=5),
        metadata={"description": "secrets still accepted while senders rotate", "secret": True},
    )

    @validates("secret")
    def _secret(self, value: str, **_: Any) -> None:
        _check_secret(value)

    @validates("previous_secrets")
    def _previous(self, value: list[str], **_: Any) -> None:
        for item in value:
            _check_secret(item)


class WebhookSource(Source):
    """A shop's own system posting normalized events to ``/webhooks/<tenant>/webhook``."""

    name = "webhook"
    config_schema = WebhookConfig

    def __init__(self) -> None:
        self._accepted = accepted_schema()

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        verify(request.body, request.headers, [config["secret"], *config["previous_secrets"]])

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[dict]:
        msg_id = request.headers["webhook-id"].strip()
        if len(msg_id) > MAX_ID_LENGTH:
            raise PayloadError(f"longer than {MAX_ID_LENGTH} characters", "webhook-id")
        data = request.json()
        if isinstance(data, dict):
            items, batch = [data], False
        elif isinstance(data, list):
            if not 1 <= len(data) <= MAX_BATCH:
                raise PayloadError(f"a batch holds 1 to {MAX_BATCH} events", "body")
            items, batch = data, True
        else:
            raise PayloadError("expected an event object or an array of them", "body")

        events = []
        for index, item in enumerate(items):
            prefix = f"[{index}]" if batch else ""
            if not isinstance(item, dict):
                raise PayloadError("expected an event object", prefix or "body")
            try:
                self._accepted.load(item)
            except ValidationError as exc:
                field, message = first_error_field(exc.messages)
                raise PayloadError(message, f"{prefix}.{field}" if prefix else field) from None
            # the hub's own load (after parse) turns the JSON values into the loaded event
            events.append({**item, "event_key": f"{msg_id}:{index}" if batch else msg_id})
        return events

    def demo_request(self, config: Mapping[str, Any], now: datetime) -> DemoRequest:
        stamp = int(now.timestamp())
        body = json.dumps(demo_event(now)).encode()
        return DemoRequest(
            headers=signed_headers(config["secret"], f"msg_demo_{stamp}", body, stamp),
            body=body,
            description="generic webhook checkout.abandoned (Jane Demo, 49.99 EUR)",
        )


def demo_event(now: datetime, checkout_id: str | None = None) -> dict:
    """A complete ``checkout.abandoned`` as a shop would post it (also the docs' example)."""
    return {
        "kind": "checkout.abandoned",
        "checkout_id": checkout_id or f"cart_demo_{int(now.timestamp())}",
        "occurred_at": now.isoformat(),
        "customer": {
            "email": "jane.demo@example.com",
            "first_name": "Jane",
            "last_name": "Demo",
            "locale": "en",
            "country": "US",
        },
        "cart": {
            "total": 4999,
            "currency": "EUR",
            "items": [{"name": "Trail runner", "quantity": 1, "unit_price": 4999}],
        },
        "recovery_url": "https://shop.example/cart/recover/demo",
        "recovery_expires_at": (now + timedelta(days=7)).isoformat(),
        "consent": {"email": "opt_in"},
        "stage": "payment",
    }
