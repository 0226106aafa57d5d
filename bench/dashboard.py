"""Seed a database with results-shaped history and time the dashboard's pages on it.

``python -m bench.dashboard --journeys 100000`` (``DATABASE_URL`` for PostgreSQL) seeds that
many journeys over 90 days across five tenants (each with an event, steps, deliveries, log
lines, tracking events; a tenth recovered), then requests each page through a signed-in
test client and prints the median of ``--rounds`` requests, cold (the figures' cache emptied
before each one) and warm. The tests seed with the same
:func:`seed` at a small size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from hub.dashboard import cache
from hub.store import (
    Store,
    deliveries,
    delivery_log,
    events,
    journeys,
    new_token,
    steps,
    tracking_events,
)

BATCH = 5000


def seed(
    store: Store, tenants: list[str], count: int, now: datetime, days: int = 90, seed: int = 1
) -> None:
    """``count`` journeys spread over ``tenants`` and the last ``days`` days."""
    rng = random.Random(seed)
    with store.begin() as conn:
        first = (conn.execute(sa.select(sa.func.max(journeys.c.id))).scalar() or 0) + 1
        first_delivery = (conn.execute(sa.select(sa.func.max(deliveries.c.id))).scalar() or 0) + 1
    rows: dict[str, list[dict]] = {t.name: [] for t in (events, journeys, steps, deliveries)}
    rows |= {delivery_log.name: [], tracking_events.name: []}
    delivery_id = first_delivery
    for n in range(count):
        journey_id = first + n
        tenant = tenants[n % len(tenants)]
        at = now - timedelta(seconds=rng.uniform(60, days * 86400))
        recovered = rng.random() < 0.1
        checkout = f"cs_{journey_id}"
        email = f"customer{journey_id}@example.com"
        rows["events"].append(
            {
                "tenant": tenant,
                "source": "webhook",
                "event_key": f"evt_{journey_id}",
                "kind": "checkout.abandoned",
                "checkout_id": checkout,
                "occurred_at": at,
                "received_at": at,
                "email": email,
                "payload": {"checkout_id": checkout},
                "raw": '{"secret": "raw payload of ' + checkout + '"}',
                "status": "processed",
            }
        )
        sent = rng.random() < 0.7
        rows["journeys"].append(
            {
                "id": journey_id,
                "tenant": tenant,
                "checkout_id": checkout,
                "source": "webhook",
                "status": "converted" if recovered else "finished",
                "flow": "default",
                "email": email,
                "abandoned_at": at,
                "created_at": at,
                "recovered": recovered,
                "recovered_amount": rng.randrange(1000, 20000) if recovered else None,
                "recovered_currency": "EUR" if recovered else None,
                "recovered_at": at + timedelta(hours=5) if recovered else None,
                "closed_at": at + timedelta(hours=5) if recovered else None,
                "credited_delivery_id": delivery_id if recovered and sent else None,
                "credit": ("clicked" if sent else "none") if recovered else None,
                "token": new_token(),
            }
        )
        due = at + timedelta(hours=1)
        rows["steps"].append(
            {
                "journey_id": journey_id,
                "step_index": 0,
                "due_at": due,
                "status": "sent" if sent else "skipped",
                "reason": None if sent else "no consent for email",
                "updated_at": due,
                "token": new_token(),
            }
        )
        if sent:
            rows["deliveries"].append(
                {
                    "id": delivery_id,
                    "tenant": tenant,
                    "journey_id": journey_id,
                    "step_index": 0,
                    "sink": "email",
                    "channel": "email",
                    "identity": email,
                    "status": "sent",
                    "attempts": 1,
                    "created_at": due,
                    "updated_at": due,
                    "sent_at": due,
                }
            )
            rows["delivery_log"].append(
                {
                    "tenant": tenant,
                    "journey_id": journey_id,
                    "step_index": 0,
                    "sink": "email",
                    "channel": "email",
                    "delivery_id": delivery_id,
                    "attempt": 1,
                    "status": "sent",
                    "at": due,
                }
            )
            if recovered or rng.random() < 0.3:
                rows["tracking_events"].append(
                    {
                        "tenant": tenant,
                        "journey_id": journey_id,
                        "delivery_id": delivery_id,
                        "kind": "clicked",
                        "at": due + timedelta(minutes=30),
                    }
                )
            delivery_id += 1
        if len(rows["journeys"]) >= BATCH:
            _flush(store, rows)
    _flush(store, rows)
    if store.is_postgres:  # explicit ids do not move PostgreSQL's sequences: later inserts would
        with store.begin() as conn:  # collide with the seeded rows
            for table in (journeys, deliveries):
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT max(id) FROM {table.name}))"
                    )
                )


def _flush(store: Store, rows: dict[str, list[dict]]) -> None:
    """Parents before children; step and delivery ids are known before the insert."""
    order = (journeys, events, steps, deliveries, delivery_log, tracking_events)
    with store.begin() as conn:
        for table in order:
            if rows[table.name]:
                conn.execute(sa.insert(table), rows[table.name])
                rows[table.name] = []


def main() -> None:
    import os

    from hub.app import create_app
    from hub.dashboard.accounts import create_user

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--journeys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--keep",
        metavar="SCHEMA",
        help="PostgreSQL: seed into this schema once and keep it (re-runs time the pages only)",
    )
    args = parser.parse_args()
    tenants = ["alpha", "bravo", "charlie", "delta", "echo"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config" / "tenants").mkdir(parents=True)
        for slug in tenants:
            (root / "config" / "tenants" / f"{slug}.toml").write_text(
                f'name = "{slug.title()}"\ntimezone = "Europe/Berlin"\nlocale = "de"\n'
                f'currency = "EUR"\n[sources.webhook]\nsecret = "whsec_{"A" * 32}"\n'
                f'[sinks.outbox]\ndir = "{root}/outbox"\n[[flows]]\nname = "default"\n'
                '  [[flows.steps]]\n  after = "1h"\n  channels = ["outbox"]\n'
                '  template = "reminder"\n'
            )
        schema = args.keep or (
            f"bench_dashboard_{os.getpid()}" if os.environ.get("DATABASE_URL") else ""
        )
        app = create_app(
            {
                "HUB_CONFIG_DIR": str(root / "config"),
                "HUB_VAR_DIR": str(root / "var"),
                "DATABASE_SCHEMA": schema,
                "HUB_SECRET_KEY": "bench",
            }
        )
        hub = app.extensions["hub"]
        try:
            with hub.store.begin() as conn:
                seeded = conn.execute(sa.select(sa.func.count()).select_from(journeys)).scalar()
            if not seeded:
                started = time.perf_counter()
                seed(hub.store, tenants, args.journeys, datetime.now(UTC))
                print(f"seeded {args.journeys} journeys in {time.perf_counter() - started:.0f} s")
                _analyze(hub.store)
                create_user(hub.store, "bench@example.com", "bench-password-1", None)
            _time_pages(app, hub, args.rounds)
        finally:
            if schema and not args.keep:
                with hub.store.engine.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            hub.close()


def _analyze(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))


def _time_pages(app, hub, rounds: int) -> None:  # noqa: ANN001
    client = app.test_client()
    with client.session_transaction() as session:
        from hub.dashboard.accounts import authenticate

        user = authenticate(hub.store, "bench@example.com", "bench-password-1")
        session["user"], session["stamp"] = user.id, user.session_stamp
    with hub.store.begin() as conn:
        journey = conn.execute(
            sa.select(journeys.c.id).where(journeys.c.tenant == "alpha").limit(1)
        ).scalar()
    pages = {
        "portfolio": "/dashboard/",
        "client": "/dashboard/clients/alpha/",
        "journeys": "/dashboard/clients/alpha/journeys/",
        "journey": f"/dashboard/clients/alpha/journeys/{journey}",
        "search": f"/dashboard/search?q=customer{journey}@example.com",
    }
    for name, url in pages.items():
        assert client.get(url).status_code == 200, url
        # cold: the figures' cache emptied before each request (outside the timing), as on
        # the first view of a minute; warm: what every further view of that minute costs
        cold = _timed(client, url, rounds, before=lambda: cache.clear(hub))
        warm = _timed(client, url, rounds)
        print(
            f"{name:<10} cold median {statistics.median(cold):6.1f} ms  max {max(cold):6.1f} ms"
            f"   warm median {statistics.median(warm):6.1f} ms  max {max(warm):6.1f} ms"
        )


def _timed(client, url: str, rounds: int, before=lambda: None) -> list[float]:  # noqa: ANN001
    times = []
    for _ in range(rounds):
        before()
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times


if __name__ == "__main__":
    main()
