"""Scale-out: several web processes and several workers share only Redis and the database.

Platforms retry and some send the same callback to every address they know; here every event
goes to both web processes, concurrently, while two workers drain one stream.
"""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor

from samples import stripe_event, stripe_headers, stripe_session, tenant_toml

BUYERS = 40


def post(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/webhooks/acme/stripe", body, stripe_headers(body))
        return conn.getresponse().status
    finally:
        conn.close()


def abandoned_checkout(n: int) -> bytes:
    session = stripe_session(f"cs_scale_{n}")
    session["customer_details"] = {
        **session["customer_details"],
        "email": f"buyer{n}@example.com",
        "phone": None,  # one identity per buyer: the samples share a phone otherwise
    }
    return stripe_event(event_id=f"evt_scale_{n}", session=session)


def test_two_web_processes_and_two_workers_send_each_message_once(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="1s")})
    ports = [harness.start_web(workers=2), harness.start_web(workers=1)]
    harness.start_worker()
    harness.start_worker()

    bodies = [abandoned_checkout(n) for n in range(BUYERS)]
    deliveries = [(port, body) for body in bodies for port in ports]  # each event to both
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda pb: post(*pb), deliveries))

    assert statuses == [202] * len(deliveries)
    mails = smtp_server.wait_for_messages(BUYERS, timeout=90)
    harness.wait_for(
        lambda: all(s.status == "sent" for s in harness.rows("steps")), message="steps sent"
    )
    time.sleep(2)  # room for a wrongly duplicated job to send a second time
    recipients = sorted(m["To"] for m in smtp_server.messages)
    assert recipients == sorted(f"buyer{n}@example.com" for n in range(BUYERS))
    assert len(mails) == BUYERS
    assert len(harness.rows("events")) == BUYERS
    assert len(harness.rows("journeys")) == BUYERS
    assert len(harness.rows("deliveries", status="sent")) == BUYERS
