"""Logging: one structured line per event and attempt, never full PII and never a secret.

``mask``/``mask_ids`` are for the hub's own log calls. :class:`MaskingFilter` is the safety
net under everything else (SQLAlchemy's statement parameters at DEBUG, a library's exception
text, gunicorn's access line with a query string): it sits on every handler the hub installs,
renders each record's message with its arguments, masks it, and masks the extra fields and the
traceback too. ``configure_logging`` installs that handler on the root logger in the human
format or, with ``HUB_LOG_FORMAT=json``, as one JSON object per line (python-json-logger).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_FORMATS = ("human", "json")


def mask(value: str | None) -> str:
    """``jane.doe@example.com`` → ``j***@example.com``; ``+4915112345678`` → ``+49*******678``."""
    if not value:
        return "-"
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(value) > 6:
        return value[:3] + "*" * (len(value) - 6) + value[-3:]
    return "***"


# the look-behind starts a match only at the beginning of an address, not inside one
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+)")
# E.164 as the hub stores it, and the spaced or dashed forms platforms send in raw payloads
_PHONE = re.compile(r"\+\d(?:[ ()./-]{0,2}\d){6,14}")
# user:password@ in any URL (SMTP URLs, Redis and database URLs)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# key=value, "key": "value", key: value where the key names a secret
_SECRET_PAIR = re.compile(
    r"(?i)((?:secret|password|passwd|token|api[_-]?key|apikey|authorization|signature|sha_sign"
    r"|client_secret|private_key|auth)[\w-]*[\"']?\s*[:=]\s*[\"']?)([^\s\"',&;}\]]+)"
)
# secrets with a well-known shape: Stripe and Standard Webhooks keys
_SECRET_SHAPES = re.compile(r"\b(?:whsec|sk_live|sk_test|rk_live|rk_test)_[A-Za-z0-9+/=_-]+")
_SHAPE_HINTS = ("whsec_", "sk_", "rk_")
_SECRET_WORDS = ("secret", "passw", "token", "api", "auth", "signature", "sha_sign", "private")
_SECRET_KEY_NAME = re.compile(
    r"(?i)secret|password|passwd|token|api[_-]?key|apikey|authorization|signature|private"
)


def mask_ids(text: str | None) -> str:
    """Mask e-mail addresses inside identifiers (Digistore24's checkout id is `<email>:<id>`)."""
    if not text:
        return "-"
    return _EMAIL.sub(r"\1***@\2", text)


def mask_text(text: str, literals: re.Pattern[str] | None = None) -> str:
    """Every e-mail, phone number and secret in free text, masked (idempotent).

    ``literals`` matches secret values the hub knows (HUB_SECRET_KEY, the tenants' webhook
    secrets and API keys): the only reliable catch for a secret a library prints in a form no
    pattern foresees. Each pattern runs only when a substring it needs is present: Python's
    regexes scan every position, and this runs for every log record.
    """
    if literals is not None:
        text = literals.sub("***", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1***@", text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(r"\1 ***", text)
    if "_" in text and any(shape in text for shape in _SHAPE_HINTS):
        text = _SECRET_SHAPES.sub("***", text)
    if any(word in lowered for word in _SECRET_WORDS):
        text = _SECRET_PAIR.sub(r"\1***", text)
    if "@" in text:
        text = mask_ids(text)
    if "+" in text:
        text = _PHONE.sub(lambda m: mask(m.group(0)), text)
    return text


def _mask_value(value: Any, literals: re.Pattern[str] | None, key: str = "") -> Any:
    if key and _SECRET_KEY_NAME.search(key) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return mask_text(value, literals)
    if isinstance(value, dict):
        return {k: _mask_value(v, literals, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_mask_value(v, literals) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return mask_text(str(value), literals)


def secret_values(table: Any) -> list[str]:
    """Secret values in a loaded config table: secret-named keys and passwords in URLs."""
    found: list[str] = []
    if isinstance(table, dict | Mapping):
        for key, value in table.items():
            if isinstance(value, str) and _SECRET_KEY_NAME.search(str(key)):
                found.append(value)
            else:
                found.extend(secret_values(value))
    elif isinstance(table, list | tuple):
        for value in table:
            found.extend(secret_values(value))
    elif isinstance(table, str) and "://" in table:
        with contextlib.suppress(ValueError):
            password = urlsplit(table).password
            if password:
                found.extend((password, unquote(password)))
    return found


# attributes every LogRecord has; anything else on a record came in through ``extra=``
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class MaskingFilter(logging.Filter):
    """Masks e-mails, phones and secrets in a record's message, arguments, extra fields,
    traceback and stack before any formatter sees it.

    It is a handler filter (not a logger filter) because only handler filters see the records
    that propagate from every library's logger. The message is rendered here once (``msg %
    args``) and the arguments dropped, so a formatter cannot re-render the unmasked values.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._literals: re.Pattern[str] | None = None
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also mask these literal values (short ones are ignored: they would mask words)."""
        self._secrets.update(s for s in secrets if s and len(s) >= 8)
        if self._secrets:
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._literals = re.compile("|".join(re.escape(s) for s in alternatives))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_hub_masked", False):  # the same record passing a second handler
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as logging does
            return True
        literals = self._literals
        record.msg, record.args = mask_text(message, literals), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = mask_text(text, literals), None
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text, literals)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, literals)
        fields = vars(record)
        for key in fields.keys() - _RECORD_ATTRS:  # the extra fields
            if not key.startswith("_"):
                fields[key] = _mask_value(fields[key], literals, key)
        record._hub_masked = True
        return True


def formatter_for(log_format: str) -> logging.Formatter:
    """The human formatter, or one JSON object per line with ``time``, ``level``, ``logger``,
    ``message``, the extra fields and ``exc_info``."""
    if log_format == "json":
        from pythonjsonlogger.core import RESERVED_ATTRS
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, "_hub_masked"],
            json_ensure_ascii=False,
        )
    return logging.Formatter(HUMAN_FORMAT)


def add_masking(handler: logging.Handler, secrets: Iterable[str] = ()) -> None:
    """Put the masking filter on ``handler`` (once; later calls add secrets to it)."""
    existing = next((f for f in handler.filters if isinstance(f, MaskingFilter)), None)
    if existing is None:
        handler.addFilter(MaskingFilter(secrets))
    else:
        existing.add_secrets(secrets)


def _add_secrets_everywhere(secrets: list[str]) -> None:
    """Handlers masked before the app knew its secrets (gunicorn's) learn them too."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            for found in handler.filters:
                if isinstance(found, MaskingFilter):
                    found.add_secrets(secrets)


def configure_logging(level: str, log_format: str, secrets: Iterable[str] = ()) -> None:
    """Send every logger's records to stderr through the hub's handler.

    Like ``logging.basicConfig``, the hub leaves a root logger that someone else configured
    (pytest, an application embedding the hub) to them, but still puts its masking filter on
    their handlers. Logging is per process by nature: calling this again (a second app in a
    test process) updates the format and the secrets to mask instead of stacking handlers. RQ
    adds its own coloured handlers only when no ancestor has one, so its lines come here too.
    """
    secrets = list(secrets)
    _add_secrets_everywhere(secrets)
    if log_format not in LOG_FORMATS:
        raise ValueError(
            f"HUB_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}"
        )
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_hub", False)]
    if root.handlers and not ours:
        for handler in root.handlers:
            add_masking(handler, secrets)
        return
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler._hub = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        ours = [handler]
    for handler in ours:
        handler.setFormatter(formatter_for(log_format))
        add_masking(handler, secrets)
    root.setLevel(level.upper())
    # warnings.warn() would print a bare line to stderr: route it through the handler
    logging.captureWarnings(True)
