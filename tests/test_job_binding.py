"""Jobs belong to the database and tenant they were made for (issue 9).

Redis outlives the database it served: ``hub run`` keeps its Redis and AOF under ``var/`` when
``DATABASE_URL`` changes, two installations may share one Redis database, and a database
restored from a backup hands out the same ids again. A job run against rows it was not made for
sends a message to the wrong person. Real RQ workers, Redis and SMTP throughout; two databases
(SQLite files, or PostgreSQL schemas) where a test needs two installations.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from samples import stripe_event, stripe_headers, stripe_session, tenant_toml

from hub.engine import Engine, link_serializer
from hub.queues import Queues
from hub.store import (
    consent_evidence,
    deliveries,
    delivery_log,
    events,
    journeys,
    steps,
    tracking_events,
)
from hub.testing import SmtpServer

SHARED_PREFIX = "shared-"
# no sweep rescues a lost job within a test: what arrives, the jobs themselves sent
NO_SWEEP = {"HUB_QUEUE_PREFIX": SHARED_PREFIX, "HUB_SWEEP_AFTER": "600", "HUB_RETRY_BASE": "2"}


def abandon(harness, email: str, checkout: str, ago: int = 0) -> None:  # noqa: ANN001
    """A signed Stripe abandonment of ``email``, which happened ``ago`` seconds back."""
    session = stripe_session(checkout)
    session["customer_details"].update(email=email, phone=None)  # one person each
    body = stripe_event(event_id=f"evt_{checkout}", session=session, created=int(time.time()) - ago)
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202


def recipients(smtp: SmtpServer) -> list[str]:
    return sorted(to for _sender, rcpts in smtp.envelopes for to in rcpts)


def start_worker_and_wait_past(harness, due: datetime) -> None:  # noqa: ANN001
    """Start a worker, and return once it has listened long enough for jobs due at ``due`` to
    have run (a loaded machine may take many seconds to start one)."""
    harness.start_worker()
    harness.wait_for(
        lambda: "Listening on" in harness.worker_logs(), timeout=90, message="worker listening"
    )
    # the scheduler polls about every second and RQ keeps whole seconds
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 4)


def second_hub(hub_factory, database_factory, tenant: str, **settings: str):  # noqa: ANN001, ANN201
    url, schema = database_factory()
    return hub_factory(
        {"acme": tenant},
        {**NO_SWEEP, "DATABASE_URL": url, "DATABASE_SCHEMA": schema or "", **settings},
    )


def process_stored_events(harness) -> None:  # noqa: ANN001
    """What a worker does with them, in this process (the step jobs still go to Redis)."""
    for row in harness.rows("events", status="stored"):
        Engine(harness.hub).process_event(row.id)


def restore_empty_backup(store) -> None:  # noqa: ANN001
    """What restoring a backup taken before any checkout does to ids: the rows are gone and
    the next row gets id 1 again (SQLite reuses max(id) + 1; PostgreSQL's sequences go back)."""
    # children before parents (foreign keys)
    tables = (
        tracking_events,
        consent_evidence,
        delivery_log,
        deliveries,
        steps,
        journeys,
        events,
    )
    with store.begin() as conn:
        for table in tables:
            conn.execute(sa.delete(table))
        if store.is_postgres:
            for table in tables:
                conn.execute(sa.text(f"ALTER SEQUENCE {table.name}_id_seq RESTART WITH 1"))


def test_two_installations_sharing_one_redis_database_each_send_their_own(
    hub_factory, database_factory, smtp_server
):
    """Same Redis database, same HUB_QUEUE_PREFIX, same tenant name: neither worker ever takes
    the other's jobs, so each customer gets exactly their own hub's message."""
    other_smtp = SmtpServer().start()
    try:
        first = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="0s")}, NO_SWEEP)
        second = second_hub(
            hub_factory, database_factory, tenant_toml(smtp_url=other_smtp.url, after="0s")
        )
        second.start_worker()  # only the second hub's worker runs while the first hub ingests
        abandon(first, "alice@example.com", "cs_alice")
        abandon(second, "bob@example.com", "cs_bob")
        other_smtp.wait_for_messages(1)
        time.sleep(2)  # time for the second worker to take (and lose) the first hub's jobs
        first.start_worker()
        smtp_server.wait_for_messages(1)
        time.sleep(2)
        assert recipients(smtp_server) == ["alice@example.com"]
        assert recipients(other_smtp) == ["bob@example.com"]
        assert first.hub.installation != second.hub.installation
        assert first.hub.queues.namespace not in second.worker_logs()
        assert second.hub.queues.namespace not in first.worker_logs()
    finally:
        other_smtp.stop()


def test_a_retry_and_a_step_scheduled_before_a_database_switch_never_reach_the_new_database(
    hub_factory, database_factory, smtp_server
):
    """Start on one database, leave a retry and a step 8 s ahead in Redis, switch the database
    under the same Redis: nothing fires there; switched back, both are sent."""
    smtp_server.stop()  # carol's first attempt fails: a retry is left scheduled
    tenant = tenant_toml(smtp_url=smtp_server.url, after="8s")
    old = hub_factory({"acme": tenant}, NO_SWEEP)
    abandon(old, "carol@example.com", "cs_carol", ago=60)  # step 1, due at once
    old.start_worker()
    old.wait_for(lambda: old.rows("deliveries"), message="carol's first attempt")
    abandon(old, "alice@example.com", "cs_alice")  # step 2, due in 8 s
    old.wait_for(lambda: len(old.rows("steps")) == 2, message="alice's step scheduled")
    old.stop_workers()
    alice_due = old.rows("steps")[1].due_at
    assert old.rows("deliveries")[0].status == "retrying"

    smtp_server.start()
    new = second_hub(
        hub_factory, database_factory, tenant_toml(smtp_url=smtp_server.url, after="1h")
    )
    abandon(new, "bob@example.com", "cs_bob")  # steps 1 and 2 of the new database, due in 1 h
    abandon(new, "dave@example.com", "cs_dave")
    process_stored_events(new)  # the rows exist before any worker runs on this database
    # both old jobs are due by alice's time (the retry comes within 2 s or 4 s ± 20 %)
    start_worker_and_wait_past(new, alice_due)
    assert smtp_server.messages == []
    assert [s.status for s in new.rows("steps")] == ["scheduled", "scheduled"]
    assert new.rows("deliveries") == []
    new.stop_workers()
    assert old.hub.queues.namespace not in new.worker_logs()

    old.start_worker()  # back on the old database: its jobs were kept, not lost
    smtp_server.wait_for_messages(2, timeout=30)
    time.sleep(1)
    assert recipients(smtp_server) == ["alice@example.com", "carol@example.com"]


def test_jobs_for_rows_a_restored_backup_reused_the_ids_of_are_dropped_and_logged(
    hub_factory, database, smtp_server
):
    """Same installation, same queues: the jobs reach the worker, whose check finds that the
    rows with their ids are other ones (the tokens differ) and drops them with a warning."""
    smtp_server.stop()
    old = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="8s")}, NO_SWEEP)
    abandon(old, "carol@example.com", "cs_carol", ago=60)
    old.start_worker()
    old.wait_for(lambda: old.rows("deliveries"), message="carol's first attempt")
    abandon(old, "alice@example.com", "cs_alice")
    old.wait_for(lambda: len(old.rows("steps")) == 2, message="alice's step")
    old.stop_workers()
    old_steps = old.rows("steps")
    alice_due = old_steps[1].due_at

    restore_empty_backup(old.hub.store)
    smtp_server.start()
    # the hub restarts on the restored database, whose flow now waits an hour: anything sent
    # within the test is wrong
    url, schema = database
    restored = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, after="1h")},
        {**NO_SWEEP, "DATABASE_URL": url, "DATABASE_SCHEMA": schema or ""},
    )
    abandon(restored, "bob@example.com", "cs_bob")
    abandon(restored, "dave@example.com", "cs_dave")
    process_stored_events(restored)
    assert [s.id for s in restored.rows("steps")] == [s.id for s in old_steps]  # ids came back
    start_worker_and_wait_past(restored, alice_due)
    assert smtp_server.messages == []
    assert [s.status for s in restored.rows("steps")] == ["scheduled", "scheduled"]
    assert restored.hub.installation == old.hub.installation
    dropped = [line for line in restored.worker_logs().splitlines() if "dropped job" in line]
    assert len(dropped) == 2
    assert all(" WARNING " in line for line in dropped)
    for step in old_steps:  # each line names the job and says why
        assert any(
            f"step-{step.id}-{step.token}-" in line
            and f"step {step.id} is another row than the job was made for" in line
            for line in dropped
        ), dropped


def test_a_job_of_another_installation_or_without_binding_on_our_queue_is_dropped(
    hub_factory, smtp_server
):
    """Two installation ids sharing their first 8 hex digits share queue names; a job made by
    an older hub carries no binding. Both reach our worker, which runs neither."""
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="1h")}, NO_SWEEP)
    abandon(harness, "bob@example.com", "cs_bob")
    process_stored_events(harness)
    [step] = harness.rows("steps")
    ours = harness.hub.installation
    twin = Queues(harness.hub.queues.url, SHARED_PREFIX, ours[:8] + str(uuid.uuid4())[8:])
    assert twin.namespace == harness.hub.queues.namespace
    # due now on the step's own row and tenant: only the installation says it is not ours
    twin.schedule_step(
        step.id, step.due_at - timedelta(hours=1), 1, tenant="acme", token=step.token
    )
    harness.hub.queues.steps.enqueue(
        "hub.jobs.run_step", step.id, 1, job_id=f"{twin.namespace}legacy-step", result_ttl=0
    )
    output = harness.run_burst()
    assert output.count("dropped job") == 2, output
    assert f"made for installation {twin.installation}, this database is {ours}" in output
    assert "legacy-step: the job carries no installation binding" in output
    assert smtp_server.messages == []
    assert harness.rows("steps")[0].status == "scheduled"
    assert harness.rows("deliveries") == []


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda inst, j: [inst[:8], j.id, j.token, "email"], 200),
        (lambda inst, j: [j.id, "email"], 200),  # mailed before links were bound
        (lambda inst, j: ["0badc0de", j.id, j.token, "email"], 404),  # another installation
        (lambda inst, j: [inst[:8], j.id, "restored0000000", "email"], 404),  # an earlier row
    ],
)
def test_an_unsubscribe_link_works_only_for_the_journey_it_was_mailed_for(
    hub_factory, smtp_server, make, status
):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="1h")}, NO_SWEEP)
    abandon(harness, "bob@example.com", "cs_bob")
    process_stored_events(harness)
    [journey] = harness.rows("journeys")
    token = link_serializer(harness.hub.settings.secret_key, "unsubscribe").dumps(
        make(harness.hub.installation, journey)
    )
    assert harness.client.post(f"/u/{token}").status_code == status
    assert harness.rows("journeys")[0].status == ("unsubscribed" if status == 200 else "open")


def test_an_event_entry_of_another_installation_on_our_event_list_is_dropped(
    hub_factory, smtp_server
):
    """The event list is shared by installations whose ids share 8 hex digits: an entry made
    by the twin names a row of ours (same id, tenant) yet is dropped, never processed."""
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="0s")}, NO_SWEEP)
    ours = harness.hub.installation
    twin = Queues(harness.hub.queues.url, SHARED_PREFIX, ours[:8] + str(uuid.uuid4())[8:])
    abandon(harness, "bob@example.com", "cs_bob")
    [event] = harness.rows("events")
    harness.hub.queues.take_events()  # our own hand-off is lost; only the twin's entry remains
    twin.enqueue_event(event.id, "acme")
    harness.hub.queues.connection.rpush(harness.hub.queues.event_list, b"not an entry")
    output = harness.run_burst()
    assert f"dropped event {event.id}: made for installation {twin.installation}" in output
    assert "not an event entry" in output
    assert harness.rows("events")[0].status == "stored"
    assert smtp_server.messages == []
