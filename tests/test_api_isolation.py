"""A tenant's key never sees, counts or touches another tenant's data, on any API endpoint.

The cases are generated from the app's URL map: every rule under /api/v1 and every method it
takes. A rule's path arguments are filled with *the other tenant's* ids; a list is asked with
the other tenant's slug and e-mail as filters. A new endpoint whose path argument has no entry
in ``foreign_ids`` fails the test until it gets one.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.api_world import World, bearer, build, fill_rule

PUBLIC = {"/api/v1/openapi.json", "/api/v1/docs"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
TWO = ("alpha", "beta")
# one-tenant resources default to the month so far; the world's checkouts are days old
DAYS = {"since": (date.today() - timedelta(days=30)).isoformat()}


@pytest.fixture
def world(hub_factory, tmp_path) -> World:
    return build(hub_factory, tmp_path, {"HUB_API_AUTH_LIMIT": "1000 per minute"})


def foreign_ids(world: World) -> dict[str, object]:
    """Path argument -> a value that belongs to beta (alpha's key asks for it)."""
    beta = world.beta
    return {
        "slug": beta.slug,
        "journey_id": beta.journeys[0],
        "delivery_id": beta.deliveries[0],
        "event_id": beta.events[0],
        "erasure_id": beta.erasures[0],
    }


def api_rules(world: World) -> list:
    rules = [r for r in world.harness.app.url_map.iter_rules() if r.rule.startswith("/api/v1")]
    return [r for r in rules if r.rule not in PUBLIC]


def calls(world: World) -> list[tuple[str, str]]:
    """(method, url) for every API rule and method, with beta's ids in the path."""
    values = foreign_ids(world)
    found = []
    for rule in api_rules(world):
        missing = rule.arguments - values.keys()
        assert not missing, f"{rule.rule}: no isolation case for {sorted(missing)}"
        url = fill_rule(rule.rule, values)
        for method in sorted(rule.methods - IGNORED_METHODS):
            found.append((method, url))
    return found


def _beta_traces(world: World) -> list[str]:
    beta = world.beta
    return [*beta.emails, "c-beta-", '"beta"']


def test_every_endpoint_is_covered(world):
    """The generated cases reach every resource (the map is not accidentally empty)."""
    urls = {url for _m, url in calls(world)}
    assert any("/journeys/" in u for u in urls) and any("/events/" in u for u in urls)
    assert len(calls(world)) >= 8


def test_a_tenant_key_gets_404_for_every_foreign_id_and_method(world):
    before = world.harness.rows("events", id=world.beta.events[0])[0]
    for method, url in calls(world):
        if "<" in url or "{" in url:
            pytest.fail(f"unfilled {url}")
        has_id = any(str(v) in url for v in foreign_ids(world).values())
        if not has_id:
            continue
        answer = world.client.open(url, method=method, headers=bearer(world.alpha.key))
        assert answer.status_code in (404, 405), (method, url, answer.status_code)
        body = answer.get_data(as_text=True)
        for trace in _beta_traces(world):
            assert trace not in body, (method, url, trace)
        if answer.status_code == 404:
            assert answer.get_json()["code"] == "not_found"
    after = world.harness.rows("events", id=world.beta.events[0])[0]
    assert (after.status, after.note) == (before.status, before.note)


def _names_no_tenant(answer) -> bool:  # noqa: ANN001
    """A one-tenant resource (a report, an export) refused a request that named no tenant."""
    return answer.status_code == 400 and answer.get_json()["field"] == "tenant"


@pytest.mark.parametrize("filters", [{"tenant": "beta"}, {"email": "bob@beta.example"}])
def test_a_tenant_key_never_lists_or_counts_foreign_rows(world, filters):
    for method, url in calls(world):
        if method != "GET" or any(str(v) in url for v in foreign_ids(world).values()):
            continue
        answer = world.client.get(url, query_string=filters, headers=bearer(world.alpha.key))
        if _names_no_tenant(answer):
            own = {**filters, **DAYS, "tenant": "alpha"}
            answer = world.client.get(url, query_string=own, headers=bearer(world.alpha.key))
        body = answer.get_data(as_text=True)
        for trace in _beta_traces(world):
            assert trace not in body, (url, filters, trace)
        assert answer.status_code in (200, 400, 404), (url, filters)
        if answer.status_code == 400:  # a filter this resource does not take, named
            assert answer.get_json()["field"] in filters, (url, filters)
        elif answer.status_code == 200 and answer.is_json:
            data = answer.get_json()
            items = data.get("items", [data])
            assert all(item.get("tenant", item.get("slug")) == "alpha" for item in items), url


def test_the_admin_key_sees_both_tenants(world):
    for method, url in calls(world):
        if method != "GET" or any(str(v) in url for v in foreign_ids(world).values()):
            continue
        answer = world.get(url, world.admin_key)
        if _names_no_tenant(answer):
            answers = [
                world.get(url, world.admin_key, query_string={**DAYS, "tenant": t}) for t in TWO
            ]
        else:
            answers = [answer]
        assert all(a.status_code == 200 for a in answers), url
        body = "".join(a.get_data(as_text=True) for a in answers)
        assert "alpha" in body and "beta" in body, url
    for method, url in calls(world):
        if method == "GET" and any(str(v) in url for v in foreign_ids(world).values()):
            assert world.get(url, world.admin_key).status_code == 200, url
