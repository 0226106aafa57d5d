"""HubSpot end to end: signed Stripe abandonment → real worker → a HubSpot stand-in."""

from __future__ import annotations

from ticket_stand_ins import (
    ALLOW_LOOPBACK,
    FakeHubSpot,
    FakeZendesk,
    Slow,
    abandon,
    hubspot_table,
    pause,
    step,
    ticket_tenant,
    wait_until_steps_settle,
    zendesk_table,
)

from hub.testing import Reply


def hubspot_hub(hub_factory, hubspot, extra_sinks: str = "", channels=None, **kw):  # noqa: ANN001, ANN003, ANN201
    tenant = ticket_tenant(
        hubspot_table(hubspot.url, **kw) + extra_sinks, step(channels or ["hubspot"])
    )
    return hub_factory({"acme": tenant}, settings=ALLOW_LOOPBACK)


def test_abandonment_creates_a_hubspot_task_associated_with_the_contact(hub_factory, http_stand_in):
    fake = FakeHubSpot()
    harness = hubspot_hub(hub_factory, http_stand_in(fake), task_type='"CALL"', owner_id='"77"')
    abandon(harness)
    harness.start_worker()
    harness.wait_for(lambda: fake.tasks, message="a task at HubSpot")
    wait_until_steps_settle(harness, 1)

    assert fake.errors == []
    assert [r.path for r in fake.requests] == [
        "/crm/v3/objects/contacts/batch/upsert",
        "/crm/v3/objects/tasks",
    ]
    upsert = fake.requests[0].json()["inputs"][0]
    assert upsert == {
        "id": "jane@example.com",
        "idProperty": "email",
        "properties": {
            "email": "jane@example.com",
            "firstname": "Jane",
            "lastname": "Doe",
            "phone": "+4915112345678",
        },
    }
    [task] = fake.tasks
    props = task["properties"]
    assert props["hs_task_subject"] == "Call this prospect: Jane Doe (€49.99)"
    assert props["hs_task_priority"] == "MEDIUM"  # "normal" in HubSpot's words
    assert props["hs_task_type"] == "CALL" and props["hubspot_owner_id"] == "77"
    assert "Phone:   +4915112345678<br>" in props["hs_task_body"]
    assert task["associations"] == [
        {
            "to": {"id": "501"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
        }
    ]
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "sent" and delivery.provider_id == "9001"


def test_ticket_mode_creates_a_ticket_in_the_configured_pipeline(hub_factory, http_stand_in):
    fake = FakeHubSpot()
    harness = hubspot_hub(
        hub_factory,
        http_stand_in(fake),
        create='"ticket"',
        pipeline='"0"',
        pipeline_stage='"2"',
        priority='"urgent"',
    )
    abandon(harness)
    harness.start_worker()
    harness.wait_for(lambda: fake.tickets, message="a ticket at HubSpot")
    assert fake.errors == [] and fake.tasks == []
    [ticket] = fake.tickets
    assert ticket["properties"]["hs_pipeline"] == "0"
    assert ticket["properties"]["hs_pipeline_stage"] == "2"
    assert ticket["properties"]["hs_ticket_priority"] == "HIGH"
    assert ticket["properties"]["content"].startswith("Call this prospect: they left")
    assert ticket["associations"][0]["types"][0]["associationTypeId"] == 16


def test_without_an_email_the_task_is_created_unassociated(hub_factory, http_stand_in):
    fake = FakeHubSpot()
    harness = hubspot_hub(hub_factory, http_stand_in(fake))
    abandon(harness, who=(None, "+4915112345678"))
    harness.start_worker()
    harness.wait_for(lambda: fake.tasks, message="a task at HubSpot")

    assert fake.errors == []
    assert [r.path for r in fake.requests] == ["/crm/v3/objects/tasks"]  # no upsert
    [task] = fake.tasks
    assert task["associations"] == []
    assert "Phone:   +4915112345678" in task["properties"]["hs_task_body"]
    assert harness.rows("deliveries")[0].identity == "+4915112345678"


def test_429_rate_limit_is_retried_and_one_task_created(hub_factory, http_stand_in):
    fake = FakeHubSpot()
    limited = {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
    }
    fake.script = [None, Reply(429, limited, {"Retry-After": "1"})]  # the task create is limited
    harness = hubspot_hub(hub_factory, http_stand_in(fake))
    abandon(harness)
    harness.start_worker()
    harness.wait_for(lambda: fake.tasks, message="the task after the 429")
    wait_until_steps_settle(harness, 1)

    assert fake.errors == [] and len(fake.tasks) == 1
    # the upsert is repeated (harmless), the contact stays one
    assert len(fake.contacts) == 1
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "sent" and delivery.attempts == 2
    assert "errorType: RATE_LIMIT" in harness.rows("delivery_log")[0].reason


def test_read_timeout_on_create_is_unknown_and_never_repeated(hub_factory, http_stand_in):
    """HubSpot has no idempotency key: a second task would be worse than a lost answer."""
    fake = FakeHubSpot()
    fake.script = [None, Slow(2.0)]
    harness = hubspot_hub(hub_factory, http_stand_in(fake), timeout="1")
    abandon(harness)
    harness.start_worker()
    [step_row] = wait_until_steps_settle(harness, 1)
    pause(2.0)  # a wrong retry would come within the 1 s retry base

    assert step_row.status == "unknown"
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "unknown" and delivery.attempts == 1
    assert "no answer after sending" in delivery.reason
    assert [r.path for r in fake.requests].count("/crm/v3/objects/tasks") == 1


def test_rejected_token_fails_permanently_and_falls_back_to_zendesk(hub_factory, http_stand_in):
    fake = FakeHubSpot()
    fake.script = [
        Reply(401, {"status": "error", "message": "Authentication credentials not found."})
    ]
    zendesk = FakeZendesk()
    harness = hubspot_hub(
        hub_factory,
        http_stand_in(fake),
        extra_sinks=zendesk_table(http_stand_in(zendesk).url),
        channels=["hubspot", "zendesk"],
    )
    abandon(harness)
    harness.start_worker()
    harness.wait_for(lambda: zendesk.tickets, message="the fallback Zendesk ticket")
    wait_until_steps_settle(harness, 1)

    assert len(fake.requests) == 1 and fake.tasks == []
    hubspot_delivery, zendesk_delivery = harness.rows("deliveries")
    assert hubspot_delivery.status == "failed"
    assert hubspot_delivery.reason.startswith("HubSpot contact upsert: HTTP 401")
    assert zendesk_delivery.status == "sent"
    assert "rejected our credentials (HTTP 401)" in harness.worker_logs()
