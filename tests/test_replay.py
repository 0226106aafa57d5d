"""`hub replay`: stored events through the current or a proposed flow definition, diffed
against what the hub did; `--apply` schedules the added messages once, never for a journey
that converted or whose link expired."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.app import create_app
from hub.console import HubGroup
from hub.engine import Engine
from hub.events import load_event
from hub.ingress import store_event
from hub.replay import REPLAY_MARK
from tests.test_cli import _bare_env

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(days=3)  # the abandonments: long enough ago for every step to be due

TENANT = """
name = "Bakery"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"
frequency_cap = {{ max = 9, per = "1h" }}

[consent]
email = "not_opted_out"

[sources.shopify]
shop_domain = "bakery.myshopify.com"
client_secret = "shpss_test"

[sinks.outbox]
dir = "{outbox}"

[sinks.email]
smtp_url = "{smtp}"
from = "Bakery <shop@bakery.example>"

{flows}
"""

TWO_STEPS = """
[[flows]]
name = "default"
  [[flows.steps]]
  after = "1h"
  channels = ["outbox"]
  template = "reminder"
  [[flows.steps]]
  after = "1d"
  channels = ["outbox"]
  template = "reminder"
"""


def _flows(*steps: tuple[str, str]) -> str:
    """A one-flow [[flows]] text with steps (after, sink)."""
    text = '[[flows]]\nname = "default"\n'
    for after, sink in steps:
        text += (
            f'  [[flows.steps]]\n  after = "{after}"\n  channels = ["{sink}"]\n'
            '  template = "reminder"\n'
        )
    return text


def _event(kind: str, checkout: str, at: datetime, email: str, **extra: object) -> dict:
    return load_event(
        {
            "kind": kind,
            "event_key": f"{kind}:{checkout}:{at.isoformat()}",
            "checkout_id": checkout,
            "occurred_at": at.isoformat(),
            "tenant": "bakery",
            "source": "shopify",
            "customer": {"email": email, "first_name": "Jane"},
            "cart": {"total": 4999, "currency": "EUR"},
            "consent": {"email": "opt_in"},
            **extra,
        }
    )


def _happen(harness, events: list[dict], until: datetime) -> None:  # noqa: ANN001
    """What the hub did: the events through the real engine at their times, every step fired
    at its due time, up to ``until`` (a punctual worker, without RQ in between)."""
    clock = {"now": events[0]["occurred_at"]}
    engine = Engine(harness.hub, clock=lambda: clock["now"])
    pending = sorted(events, key=lambda e: e["occurred_at"])
    while True:
        due = [s for s in harness.rows("steps", status="scheduled") if s.due_at <= until]
        step = min(due, key=lambda s: s.due_at) if due else None
        if pending and (step is None or pending[0]["occurred_at"] <= step.due_at):
            event = pending.pop(0)
            clock["now"] = event["occurred_at"]
            engine.process_event(store_event(harness.hub.store, event, None, clock["now"]))
        elif step is not None:
            clock["now"] = step.due_at + timedelta(seconds=1)
            engine.run_step(step.id)
        else:
            return


@pytest.fixture
def shop(hub_factory, smtp_server, tmp_path):  # noqa: ANN001, ANN201
    """A tenant whose two-step flow ran for Jane three days ago: both reminders sent."""
    text = TENANT.format(outbox=tmp_path / "outbox", smtp=smtp_server.url, flows="@FLOWS@")
    harness = hub_factory({"bakery": text.replace("@FLOWS@", TWO_STEPS)})
    harness.text = text
    _happen(harness, [_event("checkout.abandoned", "c1", T0, "jane@example.com")], NOW)
    assert len(harness.rows("deliveries", status="sent")) == 2
    return harness


def _cli(harness, *args: str):  # noqa: ANN001, ANN202
    group = HubGroup(create_app=lambda create: create_app(harness.config, create_state=create))
    return CliRunner().invoke(group, list(args))


def _replay(harness, *args: str) -> dict:  # noqa: ANN001
    since = (T0 - timedelta(hours=1)).isoformat()
    result = _cli(harness, "replay", "bakery", "--since", since, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _proposal(harness, tmp_path: Path, flows: str) -> str:  # noqa: ANN001
    path = tmp_path / "proposal.toml"
    path.write_text(flows)
    return str(path)


def _only(report: dict) -> dict:
    [person] = report["people"]
    [change] = person["changes"]
    return {**change, "person": person["person"]}


def test_the_same_flows_replayed_change_nothing(shop):
    report = _replay(shop)
    assert report["totals"] == {
        "checkouts": 1,
        "people": 1,
        "happened": 2,
        "would": 2,
        "unchanged": 2,
        "added": 0,
        "dropped": 0,
        "moved": 0,
        "switched": 0,
    }
    assert report["people"] == [] and report["applied"] is None


def test_a_proposed_extra_step_is_added(shop, tmp_path):
    flows = _flows(("1h", "outbox"), ("1d", "outbox"), ("2d", "outbox"))
    report = _replay(shop, "--flow", _proposal(shop, tmp_path, flows))
    change = _only(report)
    assert (change["kind"], change["step"], change["person"]) == ("added", 2, "j***@example.com")
    assert change["after"]["sink"] == "outbox"
    assert datetime.fromisoformat(change["after"]["due_at"]) == T0 + timedelta(days=2)
    assert report["totals"]["added"] == 1 and report["totals"]["unchanged"] == 2


def test_a_changed_delay_moves_the_message(shop, tmp_path):
    flows = _flows(("1h", "outbox"), ("2d", "outbox"))
    report = _replay(shop, "--flow", _proposal(shop, tmp_path, flows))
    change = _only(report)
    assert (change["kind"], change["step"]) == ("moved", 1)
    assert change["moved_by_seconds"] == 86400


def test_a_changed_channel_switches_the_message(shop, tmp_path):
    flows = _flows(("1h", "email"), ("1d", "outbox"))
    report = _replay(shop, "--flow", _proposal(shop, tmp_path, flows))
    change = _only(report)
    assert (change["kind"], change["step"]) == ("switched", 0)
    assert (change["before"]["sink"], change["after"]["sink"]) == ("outbox", "email")
    assert change["moved_by_seconds"] == 0


def test_a_removed_step_is_dropped(shop, tmp_path):
    report = _replay(shop, "--flow", _proposal(shop, tmp_path, _flows(("1h", "outbox"))))
    change = _only(report)
    assert (change["kind"], change["step"], change["after"]) == ("dropped", 1, None)
    assert change["before"]["sink"] == "outbox" and change["before"]["sent_at"]


def test_the_text_report_lists_people_and_totals(shop, tmp_path):
    flows = _flows(("3h", "outbox"), ("1d", "email"))
    since = (T0 - timedelta(hours=1)).isoformat()
    path = _proposal(shop, tmp_path, flows)
    result = _cli(shop, "replay", "bakery", "--since", since, "--flow", path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"replayed through the flows of {path}" in lines[0]
    assert lines[1] == "j***@example.com"
    assert lines[2].startswith("  checkout c1 step 0 moved +2h: due ")
    assert lines[3].startswith("  checkout c1 step 1 switched outbox → email (due ")
    assert lines[4].startswith("1 checkout(s) of 1 person(s): 2 message(s) happened")
    assert "moved 1, switched 1" in lines[4]
    assert "jane@" not in result.stdout


def test_a_broken_proposal_names_its_file_and_key(shop, tmp_path):
    path = _proposal(shop, tmp_path, _flows(("1h", "sms")))
    since = (T0 - timedelta(hours=1)).isoformat()
    result = _cli(shop, "replay", "bakery", "--since", since, "--flow", path)
    assert result.exit_code == 2
    assert f'{path}: flows[0].steps[0].channels[0]: "sms" is not a [sinks.*]' in result.stderr


def test_apply_twice_sends_the_added_message_once(shop, smtp_server):
    """The tenant adds a third step; applying the replay schedules it for Jane's open
    journey, a real worker sends it, and applying again schedules nothing more."""
    (shop.config_dir / "tenants" / "bakery.toml").write_text(
        shop.text.replace("@FLOWS@", _flows(("1h", "outbox"), ("1d", "outbox"), ("2d", "email")))
    )
    first = _replay(shop, "--apply")
    assert first["totals"]["added"] == 1
    assert [a["outcome"] for a in first["applied"]] == ["scheduled"]
    [row] = shop.rows("steps", step_index=2)
    assert (row.status, row.reason) == ("scheduled", REPLAY_MARK)
    again = _replay(shop, "--apply")
    assert again["totals"]["added"] == 0 and again["applied"] == []
    shop.start_worker()
    shop.wait_for(lambda: shop.rows("deliveries", step_index=2, status="sent"), 30, "step 2")
    third = _replay(shop, "--apply")
    assert third["totals"]["added"] == 0 and third["applied"] == []
    shop.stop_workers()
    assert len(shop.rows("deliveries", step_index=2)) == 1
    assert len(shop.rows("deliveries", status="sent")) == 3
    [mail] = smtp_server.wait_for_messages(1)  # the real SMTP server got exactly one
    assert mail["To"] == "jane@example.com"


def test_apply_never_messages_a_converted_or_expired_journey(hub_factory, smtp_server, tmp_path):
    text = TENANT.format(outbox=tmp_path / "outbox", smtp=smtp_server.url, flows="@FLOWS@")
    harness = hub_factory({"bakery": text.replace("@FLOWS@", _flows(("1h", "outbox")))})
    expired = (NOW - timedelta(hours=1)).isoformat()
    _happen(
        harness,
        [
            _event("checkout.abandoned", "paid", T0, "max@example.com"),
            _event("checkout.converted", "paid", T0 + timedelta(hours=2), "max@example.com"),
            _event(
                "checkout.abandoned",
                "late",
                T0,
                "eva@example.com",
                recovery_url="https://bakery.example/r/late",
                recovery_expires_at=expired,
            ),
        ],
        NOW,
    )
    assert len(harness.rows("deliveries", status="sent")) == 2
    # a step at 90 minutes would have reached both before the purchase and the expiry
    (harness.config_dir / "tenants" / "bakery.toml").write_text(
        text.replace("@FLOWS@", _flows(("1h", "outbox"), ("90m", "outbox")))
    )
    report = _replay(harness, "--apply")
    assert report["totals"]["added"] == 2
    outcomes = {a["checkout_id"]: a["outcome"] for a in report["applied"]}
    assert outcomes == {
        "paid": "not applied: journey converted",
        "late": "not applied: recovery URL expired",
    }
    assert harness.rows("steps", step_index=1) == []


def test_apply_refuses_a_proposed_flow(shop, tmp_path):
    path = _proposal(shop, tmp_path, TWO_STEPS)
    result = _cli(shop, "replay", "bakery", "--since", "7d", "--flow", path, "--apply")
    assert result.exit_code == 2
    assert "--apply sends with the tenant's own flows" in result.stderr


def test_replay_without_a_database_creates_nothing(tmp_path):
    (tmp_path / "config" / "tenants").mkdir(parents=True)
    (tmp_path / "config" / "tenants" / "bakery.toml").write_text(
        TENANT.format(outbox=tmp_path / "o", smtp="smtp://127.0.0.1:1", flows=TWO_STEPS)
    )
    done = subprocess.run(
        [sys.executable, "-m", "hub", "replay", "bakery", "--since", "7d"],
        cwd=tmp_path,
        env=_bare_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("Error: no hub database at ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]
