"""abandonment-hub: platform webhooks in, recovery messages out.

This module is the public API: plugin authors import from ``hub`` and nothing else of the
package (``hub.testing`` in their tests). What it exports, by job:

* **the contract** (``hub.hookspecs``): :data:`hookimpl`, :class:`Source`, :class:`Sink`,
  :class:`ConversionProbe` (asking a platform whether a checkout converted), the dataclasses
  the hub hands over and the errors a plugin raises on purpose;
* **run-time services** (``hub.services``): :class:`PluginServices`, handed to hooks that ask
  for ``services``, with :class:`PluginData` and :func:`error_response`;
* **outbound HTTP** (``hub.outbound``): :class:`HttpSink`, :func:`new_session`,
  :class:`NetworkPolicy`, :func:`classify_request_error`, :func:`classify_status`,
  :func:`retry_after_seconds`, :func:`request_json` (a probe's API call), the config fields
  :func:`url_field` and :func:`timeout_field`;
* **tickets for staff** (``hub.tickets``): :class:`TicketSink`, :func:`ticket_text`,
  :func:`priority_field`;
* **e-mail** (``hub.mail``): :func:`build_email`, :func:`wire_bytes`, :func:`parse_mailbox`, so
  every sink of the ``email`` channel sends the same RFC-correct message;
* **data at the edge**: money (:func:`to_minor`, :func:`to_decimal`, :func:`minor_digits`,
  :func:`format_money`), phones (:func:`to_e164`), durations (:func:`parse_duration`,
  :func:`format_duration`), masking for logs (:func:`mask`, :func:`mask_ids`), JSON bodies
  (:func:`parse_json`) and the normalized event (:class:`EventSchema`, :func:`load_event`,
  :class:`AwareDateTime`, :func:`first_error_field`, :func:`unstorable_text`).

Everything but the contract is imported on first use, so ``import hub`` stays cheap for a
plugin module that only needs ``hookimpl``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from hub.hookspecs import (
    ConversionProbe,
    DemoRequest,
    InboundRequest,
    IngestOutcome,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    ProbeQuestion,
    RetryableError,
    Sink,
    Source,
    VerificationError,
    hookimpl,
    parse_json,
)
from hub.version import __version__ as __version__

if TYPE_CHECKING:
    from hub.durations import format_duration, parse_duration
    from hub.events import (
        AwareDateTime,
        EventSchema,
        first_error_field,
        load_event,
        unstorable_text,
    )
    from hub.logs import mask, mask_ids
    from hub.mail import build_email, parse_mailbox, wire_bytes
    from hub.money import format_money, minor_digits, to_decimal, to_minor
    from hub.outbound import (
        HttpSink,
        NetworkPolicy,
        classify_request_error,
        classify_status,
        new_session,
        request_json,
        retry_after_seconds,
        timeout_field,
        tls_context,
        url_field,
    )
    from hub.phones import to_e164
    from hub.services import PluginData, PluginServices, error_response
    from hub.tickets import TicketSink, priority_field, ticket_text


# name -> module that defines it, imported on first access (PEP 562)
_LAZY = {
    **dict.fromkeys(("format_duration", "parse_duration"), "hub.durations"),
    **dict.fromkeys(
        ("AwareDateTime", "EventSchema", "first_error_field", "load_event", "unstorable_text"),
        "hub.events",
    ),
    **dict.fromkeys(("mask", "mask_ids"), "hub.logs"),
    **dict.fromkeys(("build_email", "parse_mailbox", "wire_bytes"), "hub.mail"),
    **dict.fromkeys(("format_money", "minor_digits", "to_decimal", "to_minor"), "hub.money"),
    **dict.fromkeys(
        (
            "HttpSink",
            "NetworkPolicy",
            "classify_request_error",
            "classify_status",
            "new_session",
            "request_json",
            "retry_after_seconds",
            "timeout_field",
            "tls_context",
            "url_field",
        ),
        "hub.outbound",
    ),
    "to_e164": "hub.phones",
    **dict.fromkeys(("PluginData", "PluginServices", "error_response"), "hub.services"),
    **dict.fromkeys(("TicketSink", "priority_field", "ticket_text"), "hub.tickets"),
}

__all__ = [
    "AwareDateTime",
    "ConversionProbe",
    "DemoRequest",
    "EventSchema",
    "HttpSink",
    "InboundRequest",
    "IngestOutcome",
    "NetworkPolicy",
    "OutboundMessage",
    "OutcomeUnknown",
    "PayloadError",
    "PermanentError",
    "PluginData",
    "PluginServices",
    "ProbeQuestion",
    "RetryableError",
    "Sink",
    "Source",
    "TicketSink",
    "VerificationError",
    "build_email",
    "classify_request_error",
    "classify_status",
    "create_app",
    "error_response",
    "first_error_field",
    "format_duration",
    "format_money",
    "hookimpl",
    "load_event",
    "mask",
    "mask_ids",
    "minor_digits",
    "new_session",
    "parse_duration",
    "parse_json",
    "parse_mailbox",
    "priority_field",
    "request_json",
    "retry_after_seconds",
    "ticket_text",
    "timeout_field",
    "to_decimal",
    "to_e164",
    "tls_context",
    "to_minor",
    "unstorable_text",
    "url_field",
    "wire_bytes",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hub' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def create_app(config=None):  # noqa: ANN001, ANN201 - re-exported, documented in hub.app
    """Build the hub's Flask app (see :func:`hub.app.create_app`)."""
    from hub.app import create_app as _create_app

    return _create_app(config)


def current_hub():  # noqa: ANN201
    """The running app's :class:`hub.app.Hub`: the whole core, for the hub's own edge code.

    Not for plugins: what a plugin may do is its :class:`PluginServices` (a test keeps the
    built-in plugins from importing this).
    """
    from hub.current import current_hub as _current_hub

    return _current_hub()
