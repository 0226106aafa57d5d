"""Contract: the RFC 5322 message a recovery e-mail is, built from the rendered template parts.

Every sink of the ``email`` channel sends the same message, whatever carries it (SMTP, a file
in the outbox, a provider's raw-MIME API): :func:`build_email` gives it the headers bulk senders
need, :func:`wire_bytes` its bytes as SMTP wants them.

Some headers are written here by hand because Python's own folding (checked on 3.11) gets them
wrong for bulk mail:

* a header line longer than 78 characters is refolded into RFC 2047 encoded words even when it
  is a structured header, so a ``List-Unsubscribe`` URL behind a longer ``HUB_PUBLIC_URL`` went
  out as ``=?utf-8?q?=3Chttps=3A//…?=`` and mail clients offered no unsubscribe button;
* folding a non-ASCII subject drops the space between two adjacent encoded words (CPython
  gh-144156): "wartet – Jürgen" arrived as "wartet –Jürgen".

So the subject and display names are encoded with :class:`email.header.Header` (which keeps every
space inside the encoded words), the machine-read headers are stored verbatim, and the message's
policy never refolds a header stored that way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from email.utils import format_datetime, make_msgid
from html import escape
from typing import Any

from hub.hookspecs import OutboundMessage, PermanentError

# headers stored with set_raw() go out exactly as written; the others are folded as usual
POLICY = DEFAULT_POLICY.clone(refold_source="none")
WIRE_POLICY = POLICY.clone(linesep="\r\n")  # what goes into SMTP DATA

_ANGLE_ADDR = re.compile(r"(.*?)\s*<([^<>]*)>", re.DOTALL)


def parse_mailbox(text: str) -> Address:
    """``Müller & Söhne <shop@example.com>``, ``"Acme, Inc." <…>`` or a bare address → one
    :class:`Address` with an ASCII (IDNA) domain.

    An unquoted display name may contain commas and dots (``Acme, Inc. <shop@…>`` is what
    operators write; the standard parser would read two mailboxes). Raises ``ValueError``
    saying what is wrong.
    """
    text = text.strip()
    match = _ANGLE_ADDR.fullmatch(text)
    display, addr = (match.group(1).strip(), match.group(2).strip()) if match else ("", text)
    if len(display) >= 2 and display[0] == display[-1] == '"':
        display = re.sub(r"\\(.)", r"\1", display[1:-1])
    if any(ord(c) < 32 or ord(c) == 127 for c in display):
        raise ValueError("control characters in the display name")
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or re.search(r"[\s<>(),;:\"\[\]\\]", addr):
        raise ValueError(f"not an e-mail address: {addr!r}")
    if not local.isascii():
        raise ValueError(f"non-ASCII local part in {addr!r} (SMTPUTF8 is not used)")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"invalid domain in {addr!r}") from None
    if any(not label for label in domain.split(".")):
        raise ValueError(f"invalid domain in {addr!r}")
    return Address(display_name=display, username=local, domain=domain)


def format_mailbox(address: Address, header_name: str) -> str:
    """A header value for one mailbox: ASCII names quoted where needed, others RFC 2047."""
    if not address.display_name:
        return address.addr_spec
    if address.display_name.isascii():
        return str(address)  # Address quotes a name with specials ("Acme, Inc.")
    name = Header(address.display_name, "utf-8", header_name=header_name).encode()
    lines = name.split("\n")
    used = len(lines[-1]) + (len(header_name) + 2 if len(lines) == 1 else 0)
    fold = "\n " if used + len(address.addr_spec) + 3 > 78 else " "
    return f"{name}{fold}<{address.addr_spec}>"


def encode_text(text: str, header_name: str) -> str:
    """An unstructured header value (the subject), folded at spaces, RFC 2047 when non-ASCII;
    round-trips exactly, spaces included."""
    if not text.isascii():
        return Header(text, "utf-8", header_name=header_name).encode()
    # Header() would fold before an overlong first word and so add a leading space
    lines, line, room = [], "", 78 - len(header_name) - 2
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line, room = word, 77  # a continuation line starts with the space it replaces
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n ".join(lines)


def build_email(message: OutboundMessage, config: Mapping[str, Any]) -> EmailMessage:
    """Subject/txt/html parts → a multipart/alternative message with the headers bulk senders
    need: Message-ID, Date, List-Unsubscribe (+ mailto when configured),
    List-Unsubscribe-Post (RFC 8058), Feedback-ID, Content-Language and Precedence.

    ``config`` gives ``from`` and optionally ``reply_to`` and ``unsubscribe_mailto``. Raises
    :class:`~hub.PermanentError` for a template without subject or body and bad addresses."""
    parts = message.parts
    if "subject" not in parts or ("txt" not in parts and "html" not in parts):
        raise PermanentError("the e-mail template needs a .subject and a .txt or .html file")
    try:
        sender = parse_mailbox(config["from"])
    except ValueError as exc:
        raise PermanentError(f"invalid from address: {exc}") from None
    try:
        recipient = parse_mailbox(message.to)
    except ValueError as exc:
        raise PermanentError(f"invalid recipient address: {exc}") from None
    subject = " ".join(parts["subject"].split())
    if not subject:
        raise PermanentError("the rendered subject is empty")

    email = EmailMessage(policy=POLICY)
    email.set_raw("Subject", encode_text(subject, "Subject"))
    email.set_raw("From", format_mailbox(sender, "From"))
    email.set_raw("To", recipient.addr_spec)
    if config.get("reply_to"):
        try:
            reply_to = parse_mailbox(config["reply_to"])
        except ValueError as exc:
            raise PermanentError(f"invalid reply_to address: {exc}") from None
        email.set_raw("Reply-To", format_mailbox(reply_to, "Reply-To"))
    email["Date"] = format_datetime(datetime.now(UTC))
    domain = sender.domain
    email.set_raw(
        "Message-ID",
        make_msgid(idstring=f"j{message.journey_id}s{message.step_index}", domain=domain),
    )
    unsubscribe = message.context.get("unsubscribe_url")
    if unsubscribe:
        targets = [f"<{unsubscribe}>"]
        if config.get("unsubscribe_mailto"):
            targets.append(
                f"<mailto:{config['unsubscribe_mailto']}?subject=unsubscribe-{message.delivery_id}>"
            )
        # one target per line; a URL is never broken or encoded (RFC 2369 forbids both)
        email.set_raw("List-Unsubscribe", ",\n ".join(targets))
        email.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    # Gmail's Feedback-ID groups complaints per tenant and campaign without exposing the person
    email.set_raw("Feedback-ID", f"step{message.step_index}:{message.tenant}:recovery:{domain}")
    # not a Gmail requirement; out-of-office responders (RFC 3834 practice) stay silent on it,
    # so the shop's Reply-To inbox is not flooded with vacation replies
    email["Precedence"] = "bulk"
    # quoted-printable keeps every line under SMTP's 998-octet limit whatever the template does
    if "txt" in parts:
        email.set_content(parts["txt"], cte="quoted-printable")
        if "html" in parts:
            email.add_alternative(
                with_open_pixel(parts["html"], message.context),
                subtype="html",
                cte="quoted-printable",
            )
    else:
        email.set_content(
            with_open_pixel(parts["html"], message.context), subtype="html", cte="quoted-printable"
        )
    # after the body: set_content() clears every Content-* header already set
    email["Content-Language"] = message.locale.replace("_", "-")
    for key, value in message.headers.items():
        del email[key]
        email[key] = value
    return email


def with_open_pixel(html: str, context: Mapping[str, Any]) -> str:
    """The HTML body with the hub's 1×1 open pixel before ``</body>`` (or at the end).

    Only HTML carries it: a text part cannot load images. A template that already places
    ``open_pixel_url`` itself is left alone; without the URL (the tenant set
    ``track_opens = false``) nothing is added.
    """
    url = context.get("open_pixel_url")
    if not url or url in html:
        return html
    img = (
        f'<img src="{escape(url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0">'
    )
    end = html.lower().rfind("</body>")
    return html + img if end < 0 else html[:end] + img + html[end:]


def wire_bytes(email: EmailMessage) -> bytes:
    """The message as SMTP ``DATA`` carries it: CRLF line ends, no header refolded."""
    return email.as_bytes(policy=WIRE_POLICY)
