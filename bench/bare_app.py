"""The ingest baselines: what a webhook endpoint costs with nothing of the hub in it.

Both check the ``Stripe-Signature`` HMAC-SHA256 over the raw body (the same secret and scheme
as the hub's Stripe source) and hand the body to Redis, so the hub's ratio against them is the
price of everything the hub adds: parsing, validation, the durable insert, its bookkeeping.

* ``lpush_app``: one ``LPUSH`` of the body (one Redis round trip).
* ``enqueue_app``: one RQ ``Queue.enqueue`` per webhook, what a naive RQ design pays.

Configured from the environment the bench passes to gunicorn: ``REDIS_URL``,
``BENCH_STRIPE_SECRET``, ``HUB_QUEUE_PREFIX`` (key prefix, so runs never collide).
"""

from __future__ import annotations

import hashlib
import hmac
import os

import redis
from flask import Flask, request
from rq import Queue

SECRET = os.environ.get("BENCH_STRIPE_SECRET", "").encode()
PREFIX = os.environ.get("HUB_QUEUE_PREFIX", "bench-")
connection = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def _verified(body: bytes) -> bool:
    header = request.headers.get("Stripe-Signature", "")
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    expected = hmac.new(SECRET, parts.get("t", "").encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


lpush_app = Flask("bare_lpush")
enqueue_app = Flask("bare_enqueue")
queue = Queue(PREFIX + "bare-enqueue", connection=connection)


@lpush_app.post("/webhooks/<tenant>/<source>")
def lpush(tenant: str, source: str):  # noqa: ANN201
    body = request.get_data()
    if not _verified(body):
        return {"code": "unverified"}, 401
    connection.lpush(PREFIX + "bare-lpush", body)
    return {"stored": 1}, 202


@enqueue_app.post("/webhooks/<tenant>/<source>")
def enqueue(tenant: str, source: str):  # noqa: ANN201
    body = request.get_data()
    if not _verified(body):
        return {"code": "unverified"}, 401
    queue.enqueue("bench.bare_jobs.post_once", "", result_ttl=0)
    return {"stored": 1}, 202


for _app in (lpush_app, enqueue_app):
    _app.add_url_rule("/healthz", "healthz", lambda: {"status": "ok"})
