"""The generic ticket webhook end to end: Stripe → real worker → a receiver that verifies the
Standard Webhooks signature with the official ``standardwebhooks`` package."""

from __future__ import annotations

from ticket_stand_ins import (
    ALLOW_LOOPBACK,
    JANE,
    FakeTicketReceiver,
    abandon,
    pause,
    step,
    ticket_tenant,
    wait_until_steps_settle,
    webhook_table,
)

from hub.testing import Reply


def webhook_hub(hub_factory, receiver_server, template: str = "call_prospect", **kw):  # noqa: ANN001, ANN003, ANN201
    sinks = webhook_table(f"{receiver_server.url}/hooks/tickets", **kw)
    tenant = ticket_tenant(sinks, step(["ticket_webhook"], template))
    return hub_factory({"acme": tenant}, settings=ALLOW_LOOPBACK)


def test_signed_ticket_carries_the_contract_fields_even_without_email_consent(
    hub_factory, http_stand_in
):
    """Tickets go to the shop's staff: the customer's missing e-mail consent does not stop it."""
    receiver = FakeTicketReceiver()
    harness = webhook_hub(
        hub_factory, http_stand_in(receiver), "check_repeated_abandons", priority='"high"'
    )
    abandon(harness, amount=25000, consent=None)
    harness.start_worker()
    harness.wait_for(lambda: receiver.tickets, message="a signed ticket")
    wait_until_steps_settle(harness, 1)

    assert receiver.errors == []  # the signature verified with standardwebhooks
    [request] = receiver.requests
    [delivery] = harness.rows("deliveries")
    journey = harness.rows("journeys")[0]
    assert request.headers["webhook-id"] == str(delivery.id)
    payload = receiver.tickets[str(delivery.id)]
    assert payload["reason"] == "check_repeated_abandons"
    assert payload["subject"] == "Check repeated abandons: Jane Doe"
    assert payload["body"].startswith("Check repeated abandons: this customer left checkouts")
    assert payload["priority"] == "high"
    assert payload["journey_id"] == journey.id
    assert payload["customer"] == JANE
    cart = payload["cart"]
    assert (cart["total"], cart["currency"], cart["total_display"]) == (25000, "EUR", "€250.00")
    assert payload["recovery_url"].startswith("http://hub.test/r/")
    assert delivery.status == "sent" and delivery.provider_id == str(delivery.id)


def test_429_retry_resends_with_the_same_webhook_id_and_a_fresh_signature(
    hub_factory, http_stand_in
):
    receiver = FakeTicketReceiver()
    receiver.script = [Reply(429, {"error": "slow down"}, {"Retry-After": "1"})]
    harness = webhook_hub(hub_factory, http_stand_in(receiver))
    abandon(harness)
    harness.start_worker()
    harness.wait_for(lambda: receiver.tickets, message="the ticket after the 429")
    wait_until_steps_settle(harness, 1)

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body  # the same ticket, byte for byte
    assert int(second.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"]) + 1
    assert receiver.errors == [] and len(receiver.tickets) == 1
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "sent" and delivery.attempts == 2


def test_500_is_retried_until_the_receiver_accepts(hub_factory, http_stand_in):
    receiver = FakeTicketReceiver()
    receiver.script = [Reply(503, b"maintenance"), Reply(502, b"bad gateway")]
    harness = webhook_hub(hub_factory, http_stand_in(receiver))
    abandon(harness)
    harness.start_worker()
    harness.wait_for(lambda: receiver.tickets, timeout=30, message="the ticket after two 5xx")
    wait_until_steps_settle(harness, 1)
    assert len(receiver.requests) == 3 and len(receiver.tickets) == 1
    assert [r.status for r in harness.rows("delivery_log")] == ["retrying", "retrying", "sent"]


def test_400_is_permanent_and_not_retried(hub_factory, http_stand_in):
    receiver = FakeTicketReceiver()
    receiver.script = [Reply(400, {"message": "unknown priority"})]
    harness = webhook_hub(hub_factory, http_stand_in(receiver))
    abandon(harness)
    harness.start_worker()
    [step_row] = wait_until_steps_settle(harness, 1)
    pause(1.5)
    assert step_row.status == "failed"
    assert len(receiver.requests) == 1
    [delivery] = harness.rows("deliveries")
    assert delivery.reason == "ticket webhook: HTTP 400 message: unknown priority"


def test_signature_made_with_another_secret_does_not_verify(hub_factory, http_stand_in):
    """The receiver's check is real: a hub configured with a different secret is rejected."""
    receiver = FakeTicketReceiver(secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")
    harness = webhook_hub(hub_factory, http_stand_in(receiver))
    abandon(harness)
    harness.start_worker()
    [step_row] = wait_until_steps_settle(harness, 1)
    assert step_row.status == "failed" and receiver.tickets == {}
    assert receiver.errors and "signature does not verify" in receiver.errors[0]
