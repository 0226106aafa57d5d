"""Retries keep the back-off they log (issue 9): with the SMTP server down, the gap between two
attempts is the "retry in Ns" of the first, although the sweep runs every second and a worker
starts in between. Real RQ workers and scheduler, real Redis, a stopped aiosmtpd server."""

from __future__ import annotations

import re

from samples import stripe_event, stripe_headers, tenant_toml

# RQ keeps due times in whole seconds and its scheduler polls about every second, and the
# logged delay is rounded to a second: an attempt may come this much early or late
EARLY, LATE = 1.6, 2.0


def test_retries_wait_their_logged_back_off_through_sweeps_and_a_worker_restart(
    hub_factory, smtp_server
):
    smtp_server.stop()
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, after="0s")},
        # back-off 2, 4, then capped at 6 s; the sweep looks every second for steps 2 s overdue
        {"HUB_RETRY_BASE": "2", "HUB_RETRY_MAX": "6", "HUB_SWEEP_AFTER": "2"},
    )
    body = stripe_event()
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    harness.wait_for(
        lambda: len(harness.rows("delivery_log")) >= 3, timeout=30, message="third failure"
    )
    # the worker restarts while the 6 s back-off runs; the new one sweeps at start-up
    harness.stop_workers()
    harness.start_worker()
    harness.wait_for(
        lambda: harness.rows("steps")[0].status == "failed", timeout=60, message="gave up"
    )

    log = harness.rows("delivery_log")
    assert [r.status for r in log] == ["retrying"] * 4 + ["failed"]
    assert log[-1].reason.startswith("gave up after 5 attempts")
    gaps = []
    for before, after in zip(log, log[1:], strict=False):
        promised = float(re.search(r"retry in (\d+)s", before.reason).group(1))
        gaps.append((promised, round((after.at - before.at).total_seconds(), 2)))
    # the restart may make the fourth attempt late (no worker runs meanwhile), never early
    assert all(p - EARLY <= gap for p, gap in gaps), gaps
    assert all(gap <= p + LATE for i, (p, gap) in enumerate(gaps) if i != 2), gaps
    assert [p for p, _ in gaps][2:] == [6.0, 6.0]  # HUB_RETRY_MAX caps the doubling
