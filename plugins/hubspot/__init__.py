"""HubSpot CRM tasks (or tickets) for the shop's staff, associated with the customer's contact.

Configured as ``[sinks.hubspot]``; see docs/tickets.md.
"""

from hub import PluginServices, hookimpl
from plugins.hubspot.sink import HubSpotSink


@hookimpl
def hub_sinks(services: PluginServices) -> list:
    return [HubSpotSink(services)]
