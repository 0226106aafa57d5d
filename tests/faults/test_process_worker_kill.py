"""``kill -9`` of the whole worker while a sink's request is in flight (the provider holds it
open), then a new worker and its sweep. The delivery guarantee (README) says:

* a provider that does not deduplicate (the WhatsApp Cloud API) got at most one call: the
  ledger row written before the call turns into ``unknown`` and is never resent, on no channel;
* a provider that deduplicates on our id (the signed ticket webhook's ``webhook-id``) is called
  again with the same id, and the receiver keeps one ticket;
* either way the journey goes on: its later step is still delivered, once.

The kill takes every process of the worker: its process group and any descendant outside it
(RQ's fork-per-job work-horse would be one; the hub's SimpleWorker has none, but its scheduler
is a forked child).
"""

from __future__ import annotations

import threading

import pytest
from process_helpers import (
    ALLOW_LOOPBACK,
    PHONE_NUMBER_ID,
    email_sink,
    fault_tenant,
    kill_hard,
    process_tree,
    settle,
    webhook_sink,
    whatsapp_sink,
)
from ticket_stand_ins import FakeTicketReceiver, abandon

from hub.testing import RecordedRequest, Reply

WAMID = "wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjQ1RkEwQjg5"
HOLD = 30.0  # the provider holds the first request at most this long (the test releases it)


class HoldFirst:
    """A provider that takes the first request and holds its answer until released."""

    def __init__(self, answer) -> None:  # noqa: ANN001 - RecordedRequest -> Reply
        self.answer = answer
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, request: RecordedRequest) -> Reply:
        self.calls += 1
        if self.calls == 1:
            self.release.wait(HOLD)
        return self.answer(request)


def whatsapp_answer(request: RecordedRequest) -> Reply:
    assert request.path == f"/v26.0/{PHONE_NUMBER_ID}/messages", request.path
    to = request.json()["to"]
    return Reply(200, {"contacts": [{"input": to, "wa_id": to}], "messages": [{"id": WAMID}]})


def tenant(channel_table: str, first_channels: str) -> str:
    """Step 0 goes to the provider under test (e-mail as its fallback), step 1 by e-mail 8 s
    after the abandonment: it must still arrive, once, after the crash."""
    steps = [("1s", first_channels, "call_prospect"), ("8s", '["email"]', "reminder")]
    return fault_tenant(channel_table, steps)


# the step's e-mail fallback needs an e-mail version of the staff template (config check)
FALLBACK_EMAIL = {
    "call_prospect/email.en.subject": "Call {{ customer.name }}",
    "call_prospect/email.en.txt": "Please call {{ customer.name }} about {{ cart.total_display }}.",
}


def crash_in_flight(harness, provider) -> None:  # noqa: ANN001
    """Start a worker, wait until the provider holds its request, kill the worker's tree."""
    worker = harness.start_worker()
    harness.wait_for(lambda: provider.calls == 1, message="the provider holding a request")
    assert process_tree(worker.pid) >= {worker.pid}
    killed = kill_hard(worker)
    assert len(killed) >= 2, "the scheduler child should have been part of the kill"
    provider.release.set()  # the provider answers into a closed socket
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "sending"  # written before the call; the crash left it so


def wait_steps(harness):  # noqa: ANN001, ANN201
    """Both steps settled (neither scheduled nor retrying any more)."""

    def settled():  # noqa: ANN202
        rows = harness.rows("steps")
        done = len(rows) == 2 and all(r.status not in ("scheduled", "retrying") for r in rows)
        return rows if done else None

    return harness.wait_for(settled, timeout=30, message="both steps settled")


@pytest.mark.parametrize("provider_dedupes", [False, True], ids=["whatsapp", "ticket_webhook"])
def test_worker_killed_mid_request_keeps_the_guarantee_and_the_journey(
    hub_factory, smtp_server, http_stand_in, provider_dedupes
):
    if provider_dedupes:
        receiver = FakeTicketReceiver()
        provider = HoldFirst(receiver)
        stand_in = http_stand_in(provider)
        table = webhook_sink(stand_in.url, timeout=60)
        channels = '["ticket_webhook", "email"]'
    else:
        provider = HoldFirst(whatsapp_answer)
        stand_in = http_stand_in(provider)
        table = whatsapp_sink(stand_in.url, read_timeout=60)
        channels = '["whatsapp", "email"]'
    harness = hub_factory(
        {"acme": tenant(table + email_sink(smtp_server.url), channels)},
        settings=ALLOW_LOOPBACK,
        templates=FALLBACK_EMAIL,
    )
    abandon(harness, consent={"promotions": "opt_in", "terms_of_service": None})

    crash_in_flight(harness, provider)
    harness.start_worker()  # a fresh worker; its sweep finds what the dead one left
    first, second = wait_steps(harness)

    settle(2)  # a wrong resend would reach the provider or the SMTP server now
    first_delivery = harness.rows("deliveries", step_index=0)
    if provider_dedupes:
        assert stand_in.requests and len(stand_in.requests) == 2
        ids = {r.headers["webhook-id"] for r in stand_in.requests}
        assert ids == {str(first_delivery[0].id)}  # the same idempotency key both times
        assert len(receiver.tickets) == 1 and receiver.errors == []
        assert first_delivery[0].status == "sent" and first_delivery[0].attempts == 2
    else:
        assert len(stand_in.requests) == 1  # never resent without provider dedupe
        [delivery] = first_delivery  # and no fallback mail either: that too is a duplicate
        assert delivery.status == "unknown"
        assert "not resent" in delivery.reason
    assert first.status == ("sent" if provider_dedupes else "unknown")
    assert second.status == "sent"
    assert len(smtp_server.messages) == 1  # step 1's mail, once
