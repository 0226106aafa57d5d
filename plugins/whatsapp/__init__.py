"""WhatsApp Business Cloud API: approved template messages out, status webhooks in."""

from hub import hookimpl
from plugins.whatsapp.sink import WhatsAppSink
from plugins.whatsapp.status import blueprint


@hookimpl
def hub_sinks() -> list:
    return [WhatsAppSink()]


@hookimpl
def hub_blueprints() -> list:
    return [blueprint]
