"""Writes rendered e-mails to files instead of sending them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields

from hub import OutboundMessage, PermanentError, Sink, build_email

log = logging.getLogger("hub.outbox")


class OutboxConfig(Schema):
    directory = fields.String(load_default="var/outbox", data_key="dir")
    sender = fields.String(load_default="Shop <shop@example.invalid>", data_key="from")


class OutboxSink(Sink):
    name = "outbox"
    channel = "email"
    config_schema = OutboxConfig

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        return customer.get("email") or None

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        email = build_email(message, {"from": config["sender"]})
        folder = Path(config["directory"]) / message.tenant
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"delivery-{message.delivery_id}.eml"
            path.write_bytes(email.as_bytes())
        except OSError as exc:
            raise PermanentError(f"cannot write the outbox: {exc}") from None
        text = message.parts.get("txt", "")
        log.info(
            "outbox: message for %s written to %s\n--- %s ---\n%s",
            message.to,
            path,
            email["Subject"],
            text,
        )
        return email["Message-ID"]
