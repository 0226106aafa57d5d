"""The reports phase of ``python -m bench --only reports`` (PostgreSQL): report queries and the
CSV export on a million journeys.

One tenant gets ``--journeys`` journeys (default 1 000 000) abandoned over November 2026,
seeded by the database itself (``generate_series``) in seconds rather than through webhooks:
80 % get an e-mail at step 0 (20 % of those opened, 5 % clicked, 2 % bounced), 40 % a
WhatsApp message at step 1 (delivered), 10 % are recovered with the credit on their e-mail,
4 % recovered without message, revenue in EUR and USD, some refunds, then vacuumed (as
autovacuum leaves a table written once). Then each ``--by`` of the month is timed (median of
3, after a warm-up run) and so is one day; the export of the whole month runs in a fresh
process that writes to ``/dev/null`` and reports its peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from typing import Any

import sqlalchemy as sa

SINCE, UNTIL = date(2026, 11, 1), date(2026, 11, 30)
TENANT = "bench"

SEED = [
    """
    INSERT INTO journeys (tenant, checkout_id, source, status, flow, email, event, abandoned_at,
        created_at, recovered, recovered_amount, recovered_currency, recovered_at, credit,
        refunded_amount, token)
    SELECT :tenant, 'co_' || i, CASE WHEN i % 2 = 0 THEN 'shopify' ELSE 'stripe' END,
        CASE WHEN i % 10 = 0 OR i % 25 = 0 THEN 'converted' ELSE 'finished' END,
        (ARRAY['default', 'vip', 'b2b'])[1 + i % 3], 'c' || i || '@example.com',
        json_build_object(
            'kind', 'checkout.abandoned', 'stage', 'payment',
            'customer', json_build_object('email', 'c' || i || '@example.com',
                'first_name', 'Anna', 'last_name', 'Muster', 'country', 'DE'),
            'cart', json_build_object('total', 4990, 'currency', 'EUR', 'items',
                json_build_array(json_build_object('name', 'Bread', 'quantity', 2))),
            'consent', json_build_object('email', 'opt_in', 'whatsapp', 'unknown')),
        at, at, i % 10 = 0 OR i % 25 = 0,
        CASE WHEN i % 10 = 0 OR i % 25 = 0 THEN 1000 + i % 9000 END,
        CASE WHEN i % 10 = 0 OR i % 25 = 0 THEN
            (CASE WHEN i % 7 = 0 THEN 'USD' ELSE 'EUR' END) END,
        CASE WHEN i % 10 = 0 OR i % 25 = 0 THEN at + interval '1 day' END,
        CASE WHEN i % 10 = 0 THEN 'clicked' WHEN i % 25 = 0 THEN 'none' END,
        CASE WHEN i % 100 = 0 THEN 500 END,
        md5(i::text)
    FROM (
        SELECT i, timestamp '2026-10-31 23:00' + (i * (2592000.0 / :n)) * interval '1 second'
            AS at
        FROM generate_series(0, :n - 1) AS i
    ) AS seed
    """,
    """
    INSERT INTO deliveries (tenant, journey_id, step_index, sink, channel, identity, status,
        attempts, created_at, updated_at, sent_at)
    SELECT tenant, id, 0, 'email', 'email', email, 'sent', 1, abandoned_at, abandoned_at,
        abandoned_at + interval '1 hour'
    FROM journeys WHERE tenant = :tenant AND id % 5 <> 0 AND credit IS DISTINCT FROM 'none'
    """,
    """
    INSERT INTO deliveries (tenant, journey_id, step_index, sink, channel, identity, status,
        attempts, created_at, updated_at, sent_at)
    SELECT tenant, id, 1, 'whatsapp', 'whatsapp', email, 'delivered', 1, abandoned_at,
        abandoned_at, abandoned_at + interval '1 day'
    FROM journeys WHERE tenant = :tenant AND id % 5 IN (1, 2) AND credit IS DISTINCT FROM 'none'
    """,
    """
    INSERT INTO tracking_events (tenant, journey_id, delivery_id, kind, at)
    SELECT d.tenant, d.journey_id, d.id, k.kind, d.sent_at + interval '5 minutes'
    FROM deliveries d
    JOIN (VALUES ('opened', 5), ('clicked', 20), ('bounced', 50), ('delivered', 1)) AS k(kind, m)
        ON (k.kind = 'delivered') = (d.channel = 'whatsapp') AND d.id % (k.m * 2) < 2
    WHERE d.tenant = :tenant
    """,
    """
    UPDATE journeys j SET credited_delivery_id = d.id
    FROM deliveries d
    WHERE d.journey_id = j.id AND d.step_index = 0 AND j.tenant = :tenant AND j.credit = 'clicked'
    """,
]
# what autovacuum does to a table that was written once: statistics, and the visibility map
# that lets a report answer from the covering indexes alone (index-only scans)
VACUUM = ("journeys", "deliveries", "tracking_events")


def seed(store: Any, n: int) -> float:
    """``n`` journeys with their messages and tracking events; seconds taken."""
    start = time.monotonic()
    with store.engine.begin() as conn:
        for statement in SEED:
            conn.execute(sa.text(statement), {"tenant": TENANT, "n": n})
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in VACUUM:
            conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
    return time.monotonic() - start


def timed(function: Any, rounds: int = 3) -> float:
    function()  # warm: plans, caches, the first connection
    runs = []
    for _ in range(rounds):
        start = time.monotonic()
        function()
        runs.append(time.monotonic() - start)
    return statistics.median(runs)


def run(bench: Any) -> dict:
    """Seed, time every grouping, then measure the export in a fresh process."""
    from hub import migrations
    from hub.reports import GROUPINGS, report
    from hub.store import Store

    if not bench.postgres:
        raise SystemExit("the reports phase needs PostgreSQL: set DATABASE_URL or --database-url")
    url, schema = bench.database("reports")
    store = Store(url, schema)
    migrations.upgrade(store)
    n = bench.args.journeys
    found: dict[str, Any] = {"journeys": n, "seed_seconds": seed(store, n)}
    with store.engine.connect() as conn:
        found["rows"] = {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("journeys", "deliveries", "tracking_events")
        }
    tz = "Europe/Berlin"
    found["month"] = {
        by: timed(lambda by=by: report(store, TENANT, SINCE, UNTIL, by=by, timezone=tz))
        for by in GROUPINGS
    }
    day = date(2026, 11, 15)
    found["day"] = {
        by: timed(lambda by=by: report(store, TENANT, day, day, by=by, timezone=tz))
        for by in GROUPINGS
    }
    total = report(store, TENANT, SINCE, UNTIL, by="flow", timezone=tz).total
    found["abandoned_in_month"] = total.abandoned
    store.dispose()
    print(f"  timed: {json.dumps({k: found[k] for k in ('rows', 'month', 'day')})}", flush=True)
    found["export"] = measure_export(url, schema)
    return found


def measure_export(url: str, schema: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.reports", url, schema],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HUB_LOG_LEVEL": "WARNING"},
    )
    return json.loads(proc.stdout)


def _export_main(url: str, schema: str) -> None:
    """In a fresh process: stream the month's CSV to /dev/null; rows, seconds, peak RSS."""
    from hub.export import export_csv
    from hub.store import Store

    store = Store(url, schema or None)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    lines = 0
    with open(os.devnull, "w") as out:
        for chunk in export_csv(store, TENANT, SINCE, UNTIL, timezone="Europe/Berlin"):
            out.write(chunk)
            lines += chunk.count("\r\n")
    print(
        json.dumps(
            {
                "rows": lines - 1,
                "seconds": time.monotonic() - start,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mb": rss_start / 1024,
            }
        )
    )


def print_report(found: dict) -> None:
    rows = found["rows"]
    print(
        f"\nreports: {rows['journeys']:,} journeys, {rows['deliveries']:,} messages, "
        f"{rows['tracking_events']:,} tracking events (seeded in {found['seed_seconds']:.0f} s)"
    )
    print(
        f"  {'--by':<9} {'month (' + format(found['abandoned_in_month'], ',') + ')':>18} "
        f"{'one day':>9}"
    )
    for by, seconds in found["month"].items():
        print(f"  {by:<9} {seconds * 1000:15.0f} ms {found['day'][by] * 1000:6.0f} ms")
    e = found["export"]
    print(
        f"  export of the month: {e['rows']:,} rows in {e['seconds']:.1f} s, peak RSS "
        f"{e['peak_rss_mb']:.0f} MB (after imports {e['rss_before_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    _export_main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
