"""Shared pieces of the malformed-input fault suite (tests/faults/test_input_*.py).

One tenant enables every source plugin, each request is signed exactly as its platform signs
(the same helpers the rest of the suite uses), and every answer is checked against the contract:
never a 5xx, the one JSON error shape, and no event row for a refused request.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from samples import STRIPE_SECRET, stripe_event, stripe_headers, tenant_toml

from hub.testing import HubHarness, free_port, wait_for
from plugins.digistore24.ipn import sign as ds24_sign
from plugins.digistore24.ipn import signed_body
from plugins.digistore24.source import demo_fields
from plugins.shopify.signature import sign as shopify_sign
from plugins.webhook.signature import signed_headers
from plugins.webhook.source import demo_event

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("stripe", "shopify", "digistore24", "webhook")
JSON_SOURCES = ("stripe", "shopify", "webhook")
SHOP_DOMAIN = "acme.myshopify.com"
SHOPIFY_SECRET = "shpss_acme_client_secret"
DS24_PASSPHRASE = "acme-ipn-passphrase"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FORM = "application/x-www-form-urlencoded"

SOURCES_TOML = f"""
[sources.stripe]
webhook_secret = "{STRIPE_SECRET}"

[sources.shopify]
shop_domain = "{SHOP_DOMAIN}"
client_secret = "{SHOPIFY_SECRET}"

[sources.digistore24]
ipn_passphrase = "{DS24_PASSPHRASE}"

[sources.webhook]
secret = "{WEBHOOK_SECRET}"
"""


def all_sources_tenant(extra: str = "") -> str:
    """A tenant with every source enabled; its e-mail sink is never reached (no worker runs)."""
    return tenant_toml(smtp_url="smtp://127.0.0.1:1", after="1h", sources=SOURCES_TOML, extra=extra)


# ------------------------------------------------------------------------- signing as they do


def shopify_headers(body: bytes, topic: str = "checkouts/update", **extra: str) -> dict:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": SHOP_DOMAIN,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Hmac-Sha256": shopify_sign(body, SHOPIFY_SECRET),
        **extra,
    }


def webhook_headers(body: bytes, msg_id: str | None = None, timestamp: int | None = None) -> dict:
    return signed_headers(WEBHOOK_SECRET, msg_id or f"msg_{uuid.uuid4().hex}", body, timestamp)


def signed(source: str, body: bytes) -> dict:
    """The headers the platform would send with ``body`` (Digistore24 signs inside the form,
    so its headers only say what the body is)."""
    if source == "stripe":
        return stripe_headers(body)
    if source == "shopify":
        return shopify_headers(body)
    if source == "webhook":
        return webhook_headers(body)
    return {"Content-Type": FORM}


def shopify_checkout(**overrides: Any) -> dict:
    checkout = {
        "id": 1234567890 + secrets.randbelow(10**6),
        "token": uuid.uuid4().hex,
        "email": "jane@example.com",
        "currency": "EUR",
        "total_price": "49.99",
        "line_items": [{"title": "Blue Mug", "quantity": 1, "price": "49.99"}],
        "updated_at": "2026-01-01T10:00:00+01:00",
        "completed_at": None,
    }
    checkout.update(overrides)
    return checkout


def webhook_event(**overrides: Any) -> dict:
    from datetime import UTC, datetime

    event = demo_event(datetime.now(UTC), f"cart_{uuid.uuid4().hex[:8]}")
    event.update(overrides)
    return event


def valid_body(source: str) -> bytes:
    """A fresh, authentic, storable callback body for ``source`` (a new event id each call)."""
    if source == "stripe":
        return stripe_event(event_id=f"evt_{uuid.uuid4().hex}")
    if source == "shopify":
        return json.dumps(shopify_checkout()).encode()
    if source == "webhook":
        return json.dumps(webhook_event()).encode()
    return signed_body(ds24_fields(), DS24_PASSPHRASE)


def ds24_fields(**overrides: str) -> dict[str, str]:
    return demo_fields(buyer_id=uuid.uuid4().hex, **overrides)


def ds24_body(
    pairs: list[tuple[str, str]] | str, sign_pairs: list[tuple[str, str]] | None = None
) -> bytes:
    """A form body from ``pairs`` (or raw text) with a ``sha_sign`` computed by Digistore24's
    rule over ``sign_pairs`` (default: the same pairs, as PHP would see the last of a repeat)."""
    from urllib.parse import urlencode

    text = pairs if isinstance(pairs, str) else urlencode(pairs)
    signature = ds24_sign(dict(sign_pairs if sign_pairs is not None else pairs), DS24_PASSPHRASE)
    return f"{text}&sha_sign={signature}".encode()


def valid_request(source: str) -> tuple[bytes, dict]:
    body = valid_body(source)
    return body, signed(source, body)


# ------------------------------------------------------------------------- checking answers


def error_body(answer: Any) -> dict:
    """The JSON error of a test-client or ``RawAnswer`` response, shape checked."""
    data = answer.get_json() if hasattr(answer, "get_json") else json.loads(answer.body)
    assert isinstance(data, dict) and set(data) == {"code", "message", "field"}, data
    assert isinstance(data["code"], str) and data["code"], data
    assert isinstance(data["message"], str) and data["message"], data
    assert data["field"] is None or isinstance(data["field"], str), data
    return data


def assert_refused(answer: Any, status: int | tuple[int, ...], field: Any = ...) -> dict:
    """``status`` (one or several allowed), never a 5xx, the error shape; ``field`` when given:
    ``None``, one name, or a set of acceptable names."""
    code = answer.status_code if hasattr(answer, "status_code") else answer.status
    allowed = (status,) if isinstance(status, int) else status
    text = answer.get_data(as_text=True) if hasattr(answer, "get_data") else answer.body[:300]
    assert code < 500, f"server error {code}: {text!r}"
    assert code in allowed, f"expected {allowed}, got {code}: {text!r}"
    data = error_body(answer)
    if isinstance(field, set):
        assert data["field"] in field, data
    elif field is not ...:
        assert data["field"] == field, data
    return data


def event_count(harness: HubHarness) -> int:
    return len(harness.rows("events"))


@contextmanager
def stored(harness: HubHarness, expected: int) -> Iterator[None]:
    """Assert that exactly ``expected`` event rows appear inside the block."""
    before = event_count(harness)
    yield
    assert event_count(harness) - before == expected


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Fail a scenario that takes longer than ``seconds`` (SIGALRM interrupts Python code, so a
    pathological parse cannot hang the suite)."""

    def expired(_signum: int, _frame: Any) -> None:
        raise AssertionError(f"scenario exceeded its {seconds}s bound")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < seconds


# ------------------------------------------------------------------------- a module's hub


@contextmanager
def module_database(folder: Path) -> Iterator[tuple[str, str | None]]:
    """Like the ``database`` fixture, for one module: a SQLite file, or a PostgreSQL schema of
    its own (dropped afterwards) when ``DATABASE_URL`` points at PostgreSQL."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "postgresql+psycopg://")):
        yield f"sqlite:///{folder / 'hub.db'}", None
        return
    import sqlalchemy as sa

    from hub.store import make_engine

    schema = f"hubtest_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        yield url, schema
    finally:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def module_hub(
    folder: Path, redis_url: str, tenants: Mapping[str, str], settings: Mapping | None = None
) -> Iterator[HubHarness]:
    """One hub shared by a module's many small cases (building one per case would dominate)."""
    with module_database(folder) as (url, schema):
        harness = HubHarness(folder, redis_url, url, schema, tenants, settings)
        try:
            yield harness
        finally:
            harness.close()


# ------------------------------------------------------------------------- a real server


class Gunicorn:
    """``gunicorn wsgi:app`` with one sync worker on loopback, for limits the Flask test client
    cannot show (it turns a chunked body into an empty one)."""

    def __init__(self, harness: HubHarness, log: Path) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update({k: str(v) for k, v in harness.config.items()})
        self.log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--timeout",
                "30",
                "--chdir",
                str(ROOT),
                "wsgi:app",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 30, message="gunicorn up")

    def _up(self) -> bool:
        try:
            return self.request("GET", "/healthz", b"", {}).status == 200
        except OSError:
            return False

    def worker_rss(self) -> int:
        import psutil

        children = psutil.Process(self.proc.pid).children()
        assert len(children) == 1, children
        return children[0].memory_info().rss

    def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str], chunked: bool = False
    ) -> RawAnswer:
        """One request written by hand (so any header can be sent as-is); see :func:`exchange`."""
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if chunked:
            head.append("Transfer-Encoding: chunked")
        elif not any(k.lower() in ("content-length", "transfer-encoding") for k in headers):
            head.append(f"Content-Length: {len(body)}")
        raw = "\r\n".join(head).encode("utf-8") + b"\r\n\r\n"
        if chunked:
            pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
            payload = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces)
            payload += b"0\r\n\r\n"
        else:
            payload = body
        return exchange(self.port, raw, payload)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return Path(self.log.name).read_text(errors="replace")


class RawAnswer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"RawAnswer({self.status}, {self.body[:200]!r})"


def exchange(port: int, head: bytes, body: bytes, timeout: float = 20) -> RawAnswer:
    """Send ``head`` then ``body`` while watching for an early answer.

    A server that refuses a large body answers before reading it and closes; a client that kept
    writing would see a reset instead of the answer. So the body goes out in pieces and the
    answer is read as soon as the server starts one.
    """
    deadline = time.monotonic() + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(head)
        view, sent = memoryview(body), 0
        while sent < len(body) and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break  # the answer (or the close) came before the whole body
            if writable:
                try:
                    sent += sock.send(view[sent : sent + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    break
        else:
            sock.shutdown(socket.SHUT_WR)  # all sent: a short body ends here, not at a timeout
        return read_answer(sock, deadline)
    finally:
        sock.close()


def read_answer(sock: socket.socket, deadline: float) -> RawAnswer:
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise ConnectionError("the server closed the connection without an answer")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return RawAnswer(status, headers, body)


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out
