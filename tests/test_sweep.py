"""The sweep rebuilds what Redis lost, and only that (issue 9): a step still queued or
scheduled, or one whose send a live process holds (its lease), is left alone; a step whose job
is gone is queued once, and its copy counts as queued on the next pass. Real Redis and RQ, the
engine's clock moved forward instead of waiting. Also: a retry that will never run does not
leave its ledger row ``retrying``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from samples import stripe_completed, stripe_event, stripe_headers, tenant_toml

from hub.engine import Engine
from hub.leases import Leases
from hub.queues import Queues


def abandoned_step(harness) -> Engine:  # noqa: ANN001
    """One journey whose step fell due an hour ago and waits on the steps queue (workers
    behind); returns an engine for now, when it is overdue past HUB_SWEEP_AFTER."""
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    body = stripe_event(created=int(two_hours_ago.timestamp()))
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    [event] = harness.rows("events")
    Engine(harness.hub, clock=lambda: two_hours_ago).process_event(event.id)
    [step] = harness.rows("steps")
    assert step.status == "scheduled"
    assert harness.hub.queues.steps.count == 1
    return Engine(harness.hub)


def redis_forgets_everything(harness) -> None:  # noqa: ANN001
    queues = harness.hub.queues
    queues.connection.delete(*queues.connection.keys(f"*{queues.namespace}*"))
    assert queues.steps.count == 0


def test_sweep_leaves_a_step_whose_job_redis_still_holds(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="1h")})
    engine = abandoned_step(harness)

    assert engine.sweep()["steps"] == 0
    assert engine.sweep()["steps"] == 0
    assert harness.hub.queues.steps.count == 1


def test_sweep_queues_a_lost_step_once_however_often_it_runs(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="1h")})
    engine = abandoned_step(harness)
    redis_forgets_everything(harness)

    assert engine.sweep()["steps"] == 1
    assert engine.sweep()["steps"] == 0  # the copy it queued is still waiting
    assert engine.sweep()["steps"] == 0
    assert harness.hub.queues.steps.count == 1


def test_sweep_takes_a_step_still_scheduled_long_after_its_time_and_adds_no_copy(
    hub_factory, smtp_server
):
    """RQ's scheduler moves a due job within a second; one still scheduled HUB_SWEEP_AFTER
    later has no live scheduler (a killed worker's keeps the queue's lock for a minute)."""
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="1h")})
    body = stripe_event()
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    Engine(harness.hub).process_event(harness.rows("events")[0].id)
    scheduled = harness.hub.queues.steps.scheduled_job_registry
    assert scheduled.count == 1
    two_hours_on = datetime.now(UTC) + timedelta(hours=2)
    engine = Engine(harness.hub, clock=lambda: two_hours_on)

    assert engine.sweep()["steps"] == 1
    assert engine.sweep()["steps"] == 1  # still not moved: queued again, under the same id
    assert scheduled.count == 1
    assert harness.hub.queues.steps.count == 0


def test_sweep_leaves_a_step_whose_send_a_live_process_holds(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="1h")})
    engine = abandoned_step(harness)
    redis_forgets_everything(harness)
    [step] = harness.rows("steps")

    with engine.scheduler.sending(step.id):
        assert engine.scheduler.in_flight([step.id]) == {step.id}
        assert engine.sweep()["steps"] == 0
    assert engine.scheduler.in_flight([step.id]) == set()
    assert engine.sweep()["steps"] == 1  # released without a recorded outcome: lost


def test_a_lease_outlives_its_ttl_while_held_and_ends_with_the_block(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    queues = harness.hub.queues
    leases = Leases(queues.connection, queues.namespace, ttl=1)
    with leases.hold("step-7"):
        time.sleep(2.5)  # longer than the TTL: the keeper thread refreshed it
        assert leases.alive(["step-7", "step-8"]) == {"step-7"}
        assert 0 < queues.connection.ttl(leases.key("step-7")) <= 1
    assert leases.alive(["step-7"]) == set()


def test_a_lease_taken_without_redis_does_not_stop_the_send(hub_factory, smtp_server, caplog):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    nowhere = Queues("redis://127.0.0.1:1/0", "", harness.hub.installation)
    ran = []
    with nowhere.leases.hold("step-7"):
        ran.append(True)
    assert ran == [True]
    assert "lease" in caplog.text and "not taken" in caplog.text
    with pytest.raises(redis.ConnectionError):  # the sweep fails and tries on its next tick
        nowhere.leases.alive(["step-7"])


def test_a_retry_that_will_not_run_leaves_no_retrying_ledger_row(hub_factory, smtp_server):
    smtp_server.stop()  # the first attempt fails retryably
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="0s")})
    body = stripe_event()
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    Engine(harness.hub).process_event(harness.rows("events")[0].id)  # the step runs inline
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "retrying"

    body = stripe_completed()
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    converted = max(row.id for row in harness.rows("events"))
    Engine(harness.hub).process_event(converted)

    [step] = harness.rows("steps")
    [delivery] = harness.rows("deliveries")
    assert step.status == "cancelled"
    assert delivery.status == "skipped"
    assert delivery.reason.startswith("retry dropped: ")
