"""``hub flow preview`` and ``hub flow simulate``: see what a flow would do, sending nothing.

Preview answers "what happens to this one event": the matching flow, each step's fire time in
the tenant's zone (quiet hours applied), the channel that would be chosen and the rendered
message. Simulate runs a file of events through the real engine on a throw-away database with a
fake clock and dry-run sinks, and prints what would be sent when.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
from marshmallow import ValidationError
from werkzeug.datastructures import Headers

from hub.cliparams import DURATION, known_tenant
from hub.conditions import facts_for
from hub.current import current_hub
from hub.durations import format_duration
from hub.engine import Engine, inferred_abandonment
from hub.engine.flows import HOLDOUT
from hub.events import dump_event, first_error_field, identity_of, load_event
from hub.holdout import in_holdout
from hub.hookspecs import InboundRequest, PayloadError
from hub.logs import mask
from hub.simulation import Arrival, Happening, history, simulation
from hub.templates import TemplateMissing, message_locales


@click.group("flow")
def flow_group() -> None:
    """Preview and simulate recovery flows without sending anything."""


def _read_events(
    hub: Any,
    tenant: Any,
    path: Path,
    param: str,
    source: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> list[dict]:
    """Normalized events from a file: our event JSON (one, a list, or JSON lines), or with
    ``--source`` a platform payload exactly as it would be posted (not verified). Anything
    wrong with the file is a usage error naming the file (``param`` is the argument)."""
    return read_events(hub, tenant, path.read_bytes(), path, param, source, headers)


def read_events(
    hub: Any,
    tenant: Any,
    raw: bytes,
    path: Path,
    param: str,
    source: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> list[dict]:
    """:func:`_read_events` on bytes already read (the dashboard's pasted or uploaded event);
    ``path`` only names them in messages. Mistakes raise :class:`click.BadParameter`."""
    if source:
        items = _parse_payload(hub, tenant, path, param, raw, source, headers)
    else:
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            raise click.BadParameter(
                f"{path}: not UTF-8 text (byte {exc.start})", param_hint=param
            ) from None
        items = _json_items(text, path, param)
    events = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise click.BadParameter(
                f"{path}: event {i}: expected a JSON object, got {type(item).__name__}",
                param_hint=param,
            )
        # The file holds what the generic webhook accepts (docs/webhook.md), where the platform's
        # delivery id is the key; a saved file has none, so its place in the file is the key.
        item = {
            "source": source or item.get("source", "preview"),
            "event_key": f"{path.name}:{i}",
            **item,
            "tenant": tenant.slug,
        }
        try:
            events.append(load_event(item))
        except ValidationError as exc:
            field, message = first_error_field(exc.messages)
            raise click.BadParameter(
                f"{path}: event {i}: {field}: {message}", param_hint=param
            ) from None
    return events


def _json_items(text: str, path: Path, param: str) -> list[Any]:
    """One JSON document (an object or a list), else JSON lines; a mistake names its line."""
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError as whole:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not lines or not _is_json(lines[0][1]):  # one document with a mistake in it
            raise click.BadParameter(
                f"{path}: not JSON: {whole.msg} (line {whole.lineno}, column {whole.colno})",
                param_hint=param,
            ) from None
    items = []
    for number, line in lines:
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise click.BadParameter(
                f"{path}: line {number} is not JSON: {exc.msg} (column {exc.colno}); JSON "
                "lines need one event per line",
                param_hint=param,
            ) from None
    return items


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _parse_payload(
    hub: Any,
    tenant: Any,
    path: Path,
    param: str,
    raw: bytes,
    source: str,
    headers: tuple[tuple[str, str], ...],
) -> list[dict]:
    """The source's own parse, with the headers a file cannot carry (the source's
    ``preview_headers``) under the user's ``--header`` values."""
    plugin = hub.sources.get(source)
    if plugin is None or source not in tenant.sources:
        enabled = ", ".join(tenant.sources) or "none"
        raise click.BadParameter(
            f"source {source!r} is not enabled for {tenant.slug} (enabled: {enabled})",
            param_hint="--source",
        )
    config = tenant.sources[source]
    header_map = Headers(dict(plugin.preview_headers(config)))
    for name, value in headers:
        header_map.set(name, value)
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
    try:
        return plugin.parse(request, config)
    except PayloadError as exc:
        field = exc.field or "body"
        hint = f" (give it with --header '{field}: …')" if _HEADER.match(field) else ""
        raise click.BadParameter(
            f"{path}: {field}: {exc.message}{hint}", param_hint=param
        ) from None
    except Exception as exc:  # plugin code: name the plugin, never a traceback
        raise click.ClickException(
            f"source {source} failed to parse {path}: {exc.__class__.__name__}: {exc}"
        ) from exc


# "X-Shopify-Topic", "Webhook-Id": a payload field the user can only give as a header
_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)+$")


def _header_values(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    parsed = []
    for text in values:
        name, colon, value = text.partition(":")
        if not colon or not name.strip():
            raise click.BadParameter(f"{text!r} is not 'Name: value'", ctx, param)
        parsed.append((name.strip(), value.strip()))
    return tuple(parsed)


@flow_group.command("preview")
@click.argument("tenant_slug")
@click.argument("event_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default=None, help="The file is this source's raw payload.")
@click.option(
    "--header",
    "headers",
    multiple=True,
    callback=_header_values,
    help="Header for --source, 'Name: value' (repeatable).",
)
def preview(
    tenant_slug: str,
    event_file: Path,
    source: str | None,
    headers: tuple[tuple[str, str], ...],
) -> None:
    """Print which flow matches EVENT_FILE, when each step fires, the channel that would be
    chosen and the rendered message. Nothing is stored or sent.

    For a source that infers abandonment (its tenant has ``abandon_after``), a checkout update
    is previewed as the abandonment it becomes when nothing converts it in time."""
    if headers and not source:
        raise click.UsageError("--header needs --source (headers belong to a raw payload)")
    hub = current_hub()
    tenant = known_tenant(hub, tenant_slug)
    events = _read_events(hub, tenant, event_file, "'EVENT_FILE'", source, headers)
    with history(hub) as on_history:
        for found in preview_events(Engine(on_history), tenant, events):
            _print_preview(found, tenant)


@dataclass
class ChannelChoice:
    """What one step would send: the sink and masked address chosen, the locale, the sinks
    passed over and why, and the rendered parts (``{"subject": …, "html": …}``); ``sink``
    is ``None`` when nothing would be sent."""

    sink: str | None
    address: str | None = None
    locale: str | None = None
    passed_over: list[str] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)
    provider_template: str | None = None  # the provider renders its own template of this name

    def describe(self) -> str:
        """The line ``hub flow preview`` prints for the step (parts follow it)."""
        if self.sink is None:
            return "nothing would be sent: " + "; ".join(self.passed_over)
        skipped = f" (skipped: {'; '.join(self.passed_over)})" if self.passed_over else ""
        head = f"{self.sink} → {self.address} [{self.locale}]{skipped}"
        if self.provider_template is not None:
            return f"{head}: the provider renders its own template for {self.provider_template!r}"
        return head


@dataclass
class StepPreview:
    """One step of the matched flow: when it fires (UTC) and what it would do."""

    index: int
    due: datetime
    template: str
    skipped: str | None = None  # why the step is skipped, or None
    choice: ChannelChoice | None = None


@dataclass
class Preview:
    """What one event leads to: a note when it starts nothing (or starts an inferred
    abandonment), the abandonment previewed, the matched flow and its steps."""

    kind: str
    checkout_id: str
    note: str | None = None
    abandonment: dict | None = None
    flow: str | None = None
    steps: list[StepPreview] = field(default_factory=list)
    # the person is in the flow's holdout group (hub.holdout): tracked, sent nothing
    holdout: str | None = None


def preview_events(engine: Engine, tenant: Any, events: list[dict]) -> list[Preview]:
    """Preview each event as ``hub flow preview`` does; the CLI prints the result, the
    dashboard renders it. Nothing is stored or sent."""
    found = []
    for event in events:
        preview = Preview(event["kind"], event["checkout_id"])
        preview.abandonment, preview.note = _as_abandonment(tenant, event)
        if preview.abandonment is not None:
            _preview_one(engine, tenant, preview.abandonment, preview)
        found.append(preview)
    return found


def _print_preview(preview: Preview, tenant: Any) -> None:
    if preview.note:
        click.echo(f"{preview.kind} {preview.checkout_id}: {preview.note}")
    event = preview.abandonment
    if event is None:
        return
    if preview.flow is None:
        click.echo(f"no flow of {tenant.slug} matches checkout {event['checkout_id']}")
        return
    click.echo(
        f"flow {preview.flow!r} for checkout {event['checkout_id']} "
        f"(abandoned {_local(event['occurred_at'], tenant)})"
    )
    if preview.holdout:
        click.echo(f"  {preview.holdout}")
    for step in preview.steps:
        head = f"  step {step.index} at {_local(step.due, tenant)} ({step.template})"
        if step.skipped is not None:
            click.echo(f"{head}: skipped ({step.skipped})")
            continue
        assert step.choice is not None
        shown = "".join(
            f"\n      --- {ext} ---\n" + _indent(text) for ext, text in step.choice.parts.items()
        )
        click.echo(f"{head}: {step.choice.describe()}{shown}")


def _as_abandonment(tenant: Any, event: dict) -> tuple[dict | None, str | None]:
    """The abandonment ``event`` leads to and a note saying so when it is inferred; ``None``
    and why for an event that starts no flow."""
    kind = event["kind"]
    if kind == "checkout.abandoned":
        return event, None
    window = tenant.abandon_after.get(event["source"])
    if kind != "checkout.updated" or window is None:
        why = (
            f"{event['source']} does not infer abandonment for {tenant.slug}"
            if kind == "checkout.updated"
            else "only abandonments start a flow"
        )
        return None, why
    update_at = event["occurred_at"]
    note = (
        f"unless the checkout converts or is deleted first, the hub infers "
        f"its abandonment at {_local(update_at + window, tenant)} (abandon_after "
        f"{format_duration(window)}); previewing that abandonment"
    )
    inferred = inferred_abandonment(dump_event({**event, "raw": None}), update_at, window)
    return load_event(inferred), note


def _preview_one(engine: Engine, tenant: Any, event: dict, preview: Preview) -> None:
    with engine.store.begin() as conn:
        flow = engine.choose_flow(conn, tenant, event)
    if flow is None:
        return
    preview.flow = flow.name
    email, phone = identity_of(event["customer"])
    if in_holdout(tenant.slug, flow.holdout, email, phone, event["checkout_id"]):
        preview.holdout = (
            f"in the holdout group ({flow.holdout:.0%} of {flow.name!r}): "
            "no message is sent, the journey is tracked for the comparison"
        )
    stored = dump_event({**event, "raw": None})
    journey = SimpleNamespace(
        id=0,
        token="preview",
        tenant=tenant.slug,
        event=stored,
        checkout_id=event["checkout_id"],
        abandoned_at=event["occurred_at"],
    )
    facts = facts_for(event, tenant.currency)

    def counter(within: timedelta) -> int:
        with engine.store.begin() as conn:  # one short read per question, no lock held
            return engine.abandon_counter(conn, tenant, event)(within)

    for step in flow.steps:
        due = engine.due_time(tenant, stored, event["occurred_at"] + step.after)
        shown = StepPreview(step.index, due, step.template)
        preview.steps.append(shown)
        dead = engine.dead_link(tenant, step, event, due)
        if preview.holdout:
            shown.skipped = HOLDOUT
        elif dead:
            shown.skipped = dead
        elif step.when is not None and not step.when.holds(facts, counter):
            shown.skipped = "condition not met"
        else:
            shown.choice = choose_channel(engine, tenant, journey, step, stored)


def choose_channel(
    engine: Engine, tenant: Any, journey: Any, step: Any, event: dict
) -> ChannelChoice:
    """The first of the step's channels that would send, as the engine would choose it."""
    reasons = []
    for name in step.channels:
        sink = engine.hub.sinks.get(name)
        config = tenant.sinks.get(name)
        if sink is None or config is None:
            reasons.append(f"{name}: not installed")
            continue
        context = engine.context(tenant, journey, step, sink)
        address, _status, reason = engine.eligibility(tenant, journey, sink, config, event, context)
        if address is None:
            reasons.append(f"{name}: {reason}")
            continue
        candidates = message_locales(sink, tenant, event)
        if not getattr(sink, "renders_templates", True):
            return ChannelChoice(
                name, mask(address), candidates[0], reasons, provider_template=step.template
            )
        try:
            locale, parts = engine.hub.renderer.render(
                tenant.slug, step.template, sink.channel, candidates, context
            )
        except TemplateMissing as exc:
            reasons.append(f"{name}: {exc}")
            continue
        return ChannelChoice(name, mask(address), locale, reasons, dict(parts))
    return ChannelChoice(None, passed_over=reasons)


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.strip().splitlines())


def _local(when: datetime, tenant: Any) -> str:
    return when.astimezone(tenant.timezone).strftime("%Y-%m-%d %H:%M:%S %Z")


# ------------------------------------------------------------------------------- simulate


@flow_group.command("simulate")
@click.argument("tenant_slug")
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--until",
    "horizon",
    type=DURATION,
    default="30d",
    show_default=True,
    help="Simulate this long after the last event (15m, 12h, 7d).",
)
def simulate(tenant_slug: str, events_file: Path, horizon: timedelta) -> None:
    """Run EVENTS_FILE (normalized events: a JSON list or JSON lines, with occurred_at) through
    the engine with a fake clock; print what would be sent when. Nothing is sent."""
    hub = current_hub()
    tenant = known_tenant(hub, tenant_slug)
    events = _read_events(hub, tenant, events_file, "'EVENTS_FILE'")
    if not events:
        raise click.ClickException("no events in the file")
    arrivals = [Arrival(e["occurred_at"], e) for e in events]
    end = max(e["occurred_at"] for e in events) + horizon
    with simulation(hub, tenant) as sim:
        for done in sim.run(arrivals, end):
            _print_happening(done, tenant)
        count = len(sim.sent)
    click.echo(f"{count} message(s) would be sent")


def _print_happening(done: Happening, tenant: Any) -> None:
    """One line per event, per message sent, and per job that did something else."""
    when = _local(done.at, tenant)
    if done.kind.startswith("checkout."):
        if done.note is None:
            click.echo(f"{when}  duplicate {done.event_key}")
        else:
            click.echo(f"{when}  {done.kind} {done.subject}: {done.note}")
        return
    for message in done.sent:
        subject = message.parts.get("subject", message.parts.get("title", "")).strip()
        click.echo(
            f"{when}  SEND journey {message.journey_id} step "
            f"{message.step_index} via {message.channel} to {mask(message.to)}"
            f"{': ' + subject if subject else ''}"
        )
    if not done.sent and done.note not in ("nothing to do", "early; rescheduled"):
        click.echo(f"{when}  {done.kind} {done.subject}: {done.note}")
