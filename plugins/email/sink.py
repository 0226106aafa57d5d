"""SMTP submission with one reused connection per worker and server.

The SMTP transaction is driven step by step so every failure is classified precisely: a stale
pooled connection found at ``MAIL FROM`` (closed, or answering 421) is reopened and nothing was
sent; a 4xx reply is retryable, a 5xx permanent; a connection lost *during* ``DATA`` means the
server may have the message, so the outcome is unknown and it is not resent (a duplicate is
worse than a gap). Configuration problems that no retry can fix (rejected credentials, a
certificate the trust store does not know, a server without STARTTLS or AUTH) are permanent, so
the step falls back to its next channel at once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from marshmallow import Schema, ValidationError, fields, validate, validates

from hub import (
    NetworkPolicy,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    PluginServices,
    RetryableError,
    Sink,
    build_email,
    parse_mailbox,
    tls_context,
    wire_bytes,
)

log = logging.getLogger("hub.email")

SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
IDLE_CHECK = 30.0  # a connection idle longer than this gets a NOOP before use


class EmailConfig(Schema):
    smtp_url = fields.String(required=True, metadata={"secret": True})  # may carry a password
    sender = fields.String(required=True, data_key="from")
    reply_to = fields.String(load_default=None)
    unsubscribe_mailto = fields.Email(load_default=None)
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0, min_inclusive=False))
    # deprecated (the operator's HUB_CA_BUNDLE trusts a private CA for all outbound TLS): trust
    # only this bundle for this tenant's server; kept working for one release
    ca_file = fields.String(load_default=None)

    @validates("smtp_url")
    def _url(self, value: str, **_: Any) -> None:
        parts = urlsplit(value)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValidationError(
                "use smtp://host:port (plain, local only), "
                "smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465"
            )
        if parts.scheme == "smtp" and parts.username:
            raise ValidationError(
                "smtp:// would send the password unencrypted: use smtp+starttls:// or smtps://"
            )

    @validates("sender")
    def _sender(self, value: str, **_: Any) -> None:
        _mailbox(value, 'expected an address such as "Shop <shop@example.com>"')

    @validates("reply_to")
    def _reply_to(self, value: str | None, **_: Any) -> None:
        if value is not None:
            _mailbox(value, 'expected an address such as "Support <help@example.com>"')

    @validates("ca_file")
    def _ca_file(self, value: str | None, **_: Any) -> None:
        if value is not None:
            try:
                tls_context(NetworkPolicy(), cafile=value)
            except (OSError, ssl.SSLError) as exc:
                raise ValidationError(f"cannot load CA certificates from {value}: {exc}") from None
            log.warning("[sinks.email] ca_file is deprecated: the operator sets HUB_CA_BUNDLE")


def _mailbox(value: str, hint: str) -> None:
    try:
        parse_mailbox(value)
    except ValueError as exc:
        raise ValidationError(f"{exc}; {hint}") from None


def _config_view(config: Mapping[str, Any]) -> dict[str, Any]:
    # hub.mail reads the header name "from"; the schema loads it as "sender"
    return {**config, "from": config["sender"]}


class _Pool:
    """One SMTP connection per (server, credentials, trusted CAs) per worker process."""

    def __init__(self, policy: Callable[[], NetworkPolicy]) -> None:
        self.policy = policy
        self.connections: dict[tuple[str, str | None], tuple[smtplib.SMTP, float]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def key(config: Mapping[str, Any]) -> tuple[str, str | None]:
        return config["smtp_url"], config.get("ca_file")

    def open(self, config: Mapping[str, Any]) -> smtplib.SMTP:
        """Connect, secure and log in; every failure becomes the sink's error kind."""
        parts = urlsplit(config["smtp_url"])
        host, port = parts.hostname, parts.port or SCHEMES[parts.scheme]
        where = f"{host}:{port}"
        conn: smtplib.SMTP | None = None
        try:
            if parts.scheme == "smtps":
                conn = smtplib.SMTP_SSL(
                    host, port, timeout=config["timeout"], context=self.tls(config)
                )
            else:
                conn = smtplib.SMTP(host, port, timeout=config["timeout"])
                if parts.scheme == "smtp+starttls":
                    conn.starttls(context=self.tls(config))
            conn.ehlo_or_helo_if_needed()
            if parts.username:
                conn.login(unquote(parts.username), unquote(parts.password or ""))
            return conn
        except BaseException as exc:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            raise _connect_error(exc, where) from None

    def tls(self, config: Mapping[str, Any]) -> ssl.SSLContext:
        """The operator's trust (default store + ``HUB_CA_BUNDLE``), or the deprecated
        per-tenant ``ca_file`` alone. Built explicitly: ``smtplib`` would use no store at all."""
        return tls_context(self.policy(), cafile=config.get("ca_file"))

    def get(self, config: Mapping[str, Any]) -> tuple[smtplib.SMTP, bool]:
        """The pooled connection (``True``: reused) or a new one (``False``)."""
        key = self.key(config)
        entry = self.connections.get(key)
        if entry is not None:
            conn, last_used = entry
            if time.monotonic() - last_used < IDLE_CHECK:
                return conn, True
            try:
                if conn.noop()[0] == 250:
                    return conn, True
            except (OSError, smtplib.SMTPException):
                pass
            self.drop(config)
        conn = self.open(config)
        self.connections[key] = (conn, time.monotonic())
        return conn, False

    def touch(self, config: Mapping[str, Any]) -> None:
        key = self.key(config)
        if key in self.connections:
            self.connections[key] = (self.connections[key][0], time.monotonic())

    def drop(self, config: Mapping[str, Any]) -> None:
        entry = self.connections.pop(self.key(config), None)
        if entry is not None:
            with contextlib.suppress(Exception):
                entry[0].close()


class EmailSink(Sink):
    name = "email"
    channel = "email"
    config_schema = EmailConfig
    idempotent = False  # SMTP has no idempotency key: a message lost in DATA is not resent

    def __init__(self, services: PluginServices | None = None) -> None:
        """``services`` brings the operator's CA bundle; without it, the default store."""
        self.pool = _Pool(lambda: services.network_policy if services else NetworkPolicy())

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        return customer.get("email") or None

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        email = build_email(message, _config_view(config))
        sender = email["From"].addresses[0].addr_spec
        recipient = email["To"].addresses[0].addr_spec  # the domain in IDNA form
        with self.pool.lock:
            self._transaction(config, wire_bytes(email), sender, recipient)
        return email["Message-ID"]

    def _transaction(
        self, config: Mapping[str, Any], payload: bytes, sender: str, recipient: str
    ) -> None:
        for _ in range(2):
            conn, reused = self.pool.get(config)
            try:
                code, reply = conn.mail(sender)
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                code, reply = None, _describe(exc)
            if code == 250:
                break
            if reused and code in (None, 421):
                # the server closed the idle pooled connection: nothing was sent, open a new one
                self.pool.drop(config)
                continue
            if code is None:
                self.pool.drop(config)
                raise RetryableError(f"SMTP connection lost at MAIL FROM: {reply}")
            self._after_refusal(conn, config, code)
            raise _classify(code, reply, "MAIL FROM")
        try:
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                self._after_refusal(conn, config, code)
                raise _classify(code, reply, "RCPT TO")
            code, reply = conn.docmd("DATA")
            if code != 354:
                self._after_refusal(conn, config, code)
                raise _classify(code, reply, "DATA")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.pool.drop(config)
            raise RetryableError(
                f"SMTP connection lost before the message was sent: {_describe(exc)}"
            ) from None
        # from here on the server may hold the message whatever happens to the connection
        try:
            conn.send(_dot_stuffed(payload))
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:  # TimeoutError included
            self.pool.drop(config)
            raise OutcomeUnknown(f"SMTP connection lost during DATA: {_describe(exc)}") from None
        if code != 250:
            self._after_refusal(conn, config, code)
            raise _classify(code, reply, "end of DATA")
        self.pool.touch(config)

    def _after_refusal(self, conn: smtplib.SMTP, config: Mapping[str, Any], code: int) -> None:
        """Leave the pooled connection ready for the next message, or drop it."""
        if code == 421:  # the server is closing the connection
            self.pool.drop(config)
            return
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            self.pool.drop(config)


def _dot_stuffed(payload: bytes) -> bytes:
    """The DATA body as RFC 5321 §4.5.2 wants it: leading dots doubled, ending CRLF.CRLF."""
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", payload) + b".\r\n"


def _connect_error(exc: BaseException, where: str) -> BaseException:
    """Map a failure while connecting, securing or logging in to the sink's error kinds."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if 400 <= exc.smtp_code < 500:
            return RetryableError(f"SMTP login at {where} failed for now ({exc.smtp_code})")
        return PermanentError(
            f"SMTP login rejected at {where} ({exc.smtp_code}): check user and password"
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(f"SMTP server {where}: {exc}")  # no STARTTLS / no AUTH offered
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(
            f"TLS certificate of {where} not trusted: {exc.verify_message} "
            "(for a private CA the operator sets HUB_CA_BUNDLE)"
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return _classify(exc.smtp_code, exc.smtp_error, f"connect to {where}")
    if isinstance(exc, OSError | smtplib.SMTPException):
        return RetryableError(f"SMTP server unreachable: {_describe(exc)} ({where})")
    return exc


def _describe(exc: BaseException) -> str:
    """``ConnectionRefusedError: [Errno 111] Connection refused`` — type and text, no secrets."""
    text = str(exc)
    return f"{exc.__class__.__name__}: {text[:160]}" if text else exc.__class__.__name__


# a 5xx to these is the receiving side refusing this recipient or this message: a bounce; at
# MAIL FROM or while connecting it is about our sender or account, not the recipient
BOUNCE_STAGES = frozenset({"RCPT TO", "DATA", "end of DATA"})


def _classify(code: int, reply: bytes | str, stage: str) -> Exception:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    reason = f"SMTP {code} at {stage}: {text[:200]}"
    if 400 <= code < 500:
        return RetryableError(reason)
    return PermanentError(reason, bounce=stage in BOUNCE_STAGES)
