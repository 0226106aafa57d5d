"""Zendesk Support tickets for the shop's staff ("call this prospect", "check repeated abandons").

Configured as ``[sinks.zendesk]``; see docs/tickets.md.
"""

from hub import hookimpl
from plugins.zendesk.sink import ZendeskSink


@hookimpl
def hub_sinks() -> list:
    return [ZendeskSink()]
