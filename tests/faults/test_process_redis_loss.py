"""Redis without persistence killed (``kill -9``) while webhooks keep arriving and a worker
runs, then started again empty. The event row is the outbox: every event answered 2xx was
committed before the answer, whatever Redis did, and the workers' sweep rebuilds the queued
events and scheduled steps Redis forgot. So: 2xx answers = stored events = mails, one each."""

from __future__ import annotations

import threading
import time

import requests
from process_helpers import ALLOW_LOOPBACK, settle
from samples import stripe_event, stripe_headers, stripe_session, tenant_toml
from ticket_stand_ins import FakeTicketReceiver, abandon, step, ticket_tenant, webhook_table

from hub.engine import Engine
from hub.testing import wait_for

MAX_EVENTS = 300  # a bound on the ingest loop; the phases below need about 15
# one post every 0.3 s: a pace one worker keeps up with on a loaded 2-core test machine, so
# that what is measured is the outage, not a backlog (a backlog has its own test below)
PACE = 0.3


def abandonment(n: int) -> tuple[str, bytes]:
    """Event ``n``: its own checkout and its own person (no supersede, no frequency cap)."""
    session = stripe_session(f"cs_loss_{n}")
    session["customer_details"].update(email=f"buyer{n}@example.com", phone=None)
    key = f"evt_loss_{n}"
    return key, stripe_event(event_id=key, session=session)


class Platform:
    """Posts one new abandonment after another until stopped; remembers every answer."""

    def __init__(self, live) -> None:  # noqa: ANN001
        self.live = live
        self.answers: dict[str, int | None] = {}  # event key -> status (None: no answer)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for n in range(MAX_EVENTS):
            if self.stop.is_set():
                return
            key, body = abandonment(n)
            try:
                status = self.live.post("acme", "stripe", body, stripe_headers(body)).status_code
            except requests.RequestException:
                status = None
            self.answers[key] = status
            time.sleep(PACE)

    def wait_for_more(self, count: int) -> None:
        target = len(self.answers) + count
        wait_for(lambda: len(self.answers) >= target, 30, message=f"{count} more posts")


def test_redis_killed_during_ingest_loses_no_acknowledged_event(
    hub_on_own_redis, own_redis, smtp_server, live_hub
):
    harness = hub_on_own_redis({"acme": tenant_toml(smtp_url=smtp_server.url)})
    live = live_hub(harness)
    worker = harness.start_worker()
    harness.wait_for(lambda: "Listening on" in harness.worker_logs(), message="worker up")
    platform = Platform(live)
    platform.thread.start()
    smtp_server.wait_for_messages(1, timeout=30)  # the worker is up and delivering
    platform.wait_for_more(3)
    own_redis.kill()  # queued events and scheduled steps are gone with it
    platform.wait_for_more(6)  # ingest while Redis is down
    own_redis.start()  # empty
    platform.wait_for_more(4)
    platform.stop.set()
    platform.thread.join(30)

    accepted = {key for key, status in platform.answers.items() if status and status < 300}
    stored = {row.event_key for row in harness.rows("events")}
    assert accepted == set(platform.answers), f"refused while Redis was down: {platform.answers}"
    assert stored == accepted  # 2xx means stored, and nothing else was stored

    smtp_server.wait_for_messages(len(accepted), timeout=60)
    harness.wait_for(
        lambda: (
            all(s.status == "sent" for s in harness.rows("steps"))
            and len(harness.rows("steps")) == len(accepted)
        ),
        timeout=30,
        message="every step sent",
    )
    recipients = sorted(to for _, [to] in smtp_server.envelopes)
    expected = sorted(f"buyer{key.rsplit('_', 1)[1]}@example.com" for key in accepted)
    assert recipients == expected  # one mail per acknowledged event, none twice
    assert len(harness.rows("journeys")) == len(accepted)
    assert worker.poll() is None  # the same worker lived through the outage


def test_sweep_does_not_multiply_a_backlog_redis_still_holds(hub_factory, smtp_server):
    """Workers that are behind (a burst, a slow start) leave events queued past
    HUB_SWEEP_AFTER. The sweep exists to rebuild what Redis *lost*; copying jobs Redis still
    holds only lengthens the queue the workers are behind on, once more with every pass."""
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    for n in range(5):
        key, body = abandonment(n)
        assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    assert harness.hub.queues.queued_events() == 5  # queued by the ingress; no worker runs yet
    time.sleep(harness.hub.settings.sweep_after + 0.5)  # older than HUB_SWEEP_AFTER

    Engine(harness.hub).sweep()
    Engine(harness.hub).sweep()
    assert harness.hub.queues.queued_events() == 5


def test_worker_lives_through_a_redis_restart_in_the_middle_of_a_job(
    hub_on_own_redis, own_redis, http_stand_in
):
    """Redis dies while a job runs (here: the ticket receiver holds our request), so RQ cannot
    record the job's end. The worker must wait for Redis and go on, not quit: ``hub run``
    starts its worker once, and a worker that silently exits delivers nothing more."""
    receiver = FakeTicketReceiver()
    held = threading.Event()
    release = threading.Event()

    def hold_the_first(request):  # noqa: ANN001, ANN202
        if not held.is_set():
            held.set()
            release.wait(30)
        return receiver(request)

    stand_in = http_stand_in(hold_the_first)
    tenant = ticket_tenant(webhook_table(f"{stand_in.url}/hooks/tickets"), step(["ticket_webhook"]))
    harness = hub_on_own_redis({"acme": tenant}, settings=ALLOW_LOOPBACK)
    worker = harness.start_worker()
    abandon(harness, "cs_first")
    harness.wait_for(held.is_set, message="the first ticket request held")
    own_redis.kill()
    release.set()  # the job ends while Redis is gone
    harness.wait_for(lambda: len(receiver.tickets) == 1, message="first ticket")
    settle(1)
    own_redis.start()  # empty

    abandon(harness, "cs_second", who=("other@example.com", None))
    harness.wait_for(lambda: len(receiver.tickets) == 2, timeout=30, message="second ticket")
    assert worker.poll() is None
    assert len(stand_in.requests) == 2
