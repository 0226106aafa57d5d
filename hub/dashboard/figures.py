"""Results figures for the dashboard, shaped from :func:`hub.reports.report` for the pages.

The figures are the report's (the results issue), so the dashboard, ``hub report`` and the
REST API never disagree: a checkout counts on the local day it was abandoned in the tenant's
zone (a cohort), revenue is net of refunds and kept per currency. The dashboard's "recovered"
is every recovered checkout: the report's recovered after a message plus those recovered
without one (the report keeps them apart; the tables here show both together).

Only what the report does not answer stays a query here: :func:`by_channel`, the outcome of
every message per channel (failed, retrying …), which the alerts link to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub import reports
from hub.dashboard import cache
from hub.store import Store, deliveries

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
    """A :class:`Series` per tenant in ``zones`` (slug -> the tenant's zone), ending today:
    the report by day of each tenant's last :data:`DAYS` local days."""
    series = {}
    for slug, zone in zones.items():
        since, until = _days(now, zone)
        rows = reports.report(store, slug, since, until, "day", zone).rows
        found = Series([r.day for r in rows], [], [], [])
        for i, row in enumerate(rows):
            f = row.figures
            found.abandoned.append(f.abandoned)
            found.messaged.append(f.messaged)
            found.recovered.append(f.recovered + f.recovered_without_message)
            for currency, amount in _revenue(f).items():
                found.revenue.setdefault(currency, [0] * len(rows))[i] = amount
        series[slug] = found
    return series


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
