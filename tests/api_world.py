"""Two tenants with history, and keys for them: what the API tests read through the API."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub import apikeys
from hub.engine import Engine
from hub.erasure import erase_person
from hub.events import load_event
from hub.ingress import store_event
from hub.store import deliveries, tracking_events, utcnow

SHOP = """
name = "{name}"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"

[consent]
email = "opt_in"

[sources.shopify]
shop_domain = "{slug}.myshopify.com"
client_secret = "shpss_test"
abandon_after = "15m"

[sinks.outbox]
dir = "{outbox}"

[[flows]]
name = "default"
  [[flows.steps]]
  after = "1h"
  channels = ["outbox"]
  template = "reminder"
"""


@dataclass
class Tenant:
    slug: str
    key: str = ""
    journeys: list[int] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    erasures: list[int] = field(default_factory=list)


@dataclass
class World:
    harness: Any
    admin_key: str
    alpha: Tenant
    beta: Tenant

    @property
    def client(self) -> Any:
        return self.harness.client

    def get(self, url: str, key: str | None, **kwargs: Any) -> Any:
        return self.client.get(url, headers=bearer(key), **kwargs)


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def abandon(harness: Any, tenant: Tenant, email: str, at: datetime) -> None:
    """One abandonment through the real engine, its step sent an hour later, the mail opened."""
    engine = Engine(harness.hub, clock=lambda: at + timedelta(hours=1, seconds=1))
    event = load_event(
        {
            "kind": "checkout.abandoned",
            "event_key": f"e-{tenant.slug}-{email}",
            "checkout_id": f"c-{tenant.slug}-{email}",
            "occurred_at": at.isoformat(),
            "tenant": tenant.slug,
            "source": "shopify",
            "customer": {"email": email, "first_name": "Jane"},
            "cart": {"total": 4999, "currency": "EUR"},
            "consent": {"email": "opt_in"},
        }
    )
    event_id = store_event(harness.hub.store, event, None, at)
    engine.process_event(event_id)
    for step in harness.rows("steps", status="scheduled"):
        engine.run_step(step.id)
    tenant.events.append(event_id)
    tenant.emails.append(email)
    journey = harness.rows("journeys", checkout_id=f"c-{tenant.slug}-{email}")[0]
    tenant.journeys.append(journey.id)
    with harness.hub.store.begin() as conn:
        delivery = conn.execute(
            sa.select(deliveries).where(deliveries.c.journey_id == journey.id)
        ).first()
        tenant.deliveries.append(delivery.id)
        conn.execute(
            sa.insert(tracking_events).values(
                tenant=tenant.slug,
                journey_id=journey.id,
                delivery_id=delivery.id,
                kind="opened",
                at=at + timedelta(hours=2),
            )
        )


def build(hub_factory: Any, tmp_path: Any, settings: dict | None = None) -> World:
    tenants = {
        slug: SHOP.format(name=slug.title(), slug=slug, outbox=tmp_path / f"outbox-{slug}")
        for slug in ("alpha", "beta")
    }
    harness = hub_factory(tenants, settings)
    alpha, beta = Tenant("alpha"), Tenant("beta")
    start = datetime.now(UTC) - timedelta(days=3)
    for n in range(3):
        abandon(harness, alpha, f"ann{n}@alpha.example", start + timedelta(hours=n))
    abandon(harness, beta, "bob@beta.example", start + timedelta(hours=5))
    for tenant in (alpha, beta):  # a proof each: someone who had left no data
        gone = erase_person(harness.hub, tenant.slug, email=f"gone@{tenant.slug}.example")
        tenant.erasures.extend(gone.proof_ids)
    secret = harness.hub.settings.secret_key
    store = harness.hub.store
    alpha.key, _ = apikeys.create_key(store, secret, "alpha", "alpha's shop", utcnow())
    beta.key, _ = apikeys.create_key(store, secret, "beta", "beta's shop", utcnow())
    admin, _ = apikeys.create_key(store, secret, None, "agency", utcnow())
    return World(harness, admin, alpha, beta)


def fill_rule(rule: str, values: dict) -> str:
    """``rule`` (a werkzeug rule such as ``/x/<int(min=1):journey_id>``) with its arguments
    replaced by ``values[name]``."""
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", lambda m: str(values[m.group(1)]), rule)
