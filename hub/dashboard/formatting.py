"""How the dashboard shows times and money: Jinja filters registered on the blueprint.

Times are rendered on the server in the client's zone (what the shop owner sees in their own
reports) inside ``<time datetime=…>``; the page's script rewrites the text into the viewer's
zone and keeps the client's time in the tooltip, so an agency in Berlin reading a shop in
New York sees both. Money is formatted in the client's locale by Babel (:mod:`hub.money`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from hub.money import format_money


def when(value: datetime | None, zone: Any, empty: str = "—") -> Markup:
    """``<time>`` for ``value`` shown in ``zone`` (the client's), rewritten by the script."""
    if value is None:
        return Markup(escape(empty))
    local = value.astimezone(zone)
    return Markup(
        f'<time datetime="{value.isoformat()}" data-zone="{escape(str(zone))}" '
        f'title="{local:%Y-%m-%d %H:%M %Z} ({escape(str(zone))})">'
        f"{local:%Y-%m-%d %H:%M %Z}</time>"
    )


def money(minor: int | None, currency: str | None, locale: str) -> str:
    if minor is None or not currency:
        return "—"
    try:
        return format_money(int(minor), currency, locale)
    except (ValueError, LookupError):  # a currency Babel does not know: still show the amount
        return f"{minor} {currency} (minor units)"


def percent(value: float | None, locale: str) -> str:
    if value is None:
        return "—"
    from babel.numbers import format_percent

    return format_percent(value, "#,##0.0%", locale=locale)


def number(value: int, locale: str) -> str:
    from babel.numbers import format_decimal

    return format_decimal(value, locale=locale)
