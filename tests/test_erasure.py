"""Erasure of one person and retention: the real engine sends real mail, then the person is
erased and no trace of them is left in any text column of any table, while every count, cart
total and status stays; a later event is accepted; the proof matches; a dry run changes nothing;
retention purges only old rows."""

from __future__ import annotations

import json
import types
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from samples import stripe_event, stripe_headers, stripe_session, tenant_toml
from test_webpush import Browser, signed, subscribe, webpush_table

from hub import hookimpl
from hub.app import create_app
from hub.console import HubGroup
from hub.erasure import RetentionSchedule, erase_person, purge_expired
from hub.store import delivery_log, erasures, events, journeys, metadata, tracking_events

JANE = "jane@example.com"
JANE_PHONE = "+4915112345678"
# what must be gone: the address, the number (also without its +), the name
JANE_TRACES = ("jane@example.com", "4915112345678", "jane doe", "jane", "doe")


def bob_event() -> bytes:
    session = stripe_session("cs_test_bob")
    session["customer_details"].update(email="bob@example.org", name="Bob Roe", phone=None)
    return stripe_event(event_id="evt_bob", session=session)


def dump(harness) -> str:
    """Every value of every text and JSON column of every table, lower-cased, one string."""
    texts = []
    with harness.hub.store.begin() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)).mappings():
                for value in row.values():
                    if isinstance(value, str):
                        texts.append(value)
                    elif isinstance(value, dict | list):
                        texts.append(json.dumps(value, ensure_ascii=False))
    return "\n".join(texts).lower()


def counts(harness) -> dict[str, Any]:
    """What reports read: rows per table, statuses, cart totals (the erasure's own proof and
    the plugin data it deletes aside)."""
    rows = harness.rows("journeys")
    tables = [t.name for t in metadata.sorted_tables if t.name not in ("erasures", "plugin_data")]
    return {
        "tables": {name: len(harness.rows(name)) for name in tables},
        "journeys": [(j.id, j.status, j.recovered, (j.event or {}).get("cart")) for j in rows],
        "deliveries": [(d.id, d.status, d.channel) for d in harness.rows("deliveries")],
        "log": [(r.id, r.status) for r in harness.rows("delivery_log")],
        "tracking": [(t.id, t.kind) for t in harness.rows("tracking_events")],
    }


def invoke(harness_or_app, *args: str) -> Any:
    """``hub ARGS`` in-process, on the harness' app (or an app built for the test)."""
    app = getattr(harness_or_app, "app", harness_or_app)
    return CliRunner().invoke(HubGroup(create_app=lambda _create_state: app), list(args))


@pytest.fixture
def jane_and_bob(hub_factory, smtp_server):
    """Jane and Bob abandoned carts and got a mail; Jane clicked, unsubscribed from e-mail,
    registered a browser for push, and an SMTP error and a tracking hit named her."""
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, extra=webpush_table())},
    )
    for body in (stripe_event(), bob_event()):
        assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    mails = smtp_server.wait_for_messages(2)
    harness.wait_for(lambda: all(s.status == "sent" for s in harness.rows("steps")), 30)
    harness.stop_workers()
    [mail] = [m for m in mails if m["To"] == JANE]
    text = mail.get_body(("plain",)).get_content()
    link = text.split("http://hub.test", 1)[1].split()[0]
    assert harness.client.get(link).status_code == 302
    unsubscribe = str(mail["List-Unsubscribe"]).strip()[1:-1].removeprefix("http://hub.test")
    assert harness.client.post(unsubscribe).status_code == 200
    browser = Browser("https://push.example/send/jane-browser")
    answer = subscribe(
        harness, {"subscription": browser.subscription(), "email": JANE, "email_hmac": signed(JANE)}
    )
    assert answer.status_code == 201, answer.get_json()
    [journey] = harness.rows("journeys", email=JANE)
    [delivery] = harness.rows("deliveries", journey_id=journey.id)
    now = datetime.now(UTC)
    with harness.hub.store.begin() as conn:
        conn.execute(
            sa.insert(delivery_log).values(
                tenant="acme",
                journey_id=journey.id,
                step_index=0,
                sink="email",
                channel="email",
                delivery_id=delivery.id,
                attempt=2,
                status="failed",
                reason="550 5.1.1 <Jane@Example.com>: Recipient address rejected",
                at=now,
            )
        )
        conn.execute(
            sa.insert(tracking_events).values(
                tenant="acme",
                journey_id=journey.id,
                delivery_id=delivery.id,
                kind="bounced",
                at=now,
                detail=f"550 5.1.1 <{JANE}> mailbox full, reported by 203.0.113.9",
            )
        )
    return harness


def test_erasing_a_person_leaves_no_trace_and_keeps_every_count(jane_and_bob):
    harness = jane_and_bob
    before = dump(harness)
    assert all(trace in before for trace in JANE_TRACES)
    assert "bob@example.org" in before and "bob roe" in before
    counted = counts(harness)

    result = invoke(harness, "erase", "acme", "--email", " Jane@Example.com ", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["complete"] and not report["dry_run"]
    assert report["rows"]["events"] == 1 and report["rows"]["journeys"] == 1
    assert report["rows"]["suppressions"] == 2  # the e-mail and the phone of her journey
    assert report["rows"]["plugin:webpush"] == 2  # the subscription and its e-mail index

    after = dump(harness)
    left = [trace for trace in JANE_TRACES if trace in after]
    assert left == [], f"traces left: {left}"
    # Bob is untouched, and every count, status and cart total a report reads stays
    assert "bob@example.org" in after and "bob roe" in after
    assert counts(harness) == counted
    [erased] = [j for j in harness.rows("journeys") if j.checkout_id == "cs_test_a1B2c3"]
    assert (erased.email, erased.phone) == (None, None)
    assert erased.event["cart"]["total"] == 4999 and erased.event["customer"]["country"] == "DE"
    [event] = harness.rows("events", checkout_id="cs_test_a1B2c3")
    assert event.raw is None and event.status == "processed"


def test_a_person_erased_stays_unsubscribed_and_a_later_event_is_a_new_journey(
    jane_and_bob, smtp_server
):
    harness = jane_and_bob
    assert invoke(harness, "erase", "acme", "--email", JANE).exit_code == 0
    assert {s.identity[:7] for s in harness.rows("suppressions")} == {"erased:"}

    session = stripe_session("cs_test_later")
    body = stripe_event(event_id="evt_later", session=session)
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    later = harness.wait_for(
        lambda: [d for d in harness.rows("deliveries") if d.status != "sending"][2:],
        30,
        message="the later journey's delivery",
    )
    [journey] = harness.rows("journeys", checkout_id="cs_test_later")
    assert journey.email == JANE and journey.status == "open"  # accepted and processed
    assert (later[0].journey_id, later[0].status) == (journey.id, "skipped")
    assert later[0].reason == "unsubscribed"  # the objection outlived the erasure
    assert len(smtp_server.messages) == 2


def test_the_proof_matches_the_person_after_a_key_rotation(jane_and_bob):
    harness = jane_and_bob
    assert invoke(harness, "erase", "acme", "--email", JANE, "--actor", "dpo@acme").exit_code == 0
    [proof] = harness.rows("erasures")
    assert proof.kind == "email" and proof.actor == "dpo@acme" and len(proof.identity_digest) == 64
    assert JANE not in json.dumps(proof.rows)

    listed = invoke(harness, "erasures", "acme", "--email", "JANE@example.com", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["id"] == proof.id
    nobody = invoke(harness, "erasures", "acme", "--email", "bob@example.org")
    assert nobody.exit_code == 1 and "no erasure recorded" in nobody.output

    old_key = harness.config["HUB_SECRET_KEY"]
    rotated = dict(harness.config, HUB_SECRET_KEY="a-new-key", HUB_SECRET_KEY_FALLBACKS=old_key)
    app = create_app(rotated)
    try:
        found = invoke(app, "erasures", "acme", "--email", JANE, "--json")
        assert json.loads(found.output)["id"] == proof.id
        forgotten = dict(rotated, HUB_SECRET_KEY_FALLBACKS="")
        lost = invoke(create_app(forgotten), "erasures", "acme", "--email", JANE)
        assert lost.exit_code == 1  # documented: keep retired keys among the fallbacks
    finally:
        app.extensions["hub"].store.dispose()


def test_a_dry_run_changes_nothing_and_counts_what_would_go(jane_and_bob):
    harness = jane_and_bob
    before = dump(harness)
    dry = invoke(harness, "erase", "acme", "--email", JANE, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert dump(harness) == before
    assert harness.rows("erasures") == []
    real = invoke(harness, "erase", "acme", "--email", JANE, "--json")
    would, did = json.loads(dry.output), json.loads(real.output)
    assert would["dry_run"] and would["rows"] == did["rows"]


def test_erasing_by_phone_takes_the_number_in_any_international_form(jane_and_bob):
    harness = jane_and_bob
    result = invoke(harness, "erase", "acme", "--phone", "+49 151 12345678")
    assert result.exit_code == 0, result.output
    assert "4915112345678" not in dump(harness)
    assert harness.rows("erasures")[0].kind == "phone"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["erase", "acme"], "give --email or --phone"),
        (["erase", "acme", "--email", "not-an-address"], "is not an e-mail address"),
        (["erase", "acme", "--phone", "0151 123"], "international form"),
        (["erase", "nope", "--email", JANE], "no tenant 'nope'; known tenants: acme"),
    ],
)
def test_bad_erase_requests_name_the_problem_and_change_nothing(hub_factory, args, words):
    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    result = invoke(harness, *args)
    assert result.exit_code == 2 and words in result.output, result.output
    assert harness.rows("erasures") == []


def test_a_failing_plugin_makes_the_erasure_incomplete_and_names_it(hub_factory, tmp_path):
    plugin = types.ModuleType("crm_sync")

    @hookimpl
    def hub_erase_person(tenant, email):
        raise ConnectionError("CRM unreachable")

    plugin.hub_erase_person = hub_erase_person
    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    app = create_app(harness.config, extra_plugins=(plugin,))
    try:
        hub = app.extensions["hub"]
        result = erase_person(hub, "acme", email=JANE, actor="test")
        assert not result.complete
        assert result.problems == [
            "plugin \"crm_sync\": hub_erase_person raised ConnectionError('CRM unreachable')"
        ]
        [proof] = harness.rows("erasures")  # the hub's part is done and proven
        assert proof.rows["problems"] == result.problems
        cli = invoke(app, "erase", "acme", "--email", JANE)
        assert cli.exit_code == 1 and "incomplete" in cli.output
    finally:
        app.extensions["hub"].store.dispose()


# ------------------------------------------------------------------------------- retention


def test_retention_purges_only_rows_older_than_the_tenant_keeps(hub_factory, smtp_server):
    harness = hub_factory({"acme": 'retention = "30d"\n' + tenant_toml(smtp_url=smtp_server.url)})
    for body in (stripe_event(), bob_event()):
        assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    smtp_server.wait_for_messages(2)
    harness.wait_for(lambda: all(s.status == "sent" for s in harness.rows("steps")), 30)
    harness.stop_workers()
    old = datetime.now(UTC) - timedelta(days=31)
    with harness.hub.store.begin() as conn:
        conn.execute(
            sa.update(journeys)
            .where(journeys.c.checkout_id == "cs_test_a1B2c3")
            .values(created_at=old, status="finished")
        )
        conn.execute(
            sa.update(events)
            .where(events.c.checkout_id == "cs_test_a1B2c3")
            .values(received_at=old)
        )
    counted = counts(harness)

    dry = invoke(harness, "retention", "run", "--dry-run", "--json")
    assert json.loads(dry.output)["rows"] == {"journeys": 1, "events": 1}
    assert harness.rows("erasures") == []

    result = invoke(harness, "retention", "run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"]["journeys"] == 1 and report["rows"]["events"] == 1
    after = dump(harness)
    assert [t for t in JANE_TRACES if t in after] == []
    assert "bob@example.org" in after  # Bob's rows are younger than 30 days
    [bob] = harness.rows("events", checkout_id="cs_test_bob")
    assert bob.raw is not None
    assert counts(harness) == counted
    [proof] = harness.rows("erasures")
    assert (proof.kind, proof.identity_digest, proof.actor) == ("retention", "*", "retention")
    assert proof.rows["before"].startswith(str((datetime.now(UTC) - timedelta(days=30)).date()))

    again = purge_expired(harness.hub, harness.hub.tenants["acme"])
    assert again.rows == {"journeys": 0, "events": 0} and again.proof_ids == []
    assert len(harness.rows("erasures")) == 1


def test_retention_runs_from_hub_sweep(hub_factory, smtp_server):
    harness = hub_factory({"acme": 'retention = "30d"\n' + tenant_toml(smtp_url=smtp_server.url)})
    body = stripe_event()
    harness.post("acme", "stripe", body, stripe_headers(body))
    harness.run_burst()
    old = datetime.now(UTC) - timedelta(days=60)
    with harness.hub.store.begin() as conn:
        conn.execute(sa.update(events).values(received_at=old, status="processed"))
    result = invoke(harness, "sweep")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["retention"]["acme"]["events"] == 1
    with harness.hub.store.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(erasures)).scalar() == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"12h"', "retention: must be at least 7d (1d, and attribution_window)"),
        ('"soon"', "retention: invalid duration 'soon'"),
    ],
)
def test_a_bad_retention_is_a_config_error_naming_file_and_key(hub_factory, value, message):
    harness = hub_factory(
        {"acme": f"retention = {value}\n" + tenant_toml(smtp_url="smtp://127.0.0.1:1")}
    )
    result = invoke(harness, "config", "check")
    assert result.exit_code == 1
    assert f"acme.toml: {message}" in result.output, result.output


def test_an_address_inside_an_identifier_becomes_a_marker_that_keeps_keys_unique(hub_factory):
    """Digistore24's checkout ids are ``<email>:<order>``: two orders of one person stay two."""
    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    now = datetime.now(UTC)
    with harness.hub.store.begin() as conn:
        for order in ("A1", "A2"):
            checkout = f"{JANE}:{order}"
            payload = {"checkout_id": checkout, "customer": {"email": JANE}}
            conn.execute(
                sa.insert(events).values(
                    tenant="acme",
                    source="digistore24",
                    event_key=f"{checkout}:abandoned",
                    kind="checkout.abandoned",
                    checkout_id=checkout,
                    occurred_at=now,
                    received_at=now,
                    email=None,  # the address only inside the ids: found through the journey
                    payload=payload,
                    status="processed",
                )
            )
            conn.execute(
                sa.insert(journeys).values(
                    tenant="acme",
                    checkout_id=checkout,
                    source="digistore24",
                    status="open",
                    email=JANE,
                    event=payload,
                    created_at=now,
                )
            )
    result = erase_person(harness.hub, "acme", email=JANE, actor="test")
    assert result.rows["events"] == 2 and result.rows["journeys"] == 2
    ids = sorted(j.checkout_id for j in harness.rows("journeys"))
    assert ids[0].endswith(":A1") and ids[1].endswith(":A2") and ids[0].startswith("erased-")
    assert sorted(e.checkout_id for e in harness.rows("events")) == ids
    assert {j.status for j in harness.rows("journeys")} == {"erased"}
    assert "jane" not in dump(harness)


def test_workers_run_retention_hourly_not_every_sweep(hub_factory):
    harness = hub_factory(
        {"acme": 'retention = "30d"\n' + tenant_toml(smtp_url="smtp://127.0.0.1:1")}
    )
    old = datetime.now(UTC) - timedelta(days=40)

    def old_event(key: str) -> None:
        with harness.hub.store.begin() as conn:
            conn.execute(
                sa.insert(events).values(
                    tenant="acme",
                    source="stripe",
                    event_key=key,
                    kind="checkout.abandoned",
                    checkout_id=key,
                    occurred_at=old,
                    received_at=old,
                    email=JANE,
                    payload={"checkout_id": key, "customer": {"email": JANE}},
                    raw="{}",
                    status="processed",
                )
            )

    clock = [1000.0]
    schedule = RetentionSchedule(harness.hub, every=3600, clock=lambda: clock[0])
    old_event("evt_1")
    assert schedule.tick()["acme"]["events"] == 1
    old_event("evt_2")
    clock[0] += 60  # the next sweep round
    assert schedule.tick() == {}
    clock[0] += 3600
    assert schedule.tick()["acme"]["events"] == 1
    assert [e.email for e in harness.rows("events")] == [None, None]
