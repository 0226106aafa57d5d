"""Holdout groups: a stable share of people gets no message, is tracked like everyone else,
and the report measures what the messages added, with 95 % intervals checked by hand."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.app import create_app
from hub.console import HubGroup
from hub.engine.flows import HOLDOUT
from hub.holdout import assignment_key, in_holdout, parse_share
from hub.incremental import Z95, holdout_report, mean_difference, rate_difference, wilson
from hub.store import journeys, utcnow
from tests.test_config import GOOD, issue_lines, registry  # noqa: F401 (fixture)
from tests.test_engine import T0, Sim

TENANT = """
name = "Acme"
timezone = "UTC"
locale = "en"
currency = "EUR"

[consent]
email = "not_opted_out"

[sources.stripe]
webhook_secret = "whsec_x"

[sinks.outbox]
dir = "{outbox}"

[[flows]]
name = "default"
holdout = "{share}"
  [[flows.steps]]
  after = "1h"
  channels = ["outbox"]
  template = "reminder"
"""


def people(held: bool, share: float = 0.5, n: int = 2) -> list[str]:
    """``n`` e-mail addresses that are (not) in a holdout of ``share`` at tenant acme."""
    found = []
    for i in range(1000):
        email = f"p{i}@example.com"
        if in_holdout("acme", share, email, None, "any") is held:
            found.append(email)
        if len(found) == n:
            return found
    raise AssertionError("no such people")


@pytest.fixture
def sim(hub_factory, tmp_path):
    def make(share: str = "50%") -> Sim:
        text = TENANT.format(outbox=tmp_path / "outbox", share=share)
        return Sim(hub_factory({"acme": text}))

    return make


# ----------------------------------------------------------------------------- assignment


def test_the_same_person_is_in_the_same_group_whatever_the_checkout():
    for i in range(200):
        email = f"person{i}@example.com"
        groups = {in_holdout("acme", 0.1, email, None, f"cs_{n}") for n in range(5)}
        # the address as the platform sent it: case and spaces do not move the person
        groups.add(in_holdout("acme", 0.1, f"  Person{i}@Example.com ", None, "cs_x"))
        assert len(groups) == 1, email


def test_the_key_is_email_then_phone_then_the_checkout():
    assert assignment_key("Jane@Example.com", "+4915112345678", "cs_1") == "email:jane@example.com"
    assert assignment_key(None, "+4915112345678", "cs_1") == "phone:+4915112345678"
    assert assignment_key(None, None, "cs_1") == "checkout:cs_1"


def test_the_held_out_share_is_within_tolerance_over_many_people():
    n = 20_000
    held = sum(in_holdout("acme", 0.1, f"u{i}@shop.example", None, "c") for i in range(n))
    # three standard deviations of a binomial(20 000, 0.1) share: 0.64 points
    assert abs(held / n - 0.1) < 3 * math.sqrt(0.1 * 0.9 / n)


def test_another_tenant_draws_its_own_groups():
    emails = [f"u{i}@shop.example" for i in range(2000)]
    a = [in_holdout("acme", 0.5, e, None, "c") for e in emails]
    b = [in_holdout("other", 0.5, e, None, "c") for e in emails]
    assert 0.4 < sum(x == y for x, y in zip(a, b, strict=True)) / len(emails) < 0.6


def test_no_share_holds_no_one_out():
    assert not any(in_holdout("acme", 0.0, f"u{i}@x.example", None, "c") for i in range(500))


@pytest.mark.parametrize(
    ("text", "share"), [("10%", 0.1), ("0%", 0.0), ("12.5 %", 0.125), ("50%", 0.5)]
)
def test_a_share_is_a_percentage(text, share):
    assert parse_share(text) == pytest.approx(share)


def test_a_bad_holdout_is_a_config_error_with_its_key(tmp_path, registry):  # noqa: F811
    too_big = GOOD.replace('name = "big"\n', 'name = "big"\nholdout = "60%"\n')
    assert issue_lines(tmp_path, registry, too_big) == [
        "acme.toml: flows[0].holdout: must be between 0% and 50%, got '60%'"
    ]
    a_number = GOOD.replace('name = "default"\n', 'name = "default"\nholdout = 10\n')
    assert issue_lines(tmp_path, registry, a_number) == [
        'acme.toml: flows[1].holdout: expected a percentage like "10%", got 10'
    ]


# ----------------------------------------------------------------------------- the engine


def test_a_held_out_journey_sends_nothing_and_is_tracked_and_converted(sim):
    s = sim()
    held, messaged = people(True)[0], people(False)[0]
    s.event(checkout="cs_held", email=held)
    s.event(checkout="cs_msg", email=messaged)
    s.run_until(T0 + timedelta(hours=2))
    assert [m.to for m in s.sent] == [messaged]
    rows = {r.checkout_id: r for r in s.harness.rows("journeys")}
    assert rows["cs_held"].holdout is True and rows["cs_msg"].holdout is False
    step = s.harness.rows("steps", journey_id=rows["cs_held"].id)[0]
    assert (step.status, step.reason) == ("skipped", HOLDOUT)
    logged = s.harness.rows("delivery_log", journey_id=rows["cs_held"].id)
    assert [(r.status, r.reason) for r in logged] == [("skipped", HOLDOUT)]
    # a purchase of the held-out person closes the journey as for anyone: recovered, no credit
    s.event(kind="checkout.converted", checkout="cs_held", email=held)
    closed = s.harness.rows("journeys", checkout_id="cs_held")[0]
    assert (closed.status, closed.recovered, closed.credit) == ("converted", True, "none")
    assert closed.recovered_amount == 4999


def test_a_second_checkout_of_a_held_out_person_is_held_out_too(sim):
    s = sim()
    held = people(True)[0]
    s.event(checkout="cs_1", email=held)
    s.event(checkout="cs_2", email=held, at=T0 + timedelta(minutes=5))
    assert [r.holdout for r in s.harness.rows("journeys")] == [True, True]


def test_the_preview_says_the_person_is_held_out(sim, tmp_path):
    from hub.engine import Engine
    from hub.events import load_event
    from hub.flowcli import preview_events

    s = sim("10%")
    tenant = s.hub.tenants.get("acme")
    held = people(True, 0.1, 1)[0]
    event = load_event(
        {
            "kind": "checkout.abandoned",
            "event_key": "evt_p",
            "checkout_id": "cs_p",
            "occurred_at": T0,
            "tenant": "acme",
            "source": "stripe",
            "customer": {"email": held},
            "cart": {"total": 4999, "currency": "EUR"},
        }
    )
    [found] = preview_events(Engine(s.hub), tenant, [event])
    assert found.holdout.startswith("in the holdout group (10% of 'default')")
    assert [step.skipped for step in found.steps] == [HOLDOUT]


# ----------------------------------------------------------------------------- statistics


def test_newcombes_interval_matches_his_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, table II example (a): 56/70 − 48/80,
    # method 10 (hybrid score): 0.0524 to 0.3339
    found = rate_difference(56, 70, 48, 80)
    assert found.estimate == pytest.approx(0.2)
    assert (round(found.low, 4), round(found.high, 4)) == (0.0524, 0.3339)


def test_wilson_interval_by_hand():
    # 5 of 50: p = 0.1; centre (0.1 + z²/100) / (1 + z²/50), half-width as Wilson wrote it
    z2 = Z95**2
    centre = (0.1 + z2 / 100) / (1 + z2 / 50)
    half = Z95 / (1 + z2 / 50) * math.sqrt(0.1 * 0.9 / 50 + z2 / (4 * 50 * 50))
    low, high = wilson(5, 50)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert wilson(0, 20)[0] == 0.0  # never below zero, unlike the normal approximation


def test_revenue_difference_by_hand():
    # messaged revenue per journey [10, 0, 20, 0] (mean 7.5), holdout [0, 10] (mean 5)
    found = mean_difference(30, 500, 4, 10, 100, 2)
    var_m = ((10 - 7.5) ** 2 + 7.5**2 + 12.5**2 + 7.5**2) / 3
    var_h = (5**2 + 5**2) / 1
    se = math.sqrt(var_m / 4 + var_h / 2)
    assert found.estimate == pytest.approx(2.5)
    assert (found.low, found.high) == pytest.approx((2.5 - Z95 * se, 2.5 + Z95 * se))
    assert mean_difference(10, 100, 1, 0, 0, 5) is None  # one journey has no variance


def _journey(conn, n: int, held: bool, amount: int | None, credit: str | None = None) -> None:
    at = utcnow().replace(year=2026, month=11, day=2, hour=12)
    conn.execute(
        sa.insert(journeys).values(
            tenant="acme",
            checkout_id=f"cs_{n}",
            source="stripe",
            status="converted" if amount else "finished",
            flow="default",
            holdout=held,
            abandoned_at=at,
            created_at=at,
            recovered=amount is not None,
            recovered_amount=amount,
            recovered_currency="EUR" if amount else None,
            credit=credit if amount else None,
        )
    )


@pytest.fixture
def seeded(sim):
    """Flow default: 4 messaged journeys (2 recovered: 10 € by a click, 20 € without a
    message) and 2 held out (1 recovered: 10 €)."""
    s = sim()
    with s.hub.store.begin() as conn:
        for n, (held, amount, credit) in enumerate(
            [
                (False, 1000, "clicked"),
                (False, None, None),
                (False, 2000, "none"),
                (False, None, None),
                (True, None, None),
                (True, 1000, "none"),
            ]
        ):
            _journey(conn, n, held, amount, credit)
    return s


def test_the_report_compares_the_groups_with_intervals_by_hand(seeded):
    result = holdout_report(seeded.hub.store, "acme", date(2026, 11, 1), date(2026, 11, 30))
    [flow] = result.flows
    assert (flow.messaged.journeys, flow.messaged.recovered) == (4, 2)
    assert (flow.holdout.journeys, flow.holdout.recovered) == (2, 1)
    assert (flow.attributed_recovered, flow.attributed_revenue) == (1, {"EUR": 1000})
    rate = rate_difference(2, 4, 1, 2)
    assert flow.incremental_rate == rate and rate.estimate == 0.0
    assert flow.incremental_recovered.low == pytest.approx(rate.low * 4)
    # revenue per journey: messaged [1000, 0, 2000, 0], holdout [0, 1000] (minor units)
    per = mean_difference(3000, 1000**2 + 2000**2, 4, 1000, 1000**2, 2)
    revenue = flow.incremental_revenue["EUR"]
    assert revenue.estimate == pytest.approx(4 * 250)
    assert (revenue.low, revenue.high) == pytest.approx((4 * per.low, 4 * per.high))


def test_hub_report_prints_the_holdout_section(seeded):
    def run(*args: str):
        harness = seeded.harness
        group = HubGroup(create_app=lambda state: create_app(harness.config, create_state=state))
        return CliRunner().invoke(group, list(args))

    days = ("--since", "2026-11-01", "--until", "2026-11-30")
    table = run("report", "acme", *days, "--holdout")
    assert table.exit_code == 0, table.output
    assert "messaged  4 journeys, 2 recovered (50.0%)" in table.output
    assert "holdout   2 journeys, 1 recovered (50.0%)" in table.output
    assert "incremental rate: 0.0% [" in table.output
    by_flow = run("report", "acme", *days, "--by", "flow")
    assert by_flow.exit_code == 0 and "holdout comparison" in by_flow.output
    as_json = json.loads(run("report", "acme", *days, "--holdout", "--format", "json").output)
    assert as_json["flows"][0]["holdout"]["journeys"] == 2
    assert as_json["rate_interval"].startswith("Newcombe")
    assert run("report", "acme", "--holdout", "--format", "csv").exit_code == 2
