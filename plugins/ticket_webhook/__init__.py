"""A generic ticket sink: Standard Webhooks-signed JSON POSTed to any URL the shop chooses.

Configured as ``[sinks.ticket_webhook]``; see docs/tickets.md. What all ticket sinks share
(address, outbound session, classification of failures) is the hub's :class:`hub.TicketSink`.
"""

from hub import PluginServices, hookimpl
from plugins.ticket_webhook.sink import TicketWebhookSink


@hookimpl
def hub_sinks(services: PluginServices) -> list:
    return [TicketWebhookSink(services)]
