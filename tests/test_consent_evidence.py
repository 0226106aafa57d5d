"""Consent evidence: every send and every skip records the consent fact and tenant policy it
relied on; `hub consent` and the API export a person's history; erasure takes the person out
and keeps the decisions; migration 0007 upgrades a database with rows."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from hub import migrations
from hub.app import create_app
from hub.console import HubGroup
from hub.erasure import erase_person
from hub.store import Store, consent_evidence, journeys, suppressions
from tests.test_engine import T0, TENANT, Sim


@pytest.fixture
def sim(hub_factory, tmp_path):
    def make(policy: str = "opt_in") -> Sim:
        text = TENANT.format(policy=policy, extra="", outbox=tmp_path / "outbox")
        return Sim(hub_factory({"acme": text}))

    return make


def evidence(s: Sim) -> list:
    return s.harness.rows("consent_evidence")


def test_a_sent_message_records_the_fact_and_the_policy_it_relied_on(sim):
    s = sim()
    event_id = s.event()
    s.run_until(T0 + timedelta(hours=2))
    assert len(s.sent) == 1
    [row] = evidence(s)
    delivery = s.harness.rows("deliveries")[0]
    received = s.harness.rows("events", id=event_id)[0].received_at
    assert (row.decision, row.reason, row.delivery_id) == ("allowed", None, delivery.id)
    assert (row.channel, row.sink, row.email) == ("email", "outbox", "jane@example.com")
    # the customer is in DE, one of the tenant's opt_in countries
    assert row.policy == "email: opt_in (customer in DE, an opt_in country)"
    assert row.fact == {
        "value": "opt_in",
        "source": "stripe",
        "field": "checkout.session consent.promotions",
        "event_key": "evt_1",
        "received_at": received.isoformat(),
    }


def test_a_refusal_records_the_missing_consent_and_the_rule(sim):
    s = sim()
    s.event(consent={"email": "unknown"})
    s.run_until(T0 + timedelta(hours=2))
    assert s.sent == []
    [row] = evidence(s)
    assert row.decision == "refused"
    assert row.reason == "no consent (email: unknown, tenant requires opt_in)"
    assert row.policy == "email: opt_in (customer in DE, an opt_in country)"
    assert row.fact["value"] == "unknown" and row.fact["field"].endswith("consent.promotions")
    skipped = s.harness.rows("deliveries")[0]
    assert (row.delivery_id, skipped.status) == (skipped.id, "skipped")


def test_not_opted_out_allows_unknown_consent_outside_opt_in_countries(sim):
    s = sim("not_opted_out")
    s.event(consent={"email": "unknown"}, customer={"country": "US"})
    s.run_until(T0 + timedelta(hours=2))
    [row] = evidence(s)
    assert (row.decision, row.policy, row.fact["value"]) == (
        "allowed",
        "email: not_opted_out",
        "unknown",
    )


def test_an_unsubscribe_refusal_cites_the_suppression(sim):
    s = sim()
    with s.hub.store.begin() as conn:
        conn.execute(
            sa.insert(suppressions).values(
                tenant="acme",
                identity="jane@example.com",
                channel="email",
                reason="list-unsubscribe",
                created_at=T0 - timedelta(days=2),
            )
        )
    s.event()
    s.run_until(T0 + timedelta(hours=2))
    [row] = evidence(s)
    assert (row.decision, row.reason) == ("refused", "unsubscribed")
    assert row.fact == {
        "value": "unsubscribed",
        "source": "suppression list",
        "field": "suppressions.channel = email",
        "detail": "list-unsubscribe",
        "received_at": (T0 - timedelta(days=2)).isoformat(),
    }


def _cli(s: Sim):
    def run(*args: str):
        harness = s.harness
        group = HubGroup(create_app=lambda state: create_app(harness.config, create_state=state))
        return CliRunner().invoke(group, list(args))

    return run


def test_hub_consent_exports_the_persons_history_as_json(sim):
    s = sim()
    s.event()
    s.run_until(T0 + timedelta(hours=2))
    s.event(checkout="cs_2", consent={"email": "opt_out"}, at=T0 + timedelta(days=3))
    s.run_until(T0 + timedelta(days=4))
    run = _cli(s)
    answer = run("consent", "acme", "--email", "Jane@Example.com", "--json")
    assert answer.exit_code == 0, answer.output
    found = json.loads(answer.output)
    assert found["person"] == {"email": "jane@example.com", "phone": None}
    history = found["history"]
    # the second checkout's two steps were both refused: an opt-out on its event
    assert [(h["checkout_id"], h["step_index"], h["decision"]) for h in history] == [
        ("cs_1", 0, "allowed"),
        ("cs_2", 0, "refused"),
        ("cs_2", 1, "refused"),
    ]
    assert history[0]["delivery_status"] == "sent" and history[0]["sent_at"]
    assert history[1]["reason"] == "no consent (email: opt_out)"
    assert history[1]["fact"]["value"] == "opt_out"
    text = run("consent", "acme", "--email", "jane@example.com")
    assert "allowed (sent); policy email: opt_in" in text.output
    assert run("consent", "acme").exit_code == 2
    assert run("consent", "acme", "--email", "not-an-address").exit_code == 2
    nobody = json.loads(run("consent", "acme", "--email", "bob@example.com", "--json").output)
    assert nobody["history"] == []


def test_the_api_lists_a_persons_evidence(sim):
    from hub.apikeys import create_key

    s = sim()
    s.event()
    s.run_until(T0 + timedelta(hours=2))
    app = s.harness.app if hasattr(s.harness, "app") else create_app(s.harness.config)
    secret = create_key(s.hub.store, s.hub.settings.secret_key, "acme", "test")[0]
    client = app.test_client()
    answer = client.get(
        "/api/v1/consent",
        query_string={"email": "JANE@example.com"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert answer.status_code == 200, answer.get_json()
    [item] = answer.get_json()["items"]
    assert (item["tenant"], item["decision"], item["delivery_status"]) == (
        "acme",
        "allowed",
        "sent",
    )
    assert item["policy"] == "email: opt_in (customer in DE, an opt_in country)"


def test_erasure_takes_the_person_out_and_keeps_the_decisions(sim):
    s = sim()
    s.event()
    s.run_until(T0 + timedelta(hours=2))
    result = erase_person(s.hub, "acme", email="jane@example.com")
    assert result.rows["consent_evidence"] == 1
    [row] = evidence(s)
    assert (row.email, row.phone) == (None, None)
    assert (row.decision, row.policy, row.fact["value"]) == (
        "allowed",
        "email: opt_in (customer in DE, an opt_in country)",
        "opt_in",
    )
    with s.hub.store.begin() as conn:
        from hub.consent_evidence import history

        assert history(conn, "acme", email="jane@example.com") == []


# ----------------------------------------------------------------------------- migration


def test_migration_0007_adds_holdout_and_evidence_to_a_database_with_rows(database):
    store = Store(*database)
    try:
        if database[1]:
            with store.engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{database[1]}"'))
        with store.migration_lock() as conn:
            command.upgrade(migrations.alembic_config(conn), "0004_users")
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO journeys (id, tenant, checkout_id, source, status, created_at,"
                    " recovered, token) VALUES (1, 'acme', 'cs_1', 'stripe', 'open', :at,"
                    " false, 'abcdef0123456789')"
                ),
                {"at": T0.replace(tzinfo=None)},
            )
        done = migrations.upgrade(store)
        assert done.after == migrations.head()
        with store.engine.begin() as conn:
            row = conn.execute(sa.select(journeys)).one()
            assert row.holdout is False
            conn.execute(
                sa.insert(consent_evidence).values(
                    tenant="acme",
                    journey_id=1,
                    step_index=0,
                    sink="email",
                    channel="email",
                    decision="refused",
                    policy="email: opt_in",
                    fact={"value": "unknown"},
                    decided_at=T0,
                )
            )
            assert conn.execute(sa.select(consent_evidence.c.fact)).scalar_one() == {
                "value": "unknown"
            }
    finally:
        store.dispose()
