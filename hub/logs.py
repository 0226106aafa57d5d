"""Logging helpers: one structured line per event and attempt, never full PII."""

from __future__ import annotations


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
