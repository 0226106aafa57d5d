"""SMTP submission with one reused connection per worker and server.

The SMTP transaction is driven step by step so every failure is classified precisely: a stale
pooled connection found at ``MAIL FROM`` is reopened and nothing was sent; a 4xx reply is
retryable, a 5xx permanent; a connection lost *during* ``DATA`` means the server may have the
message, so the outcome is unknown and it is not resent (a duplicate is worse than a gap).
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
import time
from collections.abc import Mapping
from email.policy import SMTP as SMTP_POLICY
from typing import Any
from urllib.parse import unquote, urlsplit

from marshmallow import Schema, ValidationError, fields, validates

from hub import OutboundMessage, OutcomeUnknown, PermanentError, RetryableError, Sink
from plugins.email.message import build_message

SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
IDLE_CHECK = 30.0  # a connection idle longer than this gets a NOOP before use


class EmailConfig(Schema):
    smtp_url = fields.String(required=True)
    sender = fields.String(required=True, data_key="from")
    reply_to = fields.String(load_default=None)
    unsubscribe_mailto = fields.Email(load_default=None)
    timeout = fields.Float(load_default=10.0)

    @validates("smtp_url")
    def _url(self, value: str, **_: Any) -> None:
        parts = urlsplit(value)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValidationError(
                "use smtp://host:port (plain, local only), "
                "smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465"
            )

    @validates("sender")
    def _sender(self, value: str, **_: Any) -> None:
        from email.utils import parseaddr

        if "@" not in parseaddr(value)[1]:
            raise ValidationError('expected an address such as "Shop <shop@example.com>"')


def _config_view(config: Mapping[str, Any]) -> dict[str, Any]:
    # message.py reads the header name "from"; the schema loads it as "sender"
    return {**config, "from": config["sender"]}


class _Pool:
    """One SMTP connection per (server, credentials) per worker process."""

    def __init__(self) -> None:
        self.connections: dict[str, tuple[smtplib.SMTP, float]] = {}
        self.lock = threading.Lock()

    def open(self, url: str, timeout: float) -> smtplib.SMTP:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or SCHEMES[parts.scheme]
        try:
            if parts.scheme == "smtps":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    host, port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                conn = smtplib.SMTP(host, port, timeout=timeout)
                if parts.scheme == "smtp+starttls":
                    conn.starttls(context=ssl.create_default_context())
            conn.ehlo_or_helo_if_needed()
            if parts.username:
                conn.login(unquote(parts.username), unquote(parts.password or ""))
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"SMTP login rejected ({exc.smtp_code})") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RetryableError(f"SMTP server unreachable: {exc.__class__.__name__}") from None
        return conn

    def get(self, url: str, timeout: float) -> smtplib.SMTP:
        entry = self.connections.get(url)
        if entry is not None:
            conn, last_used = entry
            if time.monotonic() - last_used < IDLE_CHECK:
                return conn
            try:
                if conn.noop()[0] == 250:
                    return conn
            except (OSError, smtplib.SMTPException):
                pass
            self.drop(url)
        conn = self.open(url, timeout)
        self.connections[url] = (conn, time.monotonic())
        return conn

    def touch(self, url: str) -> None:
        if url in self.connections:
            self.connections[url] = (self.connections[url][0], time.monotonic())

    def drop(self, url: str) -> None:
        entry = self.connections.pop(url, None)
        if entry is not None:
            with contextlib.suppress(Exception):
                entry[0].close()


class EmailSink(Sink):
    name = "email"
    channel = "email"
    config_schema = EmailConfig

    def __init__(self) -> None:
        self.pool = _Pool()

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        return customer.get("email") or None

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        email = build_message(message, _config_view(config))
        sender = email["From"].addresses[0].addr_spec
        with self.pool.lock:
            return self._transaction(config, email, sender, message.to)

    def _transaction(
        self, config: Mapping[str, Any], email: Any, sender: str, to: str
    ) -> str | None:
        url = config["smtp_url"]
        for fresh in (False, True):
            conn = self.pool.get(url, config["timeout"]) if not fresh else self._reopen(config)
            try:
                code, reply = conn.mail(sender)
            except (smtplib.SMTPServerDisconnected, OSError):
                self.pool.drop(url)
                continue  # a stale pooled connection: nothing was sent, open a new one
            break
        else:
            raise RetryableError("SMTP connection lost before MAIL FROM")
        try:
            if code != 250:
                self._reset(conn)
                raise _classify(code, reply, "MAIL FROM")
            code, reply = conn.rcpt(to)
            if code not in (250, 251):
                self._reset(conn)
                raise _classify(code, reply, "RCPT TO")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.pool.drop(url)
            raise RetryableError(
                f"SMTP connection lost before DATA: {exc.__class__.__name__}"
            ) from None
        try:
            code, reply = conn.data(email.as_bytes(policy=SMTP_POLICY))
        except smtplib.SMTPDataError as exc:
            raise _classify(exc.smtp_code, exc.smtp_error, "DATA") from None
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            self.pool.drop(url)
            raise OutcomeUnknown(
                f"SMTP connection lost during DATA: {exc.__class__.__name__}"
            ) from None
        if code != 250:
            raise _classify(code, reply, "DATA")
        self.pool.touch(url)
        return email["Message-ID"]

    def _reopen(self, config: Mapping[str, Any]) -> smtplib.SMTP:
        self.pool.drop(config["smtp_url"])
        return self.pool.get(config["smtp_url"], config["timeout"])

    @staticmethod
    def _reset(conn: smtplib.SMTP) -> None:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            conn.rset()


def _classify(code: int, reply: bytes | str, stage: str) -> Exception:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    reason = f"SMTP {code} at {stage}: {text[:200]}"
    return RetryableError(reason) if 400 <= code < 500 else PermanentError(reason)
