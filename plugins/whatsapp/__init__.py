"""WhatsApp Business Cloud API: approved template messages out, status webhooks in."""

from hub import PluginServices, hookimpl
from plugins.whatsapp.sink import WhatsAppSink
from plugins.whatsapp.status import make_blueprint


@hookimpl
def hub_sinks(services: PluginServices) -> list:
    return [WhatsAppSink(services)]


@hookimpl
def hub_blueprints(services: PluginServices) -> list:
    return [make_blueprint(services)]
