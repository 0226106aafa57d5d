"""Zendesk Support: one ticket per delivery, created idempotently (Zendesk's API reference).

``POST https://{subdomain}.zendesk.com/api/v2/tickets`` with an API token (basic auth
``{agent e-mail}/token:{token}``) or an OAuth bearer token. The delivery id goes out as
``Idempotency-Key``, so Zendesk returns the ticket it already made when a retry repeats a request
whose answer we lost: a read timeout is safe to retry. The first comment is private by default,
so the customer named as requester is not e-mailed by Zendesk's "new ticket" triggers — the
ticket is for the shop's staff.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from hub import OutboundMessage, TicketSink, priority_field, ticket_text, timeout_field, url_field

SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
TAG_UNSAFE = re.compile(r"[^a-z0-9_]+")


class ZendeskConfig(Schema):
    subdomain = fields.String(load_default=None)
    base_url = url_field()
    email = fields.Email(load_default=None)
    api_token = fields.String(load_default=None, metadata={"secret": True})
    oauth_token = fields.String(load_default=None, metadata={"secret": True})
    priority = priority_field()
    tags = fields.List(fields.String(), load_default=lambda: ["abandoned_cart"])
    group_id = fields.Integer(load_default=None, validate=validate.Range(min=1))
    public_comment = fields.Boolean(load_default=False)
    timeout = timeout_field()

    @validates("subdomain")
    def _subdomain(self, value: str | None, **_: Any) -> None:
        if value is not None and not SUBDOMAIN.match(value):
            raise ValidationError('the part before ".zendesk.com", e.g. "acme"')

    @validates_schema
    def _target_and_credentials(self, data: dict, **_: Any) -> None:
        if bool(data.get("subdomain")) == bool(data.get("base_url")):
            raise ValidationError("give either subdomain or base_url", "subdomain")
        if data.get("oauth_token"):
            return
        if not data.get("email") or not data.get("api_token"):
            raise ValidationError(
                "give email (the agent the token belongs to) and api_token, or oauth_token",
                "api_token",
            )


def tickets_url(config: Mapping[str, Any]) -> str:
    base = config["base_url"] or f"https://{config['subdomain']}.zendesk.com"
    return base.rstrip("/") + "/api/v2/tickets"


def authorization(config: Mapping[str, Any]) -> str:
    if config["oauth_token"]:
        return f"Bearer {config['oauth_token']}"
    pair = f"{config['email']}/token:{config['api_token']}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def tag(text: str) -> str:
    """Zendesk tags are single words: lower-case, anything else becomes ``_``."""
    return TAG_UNSAFE.sub("_", text.lower()).strip("_")


def ticket_payload(message: OutboundMessage, config: Mapping[str, Any]) -> dict:
    """The ``{"ticket": {…}}`` body of ``POST /api/v2/tickets``."""
    subject, body = ticket_text(message)
    customer = message.context.get("customer") or {}
    tags = [tag(t) for t in config["tags"]]
    tags += [tag(f"tenant_{message.tenant}"), tag(message.template or "ticket")]
    ticket: dict[str, Any] = {
        "subject": subject,
        "comment": {"body": body, "public": config["public_comment"]},
        "priority": config["priority"],
        "tags": list(dict.fromkeys(t for t in tags if t)),
        "external_id": f"abandonment-hub:{message.tenant}:journey-{message.journey_id}"
        f":step-{message.step_index}",
    }
    if customer.get("email"):
        # Zendesk finds or creates the end user by e-mail, so agents see their history
        ticket["requester"] = {
            "name": customer.get("name") or customer["email"],
            "email": customer["email"],
        }
    if config["group_id"]:
        ticket["group_id"] = config["group_id"]
    return {"ticket": ticket}


class ZendeskSink(TicketSink):
    name = "zendesk"
    config_schema = ZendeskConfig
    idempotent = True

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        """Create the ticket; returns Zendesk's ticket id."""
        payload = ticket_payload(message, config)
        _, answer = self.post(
            tickets_url(config),
            body=json.dumps(payload).encode(),
            headers={
                "Authorization": authorization(config),
                "Accept": "application/json",
                "Idempotency-Key": str(message.delivery_id),
            },
            timeout=config["timeout"],
            what="Zendesk ticket",
        )
        try:
            ticket_id = json.loads(answer)["ticket"]["id"]
        except (ValueError, KeyError, TypeError):
            return None  # created (2xx), but the answer did not carry the id
        return str(ticket_id)
