"""What needs attention, computed from the tables (never guessed): each :class:`Alert` says
what is wrong in one line and links to the page part that explains it.

Thresholds are deliberately conservative: an account manager who sees a red line every morning
for nothing stops reading them. Each rule needs enough history to have a "normal" before it
compares against it (docs/dashboard.md lists the rules).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.dashboard import cache
from hub.store import Store, deliveries, events, journeys, steps, tracking_events

SILENT_FACTOR = 4  # silent: no call for this many usual gaps …
SILENT_FLOOR = timedelta(hours=2)  # … and never less than this
SILENT_MIN_CALLS = 5  # a usual gap needs this many calls in the last 30 days
FLOW_WINDOW = timedelta(hours=24)
FLOW_MIN_DUE = 3  # steps that came due in the window before "sent nothing" means something
FAILURE_MIN = 10  # deliveries in the last day before a failure rate is judged
PERMANENT_MIN = 3  # permanent failures of one sink with no success since
OVERDUE = timedelta(minutes=10)  # a scheduled step this late means no worker runs it
BACKLOG = timedelta(minutes=5)  # an event stored this long ago and still not processed


@dataclass(frozen=True)
class Alert:
    tenant: str
    kind: str  # silent_source | flow_sent_nothing | failure_rate | config | sink_failing | backlog
    message: str
    anchor: str  # the part of the client page that explains it


def compute(
    store: Store, tenants: dict[str, Any], broken: dict[str, int], now: datetime
) -> list[Alert]:
    """Every alert for ``tenants`` (slug -> served Tenant or ``None`` when its file does not
    load); ``broken`` maps a slug to its number of tenant-file errors."""
    return config_alerts(tenants, broken) + from_tables(store, tenants, now)


def cached(
    hub: Any, tenants: dict[str, Any], broken: dict[str, int], now: datetime
) -> tuple[list[Alert], datetime]:
    """:func:`compute` with the alerts from the tables through the short cache (the tenant
    files' errors are always current), and when the oldest of those was computed."""

    def fresh(slugs: list[str]) -> dict[str, Any]:
        grouped = by_tenant(from_tables(hub.store, {s: tenants[s] for s in slugs}, now))
        return {slug: [asdict(a) for a in grouped.get(slug, [])] for slug in slugs}

    values, as_of = cache.per_tenant(hub, "alerts", list(tenants), fresh)
    stored = [Alert(**a) for slug in tenants for a in values[slug]]
    return config_alerts(tenants, broken) + stored, as_of


def config_alerts(tenants: dict[str, Any], broken: dict[str, int]) -> list[Alert]:
    return [
        Alert(slug, "config", f"tenant file has {count} error{'s' * (count != 1)}", "config")
        for slug, count in broken.items()
        if slug in tenants
    ]


def from_tables(store: Store, tenants: dict[str, Any], now: datetime) -> list[Alert]:
    """The alerts computed from the database: one grouped query per rule for all
    ``tenants`` at once, never one per tenant."""
    slugs = list(tenants)
    if not slugs:
        return []
    return [
        *silent_sources(store, tenants, now),
        *flows_sending_nothing(store, slugs, now),
        *failure_rates(store, slugs, now),
        *failing_sinks(store, slugs, now),
        *backlog(store, slugs, now),
    ]


def silent_sources(store: Store, tenants: dict[str, Any], now: datetime) -> list[Alert]:
    """A source that got no call for longer than ``SILENT_FACTOR`` times its usual gap (its
    average over the last 30 days)."""
    query = (
        sa.select(
            events.c.tenant,
            events.c.source,
            sa.func.count(),
            sa.func.min(events.c.received_at),
            sa.func.max(events.c.received_at),
        )
        .where(events.c.tenant.in_(list(tenants)), events.c.received_at >= now - timedelta(30))
        .group_by(events.c.tenant, events.c.source)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    found = []
    for slug, source, calls, first, last in rows:
        tenant = tenants.get(slug)
        if tenant is not None and source not in tenant.sources:
            continue  # the source was switched off: silence is expected
        if calls < SILENT_MIN_CALLS:
            continue
        usual = (last - first) / (calls - 1)
        if now - last > max(SILENT_FACTOR * usual, SILENT_FLOOR):
            found.append(
                Alert(
                    slug,
                    "silent_source",
                    f"{source}: no webhook for {_ago(now - last)} (usually every {_ago(usual)})",
                    "sources",
                )
            )
    return found


def flows_sending_nothing(store: Store, slugs: list[str], now: datetime) -> list[Alert]:
    """A flow whose steps came due in the last day, at least ``FLOW_MIN_DUE`` of them, and
    not one of which sent a message."""
    since = now - FLOW_WINDOW
    sent = sa.func.sum(sa.case((steps.c.status == "sent", 1), else_=0))
    query = (
        sa.select(journeys.c.tenant, journeys.c.flow, sa.func.count(), sent)
        .select_from(steps.join(journeys, journeys.c.id == steps.c.journey_id))
        .where(
            journeys.c.tenant.in_(slugs),
            steps.c.due_at >= since,
            steps.c.due_at <= now,
            steps.c.status.in_(("sent", "skipped", "failed")),
        )
        .group_by(journeys.c.tenant, journeys.c.flow)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
    return [
        Alert(
            slug,
            "flow_sent_nothing",
            f"flow {flow!r} sent nothing in the last 24 h: {due} steps came due, "
            "all skipped or failed",
            "deliveries",
        )
        for slug, flow, due, sent_count in rows
        if due >= FLOW_MIN_DUE and not sent_count
    ]


def failure_rates(store: Store, slugs: list[str], now: datetime) -> list[Alert]:
    """Failed or bounced messages in the last day at more than twice (and 10 points above)
    the tenant's share over the 30 days before."""
    day = now - timedelta(days=1)
    month = now - timedelta(days=31)
    failed = deliveries.c.status == "failed"
    recent = deliveries.c.created_at >= day
    query = (
        sa.select(
            deliveries.c.tenant,
            sa.func.sum(sa.case((recent, 1), else_=0)),
            sa.func.sum(sa.case((sa.and_(recent, failed), 1), else_=0)),
            sa.func.sum(sa.case((recent, 0), else_=1)),
            sa.func.sum(sa.case((sa.and_(~recent, failed), 1), else_=0)),
        )
        .where(deliveries.c.tenant.in_(slugs), deliveries.c.created_at >= month)
        .group_by(deliveries.c.tenant)
    )
    bounced = (
        sa.select(
            tracking_events.c.tenant,
            sa.func.sum(sa.case((tracking_events.c.at >= day, 1), else_=0)),
            sa.func.sum(sa.case((tracking_events.c.at >= day, 0), else_=1)),
        )
        .where(
            tracking_events.c.tenant.in_(slugs),
            tracking_events.c.kind == "bounced",
            tracking_events.c.at >= month,
        )
        .group_by(tracking_events.c.tenant)
    )
    with store.begin() as conn:
        rows = conn.execute(query).all()
        bounces = {t: (int(r), int(o)) for t, r, o in conn.execute(bounced).all()}
    found = []
    for slug, n_recent, f_recent, n_before, f_before in rows:
        n_recent, n_before = int(n_recent or 0), int(n_before or 0)
        b_recent, b_before = bounces.get(slug, (0, 0))
        if n_recent < FAILURE_MIN:
            continue
        rate = (int(f_recent or 0) + b_recent) / n_recent
        normal = (int(f_before or 0) + b_before) / n_before if n_before else 0.0
        if rate > max(2 * normal, normal + 0.10):
            found.append(
                Alert(
                    slug,
                    "failure_rate",
                    f"{rate:.0%} of messages failed or bounced in the last 24 h "
                    f"(normally {normal:.0%})",
                    "deliveries",
                )
            )
    return found


def failing_sinks(store: Store, slugs: list[str], now: datetime) -> list[Alert]:
    """A sink whose last ``PERMANENT_MIN`` or more deliveries failed permanently, with no
    message sent since (an expired token, a template the provider no longer has)."""
    since = now - timedelta(days=7)
    # a delivery ends within hours of its creation (retries wait at most HUB_RETRY_MAX), so
    # one that failed in the window was created at most a day before it: the bound lets
    # ix_deliveries_created find the rows without reading older ones
    window = sa.and_(
        deliveries.c.tenant.in_(slugs),
        deliveries.c.created_at >= since - timedelta(days=1),
        deliveries.c.updated_at >= since,
    )
    last_sent = (
        sa.select(deliveries.c.tenant, deliveries.c.sink, sa.func.max(deliveries.c.sent_at))
        .where(window)
        .group_by(deliveries.c.tenant, deliveries.c.sink)
    )
    failures = (
        sa.select(
            deliveries.c.tenant, deliveries.c.sink, deliveries.c.updated_at, deliveries.c.reason
        )
        .where(window, deliveries.c.status == "failed")
        .order_by(deliveries.c.updated_at)
    )
    with store.begin() as conn:
        sent = {(t, sink): at for t, sink, at in conn.execute(last_sent).all()}
        failed = conn.execute(failures).all()
    since_sent: dict[tuple[str, str], list[Any]] = {}
    for slug, sink, at, reason in failed:
        last_ok = sent.get((slug, sink))
        if last_ok is None or at >= last_ok:
            since_sent.setdefault((slug, sink), []).append(reason)
    return [
        Alert(
            slug,
            "sink_failing",
            f"{sink}: {len(reasons)} messages failed permanently with none sent since; "
            f"last: {reasons[-1] or 'no reason given'}",
            "deliveries",
        )
        for (slug, sink), reasons in since_sent.items()
        if len(reasons) >= PERMANENT_MIN
    ]


def backlog(store: Store, slugs: list[str], now: datetime) -> list[Alert]:
    """Steps overdue by more than ``OVERDUE`` and events waiting more than ``BACKLOG``: no
    worker is running, or the workers cannot keep up."""
    overdue = (
        sa.select(journeys.c.tenant, sa.func.count(), sa.func.min(steps.c.due_at))
        .select_from(steps.join(journeys, journeys.c.id == steps.c.journey_id))
        .where(
            journeys.c.tenant.in_(slugs),
            steps.c.status == "scheduled",
            steps.c.due_at < now - OVERDUE,
        )
        .group_by(journeys.c.tenant)
    )
    waiting = (
        sa.select(events.c.tenant, sa.func.count(), sa.func.min(events.c.received_at))
        .where(
            events.c.status.in_(("stored", "queued")),
            events.c.received_at < now - BACKLOG,
            events.c.tenant.in_(slugs),
        )
        .group_by(events.c.tenant)
    )
    with store.begin() as conn:
        steps_late = conn.execute(overdue).all()
        events_late = conn.execute(waiting).all()
    found = [
        Alert(slug, "backlog", f"{n} steps overdue (oldest due {_ago(now - oldest)} ago)", "queue")
        for slug, n, oldest in steps_late
    ]
    found += [
        Alert(
            slug,
            "backlog",
            f"{n} webhooks not processed yet (oldest {_ago(now - oldest)} ago)",
            "queue",
        )
        for slug, n, oldest in events_late
    ]
    return found


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{max(seconds, 0)} s"


def by_tenant(alerts: Iterable[Alert]) -> dict[str, list[Alert]]:
    grouped: dict[str, list[Alert]] = {}
    for alert in alerts:
        grouped.setdefault(alert.tenant, []).append(alert)
    return grouped
