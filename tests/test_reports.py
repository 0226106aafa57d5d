"""Reports against hand-counted rows (tests/results_fixtures.py has the table): every grouping,
local days across a daylight-saving change, currencies apart, refunds, empty ranges and
requests a report cannot answer."""

from __future__ import annotations

from datetime import date

import pytest

from hub import migrations
from hub.reports import Figures, ReportError, report
from hub.store import Store
from tests.results_fixtures import SINCE, TZ, UNTIL, add_journey, seed_bakery


@pytest.fixture
def store(database):
    store = Store(*database)
    migrations.upgrade(store)
    yield store
    store.dispose()


@pytest.fixture
def bakery(store):
    seed_bakery(store)
    return store


def _figures(**given) -> dict:
    """A row's figures as :meth:`Figures.as_dict` gives them, zeros unless given."""
    figures = Figures(**given)
    return figures.as_dict()


def _rows(store, by):
    result = report(store, "bakery", SINCE, UNTIL, by=by, timezone=TZ)
    return {
        tuple(
            r.as_dict(by)[k]
            for k in r.as_dict(by)
            if k in ("day", "flow", "step", "channel", "source")
        ): r.figures.as_dict()
        for r in result.rows
    }, result


TOTAL = _figures(
    abandoned=6,
    messaged=4,
    messages=6,
    delivered=5,
    bounced=1,
    opened=2,
    clicked=1,
    recovered=3,
    recovered_without_message=1,
    revenue={"EUR": 11000, "USD": 2000},
    revenue_without_message={"USD": 3000},
    refunded={"EUR": 1000},
)


def test_total_counts_each_checkout_once_and_keeps_currencies_apart(bakery):
    result = report(bakery, "bakery", SINCE, UNTIL, by="flow", timezone=TZ)
    assert result.total.as_dict() == TOTAL
    assert result.total.recovery_rate == 0.5
    assert result.total.messages_per_recovery == 2.0
    assert result.currencies == ["EUR", "USD"]


def test_by_day_uses_the_tenants_local_days_and_lists_empty_days(bakery):
    rows, result = _rows(bakery, "day")
    assert rows == {
        ("2026-11-01",): _figures(abandoned=1),
        ("2026-11-02",): _figures(
            abandoned=2,
            messaged=2,
            messages=3,
            delivered=2,
            bounced=1,
            opened=1,
            clicked=1,
            recovered=1,
            revenue={"EUR": 4000},
            refunded={"EUR": 1000},
        ),
        ("2026-11-03",): _figures(
            abandoned=3,
            messaged=2,
            messages=3,
            delivered=3,
            opened=1,
            recovered=2,
            recovered_without_message=1,
            revenue={"EUR": 7000, "USD": 2000},
            revenue_without_message={"USD": 3000},
        ),
    }
    assert result.total.as_dict() == TOTAL


def test_by_flow(bakery):
    rows, result = _rows(bakery, "flow")
    assert rows == {
        ("default",): _figures(
            abandoned=3,
            messaged=3,
            messages=5,
            delivered=4,
            bounced=1,
            opened=1,
            clicked=1,
            recovered=2,
            revenue={"EUR": 11000},
            refunded={"EUR": 1000},
        ),
        ("vip",): _figures(
            abandoned=2,
            messaged=1,
            messages=1,
            delivered=1,
            opened=1,
            recovered=1,
            recovered_without_message=1,
            revenue={"USD": 2000},
            revenue_without_message={"USD": 3000},
        ),
        (None,): _figures(abandoned=1),
    }
    assert [r.flow for r in result.rows] == ["default", "vip", None]


def test_by_source(bakery):
    rows, result = _rows(bakery, "source")
    assert rows == {
        ("shopify",): _figures(
            abandoned=3,
            messaged=3,
            messages=5,
            delivered=5,
            opened=2,
            clicked=1,
            recovered=3,
            revenue={"EUR": 11000, "USD": 2000},
            refunded={"EUR": 1000},
        ),
        ("stripe",): _figures(
            abandoned=3,
            messaged=1,
            messages=1,
            bounced=1,
            recovered_without_message=1,
            revenue_without_message={"USD": 3000},
        ),
    }
    assert result.total.as_dict() == TOTAL


def test_by_channel_credits_the_credited_message_and_keeps_unmessaged_apart(bakery):
    rows, result = _rows(bakery, "channel")
    assert rows == {
        ("email",): _figures(
            abandoned=4,
            messaged=4,
            messages=4,
            delivered=3,
            bounced=1,
            opened=2,
            clicked=1,
            recovered=2,
            revenue={"EUR": 4000, "USD": 2000},
            refunded={"EUR": 1000},
        ),
        ("whatsapp",): _figures(
            abandoned=2, messaged=2, messages=2, delivered=2, recovered=1, revenue={"EUR": 7000}
        ),
        (None,): _figures(
            abandoned=2, recovered_without_message=1, revenue_without_message={"USD": 3000}
        ),
    }
    assert result.total.as_dict() == TOTAL  # not the sum of the rows: J1 is in two of them


def test_by_step(bakery):
    rows, result = _rows(bakery, "step")
    assert rows == {
        ("default", 0): _figures(
            abandoned=3,
            messaged=3,
            messages=3,
            delivered=2,
            bounced=1,
            opened=1,
            clicked=1,
            recovered=1,
            revenue={"EUR": 4000},
            refunded={"EUR": 1000},
        ),
        ("default", 1): _figures(
            abandoned=2, messaged=2, messages=2, delivered=2, recovered=1, revenue={"EUR": 7000}
        ),
        ("vip", 0): _figures(
            abandoned=1,
            messaged=1,
            messages=1,
            delivered=1,
            opened=1,
            recovered=1,
            revenue={"USD": 2000},
        ),
        (None, None): _figures(
            abandoned=2, recovered_without_message=1, revenue_without_message={"USD": 3000}
        ),
    }
    assert result.total.as_dict() == TOTAL


def test_a_day_with_a_daylight_saving_change_has_25_hours(store):
    # 25 October 2026: Berlin goes from CEST (UTC+2) to CET (UTC+1) at 01:00 UTC
    with store.begin() as conn:
        for moment in (
            "2026-10-23T21:59:59",  # 23:59:59 CEST on the 23rd
            "2026-10-23T22:00:00",  # midnight of the 24th
            "2026-10-24T21:59:59",  # 23:59:59 CEST on the 24th
            "2026-10-24T22:00:00",  # midnight of the 25th (CEST)
            "2026-10-25T00:59:59",  # 02:59:59 CEST, just before the change
            "2026-10-25T01:00:00",  # 02:00 CET, after it
            "2026-10-25T22:59:59",  # 23:59:59 CET on the 25th
            "2026-10-25T23:00:00",  # midnight of the 26th
        ):
            add_journey(conn, abandoned=moment, email=f"{moment}@example.com")
    result = report(store, "bakery", date(2026, 10, 24), date(2026, 10, 26), timezone=TZ)
    assert [(r.day.isoformat(), r.figures.abandoned) for r in result.rows] == [
        ("2026-10-24", 2),
        ("2026-10-25", 4),
        ("2026-10-26", 1),
    ]
    one_day = report(store, "bakery", date(2026, 10, 25), date(2026, 10, 25), timezone=TZ)
    assert one_day.total.abandoned == 4


def test_the_same_rows_in_another_time_zone_fall_on_other_days(bakery):
    result = report(bakery, "bakery", SINCE, UNTIL, by="day", timezone="America/New_York")
    # New York is UTC-4 until 1 November 06:00 UTC, then UTC-5: J6 (10-31 23:30 UTC) is
    # 31 October there, J3 (11-02 23:30 UTC) 2 November, and the journey of 11-03 23:00 UTC
    # (4 November in Berlin) is 3 November
    assert [(r.day.isoformat(), r.figures.abandoned) for r in result.rows] == [
        ("2026-11-01", 0),
        ("2026-11-02", 3),
        ("2026-11-03", 3),
    ]


def test_a_refund_is_taken_off_the_revenue_and_shown(store):
    with store.begin() as conn:
        add_journey(
            conn,
            abandoned="2026-11-02T10:00:00",
            messages=((0, "email", "sent", ()),),
            recovered=(4990, "EUR", "sent", None),
            credit_step=0,
            refunded=4990,
        )
    total = report(store, "bakery", SINCE, UNTIL, timezone=TZ).total
    assert (total.recovered, total.revenue, total.refunded) == (1, {"EUR": 0}, {"EUR": 4990})


def test_recoveries_from_before_attribution_land_on_their_last_sent_message(store):
    """Journeys recovered before credits were recorded (credit NULL) still count: with a
    message as attributed, credited to the last one sent; without one, apart."""
    with store.begin() as conn:
        add_journey(
            conn,
            abandoned="2026-11-02T10:00:00",
            messages=((0, "email", "sent", ()), (1, "sms", "sent", ())),
            recovered=(100, "EUR", None, None),
        )
        add_journey(
            conn, abandoned="2026-11-02T11:00:00", recovered=(200, "EUR", None, None), flow="x"
        )
    rows, result = _rows(store, "channel")
    assert rows[("sms",)]["recovered"] == 1 and rows[("email",)]["recovered"] == 0
    assert rows[("sms",)]["revenue"] == {"EUR": 100}
    assert (result.total.recovered, result.total.recovered_without_message) == (1, 1)


def test_an_empty_range_has_zero_days_and_no_rates(store):
    result = report(store, "bakery", SINCE, UNTIL, by="day", timezone=TZ)
    assert [r.figures.abandoned for r in result.rows] == [0, 0, 0]
    assert result.total.recovery_rate is None and result.total.messages_per_recovery is None
    assert report(store, "bakery", SINCE, UNTIL, by="flow", timezone=TZ).rows == []
    assert result.as_dict()["total"]["recovery_rate"] is None


@pytest.mark.parametrize(
    ("since", "until", "by", "words"),
    [
        (date(2026, 11, 3), date(2026, 11, 1), "day", "is before since"),
        (SINCE, UNTIL, "week", "cannot group by 'week'"),
        (date(2000, 1, 1), date(2026, 1, 1), "day", "at most"),
    ],
)
def test_a_report_it_cannot_answer_says_why(store, since, until, by, words):
    with pytest.raises(ReportError, match=words):
        report(store, "bakery", since, until, by=by, timezone=TZ)


def test_as_dict_is_json_ready(bakery):
    import json

    data = report(bakery, "bakery", SINCE, UNTIL, by="step", timezone=TZ).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert (
        data["rows"][0] == {"flow": "default", "step": 0, **data["rows"][0]}
        and data["timezone"] == TZ
    )


# ---------------------------------------------------------------- hub report / hub export

SHOP = """
name = "Bakery"
timezone = "Europe/Berlin"
locale = "de"
currency = "EUR"
"""


@pytest.fixture
def cli(hub_factory):
    from click.testing import CliRunner

    from hub.app import create_app
    from hub.console import HubGroup

    harness = hub_factory({"bakery": SHOP})
    seed_bakery(harness.hub.store)

    def run(*args: str):
        group = HubGroup(create_app=lambda state: create_app(harness.config, create_state=state))
        return CliRunner().invoke(group, list(args))

    return run


RANGE = ("--since", "2026-11-01", "--until", "2026-11-03")


def test_hub_report_table_is_for_people_in_the_tenants_locale(cli):
    result = cli("report", "bakery", *RANGE, "--by", "flow")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "by flow" in lines[0] and "Europe/Berlin" in lines[0]
    default = next(line for line in lines if line.startswith("default"))
    assert "110,00\xa0€" in default and "66,7%" in default  # de: decimal comma
    total = next(line for line in lines if line.startswith("Total"))
    assert "110,00\xa0€, 20,00\xa0$" in total and "50,0%" in total  # never one sum
    assert any("without a message: 1 (30,00\xa0$)" in line for line in lines)
    assert any("Refunded after recovery: 10,00\xa0€" in line for line in lines)


def test_hub_report_csv_and_json_carry_minor_units_and_currencies(cli):
    import csv
    import io
    import json

    rows = list(
        csv.DictReader(io.StringIO(cli("report", "bakery", *RANGE, "--format", "csv").stdout))
    )
    assert [r["row"] for r in rows] == ["group"] * 3 + ["total"]
    assert rows[1]["day"] == "2026-11-02" and rows[1]["revenue_minor_EUR"] == "4000"
    assert rows[-1]["revenue_minor_USD"] == "2000" and rows[-1]["recovery_rate"] == "0.5"
    data = json.loads(cli("report", "bakery", *RANGE, "--by", "channel", "--format", "json").stdout)
    assert data["total"]["revenue"] == {"EUR": 11000, "USD": 2000}
    assert data["rows"][-1]["channel"] is None


def test_hub_export_writes_csv_to_stdout(cli):
    result = cli("export", "bakery", *RANGE, "--email", "bob@example.com")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("journey_id,checkout_id") and len(lines) == 2
    assert "bob@example.com" in lines[1]
