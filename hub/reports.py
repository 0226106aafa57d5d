"""Recovery results per tenant and date range: what an agency sends its client shops monthly.

:func:`report` answers with plain dataclasses (``dataclasses.asdict`` makes them JSON for a
Flask view). The figures follow how Klaviyo and CartFlows present recovery, by cohort:

* rows are keyed by when the checkout was **abandoned**, in the tenant's time zone: the
  range ``since``–``until`` (both inclusive) is whole local days, and a recovery on
  1 December of a cart abandoned on 30 November counts in November. So the recovery rate of a
  month never changes its denominator when a later month is read;
* ``abandoned`` counts checkouts (journeys with an abandonment time), ``messaged`` those that
  got at least one message, ``messages`` the messages sent (status sent, delivered or read);
  ``delivered`` are messages sent and not bounced (Klaviyo's definition: e-mail has no
  delivery receipt), ``opened`` (an estimate: mail clients with privacy protection pre-fetch
  the pixel) and ``clicked`` count messages, once each however often it happened;
* ``recovered`` counts checkouts recovered *after a message*, credited to one message (last
  clicked, else delivered, else sent); ``recovered_without_message`` those that converted with
  no message before (Klaviyo's "attributed" against the rest). The recovery rate is
  ``recovered / abandoned``; messages per recovery ``messages / recovered``;
* revenue is per currency, in minor units, **net of refunds**, and never summed across
  currencies; refunds are reported too.

Grouped ``by="step"`` or ``by="channel"``, a checkout counts in the row of every step (channel)
that messaged it, and a recovery in the row of its credited message; the row whose ``step``
(``channel``) is ``None`` holds the checkouts that got no message and the recoveries credited
to none. The total is counted over
checkouts, so it is not the sum of such rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub.engine.ledger import SENT_STATUSES
from hub.store import Store, deliveries, journeys, tracking_events

GROUPINGS = ("day", "flow", "step", "channel", "source")
Grouping = Literal["day", "flow", "step", "channel", "source"]
# the longest range one report reads: ten years of days is still a readable CSV
MAX_DAYS = 3660
# the counts and rates of a CSV report, in their column order
CSV_COUNTS = (
    "abandoned",
    "messaged",
    "messages",
    "delivered",
    "bounced",
    "opened",
    "clicked",
    "recovered",
    "recovered_without_message",
    "recovery_rate",
    "messages_per_recovery",
)


class ReportError(ValueError):
    """A request a report cannot answer (bad range, unknown grouping); the message says why."""


@dataclass
class Figures:
    """The counts and money of one row (or of the total)."""

    abandoned: int = 0
    messaged: int = 0
    messages: int = 0
    delivered: int = 0
    bounced: int = 0
    opened: int = 0
    clicked: int = 0
    recovered: int = 0
    recovered_without_message: int = 0
    # currency -> minor units, net of refunds
    revenue: dict[str, int] = field(default_factory=dict)
    revenue_without_message: dict[str, int] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)

    @property
    def recovery_rate(self) -> float | None:
        """Recovered ÷ abandoned; ``None`` when nothing was abandoned (not 0 %)."""
        return self.recovered / self.abandoned if self.abandoned else None

    @property
    def messages_per_recovery(self) -> float | None:
        return self.messages / self.recovered if self.recovered else None

    def add(self, other: Figures) -> None:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                for currency, amount in theirs.items():
                    mine[currency] = mine.get(currency, 0) + amount
            else:
                setattr(self, f.name, mine + theirs)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: counts, rates, and money as ``{currency: minor units}``."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["recovery_rate"] = self.recovery_rate
        data["messages_per_recovery"] = self.messages_per_recovery
        return data


@dataclass
class ReportRow:
    """One group: the key columns that apply to ``by`` are set, the others are ``None``."""

    day: date | None = None
    flow: str | None = None
    step: int | None = None
    channel: str | None = None
    source: str | None = None
    figures: Figures = field(default_factory=Figures)

    def key(self, by: str) -> tuple:
        return (self.flow, self.step) if by == "step" else (getattr(self, by),)

    def as_dict(self, by: str) -> dict[str, Any]:
        keys = {"step": ("flow", "step")}.get(by, (by,))
        data: dict[str, Any] = {k: getattr(self, k) for k in keys}
        if data.get("day") is not None:
            data["day"] = data["day"].isoformat()
        return {**data, **self.figures.as_dict()}


@dataclass
class Report:
    """What :func:`report` returns: the request, its rows (sorted by key) and the total."""

    tenant: str
    since: date
    until: date
    timezone: str
    by: str
    rows: list[ReportRow]
    total: Figures
    currencies: list[str]

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the report (``hub report --format json``, the REST API)."""
        return {
            "tenant": self.tenant,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "timezone": self.timezone,
            "by": self.by,
            "currencies": self.currencies,
            "rows": [row.as_dict(self.by) for row in self.rows],
            "total": self.total.as_dict(),
        }

    def as_csv(self) -> str:
        """The report as CSV (``hub report --format csv``, the REST API's ``format=csv``): a
        ``row`` column (group | total), the key, counts, rates, and one column per currency and
        amount (``revenue_minor_EUR``, …), amounts in minor units."""
        keys = {"step": ["flow", "step"]}.get(self.by, [self.by])
        money = [
            (f"{name}_minor_{currency}", name, currency)
            for currency in self.currencies
            for name in ("revenue", "revenue_without_message", "refunded")
        ]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(["row", *keys, *CSV_COUNTS, *(m[0] for m in money)])
        lines = [("group", row.as_dict(self.by)) for row in self.rows]
        lines.append(("total", self.total.as_dict()))
        for kind, data in lines:
            writer.writerow(
                [
                    kind,
                    *(data.get(k) for k in keys),
                    *(_plain(data[c]) for c in CSV_COUNTS),
                    *(data[name].get(currency, 0) for _col, name, currency in money),
                ]
            )
        return buffer.getvalue()


def report(
    store: Store,
    tenant: str,
    since: date,
    until: date,
    by: Grouping = "day",
    timezone: ZoneInfo | str = "UTC",
) -> Report:
    """The recovery report of ``tenant`` for the local days ``since`` to ``until`` (inclusive).

    ``timezone`` is the tenant's (``Tenant.timezone``): it decides where a day starts. Raises
    :class:`ReportError` for a bad grouping or range. Reads only; a few aggregate queries
    over the tenant's ``(tenant, abandoned_at)`` index.
    """
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    start, end = utc_range(since, until, zone)
    if by not in GROUPINGS:
        raise ReportError(f"cannot group by {by!r}; choose one of {', '.join(GROUPINGS)}")
    scope = sa.and_(
        journeys.c.tenant == tenant,
        journeys.c.abandoned_at >= start,
        journeys.c.abandoned_at < end,
    )
    with store.begin() as conn:
        dialect = conn.dialect.name
        key = _journey_key(by, zone, since, until, dialect)
        if by in ("step", "channel"):
            rows = _message_rows(conn, scope, by)
            for row_key, figures in _credited_figures(conn, scope, by).items():
                rows.setdefault(row_key, Figures()).add(figures)
            total = _journey_figures(conn, scope, []).get((), Figures())
            total.add(_message_figures(conn, scope, []).get((), Figures()))
            if total.abandoned:
                rows[_none_key(by)] = Figures(
                    abandoned=total.abandoned - total.messaged,
                    recovered_without_message=total.recovered_without_message,
                    revenue_without_message=dict(total.revenue_without_message),
                )
        else:
            rows = _journey_figures(conn, scope, [key])
            for row_key, figures in _message_figures(conn, scope, [key]).items():
                rows.setdefault(row_key, Figures()).add(figures)
            total = Figures()
            for figures in rows.values():
                total.add(figures)
    if by == "day":
        rows = {(_as_date(k[0]),): v for k, v in rows.items()}
        for day in _days(since, until):
            rows.setdefault((day,), Figures())
    result = [_row(by, k, v) for k, v in sorted(rows.items(), key=_sort_key)]
    currencies = sorted({c for f in [total] for d in _money(f) for c in d})
    return Report(tenant, since, until, zone.key, by, result, total, currencies)


def default_range(
    zone: ZoneInfo, since: date | None = None, until: date | None = None
) -> tuple[date, date]:
    """``since``/``until`` where given, else the tenant's current month so far (local days):
    what an agency looks at when it asks without a range."""
    today = datetime.now(zone).date()
    return since or today.replace(day=1), until or today


def utc_range(since: date, until: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where local day ``since`` starts and the day after ``until`` starts."""
    if not isinstance(since, date) or not isinstance(until, date):
        raise ReportError("since and until must be dates")
    if isinstance(since, datetime) or isinstance(until, datetime):
        raise ReportError("since and until are whole days (dates), not times")
    if until < since:
        raise ReportError(f"until ({until}) is before since ({since})")
    if (until - since).days >= MAX_DAYS:
        raise ReportError(f"a report covers at most {MAX_DAYS} days")
    try:
        return _local_midnight(since, zone), _local_midnight(until + timedelta(days=1), zone)
    except OverflowError:  # year 1 or 9999, shifted into a year Python has not
        raise ReportError(f"{since} to {until} is beyond the dates a report can read") from None


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def _days(since: date, until: date) -> Iterator[date]:
    day = since
    while day <= until:
        yield day
        day += timedelta(days=1)


# --------------------------------------------------------------------------- the local day


def local_day(
    column: Any, zone: ZoneInfo, since: date, until: date, dialect: str
) -> sa.ColumnElement:
    """SQL for the local date (in ``zone``) of a naive-UTC ``column`` within the range.

    Neither SQLite nor a portable SQL knows time zones, but within a report's range a zone has
    only a few UTC offsets (one per side of each daylight-saving change). The range is cut at
    those changes and each piece shifts by its constant offset: one ``CASE`` of a handful of
    branches, exact at every transition, instead of one branch per day.
    """
    pieces = _offset_pieces(zone, *utc_range(since, until, zone))
    offsets = [offset for _start, offset in pieces]
    # piece i holds from its own start to the next piece's start
    whens = [
        (column < start, _shifted_date(column, offsets[i], dialect))
        for i, (start, _offset) in enumerate(pieces[1:])
    ]
    last = _shifted_date(column, offsets[-1], dialect)
    return sa.case(*whens, else_=last) if whens else last


def _offset_pieces(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """``[(piece start, UTC offset in seconds), …]`` covering ``start``–``end``."""
    pieces = [(start, _offset(zone, start))]
    cursor = start
    while cursor < end:
        step = min(cursor + timedelta(hours=6), end)
        if _offset(zone, step) != pieces[-1][1]:
            low, high = cursor, step  # the change lies in (low, high]: bisect to the second
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if _offset(zone, middle) == pieces[-1][1]:
                    low = middle
                else:
                    high = middle
            pieces.append((high.replace(microsecond=0), _offset(zone, step)))
        cursor = step
    return pieces


def _offset(zone: ZoneInfo, when: datetime) -> int:
    return int(when.astimezone(zone).utcoffset().total_seconds())


def _shifted_date(column: Any, seconds: int, dialect: str) -> sa.ColumnElement:
    if dialect == "sqlite":
        return sa.func.date(column, f"{seconds:+d} seconds")
    interval = sa.literal_column(f"interval '{seconds:d} seconds'", type_=sa.Interval)
    return sa.cast(column + interval, sa.Date)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


# --------------------------------------------------------------------------- the queries


def _journey_key(by: str, zone: ZoneInfo, since: date, until: date, dialect: str) -> Any:
    if by == "day":
        return local_day(journeys.c.abandoned_at, zone, since, until, dialect).label("k_day")
    if by in ("flow", "source"):
        return getattr(journeys.c, by).label(f"k_{by}")
    return None


def _sent_exists() -> sa.ColumnElement:
    # an alias of its own: some queries join deliveries already, and must not correlate it
    sent = deliveries.alias("any_sent")
    return sa.exists().where(sent.c.journey_id == journeys.c.id, sent.c.status.in_(SENT_STATUSES))


def _without_message() -> sa.ColumnElement:
    """Recovered with no message before: the attribution says ``none``; rows from before
    attribution existed (no ``credit``) say so by having no message sent."""
    return sa.and_(
        journeys.c.recovered,
        sa.or_(
            # coalesce: NULL = 'none' is NULL, and NOT (… NULL) would drop the row
            sa.func.coalesce(journeys.c.credit, "") == "none",
            sa.and_(journeys.c.credit.is_(None), sa.not_(_sent_exists())),
        ),
    )


def _attributed() -> sa.ColumnElement:
    return sa.and_(journeys.c.recovered, sa.not_(_without_message()))


def _count_if(condition: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def _net_amount() -> sa.ColumnElement:
    return sa.func.coalesce(journeys.c.recovered_amount, 0) - sa.func.coalesce(
        journeys.c.refunded_amount, 0
    )


def _sum_if(condition: sa.ColumnElement, value: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.sum(sa.case((condition, value), else_=0))


def _journey_figures(conn: sa.Connection, scope: Any, keys: list) -> dict[tuple, Figures]:
    """Abandoned, recovered and money per key (journey columns only)."""
    attributed, without = _attributed(), _without_message()
    currency = journeys.c.recovered_currency
    query = (
        sa.select(
            *keys,
            currency.label("currency"),
            sa.func.count().label("abandoned"),
            _count_if(attributed).label("recovered"),
            _count_if(without).label("without"),
            _sum_if(attributed, _net_amount()).label("revenue"),
            _sum_if(without, _net_amount()).label("revenue_without"),
            _sum_if(journeys.c.recovered, sa.func.coalesce(journeys.c.refunded_amount, 0)).label(
                "refunded"
            ),
        )
        .where(scope)
        .group_by(*keys, currency)
    )
    found: dict[tuple, Figures] = {}
    for row in conn.execute(query):
        figures = found.setdefault(tuple(row[: len(keys)]), Figures())
        figures.abandoned += row.abandoned
        figures.recovered += row.recovered or 0
        figures.recovered_without_message += row.without or 0
        if row.currency:
            _put(figures.revenue, row.currency, row.revenue, row.recovered)
            _put(figures.revenue_without_message, row.currency, row.revenue_without, row.without)
            _put(figures.refunded, row.currency, row.refunded, row.refunded)
    return found


def _put(money: dict[str, int], currency: str, amount: Any, present: Any) -> None:
    """Record an amount where recoveries exist (a 0 then means 0, not "nothing there")."""
    if present:
        money[currency] = money.get(currency, 0) + int(amount or 0)


def _message_figures(conn: sa.Connection, scope: Any, keys: list) -> dict[tuple, Figures]:
    """Messages and what happened to them, per key; ``keys`` may name deliveries' columns.

    Two grouped joins rather than an ``EXISTS`` per message and kind: tracking events are
    unique per message and kind, so counting them per kind counts messages, and a hash join
    over the range beats three index probes per message (measured on a million journeys).
    """
    # the tenant twice: always true, and PostgreSQL carries the report's tenant over to the
    # deliveries, reading one tenant's through ix_deliveries_created instead of all of them
    sent = sa.and_(
        scope, deliveries.c.tenant == journeys.c.tenant, deliveries.c.status.in_(SENT_STATUSES)
    )
    messages = (
        sa.select(
            *keys,
            sa.func.count(sa.distinct(journeys.c.id)).label("messaged"),
            sa.func.count().label("messages"),
        )
        .select_from(deliveries.join(journeys, journeys.c.id == deliveries.c.journey_id))
        .where(sent)
        .group_by(*keys)
    )
    found = {}
    for row in conn.execute(messages):
        found[tuple(row[: len(keys)])] = Figures(
            messaged=row.messaged, messages=row.messages, delivered=row.messages
        )
    kind = tracking_events.c.kind
    tracked = (
        sa.select(*keys, kind, sa.func.count().label("count"))
        .select_from(
            tracking_events.join(deliveries, deliveries.c.id == tracking_events.c.delivery_id).join(
                journeys, journeys.c.id == deliveries.c.journey_id
            )
        )
        .where(sent, kind.in_(("opened", "clicked", "bounced")))
        .group_by(*keys, kind)
    )
    for row in conn.execute(tracked):
        figures = found[tuple(row[: len(keys)])]
        setattr(figures, row.kind, row.count)
        if row.kind == "bounced":
            figures.delivered -= row.count
    return found


def _message_keys(by: str) -> list:
    if by == "step":
        return [journeys.c.flow.label("k_flow"), deliveries.c.step_index.label("k_step")]
    return [deliveries.c.channel.label("k_channel")]


def _message_rows(conn: sa.Connection, scope: Any, by: str) -> dict[tuple, Figures]:
    """Per step or channel: the checkouts messaged there count as that row's abandoned."""
    rows = _message_figures(conn, scope, _message_keys(by))
    for figures in rows.values():
        figures.abandoned = figures.messaged
    return rows


def _none_key(by: str) -> tuple:
    return (None, None) if by == "step" else (None,)


def _credited_figures(conn: sa.Connection, scope: Any, by: str) -> dict[tuple, Figures]:
    """Attributed recoveries and their revenue in the row of the credited message.

    A journey recovered before attribution recorded a credited message falls back to its last
    sent message (the rule's last resort), so older rows still land on a step. Two queries:
    joined on ``COALESCE(credited, last sent)`` one plan read every recovered journey through
    a nested loop (26 s on a million journeys); the plain join hashes, and the fallback
    touches only the old rows.
    """
    sent = deliveries.alias("last_sent")
    last_sent = (
        sa.select(sent.c.id)
        .where(sent.c.journey_id == journeys.c.id, sent.c.status.in_(SENT_STATUSES))
        .order_by(sent.c.sent_at.desc(), sent.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    found: dict[tuple, Figures] = {}
    for credited, which in (
        (journeys.c.credited_delivery_id, journeys.c.credited_delivery_id.is_not(None)),
        (last_sent, journeys.c.credited_delivery_id.is_(None)),
    ):
        _credited_rows(conn, by, found, deliveries.c.id == credited, sa.and_(scope, which))
    return found


def _credited_rows(
    conn: sa.Connection, by: str, found: dict[tuple, Figures], on: Any, where: Any
) -> None:
    currency = journeys.c.recovered_currency
    keys = _message_keys(by)
    query = (
        sa.select(
            *keys,
            currency.label("currency"),
            sa.func.count().label("recovered"),
            sa.func.sum(_net_amount()).label("revenue"),
            sa.func.sum(sa.func.coalesce(journeys.c.refunded_amount, 0)).label("refunded"),
        )
        .select_from(journeys.join(deliveries, on))
        .where(where, _attributed())
        .group_by(*keys, currency)
    )
    for row in conn.execute(query):
        figures = found.setdefault(tuple(row[: len(keys)]), Figures())
        figures.recovered += row.recovered
        if row.currency:
            _put(figures.revenue, row.currency, row.revenue, row.recovered)
            _put(figures.refunded, row.currency, row.refunded, row.refunded)


# --------------------------------------------------------------------------- shaping


def _row(by: str, key: tuple, figures: Figures) -> ReportRow:
    if by == "step":
        return ReportRow(flow=key[0], step=key[1], figures=figures)
    return ReportRow(**{by: key[0]}, figures=figures)


def _sort_key(item: tuple[tuple, Figures]) -> tuple:
    # None (no flow, no message) sorts last; everything else by its own order
    return tuple((value is None, value if value is not None else 0) for value in item[0])


def _plain(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def _money(figures: Figures) -> list[dict[str, int]]:
    return [figures.revenue, figures.revenue_without_message, figures.refunded]
