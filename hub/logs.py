"""Logging helpers: one structured line per event and attempt, never full PII."""

from __future__ import annotations

import re


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


_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+)")


def mask_ids(text: str | None) -> str:
    """Mask e-mail addresses inside identifiers (Digistore24's checkout id is `<email>:<id>`)."""
    if not text:
        return "-"
    return _EMAIL.sub(r"\1***@\2", text)
