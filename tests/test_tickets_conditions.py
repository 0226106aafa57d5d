"""The two sales conditions through the real engine and worker:

* cart value at or above a threshold → "Call this prospect" ticket;
* the same customer abandoned N times within a window → "Check repeated abandons" ticket.

Both are plain step conditions of the tenant file, evaluated by the core
when the step fires; the Zendesk stand-in shows which tickets came of it.
"""

from __future__ import annotations

from ticket_stand_ins import (
    ALLOW_LOOPBACK,
    FakeZendesk,
    abandon,
    step,
    ticket_tenant,
    wait_until_steps_settle,
    zendesk_table,
)

DAY = 86400
SALES_STEPS = step(["zendesk"], "call_prospect", when='{ cart_total = { gte = "200.00" } }') + step(
    ["zendesk"],
    "check_repeated_abandons",
    when='{ abandons = { within = "30d", gte = 3 } }',
)


def sales_hub(hub_factory, http_stand_in):  # noqa: ANN001, ANN201
    fake = FakeZendesk()
    tenant = ticket_tenant(zendesk_table(http_stand_in(fake).url), SALES_STEPS)
    harness = hub_factory({"acme": tenant}, settings=ALLOW_LOOPBACK)
    return harness, fake


def test_cart_above_the_threshold_creates_a_call_prospect_ticket(hub_factory, http_stand_in):
    harness, fake = sales_hub(hub_factory, http_stand_in)
    abandon(harness, "cs_big", 25000)
    harness.start_worker()
    call, repeated = wait_until_steps_settle(harness, 2)

    assert fake.errors == []
    [ticket] = fake.tickets
    assert ticket["subject"] == "Call this prospect: Jane Doe (€250.00)"
    assert "call_prospect" in ticket["tags"]
    assert call.status == "sent"
    assert (repeated.status, repeated.reason) == ("skipped", "condition not met")


def test_cart_exactly_at_the_threshold_counts(hub_factory, http_stand_in):
    harness, fake = sales_hub(hub_factory, http_stand_in)
    abandon(harness, "cs_edge", 20000)
    harness.start_worker()
    wait_until_steps_settle(harness, 2)
    assert [t["subject"] for t in fake.tickets] == ["Call this prospect: Jane Doe (€200.00)"]


def test_cart_below_the_threshold_creates_no_ticket(hub_factory, http_stand_in):
    harness, fake = sales_hub(hub_factory, http_stand_in)
    abandon(harness, "cs_small", 19999)
    harness.start_worker()
    steps = wait_until_steps_settle(harness, 2)

    assert [(s.status, s.reason) for s in steps] == [("skipped", "condition not met")] * 2
    assert fake.requests == [] and harness.rows("deliveries") == []


def test_third_abandon_within_the_window_creates_a_check_repeated_abandons_ticket(
    hub_factory, http_stand_in
):
    harness, fake = sales_hub(hub_factory, http_stand_in)
    # the same e-mail each time, a different phone (or none): the e-mail alone links them
    abandon(harness, "cs_one", 4999, age=20 * DAY, who=("jane@example.com", "+4915111111111"))
    abandon(harness, "cs_two", 5999, age=3 * DAY, who=("Jane@Example.com", None))
    abandon(harness, "cs_three", 6999, who=("jane@example.com", "+4915133333333"))
    harness.start_worker()
    harness.wait_for(lambda: fake.tickets, message="the repeated-abandons ticket")
    wait_until_steps_settle(harness, 6)

    assert fake.errors == []
    [ticket] = fake.tickets  # one ticket for the person, from their latest checkout
    assert ticket["subject"] == "Check repeated abandons: Jane Doe"
    assert "Latest cart: €69.99" in ticket["comment"]["body"]
    assert "checkout cs_three" in ticket["comment"]["body"]
    [delivery] = harness.rows("deliveries")
    latest = harness.rows("journeys", checkout_id="cs_three")[0]
    assert (delivery.journey_id, delivery.step_index) == (latest.id, 1)


def test_abandons_outside_the_window_do_not_count(hub_factory, http_stand_in):
    harness, fake = sales_hub(hub_factory, http_stand_in)
    abandon(harness, "cs_old", 4999, age=31 * DAY)  # outside "30d"
    abandon(harness, "cs_two", 5999, age=3 * DAY)
    abandon(harness, "cs_three", 6999)
    abandon(harness, "cs_max", 4999, age=DAY, who=("max@example.com", "+4915199999999"))
    harness.start_worker()
    wait_until_steps_settle(harness, 8)
    assert fake.requests == []
