"""``hub replay``: what the current or a proposed flow definition would have done with the
stored events of a period, against what the hub did (:mod:`hub.replay`).

Without ``--apply`` it only reads the hub's database (the replay itself runs on a temporary
one) and creates nothing; ``--apply`` schedules the added messages for real.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from hub.cliparams import SINCE, known_tenant, require_database
from hub.current import current_hub
from hub.durations import format_duration
from hub.replay import Change, Message, Replay, apply_added, replay
from hub.tenants import with_proposed_flows


@click.command("replay")
@click.argument("tenant_slug")
@click.option(
    "--since",
    type=SINCE,
    required=True,
    help="Checkouts abandoned from then: 7d, or an ISO date or time (UTC without a zone).",
)
@click.option("--until", type=SINCE, default=None, help="…and before then (default: now).")
@click.option(
    "--flow",
    "flow_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A TOML file of [[flows]] to try instead of the tenant's own.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option(
    "--apply",
    "apply",
    is_flag=True,
    help="Schedule the added messages for real (open journeys with a live link only; "
    "running it twice sends nothing twice).",
)
def replay_command(
    tenant_slug: str,
    since: datetime,
    until: datetime | None,
    flow_file: Path | None,
    as_json: bool,
    apply: bool,
) -> None:
    """Replay TENANT_SLUG's stored events of a period through its flows (or those of --flow)
    on a throw-away copy with a fake clock, and print per person and in total which messages
    would be added, dropped, moved in time or switched to another channel. Sends nothing
    unless --apply is given."""
    hub = current_hub()
    tenant = known_tenant(hub, tenant_slug)
    now = datetime.now(UTC)
    until = until or now
    if until <= since:
        raise click.BadParameter(
            f"{until.isoformat()} is before --since {since.isoformat()}", param_hint="'--until'"
        )
    if apply and flow_file is not None:
        raise click.UsageError(
            "--apply sends with the tenant's own flows: put the proposed flows into "
            f"{tenant.path} first, then replay without --flow"
        )
    require_database(hub)
    if flow_file is not None:
        proposed, issues = with_proposed_flows(
            tenant, flow_file, hub.sources, hub.sinks, os.environ, templates=hub.renderer
        )
        if proposed is None:
            raise click.BadParameter(str(issues[0]), param_hint="'--flow'")
        tenant = proposed
    result = replay(hub, tenant, since, until, flows=str(flow_file) if flow_file else None, now=now)
    if apply:
        result.applied = apply_added(hub, tenant, result)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        _print(result, tenant)


def _print(result: Replay, tenant: Any) -> None:
    click.echo(
        f"{result.tenant}: checkouts abandoned {_local(result.since, tenant)} to "
        f"{_local(result.until, tenant)}, replayed through the flows of {result.flows} "
        f"(as of {_local(result.as_of, tenant)})"
    )
    for changes in result.by_person():
        click.echo(changes[0].person)
        for change in changes:
            click.echo(f"  {_describe(change, tenant)}")
    t = result.totals()
    click.echo(
        f"{t['checkouts']} checkout(s) of {t['people']} person(s): {t['happened']} message(s) "
        f"happened or are scheduled, {t['would']} would be; added {t['added']}, dropped "
        f"{t['dropped']}, moved {t['moved']}, switched {t['switched']}, unchanged "
        f"{t['unchanged']}"
    )
    if result.unreadable:
        click.echo(f"{result.unreadable} stored event(s) could not be read and were left out")
    if result.applied is not None:
        scheduled = [a for a in result.applied if a.outcome == "scheduled"]
        click.echo(f"applied: {len(scheduled)} of {len(result.applied)} added message(s) scheduled")
        for a in result.applied:
            due = f" for {_local(a.due_at, tenant)}" if a.due_at else ""
            click.echo(f"  checkout {a.checkout_id} step {a.step_index}: {a.outcome}{due}")


def _describe(change: Change, tenant: Any) -> str:
    head = f"checkout {change.checkout_id} step {change.step_index} {change.kind}"
    before, after = change.before, change.after
    if change.kind == "added":
        assert after is not None
        return f"{head}: {_message(after, tenant)}"
    if change.kind == "dropped":
        assert before is not None
        return f"{head}: {_message(before, tenant)} (what happened)"
    assert before is not None and after is not None
    moved = change.moved_by
    shift = ""
    if moved is not None and moved:
        sign = "+" if moved.total_seconds() > 0 else "-"
        shift = f" {sign}{format_duration(abs(moved))}"
    if change.kind == "switched":
        return f"{head} {before.sink} → {after.sink}{shift} (due {_local(after.due_at, tenant)})"
    return f"{head}{shift}: due {_local(before.due_at, tenant)} → {_local(after.due_at, tenant)}"


def _message(message: Message, tenant: Any) -> str:
    if message.sink is None:
        return f"scheduled for {_local(message.due_at, tenant)}"
    return f"via {message.sink} ({message.channel}), due {_local(message.due_at, tenant)}"


def _local(when: datetime, tenant: Any) -> str:
    return when.astimezone(tenant.timezone).strftime("%Y-%m-%d %H:%M %Z")
