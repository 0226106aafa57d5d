"""abandonment-hub: platform webhooks in, recovery messages out.

Plugin authors import from here (``from hub import hookimpl, Source, Sink``) and from
``hub.hookspecs``; nothing else in the package is a promise.
"""

from hub.hookspecs import (
    DemoRequest,
    InboundRequest,
    IngestOutcome,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    RetryableError,
    Sink,
    Source,
    VerificationError,
    hookimpl,
)

__version__ = "0.1.0"

__all__ = [
    "DemoRequest",
    "InboundRequest",
    "IngestOutcome",
    "OutboundMessage",
    "OutcomeUnknown",
    "PayloadError",
    "PermanentError",
    "RetryableError",
    "Sink",
    "Source",
    "VerificationError",
    "create_app",
    "current_hub",
    "hookimpl",
]


def create_app(config=None):  # noqa: ANN001, ANN201 - re-exported, documented in hub.app
    from hub.app import create_app as _create_app

    return _create_app(config)


def current_hub():  # noqa: ANN201
    """The running app's :class:`hub.app.Hub` (tenants, store, registries)."""
    from flask import current_app

    return current_app.extensions["hub"]
