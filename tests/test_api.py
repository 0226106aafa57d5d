"""The REST API as a client meets it: keys, auth failures and their limit, filters, cursor
pages, a journey's timeline, replay, ETags and the one error shape."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.console import HubGroup
from hub.store import api_keys, events
from tests.api_world import World, bearer, build, fill_rule

NO_LIMIT = {"HUB_API_AUTH_LIMIT": "1000 per minute"}


@pytest.fixture
def world(hub_factory, tmp_path) -> World:
    return build(hub_factory, tmp_path, NO_LIMIT)


def hub_cli(world: World, *args: str):  # noqa: ANN201
    from hub.app import create_app

    group = HubGroup(create_app=lambda create_state: create_app(world.harness.config))
    return CliRunner().invoke(group, list(args))


# ------------------------------------------------------------------------------ keys


def test_a_key_made_by_the_cli_is_shown_once_stored_hashed_and_works(world):
    made = hub_cli(world, "keys", "create", "alpha", "--name", "crm sync")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("hub_") and "not shown again" in made.stderr
    stored = world.harness.rows("api_keys", name="crm sync")[0]
    assert key not in stored.secret_hash and stored.secret_hash.startswith("hmac-sha256$")
    assert world.get("/api/v1/tenants", key).get_json()["items"][0]["slug"] == "alpha"
    listed = hub_cli(world, "keys", "list").stdout
    assert stored.prefix in listed and "crm sync" in listed and key not in listed


def test_a_revoked_key_is_refused_at_once(world):
    prefix = world.alpha.key.split("_")[1]
    assert world.get("/api/v1/journeys", world.alpha.key).status_code == 200
    assert hub_cli(world, "keys", "revoke", prefix).exit_code == 0
    assert world.get("/api/v1/journeys", world.alpha.key).status_code == 401
    again = hub_cli(world, "keys", "revoke", prefix)
    assert again.exit_code == 2 and "no active key" in again.output


def test_keys_create_wants_a_known_tenant_or_admin(world):
    assert "no tenant 'gamma'" in hub_cli(world, "keys", "create", "gamma").output
    assert hub_cli(world, "keys", "create").exit_code == 2
    admin = hub_cli(world, "keys", "create", "--admin")
    assert admin.exit_code == 0
    body = world.get("/api/v1/tenants", admin.stdout.strip()).get_json()
    assert [t["slug"] for t in body["items"]] == ["alpha", "beta"]


def test_last_used_is_recorded_at_most_once_a_minute(world):
    prefix = world.alpha.key.split("_")[1]
    world.get("/api/v1/journeys", world.alpha.key)
    first = world.harness.rows("api_keys", prefix=prefix)[0].last_used_at
    world.get("/api/v1/journeys", world.alpha.key)
    assert first is not None
    assert world.harness.rows("api_keys", prefix=prefix)[0].last_used_at == first


def test_a_key_hashed_with_a_rotated_secret_still_works_and_is_rehashed(world, hub_factory):
    old_secret = world.harness.hub.settings.secret_key
    prefix = world.alpha.key.split("_")[1]
    rotated = hub_factory(
        {},
        {
            **NO_LIMIT,
            "HUB_SECRET_KEY": "a-new-secret",
            "HUB_SECRET_KEY_FALLBACKS": old_secret,
            "DATABASE_URL": world.harness.config["DATABASE_URL"],
            "DATABASE_SCHEMA": world.harness.config["DATABASE_SCHEMA"],
        },
    )
    before = world.harness.rows("api_keys", prefix=prefix)[0].secret_hash
    answer = rotated.client.get("/api/v1/journeys", headers=bearer(world.alpha.key))
    assert answer.status_code == 200
    assert world.harness.rows("api_keys", prefix=prefix)[0].secret_hash != before


# ------------------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer hub_000000000000_nope-nope-nope-nope-nope",
        "Bearer not-a-key",
    ],
)
def test_every_endpoint_refuses_without_a_valid_key(world, header):
    headers = {"Authorization": header} if header else {}
    for rule in world.harness.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule.endswith(("openapi.json", "docs")):
            continue
        url = fill_rule(
            rule.rule,
            {
                "slug": "alpha",
                **dict.fromkeys(("journey_id", "delivery_id", "event_id", "erasure_id"), 1),
            },
        )
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            answer = world.client.open(url, method=method, headers=headers)
            assert answer.status_code == 401, (method, url)
            assert answer.get_json()["code"] == "unauthorized"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_admin_token_from_the_environment_sees_every_tenant(hub_factory, tmp_path):
    world = build(hub_factory, tmp_path, {**NO_LIMIT, "HUB_ADMIN_TOKEN": "bootstrap-token-1"})
    answer = world.get("/api/v1/journeys", "bootstrap-token-1").get_json()
    assert {j["tenant"] for j in answer["items"]} == {"alpha", "beta"}
    assert world.get("/api/v1/journeys", "bootstrap-token-2").status_code == 401


def test_failed_auth_is_limited_per_address_and_logged_without_the_key(
    hub_factory, tmp_path, caplog
):
    world = build(hub_factory, tmp_path, {"HUB_API_AUTH_LIMIT": "3 per minute"})
    wrong = world.alpha.key[:-4] + "AAAA"
    here = {"REMOTE_ADDR": "203.0.113.9"}
    with caplog.at_level(logging.WARNING, logger="hub.api"):
        for _ in range(3):
            answer = world.client.get("/api/v1/journeys", headers=bearer(wrong), environ_base=here)
            assert answer.status_code == 401
    limited = world.client.get(
        "/api/v1/journeys", headers=bearer(world.alpha.key), environ_base=here
    )
    assert limited.status_code == 429 and limited.get_json()["code"] == "too_many_failed_attempts"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    elsewhere = {"REMOTE_ADDR": "203.0.113.10"}
    ok = world.client.get(
        "/api/v1/journeys", headers=bearer(world.alpha.key), environ_base=elsewhere
    )
    assert ok.status_code == 200
    assert "203.0.113.9" in caplog.text and "credentials=rejected" in caplog.text
    secret = wrong.split("_", 2)[2]  # the random part may itself hold "_"
    assert wrong not in caplog.text and secret[:12] not in caplog.text


# ------------------------------------------------------------------------------ reading


def test_journeys_are_paged_newest_first_with_an_opaque_cursor(world):
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = world.get("/api/v1/journeys", world.alpha.key, query_string=query).get_json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(world.alpha.journeys, reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"email": "ANN1@alpha.example"}, [1]),
        ({"status": "open"}, [0, 1, 2]),
        ({"status": "converted"}, []),
        ({"source": "shopify", "flow": "default"}, [0, 1, 2]),
        ({"flow": "other"}, []),
    ],
)
def test_journeys_filter(world, query, expected):
    page = world.get("/api/v1/journeys", world.alpha.key, query_string=query).get_json()
    assert sorted(j["id"] for j in page["items"]) == [world.alpha.journeys[i] for i in expected]


def test_journeys_filter_by_abandonment_time(world):
    everything = world.get("/api/v1/journeys", world.alpha.key).get_json()["items"]
    second = sorted(everything, key=lambda j: j["id"])[1]["abandoned_at"]
    page = world.get("/api/v1/journeys", world.alpha.key, query_string={"since": second}).get_json()
    assert sorted(j["id"] for j in page["items"]) == world.alpha.journeys[1:]
    page = world.get("/api/v1/journeys", world.alpha.key, query_string={"until": second}).get_json()
    assert [j["id"] for j in page["items"]] == world.alpha.journeys[:1]


def test_a_journey_comes_with_its_timeline(world):
    journey_id = world.alpha.journeys[0]
    body = world.get(f"/api/v1/journeys/{journey_id}", world.alpha.key).get_json()
    assert body["email"] == "ann0@alpha.example" and body["status"] == "open"
    assert [e["kind"] for e in body["events"]] == ["checkout.abandoned"]
    assert [s["status"] for s in body["steps"]] == ["sent"]
    assert [d["sink"] for d in body["deliveries"]] == ["outbox"]
    assert [a["status"] for a in body["delivery_log"]] == ["sent"]
    assert [t["kind"] for t in body["tracking_events"]] == ["opened"]
    assert "token" not in body and "payload" not in body["events"][0]


def test_deliveries_list_and_get(world):
    page = world.get(
        "/api/v1/deliveries",
        world.alpha.key,
        query_string={"journey_id": world.alpha.journeys[1]},
    ).get_json()
    assert [d["id"] for d in page["items"]] == [world.alpha.deliveries[1]]
    one = world.get(f"/api/v1/deliveries/{world.alpha.deliveries[1]}", world.alpha.key)
    assert one.get_json()["identity"] == "ann1@alpha.example"


def test_a_broken_tenant_file_shows_its_issues(world):
    path = world.harness.config_dir / "tenants" / "alpha.toml"
    path.write_text(path.read_text().replace('currency = "EUR"', 'currency = "EUR"\nbogus = 1'))
    world.harness.hub.catalog.refresh()
    body = world.get("/api/v1/tenants/alpha", world.alpha.key).get_json()
    config = body["config"]
    assert config["valid"] is False and config["served"] is True and config["stale"] is True
    assert config["file"] == "tenants/alpha.toml"
    assert any(issue["key"] == "bogus" for issue in config["issues"])
    beta = world.get("/api/v1/tenants/beta", world.admin_key).get_json()["config"]
    assert beta["valid"] is True and beta["issues"] == []


def test_an_unchanged_answer_is_304_with_its_etag(world):
    first = world.get(f"/api/v1/journeys/{world.alpha.journeys[0]}", world.alpha.key)
    etag = first.headers["ETag"]
    again = world.client.get(
        f"/api/v1/journeys/{world.alpha.journeys[0]}",
        headers={**bearer(world.alpha.key), "If-None-Match": etag},
    )
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("method", "url", "query", "status", "code", "field"),
    [
        ("GET", "/api/v1/journeys", {"limit": "many"}, 400, "invalid_input", "limit"),
        ("GET", "/api/v1/journeys", {"status": "lost"}, 400, "invalid_input", "status"),
        ("GET", "/api/v1/journeys", {"since": "yesterday"}, 400, "invalid_input", "since"),
        ("GET", "/api/v1/journeys", {"cursor": "!!"}, 400, "invalid_cursor", "cursor"),
        ("GET", "/api/v1/journeys/999999", {}, 404, "not_found", "journey_id"),
        ("GET", "/api/v1/nothing", {}, 404, "not_found", None),
        ("DELETE", "/api/v1/journeys/1", {}, 405, "method_not_allowed", None),
        ("GET", "/api/v1/tenants/gamma", {}, 404, "not_found", "slug"),
    ],
)
def test_errors_have_one_shape(world, method, url, query, status, code, field):
    answer = world.client.open(
        url, method=method, query_string=query, headers=bearer(world.admin_key)
    )
    assert answer.status_code == status
    assert answer.get_json() == {
        "code": code,
        "message": answer.get_json()["message"],
        "field": field,
    }


# ------------------------------------------------------------------------------ replay


def test_replay_queues_a_failed_event_and_the_engine_applies_it(world):
    store = world.harness.hub.store
    event_id = world.alpha.events[0]
    with store.begin() as conn:
        conn.execute(
            sa.update(events).where(events.c.id == event_id).values(status="failed", note="x")
        )
    answer = world.client.post(f"/api/v1/events/{event_id}/replay", headers=bearer(world.alpha.key))
    assert answer.status_code == 202 and answer.get_json() == {"id": event_id, "status": "stored"}
    world.harness.run_burst()
    row = world.harness.rows("events", id=event_id)[0]
    assert row.status == "processed"
    # the journey was there: applied again, it starts nothing new and sends nothing twice
    assert len(world.harness.rows("deliveries", journey_id=world.alpha.journeys[0])) == 1


def test_replay_of_a_processed_event_is_refused(world):
    event_id = world.alpha.events[1]
    answer = world.client.post(f"/api/v1/events/{event_id}/replay", headers=bearer(world.alpha.key))
    assert answer.status_code == 409 and answer.get_json()["code"] == "already_processed"
    assert world.harness.rows("events", id=event_id)[0].status == "processed"


def test_the_document_and_docs_page_are_served(world):
    spec = world.client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and "/api/v1/journeys" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    page = world.client.get("/api/v1/docs")
    assert page.status_code == 200 and b"GET /api/v1/journeys" in page.data
    assert b"<script" not in page.data


def test_api_keys_table_never_holds_a_key(world):
    with world.harness.hub.store.begin() as conn:
        hashes = conn.execute(sa.select(api_keys.c.secret_hash)).scalars().all()
    for key in (world.alpha.key, world.beta.key, world.admin_key):
        assert all(key.split("_", 2)[2] not in h for h in hashes)
