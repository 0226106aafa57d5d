"""The worker's queues: a due step never waits behind a backlog of unrelated ingest work."""

from __future__ import annotations

import json

from samples import stripe_completed, stripe_event, stripe_headers, stripe_session, tenant_toml

BACKLOG = 300


def test_a_due_step_is_sent_before_an_event_backlog_drains(hub_factory, smtp_server):
    """Webhook bursts fill the ``events`` queue; the step of an abandonment already processed
    must go out without waiting for all of them (issue: 35 000 queued events meant minutes
    without a single send)."""
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="0s")})
    first = stripe_event(event_id="evt_first", session=stripe_session("cs_first"))
    assert harness.post("acme", "stripe", first, stripe_headers(first)).status_code == 202
    for n in range(BACKLOG):  # other buyers paying: work for the events queue, no messages
        event = json.loads(
            stripe_completed(f"cs_paid_{n}", event_id=f"evt_paid_{n}", email=f"p{n}@example.com")
        )
        event["data"]["object"]["customer_details"]["phone"] = None  # not Jane: no shared phone
        body = json.dumps(event).encode()
        assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202

    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1, timeout=60)
    waiting = [e for e in harness.rows("events") if e.status != "processed"]

    assert mail["To"] == "jane@example.com"
    # round-robin between the queues: the step ran after a handful of events, not after all
    assert len(waiting) > BACKLOG // 2
