"""``hub flow preview`` and ``hub flow simulate``: see what a flow would do, sending nothing.

Preview answers "what happens to this one event": the matching flow, each step's fire time in
the tenant's zone (quiet hours applied), the channel that would be chosen and the rendered
message. Simulate runs a file of events through the real engine on a throw-away database with a
fake clock and dry-run sinks, and prints what would be sent when.
"""

from __future__ import annotations

import heapq
import itertools
import json
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
from marshmallow import ValidationError
from werkzeug.datastructures import Headers

from hub import current_hub
from hub.conditions import facts_for
from hub.engine import Engine
from hub.events import dump_event, first_error_field, load_event
from hub.hookspecs import InboundRequest, OutboundMessage
from hub.logs import mask
from hub.store import Store
from hub.templates import TemplateMissing, message_locales


@click.group("flow")
def flow_group() -> None:
    """Preview and simulate recovery flows without sending anything."""


def _read_events(
    hub: Any, tenant: Any, path: Path, source: str | None, headers: tuple[str, ...]
) -> list[dict]:
    """Normalized events from a file: our event JSON (one, a list, or JSON lines), or with
    ``--source`` a platform payload exactly as it would be posted (not verified)."""
    raw = path.read_bytes()
    if source:
        plugin = hub.sources.get(source)
        if plugin is None or source not in tenant.sources:
            raise click.ClickException(f"source {source!r} is not enabled for {tenant.slug}")
        header_map = Headers([tuple(h.split(":", 1)) for h in headers])
        content_type = header_map.get("Content-Type", "application/json")
        request = InboundRequest(
            tenant.slug,
            source,
            "POST",
            raw,
            header_map,
            {},
            content_type.split(";")[0],
            datetime.now(UTC),
        )
        items = plugin.parse(request, tenant.sources[source])
    else:
        text = raw.decode()
        try:
            data = json.loads(text)
            items = data if isinstance(data, list) else [data]
        except json.JSONDecodeError:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
    events = []
    for i, item in enumerate(items):
        item = {"source": source or item.get("source", "preview"), **item, "tenant": tenant.slug}
        try:
            events.append(load_event(item))
        except ValidationError as exc:
            field, message = first_error_field(exc.messages)
            raise click.ClickException(f"{path}: event {i}: {field}: {message}") from None
    return events


def _tenant(hub: Any, slug: str) -> Any:
    tenant = hub.tenants.get(slug)
    if tenant is None:
        raise click.ClickException(f"no tenant {slug!r} (see `hub config check`)")
    return tenant


@flow_group.command("preview")
@click.argument("tenant_slug")
@click.argument("event_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default=None, help="The file is this source's raw payload.")
@click.option("--header", "headers", multiple=True, help="Header for --source, 'Name: value'.")
def preview(
    tenant_slug: str, event_file: Path, source: str | None, headers: tuple[str, ...]
) -> None:
    """Print which flow matches EVENT_FILE, when each step fires, the channel that would be
    chosen and the rendered message. Nothing is stored or sent."""
    hub = current_hub()
    tenant = _tenant(hub, tenant_slug)
    engine = Engine(hub)
    for event in _read_events(hub, tenant, event_file, source, headers):
        if event["kind"] != "checkout.abandoned":
            click.echo(f"{event['kind']} {event['checkout_id']}: only abandonments start a flow")
            continue
        with hub.store.begin() as conn:
            flow = engine._choose_flow(conn, tenant, event)
        if flow is None:
            click.echo(f"no flow of {tenant.slug} matches checkout {event['checkout_id']}")
            continue
        click.echo(
            f"flow {flow.name!r} for checkout {event['checkout_id']} "
            f"(abandoned {_local(event['occurred_at'], tenant)})"
        )
        stored = dump_event({**event, "raw": None})
        journey = SimpleNamespace(
            id=0, tenant=tenant.slug, event=stored, checkout_id=event["checkout_id"]
        )
        facts = facts_for(event, tenant.currency)

        def counter(within: timedelta, event: dict = event) -> int:
            with hub.store.begin() as conn:  # one short read per question, no lock held
                return engine._abandon_counter(conn, tenant, event)(within)

        for step in flow.steps:
            due = engine.due_time(tenant, stored, event["occurred_at"] + step.after)
            head = f"  step {step.index} at {_local(due, tenant)} ({step.template})"
            expires = event.get("recovery_expires_at")
            if expires is not None and expires <= due:
                click.echo(f"{head}: skipped (recovery URL expired)")
                continue
            if step.when is not None and not step.when.holds(facts, counter):
                click.echo(f"{head}: skipped (condition not met)")
                continue
            click.echo(f"{head}: {_choose_channel(engine, tenant, journey, step, stored)}")


def _choose_channel(engine: Engine, tenant: Any, journey: Any, step: Any, event: dict) -> str:
    reasons = []
    for name in step.channels:
        sink = engine.hub.sinks.get(name)
        config = tenant.sinks.get(name)
        if sink is None or config is None:
            reasons.append(f"{name}: not installed")
            continue
        context = engine.context(tenant, journey, step, sink)
        address, _status, reason = engine._eligibility(
            tenant, journey, sink, config, event, context
        )
        if address is None:
            reasons.append(f"{name}: {reason}")
            continue
        candidates = message_locales(sink, tenant, event)
        if not getattr(sink, "renders_templates", True):
            skipped = f" (skipped: {'; '.join(reasons)})" if reasons else ""
            return (
                f"{name} → {mask(address)} [{candidates[0]}]{skipped}: the provider renders "
                f"its own template for {step.template!r}"
            )
        try:
            locale, parts = engine.hub.renderer.render(
                tenant.slug, step.template, sink.channel, candidates, context
            )
        except TemplateMissing as exc:
            reasons.append(f"{name}: {exc}")
            continue
        shown = "\n".join(f"      --- {ext} ---\n" + _indent(text) for ext, text in parts.items())
        skipped = f" (skipped: {'; '.join(reasons)})" if reasons else ""
        return f"{name} → {mask(address)} [{locale}]{skipped}\n{shown}"
    return "nothing would be sent: " + "; ".join(reasons)


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.strip().splitlines())


def _local(when: datetime, tenant: Any) -> str:
    return when.astimezone(tenant.timezone).strftime("%Y-%m-%d %H:%M:%S %Z")


# ------------------------------------------------------------------------------- simulate


class _SimQueues:
    """Stands in for RQ: jobs go onto a heap ordered by due time."""

    def __init__(self) -> None:
        self.heap: list[tuple[datetime, int, str, tuple]] = []
        self.seq = itertools.count()
        self.url = "simulated"
        self.now = datetime.now(UTC)

    def _push(self, due: datetime, kind: str, args: tuple) -> None:
        heapq.heappush(self.heap, (max(due, self.now), next(self.seq), kind, args))

    def enqueue_event(self, event_id: int) -> None:
        self._push(self.now, "event", (event_id,))

    def schedule_step(self, step_id: int, due_at: datetime, attempt: int = 0) -> None:
        self._push(due_at, "step", (step_id, attempt))

    def schedule_check(self, journey_id: int, update_at: datetime, due_at: datetime) -> None:
        self._push(due_at, "check", (journey_id, update_at.isoformat()))


class _DryRunSink:
    """A sink's own address logic, but send() only records."""

    def __init__(self, sink: Any, sent: list) -> None:
        self.sink = sink
        self.sent = sent

    def __getattr__(self, name: str) -> Any:  # name, channel, needs_consent, … of the real sink
        return getattr(self.sink, name)

    def address(self, customer: Any, config: Any, context: Any) -> str | None:
        return self.sink.address(customer, config, context)

    def send(self, message: OutboundMessage, config: Any) -> str:
        self.sent.append(message)
        return f"dry-run-{message.delivery_id}"


@dataclass
class _SimHub:
    settings: Any
    store: Store
    queues: _SimQueues
    tenants: dict
    sinks: dict
    sources: dict
    renderer: Any

    def public_url(self, port: int = 8000) -> str:
        return self.settings.public_url or f"http://127.0.0.1:{port}"


@flow_group.command("simulate")
@click.argument("tenant_slug")
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--until",
    "horizon",
    default="30d",
    show_default=True,
    help="Simulate this long after the last event.",
)
def simulate(tenant_slug: str, events_file: Path, horizon: str) -> None:
    """Run EVENTS_FILE (normalized events: a JSON list or JSON lines, with occurred_at) through
    the engine with a fake clock; print what would be sent when. Nothing is sent."""
    from hub.durations import parse_duration
    from hub.ingress import store_event

    hub = current_hub()
    tenant = _tenant(hub, tenant_slug)
    events = sorted(
        _read_events(hub, tenant, events_file, None, ()), key=lambda e: e["occurred_at"]
    )
    if not events:
        raise click.ClickException("no events in the file")
    sent: list[OutboundMessage] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/simulate.db")
        store.create_all()
        queues = _SimQueues()
        sim = _SimHub(
            replace(hub.settings, retry_base=60.0),
            store,
            queues,
            {tenant.slug: tenant},
            {n: _DryRunSink(s, sent) for n, s in hub.sinks.items()},
            hub.sources,
            hub.renderer,
        )
        clock = {"now": events[0]["occurred_at"]}
        engine = Engine(sim, clock=lambda: clock["now"])
        end = events[-1]["occurred_at"] + parse_duration(horizon)
        pending = list(events)
        while pending or queues.heap:
            next_event = pending[0]["occurred_at"] if pending else None
            next_job = queues.heap[0][0] if queues.heap else None
            if next_event is not None and (next_job is None or next_event <= next_job):
                event = pending.pop(0)
                clock["now"] = queues.now = event["occurred_at"]
                event_id = store_event(store, event, None, clock["now"])
                if event_id is None:
                    click.echo(f"{_local(clock['now'], tenant)}  duplicate {event['event_key']}")
                    continue
                note = engine.process_event(event_id)
                click.echo(
                    f"{_local(clock['now'], tenant)}  {event['kind']} "
                    f"{event['checkout_id']}: {note}"
                )
                continue
            due, _seq, kind, args = heapq.heappop(queues.heap)
            if due > end:
                break
            clock["now"] = queues.now = due + timedelta(seconds=1)
            before = len(sent)
            if kind == "event":
                engine.process_event(*args)
                continue
            note = engine.run_step(*args) if kind == "step" else engine.check_abandonment(*args)
            for message in sent[before:]:
                subject = message.parts.get("subject", message.parts.get("title", "")).strip()
                click.echo(
                    f"{_local(due, tenant)}  SEND journey {message.journey_id} step "
                    f"{message.step_index} via {message.channel} to {mask(message.to)}"
                    f"{': ' + subject if subject else ''}"
                )
            if len(sent) == before and note not in ("nothing to do", "early; rescheduled"):
                click.echo(f"{_local(due, tenant)}  {kind} {args[0]}: {note}")
        store.dispose()
    click.echo(f"{len(sent)} message(s) would be sent")
