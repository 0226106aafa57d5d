"""Results figures for the dashboard, shaped from :func:`hub.reports.report` for the pages.

The figures are the report's (the results issue), so the dashboard, ``hub report`` and the
REST API never disagree: a checkout counts on the local day it was abandoned in the tenant's
zone (a cohort), revenue is net of refunds and kept per currency. The dashboard's "recovered"
is every recovered checkout: the report's recovered after a message plus those recovered
without one (the report keeps them apart; the tables here show both together).

Two queries stay here: :func:`results` groups every client's days in one query for the first
page (the report reads one tenant at a time), with the report's definitions; and
:func:`by_channel`, the outcome of every message per channel (failed, retrying …), which the
report does not count and the alerts link to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub import reports
from hub.dashboard import cache
from hub.store import Store, deliveries, journeys

DAYS = 30


@dataclass
class Series:
    """One tenant's last :data:`DAYS` local days, oldest first, and sums over 7 and 30 days."""

    days: list[date]
    abandoned: list[int]
    messaged: list[int]
    recovered: list[int]
    revenue: dict[str, list[int]] = field(default_factory=dict)  # currency -> minor units/day

    def total(self, name: str, last: int) -> int:
        return sum(getattr(self, name)[-last:])

    def revenue_total(self, currency: str, last: int) -> int:
        return sum(self.revenue.get(currency, [0])[-last:])

    def rate(self, last: int) -> float | None:
        """Recovered / abandoned over the last ``last`` days; ``None`` when nothing was
        abandoned (a rate of 0 % would accuse a flow that had nothing to do)."""
        abandoned = self.total("abandoned", last)
        return self.total("recovered", last) / abandoned if abandoned else None

    def daily_rate(self) -> list[float]:
        return [r / a if a else 0.0 for r, a in zip(self.recovered, self.abandoned, strict=True)]

    def as_json(self) -> dict[str, Any]:
        """A JSON-able copy, for :mod:`hub.dashboard.cache`."""
        return {**asdict(self), "days": [day.isoformat() for day in self.days]}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Series:
        return cls(**{**value, "days": [date.fromisoformat(day) for day in value["days"]]})


def cached_results(hub: Any, zones: dict[str, ZoneInfo], now: datetime) -> tuple[dict, datetime]:
    """:func:`results` through the short cache: a :class:`Series` per tenant of ``zones``, and
    when the oldest of them was computed."""

    def compute(slugs: list[str]) -> dict[str, Any]:
        found = results(hub.store, {slug: zones[slug] for slug in slugs}, now)
        return {slug: series.as_json() for slug, series in found.items()}

    values, as_of = cache.per_tenant(hub, "results", list(zones), compute)
    return {slug: Series.from_json(value) for slug, value in values.items()}, as_of


def _days(now: datetime, zone: ZoneInfo) -> tuple[date, date]:
    today = now.astimezone(zone).date()
    return today - timedelta(days=DAYS - 1), today


def results(store: Store, zones: dict[str, ZoneInfo], now: datetime) -> dict[str, Series]:
    """A :class:`Series` per tenant in ``zones`` (slug -> the tenant's zone), ending today.

    The figures of the report by day, for every tenant in one grouped query: ``hub.reports``
    answers one tenant at a time (three queries each, ~5 times the first page's time for five
    clients, measured), so the rows are grouped by UTC hour here and folded into each tenant's
    local days, which is exact whenever the zone's offset is whole hours over the window. A
    zone with a half-hour offset gets the report itself. ``test_dashboard`` checks that both
    agree.
    """
    series: dict[str, Series] = {}
    hourly: dict[str, tuple[ZoneInfo, date, date]] = {}
    for slug, zone in zones.items():
        since, until = _days(now, zone)
        if _whole_hours(zone, since, until):
            hourly[slug] = (zone, since, until)
        else:
            series[slug] = _from_report(reports.report(store, slug, since, until, "day", zone))
    if hourly:
        series |= _folded(store, hourly)
    return series


def _whole_hours(zone: ZoneInfo, since: date, until: date) -> bool:
    """Whether ``zone`` is a whole number of hours off UTC all through the local days (a
    6-hourly probe: no zone changes its offset for less than that)."""
    start, end = reports.utc_range(since, until, zone)
    hours = int((end - start).total_seconds()) // 3600
    probes = (start + timedelta(hours=h) for h in range(0, hours + 1, 6))
    return all(p.astimezone(zone).utcoffset().total_seconds() % 3600 == 0 for p in probes)


def _from_report(found: reports.Report) -> Series:
    series = Series([r.day for r in found.rows], [], [], [])
    for i, row in enumerate(found.rows):
        f = row.figures
        series.abandoned.append(f.abandoned)
        series.messaged.append(f.messaged)
        series.recovered.append(f.recovered + f.recovered_without_message)
        for currency, amount in _revenue(f).items():
            series.revenue.setdefault(currency, [0] * len(found.rows))[i] = amount
    return series


def _folded(store: Store, tenants: dict[str, tuple[ZoneInfo, date, date]]) -> dict[str, Series]:
    ranges = {
        slug: reports.utc_range(since, until, zone)
        for slug, (zone, since, until) in tenants.items()
    }
    start = min(begin for begin, _end in ranges.values())
    series = {}
    for slug, (_zone, since, until) in tenants.items():
        days = [since + timedelta(days=i) for i in range((until - since).days + 1)]
        series[slug] = Series(days, [0] * len(days), [0] * len(days), [0] * len(days))
    for slug, hour, currency, abandoned, messaged, recovered, money in _hourly(
        store, list(tenants), start
    ):
        zone, since, until = tenants[slug]
        begin, end = ranges[slug]
        if not begin <= hour < end:
            continue
        s, i = series[slug], (hour.astimezone(zone).date() - since).days
        s.abandoned[i] += abandoned
        s.messaged[i] += messaged
        s.recovered[i] += recovered
        if currency and recovered:
            s.revenue.setdefault(currency, [0] * len(s.days))[i] += money
    return series


def _hour(store: Store, column: Any) -> Any:
    # date_trunc groups a timestamp; to_char's text took twice as long to build and sort
    if store.is_postgres:
        return sa.func.date_trunc("hour", column, type_=column.type)
    return sa.func.strftime("%Y-%m-%d %H", column)


def _as_hour(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=UTC)


def _hourly(store: Store, tenants: list[str], since: datetime) -> list[tuple]:
    """``(tenant, utc hour, currency, abandoned, messaged, recovered, net revenue)`` rows, with
    the report's definitions: messaged = a message in one of its sent statuses, recovered =
    after a message or without one, revenue net of refunds."""
    hour = _hour(store, journeys.c.abandoned_at).label("hour")
    # the journeys with a message sent, as one set the database builds once and probes per
    # journey (PostgreSQL hashes an uncorrelated IN, SQLite makes it an index): half the time
    # of joining the distinct set, a quarter of a correlated EXISTS per journey (100 k
    # journeys, measured). A journey's messages are made after it was abandoned, so those
    # made since `since` are all the cohort's, and ix_deliveries_created finds them.
    messaged = sa.select(deliveries.c.journey_id).where(
        deliveries.c.tenant.in_(tenants),
        deliveries.c.created_at >= since,
        deliveries.c.status.in_(reports.SENT_STATUSES),
    )
    net = sa.func.coalesce(journeys.c.recovered_amount, 0) - sa.func.coalesce(
        journeys.c.refunded_amount, 0
    )
    query = (
        sa.select(
            journeys.c.tenant,
            hour,
            journeys.c.recovered_currency,
            sa.func.count(),
            sa.func.sum(sa.case((journeys.c.id.in_(messaged), 1), else_=0)),
            sa.func.sum(sa.case((journeys.c.recovered, 1), else_=0)),
            sa.func.sum(sa.case((journeys.c.recovered, net), else_=0)),
        )
        .where(journeys.c.tenant.in_(tenants), journeys.c.abandoned_at >= since)
        .group_by(journeys.c.tenant, hour, journeys.c.recovered_currency)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    return [(t, _as_hour(h), c, *map(int, nums)) for t, h, c, *nums in rows]


def breakdowns(store: Store, slug: str, zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    """The last :data:`DAYS` days by flow, source, step and channel (the report's groupings),
    as JSON-able rows for the client page: name, checkouts, messages, clicked, recovered,
    rate and revenue per currency."""
    since, until = _days(now, zone)
    return {
        f"by_{by}": [
            _breakdown_row(by, row)
            for row in reports.report(store, slug, since, until, by, zone).rows
        ]
        for by in ("flow", "source", "step", "channel")
    }


def _breakdown_row(by: str, row: reports.ReportRow) -> dict[str, Any]:
    f = row.figures
    recovered = f.recovered + f.recovered_without_message
    if by == "step":
        name = f"{row.flow or '(no flow)'} · step {row.step}" if row.step is not None else None
    else:
        name = getattr(row, by)
    return {
        "name": name,
        "checkouts": f.abandoned,  # per step and channel: the checkouts messaged there
        "messages": f.messages,
        "clicked": f.clicked,
        "recovered": recovered,
        "rate": recovered / f.abandoned if f.abandoned else None,
        "revenue": _revenue(f),
    }


def _revenue(figures: reports.Figures) -> dict[str, int]:
    """Net revenue per currency, recovered after a message or without one."""
    total = dict(figures.revenue)
    for currency, amount in figures.revenue_without_message.items():
        total[currency] = total.get(currency, 0) + amount
    return total


def by_channel(store: Store, tenant: str, since: datetime) -> list[Any]:
    """Deliveries per channel and status since ``since``: what each channel did."""
    query = (
        sa.select(deliveries.c.channel, deliveries.c.status, sa.func.count().label("count"))
        .where(deliveries.c.tenant == tenant, deliveries.c.created_at >= since)
        .group_by(deliveries.c.channel, deliveries.c.status)
        .order_by(deliveries.c.channel, deliveries.c.status)
    )
    with store.begin() as conn:
        return list(conn.execute(query).all())
