"""Results figures for the dashboard: abandoned, messaged, recovered, rate and revenue per day.

INTERIM: written against the results schema (migration ``0003_results``) while ``hub/reports.py``
(the results issue) is built in parallel. When it lands, :func:`daily_results` should become a
call to its per-tenant, per-day report and this module shrink to the shaping the pages need
(:class:`Series`); the pages only use :func:`results` and :class:`Series`.

A journey counts on the day it was abandoned (a cohort): of the checkouts abandoned that day,
how many got a message, how many were recovered, and the revenue they brought back (refunds
taken off). Days are the tenant's local days: rows are grouped by UTC hour in SQL and folded
into local days here, which is exact for every zone whose offset is whole hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

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


def _hour(store: Store, column: Any) -> Any:
    # date_trunc groups a timestamp; to_char's text took twice as long to build and sort
    if store.is_postgres:
        return sa.func.date_trunc("hour", column, type_=column.type)
    return sa.func.strftime("%Y-%m-%d %H", column)


def _as_hour(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=UTC)


def daily_results(
    store: Store, tenants: Iterable[str], since: datetime
) -> list[tuple[str, datetime, str | None, int, int, int, int]]:
    """``(tenant, utc hour, currency, abandoned, messaged, recovered, revenue)`` rows."""
    hour = _hour(store, journeys.c.abandoned_at).label("hour")
    wanted = list(tenants)
    # the journeys with a message sent, as one set the database builds once and probes per
    # journey (PostgreSQL hashes an uncorrelated IN, SQLite makes it an index): half the time
    # of joining the distinct set, a quarter of a correlated EXISTS per journey (100 k
    # journeys, measured). A journey's messages are made after it was abandoned, so those
    # made since `since` are all the cohort's, and ix_deliveries_created finds them.
    messaged = sa.select(deliveries.c.journey_id).where(
        deliveries.c.tenant.in_(wanted),
        deliveries.c.created_at >= since,
        deliveries.c.sent_at.is_not(None),
    )
    net = journeys.c.recovered_amount - sa.func.coalesce(journeys.c.refunded_amount, 0)
    query = (
        sa.select(
            journeys.c.tenant,
            hour,
            journeys.c.recovered_currency,
            sa.func.count(),
            sa.func.sum(sa.case((journeys.c.id.in_(messaged), 1), else_=0)),
            sa.func.sum(sa.case((journeys.c.recovered, 1), else_=0)),
            sa.func.sum(sa.case((journeys.c.recovered, sa.func.coalesce(net, 0)), else_=0)),
        )
        .where(journeys.c.tenant.in_(wanted), journeys.c.abandoned_at >= since)
        .group_by(journeys.c.tenant, hour, journeys.c.recovered_currency)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    return [(t, _as_hour(h), c, *map(int, nums)) for t, h, c, *nums in rows]


def results(store: Store, zones: dict[str, ZoneInfo], now: datetime) -> dict[str, Series]:
    """A :class:`Series` per tenant in ``zones`` (slug -> the tenant's zone), ending today."""
    series: dict[str, Series] = {}
    index: dict[str, dict[date, int]] = {}
    for slug, zone in zones.items():
        today = now.astimezone(zone).date()
        days = [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
        series[slug] = Series(days, [0] * DAYS, [0] * DAYS, [0] * DAYS)
        index[slug] = {day: i for i, day in enumerate(days)}
    since = now - timedelta(days=DAYS + 1)  # a day more: local days start before UTC ones
    revenue: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for slug, hour, currency, abandoned, messaged, recovered, money in daily_results(
        store, zones, since
    ):
        i = index[slug].get(hour.astimezone(zones[slug]).date())
        if i is None:
            continue
        s = series[slug]
        s.abandoned[i] += abandoned
        s.messaged[i] += messaged
        s.recovered[i] += recovered
        if currency and money:
            revenue[slug].setdefault(currency, [0] * DAYS)[i] += money
    for slug, by_currency in revenue.items():
        series[slug].revenue = by_currency
    return series


def breakdown(store: Store, tenant: str, since: datetime, by: str) -> list[Any]:
    """Abandoned, recovered and net revenue per ``flow`` or ``source`` since ``since``."""
    column = journeys.c[by]
    net = journeys.c.recovered_amount - sa.func.coalesce(journeys.c.refunded_amount, 0)
    query = (
        sa.select(
            column.label("name"),
            journeys.c.recovered_currency.label("currency"),
            sa.func.count().label("abandoned"),
            sa.func.sum(sa.case((journeys.c.recovered, 1), else_=0)).label("recovered"),
            sa.func.sum(sa.case((journeys.c.recovered, sa.func.coalesce(net, 0)), else_=0)).label(
                "revenue"
            ),
        )
        .where(journeys.c.tenant == tenant, journeys.c.abandoned_at >= since)
        .group_by(column, journeys.c.recovered_currency)
        .order_by(column)
    )
    with store.begin() as conn:
        return list(conn.execute(query).all())


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
