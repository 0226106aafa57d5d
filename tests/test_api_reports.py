"""``/api/v1/reports`` and ``/api/v1/export``: the figures and rows of ``hub report`` and
``hub export`` over HTTP, one tenant per request, refused before any byte is streamed."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hub.reports import report
from tests.api_world import World, bearer, build

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def world(hub_factory, tmp_path) -> World:
    return build(hub_factory, tmp_path, {"HUB_API_AUTH_LIMIT": "1000 per minute"})


def days(**extra: str) -> dict[str, str]:
    """The last 30 local days: the world's checkouts were abandoned three days ago."""
    today = datetime.now(BERLIN).date()
    return {"since": str(today - timedelta(days=30)), "until": str(today), **extra}


def test_a_tenant_key_reads_its_own_report_as_hub_report_computes_it(world):
    answer = world.get("/api/v1/reports", world.alpha.key, query_string=days(tenant="alpha"))
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()
    total = data["total"]
    assert (data["tenant"], data["timezone"], data["by"]) == ("alpha", "Europe/Berlin", "day")
    assert (total["abandoned"], total["messaged"], total["messages"]) == (3, 3, 3)
    assert (total["opened"], total["recovered"], total["recovery_rate"]) == (3, 0, 0.0)
    assert len(data["rows"]) == 31  # every day of the range, empty ones too
    since = datetime.fromisoformat(data["since"]).date()
    until = datetime.fromisoformat(data["until"]).date()
    expected = report(world.harness.hub.store, "alpha", since, until, "day", BERLIN)
    assert data == expected.as_dict()


@pytest.mark.parametrize("by", ["flow", "step", "channel", "source"])
def test_every_grouping_answers_its_key_columns(world, by):
    answer = world.get("/api/v1/reports", world.admin_key, query_string=days(tenant="beta", by=by))
    assert answer.status_code == 200
    rows = answer.get_json()["rows"]
    keys = {"step": {"flow", "step"}}.get(by, {by})
    assert all(keys <= row.keys() for row in rows)
    assert sum(row["abandoned"] for row in rows if row.get(by) is not None) == 1


def test_a_report_as_csv_is_the_csv_of_hub_report(world):
    args = days(tenant="alpha", by="flow", format="csv")
    answer = world.get("/api/v1/reports", world.alpha.key, query_string=args)
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="report-alpha-{args["since"]}-{args["until"]}-by-flow.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [(r["row"], r["flow"], r["abandoned"]) for r in rows] == [
        ("group", "default", "3"),
        ("total", "", "3"),
    ]


@pytest.mark.parametrize("path", ["/api/v1/reports", "/api/v1/export"])
@pytest.mark.parametrize("tenant", ["beta", "nobody"])
def test_another_tenants_report_or_export_is_404_without_its_figures(world, path, tenant):
    answer = world.get(path, world.alpha.key, query_string=days(tenant=tenant))
    assert answer.status_code == 404
    assert answer.get_json() == {
        "code": "not_found",
        "message": f"no tenant {tenant!r}",
        "field": "tenant",
    }


@pytest.mark.parametrize("path", ["/api/v1/reports", "/api/v1/export"])
@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"since": "2026-11-01"}, "tenant"),  # every key names the tenant
        (days(tenant="alpha", since="yesterday"), "since"),
        (days(tenant="alpha", since="2026-11-30", until="2026-11-01"), "until"),
        (days(tenant="alpha", since="2000-01-01", until="2026-11-01"), "until"),  # > 10 years
        (days(tenant="alpha", since="0001-01-01", until="0001-01-02"), "since"),
    ],
)
def test_bad_arguments_are_400_in_the_error_shape_before_any_csv(world, path, args, field):
    answer = world.get(path, world.alpha.key, query_string=args)
    assert answer.status_code == 400
    assert answer.is_json and answer.headers["Content-Length"]  # a whole body, not a stream
    body = answer.get_json()
    assert (body["code"], body["field"]) == ("invalid_input", field), body
    assert body["message"]


@pytest.mark.parametrize(("args", "field"), [({"by": "week"}, "by"), ({"format": "xml"}, "format")])
def test_a_report_refuses_an_unknown_grouping_or_format(world, args, field):
    answer = world.get("/api/v1/reports", world.admin_key, query_string=days(tenant="a", **args))
    assert (answer.status_code, answer.get_json()["field"]) == (400, field)


def _export(world: World, key: str, **args: str) -> tuple[object, list[dict]]:
    answer = world.get("/api/v1/export", key, query_string=days(**args))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer, list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))


def test_the_export_streams_the_tenants_checkouts_as_csv(world):
    answer, rows = _export(world, world.alpha.key, tenant="alpha")
    assert "Content-Length" not in answer.headers  # a generator's chunks, never the whole file
    assert answer.mimetype == "text/csv"
    since, until = days()["since"], days()["until"]
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="checkouts-alpha-{since}-{until}.csv"'
    )
    assert sorted(r["email"] for r in rows) == sorted(world.alpha.emails)
    assert {r["messages"] for r in rows} == {"0:email:sent+opened"}


def test_the_export_filters_by_email_in_any_case_and_never_finds_a_foreign_one(world):
    _answer, rows = _export(world, world.alpha.key, tenant="alpha", email="ANN1@alpha.example")
    assert [r["email"] for r in rows] == ["ann1@alpha.example"]
    _answer, rows = _export(world, world.alpha.key, tenant="alpha", email="bob@beta.example")
    assert rows == []


def test_the_export_takes_several_emails_and_a_bom_for_excel(world):
    args = {
        **days(tenant="alpha", bom="true"),
        "email": ["ann0@alpha.example", "ann2@alpha.example"],
    }
    answer = world.get("/api/v1/export", world.admin_key, query_string=args)
    text = answer.get_data(as_text=True)
    assert text.startswith("\ufeffjourney_id,")
    emails = [r["email"] for r in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))]
    assert sorted(emails) == ["ann0@alpha.example", "ann2@alpha.example"]


def test_the_admin_key_exports_any_tenant(world):
    _answer, rows = _export(world, world.admin_key, tenant="beta")
    assert [r["email"] for r in rows] == ["bob@beta.example"]


def test_a_report_and_an_export_need_a_key(world):
    for path in ("/api/v1/reports", "/api/v1/export"):
        answer = world.client.get(path, query_string=days(tenant="alpha"), headers=bearer(None))
        assert answer.status_code == 401


def test_the_document_describes_both(world):
    spec = world.client.get("/api/v1/openapi.json").get_json()
    export = spec["paths"]["/api/v1/export"]["get"]["responses"]["200"]
    assert "text/csv" in export["content"]
    assert "Content-Disposition" in export["headers"]
    report_answers = spec["paths"]["/api/v1/reports"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv"} <= report_answers.keys()
