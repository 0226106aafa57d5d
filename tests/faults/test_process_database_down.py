"""The database unreachable while webhooks arrive: the hub must answer 503 with Retry-After,
fast (a platform gives up on a slow answer and counts it as a failure: Shopify waits 5 s), and
write nothing anywhere, not even a job in Redis. When the database is back, the platform's
retry of the same event is stored once.

Two ways a database is unreachable: nothing listens on its port (refused at once), or the
host takes the connection and never answers (a hung server, a firewall that drops packets
after the handshake). The served app is real (werkzeug's threaded server on 127.0.0.1); only
its database address is switched to the dead one and back.
"""

from __future__ import annotations

import threading
import time

import pytest
from process_helpers import client, closed_port
from samples import stripe_event, stripe_headers, tenant_toml
from werkzeug.serving import make_server

from hub.store import Store

# psycopg (like libpq) waits at least 2 s for a connection however short connect_timeout is
DEADLINE = {"refused": 1.0, "silent": 2.5}


@pytest.fixture
def served(hub_factory, smtp_server):  # noqa: ANN201
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    server = make_server("127.0.0.1", 0, harness.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield harness, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.mark.parametrize("fault", ["refused", "silent"])
def test_unreachable_database_answers_503_fast_and_writes_nothing(served, silent_server, fault):
    harness, url = served
    port = closed_port() if fault == "refused" else silent_server.port
    working = harness.hub.store
    harness.hub.store = Store(f"postgresql://hub@127.0.0.1:{port}/hub")
    http = client()
    body = stripe_event()
    try:
        started = time.monotonic()
        answer = http.post(f"{url}/webhooks/acme/stripe", data=body, headers=stripe_headers(body))
        took = time.monotonic() - started
    finally:
        harness.hub.store.dispose()
        harness.hub.store = working

    assert answer.status_code == 503
    assert answer.json()["code"] == "unavailable"
    assert int(answer.headers["Retry-After"]) > 0
    assert took < DEADLINE[fault], f"503 after {took:.2f}s"
    assert harness.rows("events") == []
    assert harness.hub.queues.queued_events() == 0  # no job for an event that was not stored

    retried = http.post(f"{url}/webhooks/acme/stripe", data=body, headers=stripe_headers(body))
    assert retried.status_code == 202 and retried.json()["stored"] == 1
    assert len(harness.rows("events")) == 1
    assert harness.hub.queues.queued_events() == 1
