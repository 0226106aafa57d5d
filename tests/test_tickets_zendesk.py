"""Zendesk tickets end to end: signed Stripe abandonment → real worker → a Zendesk stand-in."""

from __future__ import annotations

from ticket_stand_ins import (
    ALLOW_LOOPBACK,
    FakeTicketReceiver,
    FakeZendesk,
    Slow,
    abandon,
    pause,
    step,
    ticket_tenant,
    wait_until_steps_settle,
    webhook_table,
    zendesk_table,
)

from hub.testing import Reply


def abandon_big_cart(harness) -> None:  # noqa: ANN001
    """Jane leaves 250 € behind; her browser spoke English, the shop's staff read German."""
    abandon(harness, amount=25000, locale="en")


def zendesk_hub(hub_factory, zendesk, extra_sinks: str = "", channels=None, settings=None, **kw):  # noqa: ANN001, ANN003, ANN201
    sinks = zendesk_table(zendesk.url, **kw) + extra_sinks
    tenant = ticket_tenant(sinks, step(channels or ["zendesk"]), staff_locale="de")
    return hub_factory({"acme": tenant}, settings=ALLOW_LOOPBACK if settings is None else settings)


def test_stripe_abandonment_creates_one_private_zendesk_ticket(hub_factory, http_stand_in):
    fake = FakeZendesk()
    zendesk = http_stand_in(fake)
    harness = zendesk_hub(hub_factory, zendesk, priority='"high"', group_id="360001")
    abandon_big_cart(harness)
    harness.start_worker()
    harness.wait_for(lambda: fake.tickets, message="a ticket at Zendesk")
    wait_until_steps_settle(harness, 1)

    assert fake.errors == []
    [request] = fake.requests
    [ticket] = fake.tickets
    [delivery] = harness.rows("deliveries")
    journey = harness.rows("journeys")[0]
    assert request.headers["Idempotency-Key"] == str(delivery.id)
    # the staff's language (staff_locale = "de"), money formatted as in German
    assert ticket["subject"] == "Interessent anrufen: Jane Doe (250,00\xa0€)"
    assert ticket["priority"] == "high"
    assert ticket["group_id"] == 360001
    assert ticket["requester"] == {"name": "Jane Doe", "email": "jane@example.com"}
    assert ticket["comment"]["public"] is False  # an internal note: Zendesk mails nobody
    assert ticket["tags"] == ["abandoned_cart", "tenant_acme", "call_prospect"]
    assert ticket["external_id"] == f"abandonment-hub:acme:journey-{journey.id}:step-0"
    text = ticket["comment"]["body"]
    assert "E-Mail:   jane@example.com" in text
    assert "Telefon:  +4915112345678" in text
    assert "Warenkorb: 250,00\xa0€" in text
    assert "http://hub.test/r/" in text  # the tracked recovery link for the customer
    assert delivery.status == "sent" and delivery.attempts == 1
    assert delivery.channel == "ticket" and delivery.identity == "jane@example.com"
    assert delivery.provider_id == str(ticket["id"])


def test_429_is_retried_after_retry_after_with_the_same_idempotency_key(hub_factory, http_stand_in):
    fake = FakeZendesk()
    fake.script = [Reply(429, {"error": "TooManyRequests"}, {"Retry-After": "1"})]
    harness = zendesk_hub(hub_factory, http_stand_in(fake))
    abandon_big_cart(harness)
    harness.start_worker()
    harness.wait_for(lambda: fake.tickets, message="the ticket after the 429")
    wait_until_steps_settle(harness, 1)

    assert fake.errors == []
    assert len(fake.requests) == 2 and len(fake.tickets) == 1
    keys = {r.headers["Idempotency-Key"] for r in fake.requests}
    [delivery] = harness.rows("deliveries")
    assert keys == {str(delivery.id)}
    assert delivery.status == "sent" and delivery.attempts == 2
    first = harness.rows("delivery_log")[0]
    assert first.status == "retrying"
    assert "HTTP 429" in first.reason and "retry in 1s" in first.reason


def test_500_is_retried_and_the_ticket_created_once(hub_factory, http_stand_in):
    fake = FakeZendesk()
    fake.script = [Reply(500, {"error": "InternalError"})]
    harness = zendesk_hub(hub_factory, http_stand_in(fake))
    abandon_big_cart(harness)
    harness.start_worker()
    harness.wait_for(lambda: fake.tickets, message="the ticket after the 500")
    wait_until_steps_settle(harness, 1)
    assert len(fake.requests) == 2 and len(fake.tickets) == 1
    assert harness.rows("deliveries")[0].attempts == 2


def test_read_timeout_is_retried_and_zendesk_returns_the_same_ticket(hub_factory, http_stand_in):
    """The first answer is lost after Zendesk created the ticket: the retry repeats the
    Idempotency-Key, Zendesk answers with the ticket it already has, nobody gets two."""
    fake = FakeZendesk()
    fake.script = [Slow(2.0)]
    harness = zendesk_hub(hub_factory, http_stand_in(fake), timeout="1")
    abandon_big_cart(harness)
    harness.start_worker()
    harness.wait_for(
        lambda: harness.rows("deliveries") and harness.rows("deliveries")[0].status == "sent",
        message="sent after the timeout",
    )
    assert fake.errors == []
    assert len(fake.requests) == 2 and len(fake.tickets) == 1
    assert fake.lookups == ["miss", "hit"]
    [delivery] = harness.rows("deliveries")
    assert delivery.provider_id == str(fake.tickets[0]["id"])
    assert "no answer after sending" in harness.rows("delivery_log")[0].reason


def test_400_fails_permanently_and_falls_back_to_the_ticket_webhook(hub_factory, http_stand_in):
    fake = FakeZendesk()
    fake.script = [Reply(400, {"error": "RecordInvalid", "description": "Record validation"})]
    receiver = FakeTicketReceiver()
    hook = http_stand_in(receiver)
    harness = zendesk_hub(
        hub_factory,
        http_stand_in(fake),
        extra_sinks=webhook_table(f"{hook.url}/hooks/tickets"),
        channels=["zendesk", "ticket_webhook"],
    )
    abandon_big_cart(harness)
    harness.start_worker()
    harness.wait_for(lambda: receiver.tickets, message="the fallback ticket")
    wait_until_steps_settle(harness, 1)
    pause(1.5)  # a wrong retry of the 400 would come within the 1 s retry base

    assert len(fake.requests) == 1 and fake.tickets == []
    zendesk_delivery, webhook_delivery = harness.rows("deliveries")
    assert zendesk_delivery.status == "failed"
    assert zendesk_delivery.reason == (
        "Zendesk ticket: HTTP 400 error: RecordInvalid; description: Record validation"
    )
    assert webhook_delivery.sink == "ticket_webhook" and webhook_delivery.status == "sent"
    assert receiver.errors == [] and len(receiver.tickets) == 1


def test_loopback_zendesk_url_is_refused_unless_the_operator_allows_it(hub_factory, http_stand_in):
    """A tenant may not point a sink at our own network: ``127.1`` is 127.0.0.1 once resolved."""
    fake = FakeZendesk()
    zendesk = http_stand_in(fake)
    port = zendesk.server.server_address[1]
    tenant = ticket_tenant(zendesk_table(f"http://127.1:{port}"), step(["zendesk"]))
    harness = hub_factory({"acme": tenant})  # no HUB_ALLOW_PRIVATE_NETWORKS
    abandon_big_cart(harness)
    harness.start_worker()
    [step_row] = wait_until_steps_settle(harness, 1)

    assert step_row.status == "failed"
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "destination refused: 127.1 resolves to 127.0.0.1" in delivery.reason
    assert fake.requests == []
