"""A sink's provider misbehaving, against real workers: a ``Retry-After`` of 30 days, a
``Retry-After`` nobody can read, 500 after 500, and a request that hangs. The engine, not the
plugin, decides: clamp the provider's hint to HUB_RETRY_MAX, back off exponentially with
±20 % jitter otherwise, stop after the sink's ``max_attempts`` and fall back to the step's next
channel once, and let the sink's timeout end a hang while other tenants' messages flow.

HUB_SWEEP_AFTER is set above every retry delay here, so that these tests see the engine's own
retry schedule; the sweep re-queuing a retry before its time is a separate, known bug (see
``test_a_retry_waits_its_back_off_while_the_sweep_runs``).
"""

from __future__ import annotations

import re
import threading
import time

from process_helpers import (
    ALLOW_LOOPBACK,
    email_sink,
    fault_tenant,
    settle,
    webhook_sink,
    whatsapp_sink,
)
from samples import stripe_event, stripe_headers, stripe_session
from ticket_stand_ins import FakeTicketReceiver, abandon

from hub.engine import Engine
from hub.testing import RecordedRequest, Reply

FINAL = ("sent", "skipped", "failed", "unknown", "cancelled")
# the steps use the stock ticket template; an e-mail for it (fallback, other tenant) is ours
EMAIL_TEMPLATE = {
    "call_prospect/email.en.subject": "Your cart at {{ tenant.name }}",
    "call_prospect/email.en.txt": "Hello {{ customer.name }}, your cart: {{ recovery_url }}",
}


class Timed:
    """Wraps a stand-in handler and notes when each request arrived."""

    def __init__(self, handler) -> None:  # noqa: ANN001
        self.handler = handler
        self.arrivals: list[float] = []

    def __call__(self, request: RecordedRequest) -> Reply:
        self.arrivals.append(time.monotonic())
        return self.handler(request)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


def tenant(sinks: str, channels: str = '["ticket_webhook"]', name: str = "Acme Shoes") -> str:
    return fault_tenant(sinks, [("1s", channels, "call_prospect")], name=name)


def ticket_hub(hub_factory, http_stand_in, script: list, sinks: str = "", **settings):  # noqa: ANN001, ANN003, ANN201
    receiver = FakeTicketReceiver()
    receiver.script = list(script)
    timed = Timed(receiver)
    stand_in = http_stand_in(timed)
    harness = hub_factory(
        {"acme": tenant(webhook_sink(stand_in.url) + sinks, **settings.pop("tenant", {}))},
        settings={**ALLOW_LOOPBACK, **{k: str(v) for k, v in settings.items()}},
        templates=EMAIL_TEMPLATE,
    )
    return harness, receiver, timed


def start_and_wait(harness) -> None:  # noqa: ANN001
    """A worker that is already listening, so step times count from the abandonment."""
    harness.start_worker()
    harness.wait_for(lambda: "Listening on" in harness.worker_logs(), message="worker up")


def settled_step(harness, timeout: float = 30.0):  # noqa: ANN001, ANN201
    def done():  # noqa: ANN202
        rows = harness.rows("steps")
        return rows[0] if rows and rows[0].status in FINAL else None

    return harness.wait_for(done, timeout, message="the step settled")


def retry_delays(harness) -> list[int]:  # noqa: ANN001
    """The delays the engine chose, from the delivery log ("…; retry in 3s")."""
    found = [re.search(r"retry in (\d+)s", r.reason or "") for r in harness.rows("delivery_log")]
    return [int(m.group(1)) for m in found if m]


def test_retry_after_of_thirty_days_is_clamped_to_retry_max(hub_factory, http_stand_in):
    harness, receiver, timed = ticket_hub(
        hub_factory,
        http_stand_in,
        [Reply(429, {"error": "slow down"}, {"Retry-After": "2592000"})],
        HUB_RETRY_MAX=3,
        HUB_SWEEP_AFTER=60,
    )
    start_and_wait(harness)
    abandon(harness)
    step = settled_step(harness)

    assert step.status == "sent"
    assert retry_delays(harness) == [3]
    [gap] = timed.gaps()
    assert 1.5 < gap < 6.0  # 3 s, give or take RQ's whole-second scheduling
    [delivery] = harness.rows("deliveries")
    assert delivery.attempts == 2 and len(receiver.tickets) == 1


def test_no_send_after_the_recovery_url_expired_while_waiting_to_retry(hub_factory, http_stand_in):
    """Stripe's recovery URL dies after its ``expires_at``; a message with a dead link is
    worse than none, so the retry that comes after it sends nothing."""
    harness, receiver, timed = ticket_hub(
        hub_factory,
        http_stand_in,
        [Reply(429, {"error": "slow down"}, {"Retry-After": "2592000"})],
        # no margin: the first attempt goes out 4 s before expiry (tests/test_dead_links.py
        # covers the default hour)
        '\n[links]\nmargin = "0s"\n',
        HUB_RETRY_MAX=8,
        HUB_SWEEP_AFTER=60,
    )
    start_and_wait(harness)
    session = stripe_session()
    session["after_expiration"]["recovery"]["expires_at"] = int(time.time()) + 5
    body = stripe_event(session=session)
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.wait_for(lambda: timed.arrivals, message="the first attempt (before expiry)")
    step = settled_step(harness)

    assert step.status == "skipped" and step.reason == "recovery URL expired"
    assert retry_delays(harness) == [8]
    settle(1)
    assert len(timed.arrivals) == 1 and receiver.tickets == {}


def test_unreadable_retry_after_means_the_normal_back_off(hub_factory, http_stand_in):
    harness, receiver, timed = ticket_hub(
        hub_factory,
        http_stand_in,
        [Reply(429, {"error": "slow down"}, {"Retry-After": "soon, maybe"})],
        HUB_RETRY_BASE=2,
        HUB_RETRY_MAX=60,
        HUB_SWEEP_AFTER=60,
    )
    start_and_wait(harness)
    abandon(harness)
    step = settled_step(harness)

    assert step.status == "sent"
    assert retry_delays(harness) == [2]  # 2 s ± 20 %: neither "now" nor the 60 s cap
    [gap] = timed.gaps()
    assert 0.5 < gap < 5.0
    assert len(receiver.tickets) == 1


def test_500_after_500_backs_off_gives_up_after_max_attempts_and_falls_back_once(
    hub_factory, http_stand_in, smtp_server
):
    harness, receiver, timed = ticket_hub(
        hub_factory,
        http_stand_in,
        [Reply(500, {"error": "internal"})] * 20,
        sinks=email_sink(smtp_server.url),
        tenant={"channels": '["ticket_webhook", "email"]'},
        HUB_RETRY_BASE=0.5,
        HUB_RETRY_MAX=1,
        HUB_SWEEP_AFTER=60,
    )
    start_and_wait(harness)
    abandon(harness, consent={"promotions": "opt_in", "terms_of_service": None})
    step = settled_step(harness, timeout=45)

    assert step.status == "sent" and "email" in step.reason
    assert len(timed.arrivals) == 5  # the ticket sink's max_attempts, no more
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    ticket, mail = harness.rows("deliveries")
    assert (ticket.sink, ticket.status, ticket.attempts) == ("ticket_webhook", "failed", 5)
    assert ticket.reason.startswith("gave up after 5 attempts: ticket webhook: HTTP 500")
    assert (mail.sink, mail.status) == ("email", "sent")
    assert all(d <= 1 for d in retry_delays(harness)) and len(retry_delays(harness)) == 4
    settle(1)
    assert len(smtp_server.messages) == 1 and len(timed.arrivals) == 5


def test_back_off_doubles_with_twenty_percent_jitter_up_to_the_cap(hub_factory):
    """What the end-to-end tests cannot see through whole-second scheduling: each delay is
    base · 2^(attempt-1) ± 20 %, spread (so retries of many journeys do not march in step),
    and never above HUB_RETRY_MAX; a provider's hint is clamped to [1 s, HUB_RETRY_MAX]."""
    harness = hub_factory({}, settings={"HUB_RETRY_BASE": 10, "HUB_RETRY_MAX": 50})
    engine = Engine(harness.hub)
    for attempt, nominal in ((1, 10), (2, 20), (3, 40)):
        delays = [engine.backoff(attempt, None) for _ in range(300)]
        assert min(delays) >= 0.8 * nominal and max(delays) <= min(1.2 * nominal, 50)
        assert max(delays) - min(delays) > 0.2 * nominal  # really jittered
    assert {engine.backoff(4, None) for _ in range(50)} <= {50.0} | set()  # 80 ± 20 % > cap
    assert engine.backoff(1, 2592000) == 50 and engine.backoff(1, 0) == 1


def test_a_hanging_provider_is_cut_by_its_timeout_while_another_tenant_is_served(
    hub_factory, http_stand_in, smtp_server
):
    """WhatsApp holds our request; its read timeout (8 s, room for a loaded test machine)
    ends it as ``unknown`` (the message may have gone out: not resent). Meanwhile another
    worker serves the other tenant's e-mails: one stuck provider does not stop the hub."""
    release = threading.Event()

    def hang(request: RecordedRequest) -> Reply:
        release.wait(20)
        return Reply(200, {"messages": [{"id": "wamid.late"}]})

    slow = Timed(hang)
    stand_in = http_stand_in(slow)
    whatsapp = whatsapp_sink(stand_in.url, read_timeout=8)
    harness = hub_factory(
        {
            "acme": tenant(whatsapp, '["whatsapp"]'),
            "beta": tenant(email_sink(smtp_server.url), '["email"]', name="Beta"),
        },
        # above the read timeout, as in production (60 s against 20 s); below it, see
        # test_a_send_in_flight_longer_than_sweep_after_is_not_taken_for_a_crash
        settings={**ALLOW_LOOPBACK, "HUB_SWEEP_AFTER": 30},
        templates=EMAIL_TEMPLATE,
    )
    harness.start_worker()
    harness.start_worker()
    try:
        abandon(harness)
        harness.wait_for(lambda: slow.arrivals, message="the hanging WhatsApp request")
        for n in range(3):
            session = stripe_session(f"cs_beta_{n}")
            session["customer_details"].update(email=f"b{n}@example.com", phone=None)
            body = stripe_event(event_id=f"evt_beta_{n}", session=session)
            assert harness.post("beta", "stripe", body, stripe_headers(body)).status_code == 202
        smtp_server.wait_for_messages(3, timeout=20)
        beta_done = time.monotonic()

        hung = settled_step(harness)
        cut = time.monotonic()
    finally:
        release.set()
    [whatsapp_delivery] = harness.rows("deliveries", sink="whatsapp")
    assert whatsapp_delivery.status == "unknown"
    assert "no answer after sending (ReadTimeout)" in whatsapp_delivery.reason
    assert hung.status == "unknown"
    assert cut - slow.arrivals[0] < 8 + 4  # the timeout, plus recording it
    assert beta_done < slow.arrivals[0] + 8  # served while the request still hung
    settle(1)
    assert len(slow.arrivals) == 1  # never resent: the Cloud API does not dedupe
    assert len(smtp_server.messages) == 3


def test_a_retry_waits_its_back_off_while_the_sweep_runs(hub_factory, http_stand_in):
    """Production has HUB_SWEEP_AFTER=60 s and retries up to HUB_RETRY_MAX=3600 s: the sweep
    must not cut a provider's Retry-After short. Scaled down: sweep after 2 s, retry in 6 s."""
    harness, receiver, timed = ticket_hub(
        hub_factory,
        http_stand_in,
        [Reply(429, {"error": "slow down"}, {"Retry-After": "6"})],
        HUB_RETRY_MAX=60,
        HUB_SWEEP_AFTER=2,
    )
    start_and_wait(harness)
    abandon(harness)
    step = settled_step(harness)

    assert step.status == "sent"
    [gap] = timed.gaps()
    assert gap > 5.0, f"retried after {gap:.1f}s instead of 6 s"


def test_a_send_in_flight_longer_than_sweep_after_is_not_taken_for_a_crash(
    hub_factory, http_stand_in
):
    """Two workers; WhatsApp answers after 4 s (read timeout 6 s), the sweep runs after 2 s."""
    slow = Timed(lambda _r: Reply(200, {"messages": [{"id": "wamid.slow"}]}, delay=4))
    stand_in = http_stand_in(slow)
    whatsapp = whatsapp_sink(stand_in.url, read_timeout=6)
    harness = hub_factory(
        {"acme": tenant(whatsapp, '["whatsapp"]')},
        settings={**ALLOW_LOOPBACK, "HUB_SWEEP_AFTER": 2},
    )
    harness.start_worker()
    harness.start_worker()
    abandon(harness)
    harness.wait_for(lambda: slow.arrivals, message="the slow WhatsApp request")
    harness.wait_for(
        lambda: harness.rows("deliveries")[0].status not in ("sending",), message="recorded"
    )
    settle(5)  # the slow answer arrives and is recorded
    [delivery] = harness.rows("deliveries")
    assert [r.status for r in harness.rows("delivery_log")] == ["sent"]
    assert delivery.status == "sent" and len(slow.arrivals) == 1
