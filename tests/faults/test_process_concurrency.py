"""The same platform event posted ten times at once to a real server (gunicorn, two processes
with four threads each): platforms deliver at least once and retry in parallel, so the copies
race each other through verification and the insert. The database's unique key must make one
of them the event and the others duplicates: one row, one journey, one message."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from process_helpers import settle
from samples import stripe_event, stripe_headers, tenant_toml

COPIES = 10


def test_same_event_ten_times_at_once_stores_one_and_sends_one_mail(
    hub_factory, smtp_server, live_hub
):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    live = live_hub(harness, workers=2, threads=4)
    body = stripe_event()
    headers = stripe_headers(body)
    start = threading.Barrier(COPIES, timeout=10)

    def post(_: int):  # noqa: ANN202
        start.wait()  # all ten leave together
        return live.post("acme", "stripe", body, headers)

    with ThreadPoolExecutor(COPIES) as pool:
        answers = list(pool.map(post, range(COPIES)))

    assert [a.status_code for a in answers] == [202] * COPIES, live.logs()[-3000:]
    assert sorted(a.json()["stored"] for a in answers) == [0] * (COPIES - 1) + [1]
    assert sum(a.json()["duplicates"] for a in answers) == COPIES - 1
    assert len(harness.rows("events")) == 1

    harness.start_worker()
    smtp_server.wait_for_messages(1)
    harness.wait_for(
        lambda: [s for s in harness.rows("steps") if s.status == "sent"], message="step sent"
    )
    settle(2)  # a duplicated job would send its second mail now
    assert len(smtp_server.messages) == 1
    assert len(harness.rows("journeys")) == 1
    assert len(harness.rows("steps")) == 1
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "sent" and delivery.attempts == 1
