"""Flows on real RQ scheduling: precision, worker restarts, Redis losing scheduled jobs, and one
person abandoning on two platforms."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime

import pytest
import redis
from samples import stripe_event, stripe_headers, stripe_session, tenant_toml

from plugins.digistore24.ipn import signed_body
from plugins.digistore24.source import demo_fields
from plugins.shopify.signature import sign as shopify_sign

SHOP = "acme.myshopify.com"


def test_a_scheduled_step_fires_within_two_seconds_of_its_due_time(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="3s")})
    harness.start_worker()
    body = stripe_event()
    harness.post("acme", "stripe", body, stripe_headers(body))
    smtp_server.wait_for_messages(1)
    # the SMTP server has the mail a moment before the worker records it as sent
    harness.wait_for(lambda: harness.rows("deliveries", status="sent"), message="sent recorded")
    [step] = harness.rows("steps")
    [delivery] = harness.rows("deliveries")
    late = (delivery.sent_at - step.due_at).total_seconds()
    assert -1.5 <= late <= 2.0, f"sent {late:+.2f}s from its due time"


def test_a_worker_killed_mid_schedule_loses_no_step(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="4s")})
    worker = harness.start_worker()
    body = stripe_event()
    harness.post("acme", "stripe", body, stripe_headers(body))
    harness.wait_for(lambda: harness.rows("steps"), message="step scheduled")
    os.killpg(worker.pid, signal.SIGKILL)  # worker, scheduler: the whole process group
    worker.wait()
    harness.workers.clear()
    time.sleep(1)
    harness.start_worker()  # a new worker picks the scheduled job up from Redis
    smtp_server.wait_for_messages(1, timeout=30)
    time.sleep(2)
    assert len(smtp_server.messages) == 1


def test_when_redis_loses_the_scheduled_jobs_the_sweep_rebuilds_them(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="6s")})
    worker = harness.start_worker()  # listening first: its start-up must not eat the 6 s
    harness.wait_for(lambda: "Listening on" in harness.worker_logs(), message="worker listening")
    body = stripe_event()
    harness.post("acme", "stripe", body, stripe_headers(body))
    harness.wait_for(lambda: harness.rows("steps"), message="step scheduled")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    harness.workers.clear()
    # Redis without persistence restarted: every key of this hub's queues is gone
    conn = redis.Redis.from_url(harness.config["REDIS_URL"])
    prefix = harness.config["HUB_QUEUE_PREFIX"]
    lost = [k for k in conn.scan_iter(count=500) if prefix.encode() in k]
    assert lost, "the scheduled step should have been in Redis"
    conn.delete(*lost)
    assert harness.rows("steps")[0].status == "scheduled"  # the database still knows
    harness.start_worker()  # its sweep (HUB_SWEEP_AFTER=3s) re-queues the overdue step
    smtp_server.wait_for_messages(1, timeout=30)
    # the ledger records the outcome after the SMTP server has the message
    harness.wait_for(lambda: harness.rows("deliveries")[0].status == "sent", message="sent")


def _digistore24(harness, email: str):  # noqa: ANN001, ANN202
    ipn = signed_body(demo_fields(email=email, address_country="US"), "ds24-secret")
    answer = harness.post(
        "acme", "digistore24", ipn, content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 200 and answer.get_data() == b"OK"


def _shopify(harness, email: str):  # noqa: ANN001, ANN202
    now = datetime.now(UTC).isoformat()
    body = json.dumps(
        {
            "id": 981820079255243537,
            "token": "123123123",
            "email": email,
            "buyer_accepts_marketing": True,
            "currency": "EUR",
            "presentment_currency": "EUR",
            "total_price": "49.99",
            "line_items": [{"title": "Blue Mug", "quantity": 1, "price": "49.99"}],
            "billing_address": {"first_name": "Jane", "country_code": "DE"},
            "abandoned_checkout_url": "https://acme.example/1/checkouts/123123123/recover?key=abc",
            "created_at": now,
            "updated_at": now,
            "completed_at": None,
        }
    ).encode()
    headers = {
        "X-Shopify-Topic": "checkouts/update",
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Webhook-Id": "wh-1",
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Hmac-Sha256": shopify_sign(body, "shpss-secret"),
        "Content-Type": "application/json",
    }
    assert harness.post("acme", "shopify", body, headers).status_code == 202


@pytest.mark.parametrize("second", [_digistore24, _shopify], ids=["digistore24", "shopify"])
def test_one_person_abandoning_on_two_platforms_gets_one_message(hub_factory, smtp_server, second):
    extra = f"""
[sources.digistore24]
ipn_passphrase = "ds24-secret"

[sources.shopify]
shop_domain = "{SHOP}"
client_secret = "shpss-secret"
abandon_after = "1s"
"""
    harness = hub_factory(
        {
            "acme": tenant_toml(
                smtp_url=smtp_server.url, after="1s", consent="not_opted_out", extra=extra
            )
        }
    )
    harness.start_worker()
    session = stripe_session()
    session["customer_details"]["email"] = "Jane.Doe@Example.com"
    body = stripe_event(session=session)
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    smtp_server.wait_for_messages(1)
    second(harness, "jane.doe@example.com")
    harness.wait_for(lambda: len(harness.rows("deliveries")) == 2, message="second journey's step")
    first, other = harness.rows("deliveries")
    assert first.status == "sent"
    assert other.status == "skipped" and other.reason.startswith("frequency cap")
    assert len(smtp_server.messages) == 1
