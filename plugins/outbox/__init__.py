"""A local outbox sink: writes each e-mail as an .eml file under var/outbox and logs it.

For a first run and for demos: messages become visible without any mail server.
"""

from hub import hookimpl
from plugins.outbox.sink import OutboxSink


@hookimpl
def hub_sinks() -> list:
    return [OutboxSink()]
