"""CSV export: one row per abandoned checkout with its contact, cart, messages and revenue;
formula cells neutralized; 100 k rows streamed in bounded memory."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub import migrations
from hub.export import HEADER, export_csv, export_rows, neutralize
from hub.reports import ReportError
from hub.store import Store, deliveries, journeys
from tests.results_fixtures import SINCE, TZ, UNTIL, add_journey, at, event, seed_bakery

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(database):
    store = Store(*database)
    migrations.upgrade(store)
    yield store
    store.dispose()


def _read(chunks) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(chunks))))


def test_one_row_per_abandoned_checkout_in_the_range_oldest_first(store):
    ids = seed_bakery(store)
    rows = _read(export_csv(store, "bakery", SINCE, UNTIL, timezone=TZ, page_size=2))
    assert [int(r["journey_id"]) for r in rows] == [
        ids[n] for n in ("J6", "J1", "J2", "J3", "J4", "J5")
    ]
    j1 = rows[1]
    assert j1["abandoned_at"] == "2026-11-02T11:00:00+01:00"
    assert (j1["email"], j1["phone"], j1["first_name"]) == (
        "anna@example.com",
        "'+4915112345678",
        "Anna",
    )
    assert (j1["cart_total"], j1["cart_currency"], j1["cart_items"]) == (
        "49.90",
        "EUR",
        "2 × Bread",
    )
    assert (j1["stage"], j1["consent"]) == ("payment", "email=opt_in; whatsapp=unknown")
    assert j1["messages"] == "0:email:sent+opened+clicked; 1:whatsapp:read"
    assert (j1["messages_sent"], j1["opened"], j1["clicked"]) == ("2", "yes", "yes")
    assert (j1["recovered"], j1["credit"], j1["credited_channel"]) == ("yes", "clicked", "email")
    assert (j1["recovered_revenue"], j1["refunded"], j1["revenue_currency"]) == (
        "40.00",
        "10.00",
        "EUR",
    )
    j3 = rows[3]
    assert (j3["recovered"], j3["credit"], j3["messages"], j3["recovered_revenue"]) == (
        "yes",
        "none",
        "",
        "30.00",
    )
    assert rows[0]["recovered"] == "no" and rows[0]["flow"] == ""


def test_the_email_filter_ignores_case(store):
    ids = seed_bakery(store)
    rows = _read(
        export_csv(store, "bakery", SINCE, UNTIL, ["dora@example.COM", " emil@example.com "], TZ)
    )
    assert [int(r["journey_id"]) for r in rows] == [ids["J4"], ids["J5"]]


def test_an_empty_range_has_the_header_only(store):
    text = "".join(export_csv(store, "bakery", SINCE, UNTIL, timezone=TZ))
    assert text == ",".join(HEADER) + "\r\n"
    assert "".join(export_csv(store, "x", SINCE, UNTIL, bom=True)).startswith("\ufeffjourney_id")


def test_a_bad_range_fails_before_the_first_chunk(store):
    with pytest.raises(ReportError, match="before since"):
        export_csv(store, "bakery", UNTIL, SINCE)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Anna", "Anna"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_cells_that_would_start_a_formula_are_neutralized(store, value, shown):
    assert neutralize(value) == shown
    payload = event("x@example.com")
    payload["customer"]["last_name"] = value
    payload["cart"]["items"] = [{"name": value, "quantity": 1}]
    with store.begin() as conn:
        add_journey(conn, abandoned="2026-11-02T10:00:00", payload=payload, email=value or None)
    (row,) = _read(export_csv(store, "bakery", SINCE, UNTIL, timezone=TZ))
    assert row["last_name"] == shown
    assert row["email"] == (shown or "x@example.com")  # no address: the event's
    assert row["cart_items"] == f"1 × {value}" if value else "1 × "


def test_rows_as_dicts_keep_the_raw_values(store):
    seed_bakery(store)
    rows = list(export_rows(store, "bakery", SINCE, UNTIL, timezone=TZ))
    assert rows[1]["phone"] == "+4915112345678" and rows[1]["messages_sent"] == 2
    json.dumps(rows)


MEASURE = """
import json, os, resource, sys
from datetime import date
from hub.export import export_csv
from hub.store import Store

store = Store(sys.argv[1], sys.argv[2] or None)
chunks = export_csv(store, "bulk", date(2026, 11, 1), date(2026, 11, 30))
out = open(os.devnull, "w")
lines = 0
for i, chunk in enumerate(chunks):
    out.write(chunk)
    lines += chunk.count("\\r\\n")
    if i == 2:  # warm: imports, connection, the first pages' objects
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"lines": lines, "before_kb": before, "after_kb": after}))
"""


def _seed_bulk(store: Store, n: int) -> None:
    """``n`` journeys in November 2026, a third with one e-mail each; bulk inserts."""
    payload = event("bulk@example.com")
    now = at("2026-11-20T00:00:00")
    with store.begin() as conn:
        for start in range(0, n, 10_000):
            conn.execute(
                sa.insert(journeys),
                [
                    dict(
                        tenant="bulk",
                        checkout_id=f"co_{i}",
                        source="shopify",
                        status="finished",
                        flow="default",
                        email=f"c{i}@example.com",
                        event=payload,
                        abandoned_at=at(f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00"),
                        created_at=now,
                        recovered=False,
                    )
                    for i in range(start, min(start + 10_000, n))
                ],
            )
        ids = conn.execute(sa.select(journeys.c.id).where(journeys.c.tenant == "bulk")).scalars()
        conn.execute(
            sa.insert(deliveries),
            [
                dict(
                    tenant="bulk",
                    journey_id=j,
                    step_index=0,
                    sink="email",
                    channel="email",
                    status="sent",
                    attempts=1,
                    created_at=now,
                    updated_at=now,
                    sent_at=now,
                )
                for j in ids
                if j % 3 == 0
            ],
        )


def test_100k_rows_stream_in_bounded_memory(store, database):
    """The export's peak memory must not grow with the rows: 100 k rows, measured in a fresh
    process. Holding them all would take well over 100 MB (each carries its event JSON)."""
    _seed_bulk(store, 100_000)
    found = subprocess.run(
        [sys.executable, "-c", MEASURE, database[0], database[1] or ""],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    measured = json.loads(found.stdout)
    assert measured["lines"] == 100_001
    growth_mb = (measured["after_kb"] - measured["before_kb"]) / 1024
    assert growth_mb < 20, f"peak RSS grew {growth_mb:.1f} MB over 100 k rows"
