"""``/api/v1/erasures``: erasing a person through the API, as ``hub erase`` does, only within
the key's tenant, and the proofs it leaves."""

from __future__ import annotations

import pytest

from tests.api_world import World, build


@pytest.fixture
def world(hub_factory, tmp_path) -> World:
    return build(hub_factory, tmp_path, {"HUB_API_AUTH_LIMIT": "1000 per minute"})


def _post(world: World, key: str, body: dict):  # noqa: ANN202
    return world.client.post(
        "/api/v1/erasures", json=body, headers={"Authorization": f"Bearer {key}"}
    )


def _emails(world: World, tenant: str) -> list[str | None]:
    return sorted((j.email or "") for j in world.harness.rows("journeys", tenant=tenant))


def test_a_tenant_key_erases_a_person_of_its_own_tenant_and_the_proof_names_the_key(world):
    answer = _post(world, world.alpha.key, {"tenant": "alpha", "email": "ANN0@alpha.example"})
    assert answer.status_code == 201, answer.get_json()
    result = answer.get_json()
    assert (result["tenant"], result["kind"], result["complete"]) == ("alpha", "email", True)
    assert result["rows"]["journeys"] == 1
    assert "ann0@alpha.example" not in _emails(world, "alpha")
    assert "ann1@alpha.example" in _emails(world, "alpha")

    [proof_id] = result["proof_ids"]
    proof = world.get(f"/api/v1/erasures/{proof_id}", world.alpha.key).get_json()
    prefix = world.alpha.key.split("_")[1]
    assert (proof["actor"], proof["kind"], proof["tenant"]) == (f"api:{prefix}", "email", "alpha")
    found = world.get(
        "/api/v1/erasures",
        world.alpha.key,
        query_string={"tenant": "alpha", "email": "ann0@ALPHA.example"},
    ).get_json()
    assert [item["id"] for item in found["items"]] == [proof_id]
    assert "ann0" not in str(found)  # a proof names no one


def test_a_dry_run_reports_what_would_go_and_changes_nothing(world):
    body = {"tenant": "alpha", "email": "ann1@alpha.example", "dry_run": True}
    answer = _post(world, world.admin_key, body)
    assert answer.status_code == 200
    assert answer.get_json()["rows"]["journeys"] == 1
    assert answer.get_json()["proof_ids"] == []
    assert "ann1@alpha.example" in _emails(world, "alpha")


def test_a_tenant_key_cannot_erase_in_another_tenant(world):
    proofs_before = len(world.harness.rows("erasures", tenant="beta"))
    answer = _post(world, world.alpha.key, {"tenant": "beta", "email": "bob@beta.example"})
    assert answer.status_code == 404
    assert answer.get_json() == {
        "code": "not_found",
        "message": "no tenant 'beta'",
        "field": "tenant",
    }
    assert _emails(world, "beta") == ["bob@beta.example"]
    assert len(world.harness.rows("erasures", tenant="beta")) == proofs_before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": "alpha"}, "email"),
        ({"tenant": "alpha", "email": "not-an-address"}, "email"),
        ({"tenant": "alpha", "phone": "12"}, "phone"),
        ({"email": "ann0@alpha.example"}, "tenant"),
        ({"tenant": "alpha", "email": "ann0@alpha.example", "dry_run": "maybe"}, "dry_run"),
    ],
)
def test_a_bad_request_is_400_naming_the_field_and_erases_nothing(world, body, field):
    answer = _post(world, world.admin_key, body)
    assert answer.status_code == 400
    assert (answer.get_json()["code"], answer.get_json()["field"]) == ("invalid_input", field)
    assert "ann0@alpha.example" in _emails(world, "alpha")


def test_an_unknown_tenant_is_404(world):
    answer = _post(world, world.admin_key, {"tenant": "nobody", "email": "a@b.example"})
    assert answer.status_code == 404


def test_looking_up_a_persons_proofs_needs_the_tenant(world):
    answer = world.get("/api/v1/erasures", world.admin_key, query_string={"email": "a@b.example"})
    assert (answer.status_code, answer.get_json()["field"]) == (400, "tenant")


def test_proofs_list_every_tenant_for_the_admin_and_one_for_its_key(world):
    admin = world.get("/api/v1/erasures", world.admin_key).get_json()["items"]
    assert {p["tenant"] for p in admin} == {"alpha", "beta"}
    own = world.get("/api/v1/erasures", world.alpha.key).get_json()["items"]
    assert {p["tenant"] for p in own} == {"alpha"}
