"""CSV export of a tenant's abandoned checkouts: one row per checkout, streamed.

:func:`export_csv` is a generator of text chunks (the header, then one chunk per page of
rows), so a Flask view returns ``Response(export_csv(...), mimetype="text/csv")`` and
``hub export`` writes the chunks to stdout: a million rows never sit in memory.

Why pages by key rather than one server-side cursor: a cursor holds a connection and a
transaction open for as long as the reader takes (a slow HTTP client, a paused pipe), which on
PostgreSQL holds back vacuum and on SQLite (where every transaction here takes the write lock
with ``BEGIN IMMEDIATE``) would stop the workers. Each page is one short read transaction that
continues after the last ``(abandoned_at, id)`` seen, on the ``(tenant, abandoned_at)`` index;
its messages and tracking events come in two more queries for the page's journeys.

Cells that would start a formula in a spreadsheet (``=``, ``+``, ``-``, ``@``, tab, carriage
return) get a leading ``'``, as OWASP advises: customer names, cart items and even e-mail
addresses come from the shop's visitors. Phone numbers (E.164, ``+49…``) therefore read
``'+49…``; amounts the hub writes itself are never touched.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub.money import to_decimal
from hub.reports import SENT_STATUSES, utc_range
from hub.store import Store, deliveries, journeys, tracking_events

PAGE_SIZE = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# (column, what it holds): the export's contract, printed by `hub export --help` and the README
COLUMNS: tuple[tuple[str, str], ...] = (
    ("journey_id", "the hub's id of the checkout's journey"),
    ("checkout_id", "the platform's checkout id"),
    ("source", "the platform (source plugin) it came from"),
    ("abandoned_at", "when it was abandoned, ISO 8601 in the tenant's time zone"),
    ("stage", "how far the customer got: cart, contact or payment"),
    ("email", "the customer's e-mail address"),
    ("phone", "the customer's phone (E.164)"),
    ("first_name", ""),
    ("last_name", ""),
    ("country", "ISO 3166 country code"),
    ("locale", "the customer's language"),
    ("cart_total", "decimal amount (dot as separator)"),
    ("cart_currency", "ISO 4217"),
    ("cart_items", "quantity × name, separated by '; '"),
    ("consent", "channel=opt_in|opt_out|unknown, separated by '; '"),
    ("flow", "the recovery flow chosen, empty when none matched"),
    ("status", "journey status: open, finished, converted, deleted, unsubscribed, …"),
    ("closed_reason", "why the journey ended"),
    ("messages", "each message as step:channel:status plus +opened/+clicked/+bounced, '; '"),
    ("messages_sent", "messages sent (sent, delivered or read)"),
    ("opened", "yes when any message was opened (an estimate)"),
    ("clicked", "yes when any message was clicked"),
    ("recovered", "yes when the checkout was recovered"),
    ("recovered_at", "when, ISO 8601 in the tenant's time zone"),
    ("credit", "clicked, delivered, sent, or none (recovered without message)"),
    ("credited_channel", "the channel of the credited message"),
    ("recovered_revenue", "decimal, net of refunds"),
    ("refunded", "decimal, refunded after the recovery"),
    ("revenue_currency", "ISO 4217 of the two amounts before"),
)
HEADER = tuple(name for name, _doc in COLUMNS)


def neutralize(value: str) -> str:
    """``=SUM(A1)`` → ``'=SUM(A1)``: a spreadsheet shows the text instead of running it."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def export_csv(
    store: Store,
    tenant: str,
    since: date,
    until: date,
    emails: Iterable[str] = (),
    timezone: ZoneInfo | str = "UTC",
    *,
    bom: bool = False,
    page_size: int = PAGE_SIZE,
) -> Iterator[str]:
    """CSV text of ``tenant``'s checkouts abandoned on the local days ``since``–``until``.

    ``emails`` keeps only those customers (case-insensitive). Yields the header first, then
    one chunk per page; ``bom`` starts with a UTF-8 byte-order mark, which Excel needs to read
    non-ASCII names right. Raises :class:`hub.reports.ReportError` on a bad range *before*
    the first chunk, so a Flask view can still answer 400.
    """
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    start, end = utc_range(since, until, zone)
    wanted = sorted({e.strip().lower() for e in emails if e.strip()})
    return _chunks(store, tenant, start, end, wanted, zone, bom, page_size)


def _chunks(
    store: Store,
    tenant: str,
    start: datetime,
    end: datetime,
    emails: list[str],
    zone: ZoneInfo,
    bom: bool,
    page_size: int,
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(HEADER)
    yield ("\ufeff" if bom else "") + _take(buffer)
    for page in _pages(store, tenant, start, end, emails, page_size):
        for row in page:
            writer.writerow(_cells(row, zone))
        yield _take(buffer)


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def export_rows(
    store: Store,
    tenant: str,
    since: date,
    until: date,
    emails: Iterable[str] = (),
    timezone: ZoneInfo | str = "UTC",
) -> Iterator[dict[str, Any]]:
    """The same rows as :func:`export_csv`, as dicts keyed by :data:`HEADER` (for JSON)."""
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    start, end = utc_range(since, until, zone)
    wanted = sorted({e.strip().lower() for e in emails if e.strip()})
    for page in _pages(store, tenant, start, end, wanted, PAGE_SIZE):
        for row in page:
            yield dict(zip(HEADER, _cells(row, zone, raw=True), strict=True))


def _pages(
    store: Store, tenant: str, start: datetime, end: datetime, emails: list[str], size: int
) -> Iterator[list[dict[str, Any]]]:
    """Pages of journeys, each with its ``messages`` [(delivery row, {tracking kinds})]."""
    after: tuple[datetime, int] | None = None
    while True:
        with store.begin() as conn:
            page = _journey_page(conn, tenant, start, end, emails, after, size)
            if not page:
                return
            _attach_messages(conn, page)
        yield page
        if len(page) < size:
            return
        after = (page[-1]["abandoned_at"], page[-1]["id"])


def _journey_page(
    conn: sa.Connection,
    tenant: str,
    start: datetime,
    end: datetime,
    emails: list[str],
    after: tuple[datetime, int] | None,
    size: int,
) -> list[dict[str, Any]]:
    j = journeys.c
    query = sa.select(
        j.id,
        j.checkout_id,
        j.source,
        j.flow,
        j.status,
        j.email,
        j.phone,
        j.event,
        j.abandoned_at,
        j.closed_reason,
        j.recovered,
        j.recovered_amount,
        j.recovered_currency,
        j.recovered_at,
        j.credit,
        j.credited_delivery_id,
        j.refunded_amount,
    ).where(j.tenant == tenant, j.abandoned_at >= start, j.abandoned_at < end)
    if emails:
        query = query.where(sa.func.lower(j.email).in_(emails))
    if after is not None:
        at, journey_id = after
        # the first condition is implied by the second; it lets the index start at the page
        # instead of reading every earlier row again (a page of a million took minutes)
        query = query.where(
            j.abandoned_at >= at,
            sa.or_(j.abandoned_at > at, sa.and_(j.abandoned_at == at, j.id > journey_id)),
        )
    query = query.order_by(j.abandoned_at, j.id).limit(size)
    return [dict(row._mapping) for row in conn.execute(query)]


def _attach_messages(conn: sa.Connection, page: list[dict[str, Any]]) -> None:
    ids = [row["id"] for row in page]
    d = deliveries.c
    found = conn.execute(
        sa.select(d.id, d.journey_id, d.step_index, d.channel, d.status)
        .where(d.journey_id.in_(ids))
        .order_by(d.journey_id, d.step_index, d.id)
    ).all()
    kinds: dict[int, set[str]] = defaultdict(set)
    t = tracking_events.c
    for delivery_id, kind in conn.execute(
        sa.select(t.delivery_id, t.kind).where(t.journey_id.in_(ids))
    ):
        kinds[delivery_id].add(kind)
    messages: dict[int, list] = defaultdict(list)
    for delivery in found:
        messages[delivery.journey_id].append((delivery, kinds.get(delivery.id, set())))
    for row in page:
        row["messages"] = messages.get(row["id"], [])


def _cells(row: dict[str, Any], zone: ZoneInfo, raw: bool = False) -> list[Any]:
    event = row["event"] or {}
    customer = event.get("customer") or {}
    cart = event.get("cart") or {}
    messages = row["messages"]
    sent = [(d, k) for d, k in messages if d.status in SENT_STATUSES]
    credited = next((d for d, _k in messages if d.id == row["credited_delivery_id"]), None)
    currency = row["recovered_currency"]
    net = refunded = None
    if row["recovered"] and currency and row["recovered_amount"] is not None:
        refunds = row["refunded_amount"] or 0
        net = to_decimal(row["recovered_amount"] - refunds, currency)
        refunded = to_decimal(refunds, currency)
    text = [
        row["checkout_id"],
        row["source"],
        _local(row["abandoned_at"], zone),
        event.get("stage"),
        row["email"] or customer.get("email"),
        row["phone"] or customer.get("phone"),
        customer.get("first_name"),
        customer.get("last_name"),
        customer.get("country"),
        customer.get("locale"),
        _cart_total(cart),
        cart.get("currency"),
        "; ".join(f"{i.get('quantity', 1)} × {i.get('name', '')}" for i in cart.get("items", [])),
        "; ".join(f"{k}={v}" for k, v in sorted((event.get("consent") or {}).items())),
        row["flow"],
        row["status"],
        row["closed_reason"],
        "; ".join(_message(d, k) for d, k in messages),
    ]
    if not raw:
        text = [neutralize(str(v)) if v is not None else "" for v in text]
    return [
        row["id"],
        *text,
        len(sent),
        _yes(any("opened" in k for _d, k in messages)),
        _yes(any("clicked" in k for _d, k in messages)),
        _yes(row["recovered"]),
        _local(row["recovered_at"], zone),
        row["credit"],
        credited.channel if credited is not None else None,
        str(net) if net is not None else None,
        str(refunded) if refunded is not None else None,
        currency if net is not None else None,
    ]


def _cart_total(cart: dict[str, Any]) -> str | None:
    if cart.get("total") is None or not cart.get("currency"):
        return None
    return str(to_decimal(cart["total"], cart["currency"]))


def _message(delivery: Any, kinds: set[str]) -> str:
    extra = "".join(f"+{k}" for k in ("opened", "clicked", "bounced") if k in kinds)
    return f"{delivery.step_index}:{delivery.channel}:{delivery.status}{extra}"


def _local(when: datetime | None, zone: ZoneInfo) -> str | None:
    return when.astimezone(zone).isoformat(timespec="seconds") if when else None


def _yes(value: Any) -> str:
    return "yes" if value else "no"
