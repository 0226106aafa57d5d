"""A generic ticket sink: Standard Webhooks-signed JSON POSTed to any URL the shop chooses.

Configured as ``[sinks.ticket_webhook]``; see docs/tickets.md. The module
``http_ticket_sink`` holds what all three ticket sinks (this one, Zendesk, HubSpot) share.
"""

from hub import hookimpl
from plugins.ticket_webhook.sink import TicketWebhookSink


@hookimpl
def hub_sinks() -> list:
    return [TicketWebhookSink()]
