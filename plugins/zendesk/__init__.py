"""Zendesk Support tickets for the shop's staff ("call this prospect", "check repeated abandons").

Configured as ``[sinks.zendesk]``; see docs/tickets.md.
"""

from hub import PluginServices, hookimpl
from plugins.zendesk.sink import ZendeskSink


@hookimpl
def hub_sinks(services: PluginServices) -> list:
    return [ZendeskSink(services)]
