"""Incremental recovery: what a flow's messages won back beyond what came back anyway.

Attribution (:mod:`hub.attribution`) credits a message with every recovery that followed it,
including carts the customer would have paid without it. A flow's holdout group
(:mod:`hub.holdout`) gets no message, so comparing it with the messaged journeys of the same
flow and the same days measures the messages themselves:

* **recovery rate** of each group: recovered journeys ÷ journeys (any recovery, credited to
  a message or not: the question is whether the checkout came back);
* **incremental recovery rate**: messaged rate − holdout rate, with a 95 % interval by
  Newcombe's hybrid score method (his method 10, 1998): the difference of two Wilson score
  intervals. Chosen over the textbook normal (Wald) interval because holdout groups are
  small and recovery rates low, exactly where Wald misbehaves (a zero-width interval at 0
  recoveries, limits outside [−1, 1]); Newcombe's stays inside and keeps close to 95 %
  coverage there, and it is a closed formula (no SciPy);
* **incremental recoveries**: that difference × the messaged journeys (checkouts won back
  that would not have been), same interval scaled;
* **incremental revenue** per currency: (mean net revenue per messaged journey − per holdout
  journey) × messaged journeys, with a normal-approximation (Welch) 95 % interval from the
  two groups' revenue variances. A journey's revenue in a currency is 0 unless it was
  recovered in it, so each currency is a fair comparison whatever the shop's currency mix.
  Revenue is net of refunds, as in :mod:`hub.reports`.

Days are the tenant's local days of abandonment, as in :func:`hub.reports.report`, and the
attributed figures (recoveries credited to a message, their revenue) sit next to the
incremental ones, so a client sees both numbers and the gap between them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub.reports import utc_range
from hub.store import Store, journeys

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95 % confidence interval."""

    estimate: float
    low: float
    high: float


@dataclass
class Group:
    """One side of the comparison: journeys, recoveries, and money per currency."""

    journeys: int = 0
    recovered: int = 0
    # currency -> net minor units, and the sum of squares (for the variance)
    revenue: dict[str, int] = field(default_factory=dict)
    revenue_squares: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def recovery_rate(self) -> float | None:
        return self.recovered / self.journeys if self.journeys else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "journeys": self.journeys,
            "recovered": self.recovered,
            "recovery_rate": self.recovery_rate,
            "revenue": dict(sorted(self.revenue.items())),
        }


@dataclass
class FlowHoldout:
    """One flow's comparison; the intervals are ``None`` while a group is empty."""

    flow: str
    messaged: Group
    holdout: Group
    attributed_recovered: int = 0
    attributed_revenue: dict[str, int] = field(default_factory=dict)
    incremental_rate: Interval | None = None
    incremental_recovered: Interval | None = None
    incremental_revenue: dict[str, Interval] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "messaged": self.messaged.as_dict(),
            "holdout": self.holdout.as_dict(),
            "attributed_recovered": self.attributed_recovered,
            "attributed_revenue": dict(sorted(self.attributed_revenue.items())),
            "incremental_rate": _plain(self.incremental_rate),
            "incremental_recovered": _plain(self.incremental_recovered),
            "incremental_revenue": {
                c: _plain(i) for c, i in sorted(self.incremental_revenue.items())
            },
        }


@dataclass
class HoldoutReport:
    tenant: str
    since: date
    until: date
    timezone: str
    flows: list[FlowHoldout]

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "timezone": self.timezone,
            "confidence": 0.95,
            "rate_interval": "Newcombe hybrid score (difference of Wilson intervals)",
            "revenue_interval": "normal approximation (Welch) of the per-journey difference",
            "flows": [f.as_dict() for f in self.flows],
        }


def _plain(interval: Interval | None) -> dict[str, float] | None:
    return asdict(interval) if interval is not None else None


# --------------------------------------------------------------------------- statistics


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (``n`` > 0)."""
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_difference(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> Interval | None:
    """``x1/n1 − x2/n2`` with Newcombe's hybrid score interval; ``None`` if a group is empty."""
    if not n1 or not n2:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Interval(d, low, high)


def mean_difference(
    sum1: float, squares1: float, n1: int, sum2: float, squares2: float, n2: int, z: float = Z95
) -> Interval | None:
    """Difference of two means with a Welch normal interval; ``None`` below 2 per group."""
    if n1 < 2 or n2 < 2:
        return None
    m1, m2 = sum1 / n1, sum2 / n2
    v1 = max(0.0, (squares1 - n1 * m1 * m1) / (n1 - 1))
    v2 = max(0.0, (squares2 - n2 * m2 * m2) / (n2 - 1))
    se = math.sqrt(v1 / n1 + v2 / n2)
    return Interval(m1 - m2, m1 - m2 - z * se, m1 - m2 + z * se)


def _scaled(interval: Interval | None, factor: float) -> Interval | None:
    if interval is None:
        return None
    return Interval(interval.estimate * factor, interval.low * factor, interval.high * factor)


# --------------------------------------------------------------------------- the report


def holdout_report(
    store: Store,
    tenant: str,
    since: date,
    until: date,
    timezone: ZoneInfo | str = "UTC",
) -> HoldoutReport:
    """Per flow, messaged against holdout for the local days ``since``–``until`` (inclusive).

    Reads only: two aggregate queries over the tenant's ``(tenant, abandoned_at)`` index.
    Raises :class:`hub.reports.ReportError` for a bad range.
    """
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    start, end = utc_range(since, until, zone)
    scope = sa.and_(
        journeys.c.tenant == tenant,
        journeys.c.abandoned_at >= start,
        journeys.c.abandoned_at < end,
        journeys.c.flow.is_not(None),
    )
    flows: dict[str, FlowHoldout] = {}
    with store.begin() as conn:
        for row in conn.execute(_count_query(scope)):
            found = flows.setdefault(row.flow, FlowHoldout(row.flow, Group(), Group()))
            group = found.holdout if row.holdout else found.messaged
            group.journeys += row.journeys
            group.recovered += row.recovered or 0
            if not row.holdout:
                found.attributed_recovered += row.attributed or 0
        for row in conn.execute(_money_query(scope)):
            found = flows[row.flow]
            group = found.holdout if row.holdout else found.messaged
            group.revenue[row.currency] = int(row.revenue or 0)
            group.revenue_squares[row.currency] = float(row.squares or 0)
            if not row.holdout and row.attributed is not None:
                found.attributed_revenue[row.currency] = int(row.attributed)
    for found in flows.values():
        _compare(found)
    result = [flows[name] for name in sorted(flows)]
    return HoldoutReport(tenant, since, until, zone.key, result)


def _compare(found: FlowHoldout) -> None:
    m, h = found.messaged, found.holdout
    found.incremental_rate = rate_difference(m.recovered, m.journeys, h.recovered, h.journeys)
    found.incremental_recovered = _scaled(found.incremental_rate, m.journeys)
    for currency in sorted(set(m.revenue) | set(h.revenue)):
        per_journey = mean_difference(
            m.revenue.get(currency, 0),
            m.revenue_squares.get(currency, 0.0),
            m.journeys,
            h.revenue.get(currency, 0),
            h.revenue_squares.get(currency, 0.0),
            h.journeys,
        )
        if per_journey is not None:
            found.incremental_revenue[currency] = _scaled(per_journey, m.journeys)


def _credited() -> sa.ColumnElement:
    """Recovered with a message credited (hub.attribution's clicked | delivered | sent)."""
    return sa.and_(
        journeys.c.recovered,
        journeys.c.credit.is_not(None),
        journeys.c.credit != "none",
    )


def _count_query(scope: Any) -> sa.Select:
    recovered = sa.func.sum(sa.case((journeys.c.recovered, 1), else_=0))
    attributed = sa.func.sum(sa.case((_credited(), 1), else_=0))
    return (
        sa.select(
            journeys.c.flow,
            journeys.c.holdout,
            sa.func.count().label("journeys"),
            recovered.label("recovered"),
            attributed.label("attributed"),
        )
        .where(scope)
        .group_by(journeys.c.flow, journeys.c.holdout)
    )


def _money_query(scope: Any) -> sa.Select:
    net = sa.func.coalesce(journeys.c.recovered_amount, 0) - sa.func.coalesce(
        journeys.c.refunded_amount, 0
    )
    # squares as floating point: cents² of a large cart overflow BIGINT sums on PostgreSQL
    as_float = sa.cast(net, sa.Float)
    return (
        sa.select(
            journeys.c.flow,
            journeys.c.holdout,
            journeys.c.recovered_currency.label("currency"),
            sa.func.sum(net).label("revenue"),
            sa.func.sum(as_float * as_float).label("squares"),
            sa.func.sum(sa.case((_credited(), net), else_=0)).label("attributed"),
        )
        .where(scope, journeys.c.recovered, journeys.c.recovered_currency.is_not(None))
        .group_by(journeys.c.flow, journeys.c.holdout, journeys.c.recovered_currency)
    )
