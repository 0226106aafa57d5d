"""WhatsApp Business Cloud API: one approved template message per delivery.

The message text lives at Meta (``renders_templates = False``): the tenant maps each step
template to an approved template and the hub values that fill its variables. The API is
called through the plugin's outbound session (``api_base`` is tenant configuration, so the
operator's network policy applies), one pooled session per worker, so connections to Meta are
reused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from hub import OutboundMessage, PermanentError, PluginServices, Sink
from plugins.whatsapp.config import WhatsAppConfig
from plugins.whatsapp.errors import classify_response, classify_transport
from plugins.whatsapp.message import build_payload, normalize_phone


class WhatsAppSink(Sink):
    name = "whatsapp"
    channel = "whatsapp"
    config_schema = WhatsAppConfig
    needs_consent = True  # the core checks consent.whatsapp against the tenant's policy
    idempotent = False  # the Cloud API has no idempotency key: never resend after a read timeout
    renders_templates = False

    def __init__(self, services: PluginServices) -> None:
        self.services = services

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        """The customer's E.164 phone; an unusable one is permanent (next channel)."""
        raw = customer.get("phone")
        if not raw:
            return None
        return normalize_phone(raw, customer.get("country"))

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        """POST the template message; return Meta's message id (wamid)."""
        template = config["templates"].get(message.template)
        if template is None:
            raise PermanentError(
                f'no WhatsApp template mapped for step template "{message.template}" '
                f"(add [sinks.whatsapp.templates.{message.template}])"
            )
        payload = build_payload(message, template, self.services.public_url())
        url = f"{config['api_base']}/{config['phone_number_id']}/messages"
        try:
            response = self.services.http_session().post(
                url,
                json=payload,
                headers={"Authorization": f"Bearer {config['access_token']}"},
                timeout=(config["connect_timeout"], config["read_timeout"]),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise classify_transport(exc) from None
        return classify_response(response)
