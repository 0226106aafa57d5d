"""The recovery engine on a controllable clock: conditions, stop rules, caps, supersede, quiet
hours across DST, consent. Real database; RQ replaced by the simulator's time-ordered heap."""

from __future__ import annotations

import dataclasses
import heapq
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from hub.conditions import ConditionError, compile_condition
from hub.engine import Engine
from hub.events import load_event
from hub.ingress import store_event
from hub.simulation import RecordingSink as _DryRunSink
from hub.simulation import SimQueues as _SimQueues
from hub.store import suppressions

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # a summer Monday, noon in Berlin

TENANT = """
name = "Acme"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"
{extra}
[consent]
email = "{policy}"
opt_in_countries = ["EU"]

[sources.stripe]
webhook_secret = "whsec_x"

[sinks.outbox]
dir = "{outbox}"

[[flows]]
name = "off"
enabled = false
  [[flows.steps]]
  after = "1m"
  channels = ["outbox"]
  template = "reminder"

[[flows]]
name = "big"
when = {{ cart_total = {{ gte = "200.00" }} }}
  [[flows.steps]]
  after = "10m"
  channels = ["outbox"]
  template = "reminder"

[[flows]]
name = "default"
  [[flows.steps]]
  after = "1h"
  channels = ["outbox"]
  template = "reminder"
  [[flows.steps]]
  after = "24h"
  channels = ["outbox"]
  template = "reminder"
  offer = {{ promo_code = "COMEBACK10" }}
  when = {{ stage = "payment" }}
"""


class Sim:
    """One tenant's engine with a fake clock; jobs run in due order, sends are recorded."""

    def __init__(self, harness) -> None:  # noqa: ANN001
        self.harness = harness
        self.hub = harness.hub
        self.queues = _SimQueues()
        self.hub.queues = self.queues
        self.sent: list = []
        self.hub.registry.sinks = {
            n: _DryRunSink(s, self.sent) for n, s in self.hub.registry.sinks.items()
        }
        self.now = T0
        self.engine = Engine(self.hub, clock=lambda: self.now)
        self.counter = 0

    @property
    def now(self) -> datetime:
        return self.queues.now

    @now.setter
    def now(self, value: datetime) -> None:
        self.queues.now = value

    def event(
        self,
        kind: str = "checkout.abandoned",
        checkout: str = "cs_1",
        at: datetime | None = None,
        email: str | None = "jane@example.com",
        **fields,
    ) -> int | None:
        self.counter += 1
        when = at or self.now
        data = {
            "kind": kind,
            "event_key": f"evt_{self.counter}",
            "checkout_id": checkout,
            "occurred_at": when,
            "tenant": "acme",
            "source": "stripe",
            "customer": {"email": email, "first_name": "Jane", "country": "DE"},
            "cart": {"total": 4999, "currency": "EUR"},
            "consent": {"email": "opt_in"},
            "stage": "payment",
            "recovery_url": f"https://pay.example/r/{checkout}",
        }
        if kind != "checkout.abandoned":
            data.pop("stage")
            data.pop("recovery_url")
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        event_id = store_event(self.hub.store, load_event(data), None, self.now)
        if event_id is not None:
            self.engine.process_event(event_id)
        return event_id

    def run_until(self, until: datetime) -> list[str]:
        notes = []
        while self.queues.heap and self.queues.heap[0][0] <= until:
            due, _seq, kind, args = heapq.heappop(self.queues.heap)
            self.now = max(self.now, due)
            if kind == "step":
                notes.append(self.engine.run_step(*args))
            elif kind == "event":
                notes.append(self.engine.process_event(*args))
            else:
                notes.append(self.engine.check_abandonment(*args))
        self.now = max(self.now, until)
        return notes

    def steps(self) -> list:
        return self.harness.rows("steps")


@pytest.fixture
def sim(hub_factory, tmp_path):
    def make(policy: str = "opt_in", extra: str = "") -> Sim:
        text = TENANT.format(policy=policy, extra=extra, outbox=tmp_path / "outbox")
        return Sim(hub_factory({"acme": text}))

    return make


# ----------------------------------------------------------------------------- conditions

FACTS = {
    "cart_total": Decimal("120.00"),
    "item_count": 3,
    "stage": "payment",
    "country": "DE",
    "source": "stripe",
    "locale": "de",
    "consent_email": "opt_in",
    "consent_whatsapp": "unknown",
}


@pytest.mark.parametrize(
    ("when", "holds"),
    [
        ({"cart_total": {"gte": "120.00"}}, True),
        ({"cart_total": {"gt": "120.00"}}, False),
        ({"cart_total": {"lt": "120.01"}}, True),
        ({"cart_total": {"lte": "119.99"}}, False),
        ({"cart_total": {"eq": "120"}}, True),
        ({"cart_total": {"ne": "120.00"}}, False),
        ({"item_count": {"in": [1, 2, 3]}}, True),
        ({"item_count": {"not_in": [3]}}, False),
        ({"stage": "payment"}, True),
        ({"stage": {"in": ["cart", "contact"]}}, False),
        ({"country": {"ne": "FR"}}, True),
        ({"source": "shopify"}, False),
        ({"locale": {"not_in": ["en"]}}, True),
        ({"consent_email": "opt_in", "consent_whatsapp": "opt_in"}, False),
        ({"any": [{"stage": "cart"}, {"country": "DE"}]}, True),
        ({"any": [{"stage": "cart"}, {"country": "FR"}]}, False),
        (
            {
                "stage": "payment",
                "any": [{"item_count": {"gte": 5}}, {"cart_total": {"gte": "100"}}],
            },
            True,
        ),
    ],
)
def test_each_condition_operator(when, holds):
    condition = compile_condition(when, "EUR", channels=("email", "whatsapp"))
    assert condition.holds(FACTS, lambda _w: 1) is holds


def test_consent_fields_are_the_channels_of_the_installed_sinks():
    facts = {**FACTS, "consent_sms": "opt_in"}
    sms = compile_condition({"consent_sms": "opt_in"}, "EUR", channels=("email", "sms"))
    assert sms.holds(facts, lambda _w: 1) is True
    # a channel the platform said nothing about is "unknown", as the consent check reads it
    said_nothing = compile_condition({"consent_sms": "unknown"}, "EUR", channels=("sms",))
    assert said_nothing.holds(FACTS, lambda _w: 1) is True
    with pytest.raises(ConditionError, match='unknown field "consent_sms"'):
        compile_condition({"consent_sms": "opt_in"}, "EUR", channels=("email",))


def test_abandons_counts_this_customers_abandons_within_the_period():
    condition = compile_condition({"abandons": {"within": "30d", "gte": 3}}, "EUR")
    asked = []

    def count(within):  # noqa: ANN001, ANN202
        asked.append(within)
        return 3

    assert condition.holds(FACTS, count) is True
    assert asked == [timedelta(days=30)]
    assert condition.holds(FACTS, lambda _w: 2) is False


def test_a_cart_in_another_currency_never_matches_a_money_test():
    facts = {**FACTS, "cart_total": None}
    assert not compile_condition({"cart_total": {"gte": "1"}}, "EUR").holds(facts, lambda _w: 1)
    assert not compile_condition({"cart_total": {"lt": "1000"}}, "EUR").holds(facts, lambda _w: 1)


@pytest.mark.parametrize(
    ("when", "key"),
    [
        ({"cart_total": {"=>": "1"}}, "when.cart_total"),
        ({"cart_total": 5.5}, "when.cart_total"),
        ({"stage": {"gt": "cart"}}, "when.stage.gt"),
        ({"any": []}, "when.any"),
        ({"abandons": {"within": "30d"}}, "when.abandons"),
        ({"nope": 1}, "when.nope"),
        ({"item_count": {"in": 3}}, "when.item_count.in"),
    ],
)
def test_condition_mistakes_name_their_key(when, key):
    with pytest.raises(ConditionError) as err:
        compile_condition(when, "EUR")
    assert err.value.key == key


# ----------------------------------------------------------------------------- flows & steps


def test_first_matching_enabled_flow_wins_and_steps_fire_at_their_delays(sim):
    s = sim()
    s.event(cart={"total": 25000, "currency": "EUR"})
    assert [(r.step_index, r.due_at) for r in s.steps()] == [(0, T0 + timedelta(minutes=10))]
    s.event(checkout="cs_2", email="max@example.com")
    steps = [r for r in s.steps() if r.journey_id == 2]
    assert [r.due_at for r in steps] == [T0 + timedelta(hours=1), T0 + timedelta(hours=24)]
    s.run_until(T0 + timedelta(days=2))
    assert [(m.journey_id, m.step_index) for m in s.sent] == [(1, 0), (2, 0), (2, 1)]
    assert s.sent[2].context["offer"] == {"promo_code": "COMEBACK10"}
    assert "COMEBACK10" in s.sent[2].parts["txt"]


def test_step_condition_false_is_recorded_as_skipped(sim):
    s = sim()
    s.event(stage="contact")
    s.run_until(T0 + timedelta(days=2))
    assert [r.status for r in s.steps()] == ["sent", "skipped"]
    assert s.steps()[1].reason == "condition not met"


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        ("converted_same_checkout", "converted"),
        ("converted_recovered_from", "converted"),
        ("converted_same_email", "converted"),
        ("deleted", "deleted"),
        ("unsubscribed", "unsubscribed"),
    ],
)
def test_stop_rules_cancel_pending_steps(sim, stop, reason):
    s = sim()
    s.event()
    s.run_until(T0 + timedelta(minutes=30))
    if stop == "converted_same_checkout":
        s.event("checkout.converted", checkout="cs_1")
    elif stop == "converted_recovered_from":
        s.event("checkout.converted", checkout="cs_new", recovered_from="cs_1", email=None)
    elif stop == "converted_same_email":
        s.event("checkout.converted", checkout="cs_other_session")
    elif stop == "deleted":
        s.event("checkout.deleted", checkout="cs_1")
    else:
        journey = s.harness.rows("journeys")[0]
        from hub.engine import link_serializer

        token = link_serializer(s.hub.settings.secret_key, "unsubscribe").dumps(
            [journey.id, "email"]
        )
        assert s.harness.client.post(f"/u/{token}").status_code == 200
    s.run_until(T0 + timedelta(days=2))
    assert s.sent == []
    assert {r.status for r in s.steps()} == {"cancelled"}
    assert s.harness.rows("journeys", checkout_id="cs_1")[0].status == reason


def test_a_conversion_of_the_same_email_outside_the_attribution_window_stops_nothing(sim):
    s = sim()
    s.event()
    s.event("checkout.converted", checkout="cs_later", at=T0 - timedelta(days=8))
    s.run_until(T0 + timedelta(hours=2))
    assert len(s.sent) == 1


def test_expired_recovery_url_and_disabled_flow_and_withdrawn_consent_skip(sim):
    s = sim()
    s.event(recovery_expires_at=T0 + timedelta(minutes=30))
    s.run_until(T0 + timedelta(hours=2))
    assert s.steps()[0].reason == "recovery URL expired"

    s.event(checkout="cs_2", email="max@example.com")
    tenant = s.hub.tenants["acme"]
    flows = tuple(
        dataclasses.replace(f, enabled=False) if f.name == "default" else f for f in tenant.flows
    )
    s.hub.tenants["acme"] = dataclasses.replace(tenant, flows=flows)
    s.run_until(T0 + timedelta(hours=3))
    assert [r.reason for r in s.steps() if r.journey_id == 2][0] == "flow disabled"
    s.hub.tenants["acme"] = tenant

    s.event(checkout="cs_3", email="eve@example.com")
    s.event(checkout="cs_3", email="eve@example.com", consent={"email": "opt_out"})  # withdrawn
    s.run_until(T0 + timedelta(hours=5))
    assert s.sent == []
    [delivery] = [d for d in s.harness.rows("deliveries") if d.journey_id == 3]
    assert delivery.reason == "no consent (email: opt_out)"


def test_suppression_is_per_channel_or_global(sim):
    s = sim()
    now = T0
    with s.hub.store.begin() as conn:
        conn.execute(
            sa.insert(suppressions).values(
                tenant="acme", identity="jane@example.com", channel="whatsapp", created_at=now
            )
        )
    s.event()
    s.run_until(T0 + timedelta(hours=2))
    assert len(s.sent) == 1  # a WhatsApp opt-out does not stop e-mail
    with s.hub.store.begin() as conn:
        conn.execute(
            sa.insert(suppressions).values(
                tenant="acme", identity="max@example.com", channel="*", created_at=now
            )
        )
    s.event(checkout="cs_2", email="Max@Example.com")
    s.run_until(T0 + timedelta(hours=4))
    assert len(s.sent) == 1
    assert s.harness.rows("deliveries")[-1].reason == "unsubscribed"


# ----------------------------------------------------------------------------- no spam


def test_the_same_cart_abandoned_again_reuses_the_journey_with_the_newest_url(sim):
    s = sim()
    s.event()
    s.event(recovery_url="https://pay.example/r/newer")
    assert len(s.harness.rows("journeys")) == 1
    s.run_until(T0 + timedelta(hours=2))
    [message] = s.sent
    token_link = message.context["recovery_url"]
    answer = s.harness.client.get(token_link.replace(s.hub.public_url(), ""))
    assert answer.headers["Location"] == "https://pay.example/r/newer"


def test_a_later_abandon_supersedes_the_earlier_journey(sim):
    s = sim()
    s.event(checkout="cs_1")
    s.now += timedelta(minutes=20)
    s.event(checkout="cs_2")
    s.run_until(T0 + timedelta(hours=3))
    assert [m.journey_id for m in s.sent] == [2]
    first, second = s.harness.rows("journeys")
    assert first.status == "superseded" and second.status == "open"
    assert "cs_2" in s.sent[0].context["checkout_id"]


def test_frequency_cap_stops_a_second_journey_but_not_the_sequence(sim):
    s = sim(extra='frequency_cap = { max = 1, per = "12h" }')
    s.event(checkout="cs_1")
    s.run_until(T0 + timedelta(hours=2))
    assert len(s.sent) == 1
    s.event(checkout="cs_2")  # supersedes cs_1; its 1 h step would be a 2nd mail within 12 h
    s.run_until(T0 + timedelta(hours=4))
    assert len(s.sent) == 1
    assert s.harness.rows("deliveries")[-1].reason == "frequency cap (1 per 12h)"
    s.run_until(T0 + timedelta(days=2))  # 24 h step of journey 2: the cap window has passed
    assert len(s.sent) == 2


def test_a_larger_cap_allows_more(sim):
    s = sim(extra='frequency_cap = { max = 2, per = "12h" }')
    s.event(checkout="cs_1")
    s.run_until(T0 + timedelta(hours=2))
    s.event(checkout="cs_2")
    s.run_until(T0 + timedelta(hours=4))
    assert len(s.sent) == 2


# ----------------------------------------------------------------------------- quiet hours


@pytest.mark.parametrize(
    ("abandoned", "country", "expected"),
    [
        # spring forward: Berlin 2026-03-29 02:00 → 03:00; 08:00 CEST is 06:00 UTC
        ("2026-03-28T20:30:00+01:00", "DE", "2026-03-29T06:00:00+00:00"),
        # fall back: Berlin 2026-10-25 03:00 → 02:00; 08:00 CET is 07:00 UTC
        ("2026-10-24T20:30:00+02:00", "DE", "2026-10-25T07:00:00+00:00"),
        # a Japanese customer: quiet hours in Tokyo (08:00 JST = 23:00 UTC)
        ("2026-03-28T12:30:00+00:00", "JP", "2026-03-28T23:00:00+00:00"),
        # a US customer has no single zone: the tenant's zone is used
        ("2026-03-28T20:30:00+01:00", "US", "2026-03-29T06:00:00+00:00"),
        # outside quiet hours nothing moves
        ("2026-03-28T10:00:00+01:00", "DE", "2026-03-28T10:00:00+00:00"),
    ],
)
def test_a_step_due_in_quiet_hours_moves_to_their_end_across_dst(sim, abandoned, country, expected):
    s = sim(extra='quiet_hours = ["21:00", "08:00"]')
    at = datetime.fromisoformat(abandoned)
    s.now = at
    s.event(at=at, customer={"country": country})
    assert s.steps()[0].due_at == datetime.fromisoformat(expected)


def test_a_step_that_fires_inside_quiet_hours_is_deferred_not_sent(sim):
    s = sim()
    s.event()
    tenant = s.hub.tenants["acme"]
    from datetime import time

    s.hub.tenants["acme"] = dataclasses.replace(tenant, quiet_hours=(time(12), time(14)))
    notes = s.run_until(T0 + timedelta(hours=1, seconds=5))  # 13:00 Berlin
    assert notes[0].startswith("deferred to 2026-06-01T12:00:00+00:00")
    assert s.sent == []
    s.run_until(T0 + timedelta(hours=3))
    assert len(s.sent) == 1


# ----------------------------------------------------------------------------- consent


@pytest.mark.parametrize(
    ("given", "policy", "country", "sends"),
    [
        ("opt_in", "opt_in", "DE", True),
        ("opt_out", "not_opted_out", "US", False),
        ("unknown", "not_opted_out", "US", True),
        ("unknown", "opt_in", "US", False),
        ("unknown", "not_opted_out", "DE", False),  # EU: opt-in required whatever the default
        ("opt_in", "not_opted_out", "FR", True),
    ],
)
def test_consent_matrix(sim, given, policy, country, sends):
    s = sim(policy=policy)
    s.event(consent={"email": given}, customer={"country": country}, stage="contact")
    s.run_until(T0 + timedelta(hours=2))
    assert bool(s.sent) is sends
    if not sends:
        assert s.harness.rows("deliveries")[0].reason.startswith("no consent (email: ")


def test_inferred_abandonment_is_emitted_only_when_the_window_closes_quietly(hub_factory, tmp_path):
    text = TENANT.format(policy="opt_in", extra="", outbox=tmp_path / "o")
    text = text.replace(
        'webhook_secret = "whsec_x"', 'webhook_secret = "whsec_x"\nabandon_after = "15m"'
    )
    s = Sim(hub_factory({"acme": text}))
    s.event("checkout.updated", checkout="ck_1")
    s.now += timedelta(minutes=10)
    s.event("checkout.updated", checkout="ck_1")  # restarts the window
    s.run_until(T0 + timedelta(minutes=20))
    assert [j.status for j in s.harness.rows("journeys")] == ["pending"]
    s.run_until(T0 + timedelta(minutes=26))
    journey = s.harness.rows("journeys")[0]
    assert journey.status == "open"
    [inferred] = [e for e in s.harness.rows("events") if e.event_key.startswith("inferred:")]
    assert inferred.occurred_at == T0 + timedelta(minutes=25)
    s.event("checkout.converted", checkout="ck_1")
    s.run_until(T0 + timedelta(days=2))
    assert s.sent == []


def test_a_step_job_that_runs_twice_sends_once(sim):
    s = sim()
    s.event()
    [step] = s.steps()[:1]
    s.now = step.due_at
    assert s.engine.run_step(step.id, 0).endswith("sent")
    assert s.engine.run_step(step.id, 0) == "nothing to do"
    assert len(s.sent) == 1
    assert len(s.harness.rows("deliveries")) == 1


def test_simulate_prints_what_would_be_sent_when(tmp_path):
    import json as _json
    import os
    import subprocess
    import sys

    (tmp_path / "tenants").mkdir()
    (tmp_path / "tenants" / "acme.toml").write_text(
        TENANT.format(
            policy="not_opted_out", extra='quiet_hours = ["21:00", "08:00"]', outbox=tmp_path / "o"
        )
    )
    events = [
        {
            "kind": "checkout.abandoned",
            "event_key": "a",
            "checkout_id": "c1",
            "occurred_at": "2026-06-01T19:30:00+02:00",
            "source": "stripe",
            "stage": "payment",
            "customer": {"email": "jane@example.com", "country": "DE"},
            "cart": {"total": 4999, "currency": "EUR"},
            "consent": {"email": "opt_in"},
        },
        {
            "kind": "checkout.abandoned",
            "event_key": "b",
            "checkout_id": "c2",
            "occurred_at": "2026-06-01T19:40:00+02:00",
            "source": "stripe",
            "customer": {"email": "max@example.com", "country": "DE"},
            "cart": {"total": 1000, "currency": "EUR"},
            "consent": {"email": "opt_out"},
        },
        {
            "kind": "checkout.converted",
            "event_key": "c",
            "checkout_id": "c9",
            "occurred_at": "2026-06-02T09:00:00+02:00",
            "source": "stripe",
            "customer": {"email": "jane@example.com"},
        },
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(_json.dumps(e) for e in events))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_SCHEMA")}
    env.update(HUB_CONFIG_DIR=str(tmp_path), HUB_VAR_DIR=str(tmp_path / "var"))
    done = subprocess.run(
        [sys.executable, "-m", "hub", "flow", "simulate", "acme", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    # 19:30 + 1 h = 20:30 is before the quiet hours: sent then
    assert "2026-06-01 20:30:00 CEST  SEND journey 1 step 0 via email to j***@example.com" in out
    assert "no consent (email: opt_out)" in out
    # the 24 h discount step of journey 1 falls after the purchase: stopped
    assert "converted; stopped journeys [1" in out
    assert out.strip().endswith("1 message(s) would be sent")
    # a dry run logs no sends: the engine's production lines would claim `outcome=sent`
    assert "outcome=sent" not in done.stderr and "outcome=" not in done.stderr


def test_unsubscribe_page_offers_one_channel_or_everything(sim):
    s = sim()
    s.event()
    from hub.engine import link_serializer

    token = link_serializer(s.hub.settings.secret_key, "unsubscribe").dumps([1, "email"])
    page = s.harness.client.get(f"/u/{token}").get_data(as_text=True)
    assert "Unsubscribe from email" in page and 'name="scope" value="all"' in page
    assert s.harness.client.post(f"/u/{token}", data={"scope": "all"}).status_code == 200
    [row] = s.harness.rows("suppressions")
    assert (row.identity, row.channel) == ("jane@example.com", "*")
    assert s.harness.client.get("/u/forged-token").status_code == 404
