"""E-mail over SMTP: localized HTML + text, one-click unsubscribe headers, connection reuse."""

from hub import hookimpl
from plugins.email.sink import EmailSink


@hookimpl
def hub_sinks() -> list:
    return [EmailSink()]
