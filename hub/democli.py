"""``hub demo``: post a signed sample abandonment to a running hub and report, from the
database, what the hub did with it.

Only the demo tenant is used unless the user names another with ``--tenant``: every other
tenant's sinks are real (a client's SMTP server, its WhatsApp number), and a sample posted
there reaches a real inbox. The report follows the sample through the stored event, its
journey, the steps and the delivery log, so it says what actually happened ("skipped:
frequency cap") instead of guessing from a timeout that the hub is not running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import requests
import sqlalchemy as sa

from hub.cliparams import known_tenant, require_database
from hub.current import current_hub
from hub.store import delivery_log, events, journeys, steps

DEMO_TENANT = "demo"
POLL = 0.5
# a worker takes a queued event within a second; this long without one means none is running
WORKER_GRACE = 10.0
# RQ's scheduler moves due jobs every few seconds: a step this late was not picked up
LATE = timedelta(seconds=10)


@click.command("demo")
@click.option(
    "--url",
    default=None,
    help="Base URL of the running hub (default HUB_PUBLIC_URL or http://127.0.0.1:8000).",
)
@click.option(
    "--tenant",
    "tenant_slug",
    default=DEMO_TENANT,
    show_default=True,
    help="Tenant to post to. Its sinks are real: another tenant's customers-to-be get a real "
    "message through that tenant's channels.",
)
@click.option(
    "--wait",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to follow what the hub does with the sample.",
)
def demo_command(url: str | None, tenant_slug: str, wait: float) -> None:
    """Post a correctly signed sample abandonment to the demo tenant of the running hub, then
    show what the hub does with it: the journey, each step and the delivery log."""
    hub = current_hub()
    tenant = known_tenant(hub, tenant_slug, "--tenant")
    require_database(hub)
    base = (url or hub.public_url()).rstrip("/")
    now = datetime.now(UTC)
    samples = [
        (name, sample)
        for name, config in tenant.sources.items()
        if (sample := hub.sources[name].demo_request(config, now)) is not None
    ]
    if not samples:
        raise click.ClickException(
            f"no source of tenant {tenant.slug} has a demo sample "
            f"({', '.join(tenant.sources) or 'no sources'})"
        )
    with hub.store.begin() as conn:
        after = conn.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0
    accepted = sum(_post(base, tenant.slug, name, sample) for name, sample in samples)
    if not accepted:
        raise click.ClickException(f"the hub at {base} accepted no sample (answers above)")
    click.echo(f"following the sample(s) for up to {wait:.0f}s …")
    trail = Trail(tenant.slug, after)
    _follow(hub, trail, wait)
    _conclude(hub, trail, base)


def _post(base: str, slug: str, source: str, sample: Any) -> bool:
    target = f"{base}/webhooks/{slug}/{source}"
    try:
        answer = requests.post(target, data=sample.body, headers=dict(sample.headers), timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"cannot reach the hub at {base}: is `hub run` running? ({exc.__class__.__name__})"
        ) from None
    click.echo(
        f"posted {sample.description} to {target}: {answer.status_code} {answer.text.strip()[:120]}"
    )
    return answer.ok


@dataclass
class Trail:
    """What the hub has done so far with the events stored after ``after``."""

    tenant: str
    after: int
    events: list[Any] = field(default_factory=list)
    journeys: list[Any] = field(default_factory=list)
    steps: list[Any] = field(default_factory=list)
    shown_events: set[int] = field(default_factory=set)
    last_log: int = 0
    sent: int = 0
    not_sent: list[str] = field(default_factory=list)

    def read(self, conn: sa.Connection) -> list[Any]:
        """Refresh from the database; return the delivery-log rows not shown yet."""
        self.events = conn.execute(
            sa.select(events)
            .where(events.c.tenant == self.tenant, events.c.id > self.after)
            .order_by(events.c.id)
        ).all()
        checkouts = {e.checkout_id for e in self.events}
        self.journeys = conn.execute(
            sa.select(journeys).where(
                journeys.c.tenant == self.tenant, journeys.c.checkout_id.in_(checkouts)
            )
        ).all()
        ids = [j.id for j in self.journeys]
        self.steps = conn.execute(
            sa.select(steps).where(steps.c.journey_id.in_(ids)).order_by(steps.c.id)
        ).all()
        return conn.execute(
            sa.select(delivery_log)
            .where(delivery_log.c.journey_id.in_(ids), delivery_log.c.id > self.last_log)
            .order_by(delivery_log.c.id)
        ).all()

    def unprocessed(self) -> list[Any]:
        return [e for e in self.events if e.status in ("stored", "queued")]

    def waiting(self, horizon: datetime) -> list[str]:
        """What is still to happen before ``horizon``: steps due and open abandonment windows."""
        due = [
            f"step {s.step_index} of journey {s.journey_id} (due {s.due_at:%H:%M:%S} UTC)"
            for s in self.steps
            if s.status in ("scheduled", "retrying", "running") and s.due_at <= horizon
        ]
        return due + [
            f"journey {j.id} (waiting out its abandonment window)"
            for j in self.journeys
            if j.status == "pending"
        ]

    def later(self, horizon: datetime) -> list[str]:
        return [
            f"step {s.step_index} of journey {s.journey_id} is due at {s.due_at:%Y-%m-%d %H:%M:%S}"
            " UTC"
            for s in self.steps
            if s.status in ("scheduled", "retrying") and s.due_at > horizon
        ]


def _follow(hub: Any, trail: Trail, wait: float) -> None:
    """Print events as the worker processes them and delivery-log rows as they appear, until
    nothing more is due within ``wait`` seconds."""
    started = time.monotonic()
    deadline = started + wait
    while True:
        with hub.store.begin() as conn:
            rows = trail.read(conn)
        for event in trail.events:
            if event.id not in trail.shown_events and event.status not in ("stored", "queued"):
                trail.shown_events.add(event.id)
                click.echo(f"  event {event.id} {event.kind}: {event.note or event.status}")
        for row in rows:
            trail.last_log = row.id
            click.echo(
                f"  {row.at:%H:%M:%S} journey {row.journey_id} step {row.step_index} "
                f"{row.sink or '-'}: {row.status}{' (' + row.reason + ')' if row.reason else ''}"
            )
            trail.sent += row.status == "sent"
            if row.sink and row.status in ("skipped", "failed", "unknown"):
                trail.not_sent.append(f"{row.sink}: {row.status}, {row.reason}")
        horizon = datetime.now(UTC) + _remaining(deadline)
        settled = trail.events and not trail.unprocessed() and not trail.waiting(horizon)
        idle_worker = trail.unprocessed() and time.monotonic() - started > WORKER_GRACE
        if settled or idle_worker or time.monotonic() >= deadline:
            return
        time.sleep(POLL)


def _remaining(deadline: float) -> timedelta:
    return timedelta(seconds=max(deadline - time.monotonic(), 0))


def _conclude(hub: Any, trail: Trail, base: str) -> None:
    """Say what happened, exit 1 only when the hub did not do its part."""
    if not trail.events:
        where = hub.store.engine.url.render_as_string(hide_password=True)
        raise click.ClickException(
            f"the hub at {base} answered, but no event arrived in {where}: does it use the same "
            "DATABASE_URL / HUB_VAR_DIR as this command?"
        )
    if trail.unprocessed():
        raise click.ClickException(
            "the sample is stored but no worker processed it: is `hub run` (or `hub worker`) "
            "running?"
        )
    now = datetime.now(UTC)
    overdue = [w for w in trail.waiting(now - LATE) if w.startswith("step")]
    if overdue:
        raise click.ClickException(
            f"{overdue[0]} was not run: is a worker with the scheduler running (`hub run`, "
            "`hub worker`)? see `hub log`"
        )
    for line in trail.later(now):
        click.echo(f"  {line}: `hub log --tenant {trail.tenant}` will show it")
    if trail.waiting(now):
        click.echo(f"  still in progress: {'; '.join(trail.waiting(now))}; see `hub log`")
    if trail.sent:
        click.echo(f"done: {trail.sent} message(s) sent")
    elif trail.not_sent:
        click.echo(f"done: nothing was sent ({'; '.join(trail.not_sent)})")
    else:
        journeys_closed = [f"journey {j.id}: {j.status}" for j in trail.journeys]
        click.echo(f"done: nothing to send ({'; '.join(journeys_closed) or 'no journey'})")
