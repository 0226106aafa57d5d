"""Durations as written in tenant files: an integer plus ``s``, ``m``, ``h`` or ``d``."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``"15m"`` → 15 minutes. Raises ``ValueError`` with a message fit for a config error."""
    if not isinstance(text, str):
        raise ValueError(f'expected a duration like "15m", got {text!r}')
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f'invalid duration {text!r}: use an integer plus s, m, h or d ("15m")')
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def format_duration(value: timedelta) -> str:
    """15 minutes → ``"15m"``: the largest unit that divides it, as tenant files write it."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
