"""Ingress status codes (contract): 404, 401, 400 with the field, 413, 2xx, and health checks."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

from samples import stripe_event, stripe_headers, stripe_session, tenant_toml

from hub.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_tenant_and_source_not_enabled_are_404(hub_factory):
    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    body = stripe_event()
    missing = harness.post("nobody", "stripe", body, stripe_headers(body))
    assert missing.status_code == 404 and missing.get_json()["code"] == "unknown_tenant"
    not_enabled = harness.post("acme", "shopify", body, stripe_headers(body))
    assert not_enabled.status_code == 404 and not_enabled.get_json()["code"] == "unknown_source"


def test_signed_but_unparseable_body_is_400_naming_the_body(hub_factory):
    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    body = b"not json at all"
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 400
    assert answer.get_json() == {
        "code": "invalid_payload",
        "message": "body is not JSON",
        "field": "body",
    }


def test_schema_violation_is_400_naming_the_normalized_field(hub_factory):
    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    body = stripe_event(session=stripe_session(currency="euro"))
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "cart.currency"
    assert harness.rows("events") == []


def test_too_large_is_413_before_anything_else(hub_factory):
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")}, settings={"HUB_MAX_BODY_BYTES": 4096}
    )
    body = b"{" + b" " * 5000 + b"}"
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 413
    assert answer.get_json()["code"] == "request_entity_too_large"


def test_health_and_readiness(hub_factory):
    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    assert harness.client.get("/healthz").get_json() == {"status": "ok"}
    ready = harness.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "redis": "ok"}
    from hub.queues import Queues

    harness.hub.queues = Queues("redis://127.0.0.1:1/0", "", harness.hub.installation)
    down = harness.client.get("/readyz")
    assert down.status_code == 503 and down.get_json()["checks"]["redis"].startswith("error")


def test_readiness_without_redis_url_names_the_reason(hub_factory):
    """The web process never starts a Redis (README: production sets REDIS_URL); without one
    running under HUB_VAR_DIR, /readyz says why it is not ready instead of a bare error."""
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")}, settings={"REDIS_URL": ""}
    )
    down = harness.client.get("/readyz")
    assert down.status_code == 503
    reason = down.get_json()["checks"]["redis"]
    assert reason.startswith("error: ConnectionError: REDIS_URL is not set")
    assert f"unix://{harness.root / 'var' / 'redis.sock'}" in reason
    assert not (harness.root / "var" / "redis.sock").exists()


def _raw_post(port: int, path: str, body: bytes, headers: dict, chunked: bool = False) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    if chunked:
        conn.putrequest("POST", path)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for start in range(0, len(body), 1000):
            piece = body[start : start + 1000]
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.send(b"0\r\n\r\n")
    else:
        conn.request("POST", path, body=body, headers=headers)
    try:
        return conn.getresponse().status
    except (ConnectionError, http.client.RemoteDisconnected):
        return 413 if chunked else -1


def test_size_limit_holds_under_gunicorn_including_chunked_bodies(tmp_path, redis_url, database):
    config = tmp_path / "config" / "tenants"
    config.mkdir(parents=True)
    (config / "acme.toml").write_text(tenant_toml(smtp_url="smtp://127.0.0.1:1"))
    port = free_port()
    env = dict(
        os.environ,
        HUB_CONFIG_DIR=str(tmp_path / "config"),
        REDIS_URL=redis_url,
        DATABASE_URL=database[0],
        DATABASE_SCHEMA=database[1] or "",
        HUB_VAR_DIR=str(tmp_path / "var"),
        HUB_MAX_BODY_BYTES="20000",
        HUB_QUEUE_PREFIX="gunicorn-test-",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--chdir",
            str(ROOT),
            "wsgi:app",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            try:
                return (
                    http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    and _status(port, "/healthz") == 200
                )
            except OSError:
                return False

        wait_for(up, 30, message="gunicorn up")
        body = stripe_event()
        assert _raw_post(port, "/webhooks/acme/stripe", body, stripe_headers(body)) == 202
        big = json.dumps({"pad": "x" * 50000}).encode()
        assert _raw_post(port, "/webhooks/acme/stripe", big, stripe_headers(big)) == 413
        assert (
            _raw_post(port, "/webhooks/acme/stripe", big, stripe_headers(big), chunked=True) == 413
        )
        small = stripe_event(event_id="evt_chunked")
        assert (
            _raw_post(port, "/webhooks/acme/stripe", small, stripe_headers(small), chunked=True)
            == 202
        )
    finally:
        server.terminate()
        server.wait(10)


def _status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    conn.request("GET", path)
    return conn.getresponse().status


def test_webhook_answer_sets_no_session_cookie_and_hands_off_one_entry(hub_factory):
    """A platform keeps no cookies: the webhook route opens no session. The stored event
    reaches Redis as one entry of the event list naming its id, tenant and installation."""
    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    body = stripe_event()
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 202
    assert "Set-Cookie" not in answer.headers
    queues = harness.hub.queues
    assert queues.event_list == f"{queues.namespace}events"
    [row] = harness.rows("events")
    [(event_id, bound)] = queues.take_events()
    assert event_id == row.id
    assert bound["tenant"] == "acme" and bound["installation"] == harness.hub.installation
    assert queues.events.count == 0  # no RQ job per webhook


def test_stored_payload_keeps_consent_for_a_channel_only_a_plugin_declares(hub_factory):
    """The worker reads the stored payload: a plugin channel's consent must survive storing."""
    from datetime import UTC, datetime

    from hub.events import load_event
    from hub.ingress import store_event

    harness = hub_factory({"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1")})
    event = load_event(
        {
            "kind": "checkout.abandoned",
            "event_key": "evt_telegram",
            "checkout_id": "cs_telegram",
            "occurred_at": "2026-01-02T03:04:05Z",
            "tenant": "acme",
            "source": "stripe",
            "customer": {"email": "bob@example.com"},
            "consent": {"email": "opt_in", "telegram": "opt_in"},
        }
    )
    store_event(harness.hub.store, event, None, datetime.now(UTC))
    [row] = harness.rows("events")
    stored = load_event({**row.payload, "raw": None})
    assert stored["consent"]["telegram"] == "opt_in"
    assert stored == {**event, "raw": None}
