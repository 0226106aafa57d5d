"""Build the RFC 5322 message a recovery e-mail is, from the rendered template parts."""

from __future__ import annotations

from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

from hub import OutboundMessage, PermanentError


def sender_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


def build_message(message: OutboundMessage, config: Mapping[str, Any]) -> EmailMessage:
    """Subject/txt/html parts → a multipart/alternative message with the headers bulk senders
    need: Message-ID, Date, List-Unsubscribe (+ mailto when configured) and
    List-Unsubscribe-Post (RFC 8058)."""
    parts = message.parts
    if "subject" not in parts or ("txt" not in parts and "html" not in parts):
        raise PermanentError("the e-mail template needs a .subject and a .txt or .html file")
    email = EmailMessage()
    email["Subject"] = " ".join(parts["subject"].split())
    email["From"] = config["from"]
    try:
        email["To"] = Address(addr_spec=message.to)
    except (ValueError, IndexError) as exc:
        raise PermanentError(f"invalid recipient address: {exc}") from None
    if config.get("reply_to"):
        email["Reply-To"] = config["reply_to"]
    email["Date"] = format_datetime(_now())
    domain = sender_domain(config["from"])
    email["Message-ID"] = make_msgid(
        idstring=f"j{message.journey_id}s{message.step_index}", domain=domain
    )
    unsubscribe = message.context.get("unsubscribe_url")
    if unsubscribe:
        targets = [f"<{unsubscribe}>"]
        if config.get("unsubscribe_mailto"):
            targets.append(
                f"<mailto:{config['unsubscribe_mailto']}?subject=unsubscribe-{message.delivery_id}>"
            )
        email["List-Unsubscribe"] = ", ".join(targets)
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Gmail's Feedback-ID groups complaints per tenant and campaign without exposing the person
    email["Feedback-ID"] = f"step{message.step_index}:{message.tenant}:recovery:{domain}"
    email["Content-Language"] = message.locale.replace("_", "-")
    for key, value in message.headers.items():
        email[key] = value
    # quoted-printable keeps every line under SMTP's 998-octet limit whatever the template does
    if "txt" in parts:
        email.set_content(parts["txt"], cte="quoted-printable")
        if "html" in parts:
            email.add_alternative(parts["html"], subtype="html", cte="quoted-printable")
    else:
        email.set_content(parts["html"], subtype="html", cte="quoted-printable")
    return email


def _now():  # noqa: ANN202
    from datetime import UTC, datetime

    return datetime.now(UTC)
