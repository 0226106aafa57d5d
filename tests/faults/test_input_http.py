"""The HTTP edge under a real gunicorn (the Flask test client turns chunked bodies into empty
ones and normalises the headers this file breaks on purpose): 10 MB bodies, odd framing and
header values, long and unknown URLs. Always a 4xx, never a 5xx, nothing stored; a worker's
memory stays bounded while it refuses large bodies.
"""

from __future__ import annotations

import pytest
from input_helpers import (
    SOURCES,
    Gunicorn,
    all_sources_tenant,
    assert_refused,
    bounded,
    event_count,
    exchange,
    module_hub,
    valid_request,
)

TEN_MB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("http")
    with module_hub(folder, redis_url, {"acme": all_sources_tenant()}) as harness:
        gunicorn = Gunicorn(harness, folder / "gunicorn.log")
        try:
            yield gunicorn, harness
        finally:
            log = gunicorn.stop()
            assert "Traceback" not in log, log[-4000:]


def test_valid_requests_are_stored_through_gunicorn(server):
    """The baseline: each source's signed request is accepted over real HTTP, chunked too."""
    gunicorn, harness = server
    before = event_count(harness)
    for chunked in (False, True):
        for source in SOURCES:
            body, headers = valid_request(source)
            answer = gunicorn.request("POST", f"/webhooks/acme/{source}", body, headers, chunked)
            assert answer.status in (200, 202), (source, chunked, answer)
    assert event_count(harness) - before == 2 * len(SOURCES)


def test_ten_megabyte_bodies_are_413_with_bounded_memory(server):
    """With and without Content-Length, for every source route: 413 before the body is read
    (or after at most the limit plus one byte of a chunked one); the worker's RSS barely moves."""
    gunicorn, harness = server
    body = b"{" + b" " * (TEN_MB - 2) + b"}"
    before_rows = event_count(harness)
    # one refused request first, so lazily imported code does not count as growth
    gunicorn.request("POST", "/webhooks/acme/stripe", body[:2_000_000], {}, chunked=True)
    rss_before = gunicorn.worker_rss()
    with bounded(120):
        for source in SOURCES:
            for chunked in (False, True):
                for _ in range(3):
                    headers = {"Content-Type": "application/json"}
                    answer = gunicorn.request(
                        "POST", f"/webhooks/acme/{source}", body, headers, chunked
                    )
                    assert answer.status == 413, (source, chunked, answer)
                    assert_refused(answer, 413)
    growth = gunicorn.worker_rss() - rss_before
    assert growth < 20 * 1024 * 1024, f"worker RSS grew by {growth / 1e6:.1f} MB"
    assert event_count(harness) == before_rows


def raw(gunicorn: Gunicorn, head: str, body: bytes = b"") -> object:
    return exchange(gunicorn.port, head.encode("utf-8"), body)


LONG = "a" * 6000
# id → (request line + headers, body). Every answer must be a 4xx.
ODD = {
    "no Content-Type": ("POST /webhooks/acme/stripe HTTP/1.1\r\nContent-Length: 2", b"{}"),
    "Content-Type text/plain": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2",
        b"{}",
    ),
    "multipart Content-Type without boundary": (
        "POST /webhooks/acme/digistore24 HTTP/1.1\r\nContent-Type: multipart/form-data\r\n"
        "Content-Length: 2",
        b"{}",
    ),
    "Content-Length -1": ("POST /webhooks/acme/stripe HTTP/1.1\r\nContent-Length: -1", b"{}"),
    "Content-Length abc": ("POST /webhooks/acme/stripe HTTP/1.1\r\nContent-Length: abc", b"{}"),
    "Content-Length 1e3": ("POST /webhooks/acme/stripe HTTP/1.1\r\nContent-Length: 1e3", b"{}"),
    "Content-Length twice, different": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3",
        b"{}",
    ),
    "Content-Length 40 digits": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nContent-Length: " + "9" * 40,
        b"{}",
    ),
    "Content-Length longer than the body": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nContent-Length: 10",
        b"{}",
    ),
    "Transfer-Encoding gzip": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nTransfer-Encoding: gzip",
        b"{}",
    ),
    "Transfer-Encoding chunked, chunked": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nTransfer-Encoding: chunked, chunked",
        b"2\r\n{}\r\n0\r\n\r\n",
    ),
    "Transfer-Encoding and Content-Length": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2",
        b"2\r\n{}\r\n0\r\n\r\n",
    ),
    "bad chunk size": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"zz\r\n{}\r\n0\r\n\r\n",
    ),
    "chunk size overflow": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"f" * 40 + b"\r\n{}\r\n0\r\n\r\n",
    ),
    "UTF-8 in a signature header": (
        "POST /webhooks/acme/stripe HTTP/1.1\r\nStripe-Signature: t=1,v1=\u00e9\u20ac\r\n"
        "Content-Length: 2",
        b"{}",
    ),
    "UTF-8 in the webhook-id": (
        "POST /webhooks/acme/webhook HTTP/1.1\r\nwebhook-id: \u2603\r\nwebhook-timestamp: 1\r\n"
        "webhook-signature: v1,AAAA\r\nContent-Length: 2",
        b"{}",
    ),
    "UTF-8 in the Shopify shop domain": (
        "POST /webhooks/acme/shopify HTTP/1.1\r\nX-Shopify-Shop-Domain: \u00e4.myshopify.com\r\n"
        "X-Shopify-Hmac-Sha256: \u00e9\r\nContent-Length: 2",
        b"{}",
    ),
    "header too long": (
        f"POST /webhooks/acme/stripe HTTP/1.1\r\nStripe-Signature: {'a' * 20000}\r\n"
        "Content-Length: 2",
        b"{}",
    ),
    "very long tenant": (f"POST /webhooks/{LONG}/stripe HTTP/1.1\r\nContent-Length: 2", b"{}"),
    "very long URL": (f"POST /webhooks/acme/stripe?{'q' * 20000} HTTP/1.1", b""),
    "unicode tenant": ("POST /webhooks/%C3%A4cme/stripe HTTP/1.1\r\nContent-Length: 2", b"{}"),
    "invalid UTF-8 tenant": ("POST /webhooks/%FFcme/stripe HTTP/1.1\r\nContent-Length: 2", b"{}"),
    "traversal tenant": ("POST /webhooks/..%2Facme/stripe HTTP/1.1\r\nContent-Length: 2", b"{}"),
    "unknown tenant": ("POST /webhooks/globex/stripe HTTP/1.1\r\nContent-Length: 2", b"{}"),
    "unknown source": ("POST /webhooks/acme/paypal HTTP/1.1\r\nContent-Length: 2", b"{}"),
    "empty source": ("POST /webhooks/acme/ HTTP/1.1\r\nContent-Length: 2", b"{}"),
    "GET on the webhook": ("GET /webhooks/acme/stripe HTTP/1.1", b""),
    "PUT on the webhook": ("PUT /webhooks/acme/stripe HTTP/1.1\r\nContent-Length: 2", b"{}"),
}


@pytest.mark.parametrize("case", ODD)
def test_odd_http_is_4xx(server, case):
    gunicorn, harness = server
    head, body = ODD[case]
    head = f"{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    before = event_count(harness)
    with bounded(20):
        answer = raw(gunicorn, head, body)
    assert 400 <= answer.status < 500, answer
    if answer.headers.get("content-type", "").startswith("application/json"):
        assert_refused(answer, answer.status)  # the hub's own answers keep the error shape
    assert event_count(harness) == before
