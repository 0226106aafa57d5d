"""Contract: what every ticket sink shares (Zendesk, HubSpot, the signed webhook, yours).

A ticket goes to the shop's own staff, not to the customer: no consent is needed, it is written
in the tenant's ``staff_locale``, and it is worth creating even when we know neither an e-mail
nor a phone. Its text comes from the step's ``ticket.<locale>.subject`` and ``ticket.<locale>.txt``
templates; its priority from one vocabulary (``low normal high urgent``) each sink maps to its
provider's. Subclass :class:`TicketSink` for another helpdesk: you write the payload, the base
class brings the address, the outbound session and the classification of failures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import fields, validate

from hub.hookspecs import OutboundMessage, PermanentError
from hub.outbound import HttpSink

PRIORITIES = ("low", "normal", "high", "urgent")
UNKNOWN_PROSPECT = "unknown prospect"
LINE_BREAKS = re.compile(r"[ \t]*[\r\n]+[ \t]*")


def priority_field() -> fields.String:
    """The ``priority`` config key every ticket sink takes (default ``normal``)."""
    return fields.String(load_default="normal", validate=validate.OneOf(PRIORITIES))


def ticket_text(message: OutboundMessage) -> tuple[str, str]:
    """The rendered ``ticket.<locale>.subject`` (one line) and ``ticket.<locale>.txt``.

    Raises :class:`~hub.PermanentError` when the step's template lacks either file.
    """
    # collapse line breaks only: str.split() would also eat the no-break space in "250,00 €"
    subject = LINE_BREAKS.sub(" ", message.parts.get("subject") or "").strip()
    body = (message.parts.get("txt") or "").strip()
    if not subject or not body:
        raise PermanentError(
            f'the "{message.template}" template needs ticket.<locale>.subject and '
            "ticket.<locale>.txt files"
        )
    return subject, body


class TicketSink(HttpSink):
    """Base class of sinks that open a ticket or task for the shop's staff."""

    channel: ClassVar[str] = "ticket"
    needs_consent: ClassVar[bool] = False
    audience: ClassVar[str] = "staff"  # the tenant's staff_locale, not the customer's language

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        """Who the ticket is about; never ``None``: staff can act on a ticket without it."""
        return customer.get("email") or customer.get("phone") or UNKNOWN_PROSPECT
