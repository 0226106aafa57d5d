"""Quiet hours: a step due inside them is moved to their end, in the right time zone.

The zone is the customer's country's when it has one unambiguous offset (Germany, France, Japan),
else the tenant's (a US or Russian customer without a state is not guessed). Wall-clock times
are turned into instants with ``zoneinfo``, so a window across a DST change ends at the local
hour the shop asked for: 08:00 is 08:00 the morning after the clocks moved.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from babel.core import get_global


@cache
def _country_zones(country: str) -> tuple[str, ...]:
    return tuple(get_global("territory_zones").get(country.upper(), ()))


def zone_for(country: str | None, tenant_zone: ZoneInfo, at: datetime) -> ZoneInfo:
    """The customer's country's zone when all its zones agree on the offset at ``at``."""
    if country:
        names = _country_zones(country)
        if names:
            zones = [ZoneInfo(n) for n in names]
            if len({at.astimezone(z).utcoffset() for z in zones}) == 1:
                return zones[0]
    return tenant_zone


def _instant(day: datetime, clock: time, zone: ZoneInfo) -> datetime:
    """The instant a local wall-clock time names; a time skipped by DST maps past the gap."""
    local = datetime.combine(day.date(), clock, tzinfo=zone)
    # round-trip through UTC: a non-existent local time (spring forward) normalizes forward
    return local.astimezone(UTC).astimezone(zone)


def quiet_until(when: datetime, quiet: tuple[time, time] | None, zone: ZoneInfo) -> datetime | None:
    """If ``when`` falls inside the quiet window, return the window's end (UTC), else None.

    ``quiet = (start, end)``; a start later than the end spans midnight (21:00–08:00).
    """
    if not quiet:
        return None
    start, end = quiet
    if start == end:
        return None
    local = when.astimezone(zone)
    for offset in (-1, 0):  # the window that began yesterday or the one beginning today
        day = local + timedelta(days=offset)
        begin = _instant(day, start, zone)
        finish_day = day + timedelta(days=1) if start > end else day
        finish = _instant(finish_day, end, zone)
        if begin <= local < finish:
            return finish.astimezone(UTC)
    return None


def shift_out_of_quiet_hours(
    when: datetime, quiet: tuple[time, time] | None, zone: ZoneInfo
) -> datetime:
    return quiet_until(when, quiet, zone) or when
