"""E-mail over SMTP: localized HTML + text, one-click unsubscribe headers, connection reuse."""

from hub import PluginServices, hookimpl
from plugins.email.sink import EmailSink


@hookimpl
def hub_sinks(services: PluginServices) -> list:
    return [EmailSink(services)]
