"""The generic ticket sink: a signed JSON POST for any helpdesk, CRM or automation tool.

The body is the ticket contract of docs/tickets.md: ``reason`` (the step's template name),
``subject``, ``body``, ``priority``, ``customer``, ``cart``, ``recovery_url`` and ``journey_id``.
It is signed per Standard Webhooks with the sink's ``whsec_`` secret; ``webhook-id`` is the
delivery-ledger id, the same on every retry, so receivers dedupe on it and a retry after a lost
answer is safe (this sink is idempotent). ``webhook-timestamp`` is fresh on every attempt, so a
retry is never rejected as stale.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validates
from standardwebhooks.webhooks import Webhook

from hub import OutboundMessage, TicketSink, priority_field, ticket_text, timeout_field, url_field

CUSTOMER_KEYS = ("email", "phone", "first_name", "last_name", "name", "locale", "country")


class TicketWebhookConfig(Schema):
    url = url_field(required=True)
    secret = fields.String(required=True, metadata={"secret": True})
    priority = priority_field()
    timeout = timeout_field()

    @validates("secret")
    def _secret(self, value: str, **_: Any) -> None:
        if not value.startswith("whsec_"):
            raise ValidationError("a Standard Webhooks secret: whsec_ followed by base64")
        try:
            Webhook(value)
        except Exception:  # binascii.Error, EmptyWebhookSecretError
            raise ValidationError("the part after whsec_ is not base64") from None


def ticket_body(message: OutboundMessage, config: Mapping[str, Any]) -> dict:
    """The JSON document receivers get (contract: keys may be added, never renamed)."""
    subject, body = ticket_text(message)
    context = message.context
    customer = context.get("customer") or {}
    return {
        "reason": message.template,
        "subject": subject,
        "body": body,
        "priority": config["priority"],
        "customer": {k: customer.get(k) for k in CUSTOMER_KEYS},
        "cart": context.get("cart"),
        "recovery_url": context.get("recovery_url"),
        "journey_id": message.journey_id,
    }


def signed_headers(secret: str, message_id: str, body: str, now: datetime) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for ``body``."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


class TicketWebhookSink(TicketSink):
    name = "ticket_webhook"
    config_schema = TicketWebhookConfig
    idempotent = True

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        """POST the signed ticket; any 2xx is success.

        Returns the receiver's ticket id when it answers JSON with an ``id``, else the
        ``webhook-id``.
        """
        body = json.dumps(ticket_body(message, config), ensure_ascii=False, separators=(",", ":"))
        message_id = str(message.delivery_id)
        _, answer = self.post(
            config["url"],
            body=body.encode("utf-8"),
            headers=signed_headers(config["secret"], message_id, body, datetime.now(UTC)),
            timeout=config["timeout"],
            what="ticket webhook",
        )
        try:
            receiver_id = json.loads(answer)["id"]
        except (ValueError, KeyError, TypeError):
            return message_id
        return str(receiver_id) if isinstance(receiver_id, str | int) else message_id
