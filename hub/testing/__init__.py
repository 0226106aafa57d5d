"""Test kit for the hub and for plugin authors: real local servers, no mocks.

Installing the hub with its ``test`` extra (from a checkout or a built wheel) brings the pytest
plugin (``hub.testing.pytest_plugin``, registered through ``pytest11``), which gives every test
suite the fixtures ``redis_url``, ``database``, ``smtp_server``, ``http_stand_in`` and
``hub_factory``. A third-party plugin tests itself exactly like the built-ins do: write a tenant
file that enables it, post a signed callback, run a real worker, look at what arrived.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub import store as store_tables
from hub.events import load_event
from hub.hookspecs import (
    InboundRequest,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    Sink,
    Source,
    VerificationError,
)


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ SMTP


class SmtpServer:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives.

    ``stop()`` and ``start()`` again on the same port simulate an outage.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[Any] = []  # email.message.EmailMessage objects
        self.envelopes: list[tuple[str, list[str]]] = []
        self.controller = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        from email import message_from_bytes, policy

        from aiosmtpd.controller import Controller

        server = self

        class Handler:
            async def handle_DATA(self, _server, _session, envelope):  # noqa: ANN001, ANN202, N802
                server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                server.messages.append(
                    message_from_bytes(envelope.original_content, policy=policy.default)
                )
                return "250 Message accepted for delivery"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_for_messages(self, count: int = 1, timeout: float = 20.0) -> list[Any]:
        wait_for(
            lambda: len(self.messages) >= count,
            timeout,
            message=f"{count} message(s) at the SMTP server",
        )
        return self.messages


# ------------------------------------------------------------------------------------ HTTP


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int = 0  # the same port on two requests: the client reused its connection

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts)
    drop: bool = False  # read the request, then close the connection without an answer


class HttpStandIn:
    """A real HTTP server on 127.0.0.1 standing in for a remote API.

    ``handler(request) -> Reply`` decides each answer, so a stand-in can assert the request
    exactly as the real API documents it and answer errors (429 + Retry-After, 4xx, 5xx) or
    hang. Every request is kept in ``requests``. Responses go out in one write with
    TCP_NODELAY (two writes cost 40 ms each through Nagle + delayed ACK).
    """

    def __init__(
        self,
        handler: Callable[[RecordedRequest], Reply] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.handler = handler or (lambda _r: Reply(200, b"{}"))
        self.requests: list[RecordedRequest] = []
        self.tls = tls
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HttpStandIn:
        import json as _json

        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = RecordedRequest(
                    self.command, self.path, dict(self.headers), body, self.client_address[1]
                )
                stand_in.requests.append(recorded)
                try:
                    reply = stand_in.handler(recorded)
                except AssertionError as exc:  # a request that breaks the documented API
                    reply = Reply(599, {"stand_in_assertion": str(exc)})
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:  # the request arrived; its answer is lost
                    self.close_connection = True
                    with suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = reply.body
                headers = dict(reply.headers)
                if isinstance(payload, dict | list):
                    payload = _json.dumps(payload).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(payload, str):
                    payload = payload.encode()
                head = (
                    f"HTTP/1.1 {reply.status} X\r\n"
                    + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                    + f"Content-Length: {len(payload)}\r\n\r\n"
                )
                with suppress(OSError):  # the client gave up (a timeout test)
                    self.wfile.write(head.encode() + payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def server_bind(self) -> None:
                super().server_bind()
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        self.server = Server(("127.0.0.1", 0), Handler)
        if self.tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# ------------------------------------------------------------------------------------ the hub


class HubHarness:
    """One hub under test: its own config dir, database, Redis queues and worker process."""

    def __init__(
        self,
        root: Path,
        redis_url: str,
        database_url: str,
        database_schema: str | None,
        tenants: Mapping[str, str],
        settings: Mapping[str, Any] | None = None,
        templates: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.config_dir = self.root / "config"
        (self.config_dir / "tenants").mkdir(parents=True, exist_ok=True)
        for slug, text in tenants.items():
            (self.config_dir / "tenants" / f"{slug}.toml").write_text(text)
        for rel, text in (templates or {}).items():
            path = self.config_dir / "templates" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.config: dict[str, Any] = {
            "HUB_CONFIG_DIR": str(self.config_dir),
            "HUB_VAR_DIR": str(self.root / "var"),
            "DATABASE_URL": database_url,
            "DATABASE_SCHEMA": database_schema or "",
            "REDIS_URL": redis_url,
            "HUB_QUEUE_PREFIX": f"t{secrets.token_hex(4)}-",
            "HUB_SECRET_KEY": secrets.token_urlsafe(16),
            "HUB_PUBLIC_URL": "http://hub.test",
            "HUB_RETRY_BASE": "1",
            "HUB_RETRY_MAX": "5",
            "HUB_SWEEP_AFTER": "3",
        }
        self.config.update({k: str(v) for k, v in (settings or {}).items()})
        from hub.app import create_app

        self.app = create_app(self.config)
        self.hub = self.app.extensions["hub"]
        self.client = self.app.test_client()
        self.workers: list[subprocess.Popen] = []
        self.webs: list[subprocess.Popen] = []

    # -- requests
    def post(
        self,
        tenant: str,
        source: str,
        body: bytes | str,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Any:
        data = body.encode() if isinstance(body, str) else body
        return self.client.post(
            f"/webhooks/{tenant}/{source}",
            data=data,
            headers=dict(headers or {}),
            content_type=content_type,
        )

    # -- workers
    def start_worker(self, *extra_args: str) -> subprocess.Popen:
        """A real ``hub worker`` process (RQ SimpleWorker + scheduler) for this hub."""
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.config.items()})
        env.setdefault("HUB_LOG_LEVEL", "INFO")
        log = open(self.root / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "worker", "--sweep-interval", "1", *extra_args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def start_web(
        self, workers: int = 1, *extra_args: str, env: Mapping[str, str] | None = None
    ) -> int:
        """A real gunicorn for this hub, configured as in production (``-c
        python:hub.gunicorn_config``), on a free loopback port; returns the port.

        Web processes are what platforms post to in production; several of them (and several
        ``hub worker``) share only Redis and the database, which is what scale-out tests need.
        ``extra_args`` go to gunicorn; ``env`` overrides the hub's settings for this process."""
        port = free_port()
        environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        environment.update({k: str(v) for k, v in self.config.items()})
        environment.update(env or {})
        log = open(self.root / f"web-{len(self.webs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:hub.gunicorn_config",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                *extra_args,
                "hub.app:create_app()",  # what wsgi.py does, without needing the checkout
            ],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.webs.append(proc)

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return proc.poll() is not None  # died: stop waiting, the check below says so

        wait_for(answers, 30, message=f"gunicorn on port {port}")
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.web_logs()[-4000:]}")
        return port

    def web_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob("web-*.log")))

    def run_burst(self, timeout: float = 60) -> str:
        """Run ``hub worker --burst`` to completion: what is queued now, then exit."""
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.config.items()})
        done = subprocess.run(
            [sys.executable, "-m", "hub", "worker", "--burst"],
            env=env,
            capture_output=True,
            timeout=timeout,
        )
        return (done.stdout + done.stderr).decode(errors="replace")

    def stop_workers(self, sig: int | None = None) -> None:
        import signal

        for proc in self.workers:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig or signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.workers = []

    def worker_logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.root.glob("worker-*.log"))
        )

    # -- looking at the database
    def rows(self, table: str, **where: Any) -> list[Any]:
        t = getattr(store_tables, table)
        query = sa.select(t).order_by(t.c.id)
        for key, value in where.items():
            query = query.where(t.c[key] == value)
        with self.hub.store.begin() as conn:
            return list(conn.execute(query).all())

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 20.0, message: str = "condition"
    ) -> Any:
        try:
            return wait_for(predicate, timeout, message=message)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- worker logs ---\n{self.worker_logs()[-4000:]}"
            ) from None

    def close(self) -> None:
        self.stop_workers()
        self.stop_webs()
        self.hub.store.dispose()

    def stop_webs(self) -> None:
        """Stop the gunicorn masters (SIGTERM: their workers finish and exit first)."""
        for proc in self.webs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.webs = []


# ------------------------------------------------------------------------------------ contract


@dataclass
class SignedSample:
    """A callback as the platform would post it, for :func:`check_source_contract`."""

    body: bytes
    headers: dict[str, str]
    content_type: str = "application/json"


def check_source_contract(
    source: Source,
    config: Mapping[str, Any],
    sample: SignedSample,
    tamper: Callable[[SignedSample], SignedSample],
    unsigned: SignedSample | None = None,
) -> list[dict]:
    """Table-driven checks every source must pass; returns the parsed, validated events.

    * the config schema marks its secrets (:func:`check_secrets_marked`);
    * the signed sample verifies and parses into events that pass the normalized schema;
    * the tampered sample, the unsigned one (by default: the sample without headers; pass
      ``unsigned`` where the signature travels in the body, as Digistore24's does), and a
      non-UTF-8 body fail with :class:`VerificationError` (never another exception leaking out).
    """
    from datetime import UTC, datetime

    from werkzeug.datastructures import Headers

    def request(s: SignedSample) -> InboundRequest:
        return InboundRequest(
            tenant="contract",
            source=source.name,
            method="POST",
            body=s.body,
            headers=Headers(s.headers),
            query={},
            content_type=s.content_type,
            received_at=datetime.now(UTC),
        )

    check_secrets_marked(type(source).config_schema)
    source.verify(request(sample), config)
    events = [
        load_event({**e, "tenant": "contract", "source": source.name})
        for e in source.parse(request(sample), config)
    ]
    for label, bad in (
        ("tampered", tamper(sample)),
        ("unsigned", unsigned or SignedSample(sample.body, {}, sample.content_type)),
        ("not utf-8", SignedSample(b"\xff\xfe" + sample.body, sample.headers, sample.content_type)),
    ):
        try:
            source.verify(request(bad), config)
        except VerificationError:
            continue
        raise AssertionError(f"{source.name}: a {label} request was not rejected")
    return events


SECRET_NAME = re.compile(
    r"secret|token|password|passwd|passphrase|api_?key|private_key|credential", re.I
)


def check_secrets_marked(schema: type) -> None:
    """Every config key that looks like a secret is marked ``metadata={"secret": True}``.

    The mark tells the hub, and the people reading a tenant file, never to show the value. A
    key whose name only looks like a secret (``token_url``) opts out with ``{"secret": False}``.
    """
    unmarked = [
        field.data_key or name
        for name, field in schema().fields.items()
        if SECRET_NAME.search(field.data_key or name) and "secret" not in field.metadata
    ]
    if unmarked:
        raise AssertionError(
            f'{schema.__name__}: mark {", ".join(unmarked)} with metadata={{"secret": True}}'
        )


def _declares(sink: Sink, attribute: str) -> bool:
    """True when a class between the sink and :class:`Sink` sets ``attribute`` itself."""
    return any(attribute in vars(cls) for cls in type(sink).__mro__ if cls is not Sink)


def sample_message(sink: Sink, to: str, public_url: str, **changes: Any) -> OutboundMessage:
    """A rendered recovery message as the engine hands it to ``sink.send``."""
    parts = {
        "subject": "Your cart at Contract Shop is waiting",
        "txt": f"Hi Jane, your cart is waiting: {public_url}/r/contract-token",
        "html": f'<p>Hi Jane, <a href="{public_url}/r/contract-token">your cart</a></p>',
    }
    fields = {
        "tenant": "contract",
        "journey_id": 1,
        "step_index": 0,
        "delivery_id": 1,
        "channel": sink.channel,
        "to": to,
        "locale": "en",
        "parts": parts if sink.renders_templates else {},
        "context": {
            "customer": {"email": "jane@example.com", "first_name": "Jane", "name": "Jane Doe"},
            "cart": {"total": 4999, "currency": "EUR", "total_display": "€49.99", "items": []},
            "recovery_url": f"{public_url}/r/contract-token",
            "unsubscribe_url": f"{public_url}/u/contract-token",
            "offer": {},
            "tenant": {"slug": "contract", "name": "Contract Shop", "support": None},
        },
        "template": "reminder",
    }
    fields.update(changes)
    return OutboundMessage(**fields)


def check_sink_contract(
    harness: HubHarness,
    sink_name: str,
    config_for: Callable[[str], Mapping[str, Any]],
    customer: Mapping[str, Any],
    success: Reply | None = None,
    message: OutboundMessage | None = None,
) -> list[RecordedRequest]:
    """Table-driven checks every HTTP sink must pass, against real servers on 127.0.0.1.

    ``harness`` is a hub with the plugin installed and ``HUB_ALLOW_PRIVATE_NETWORKS``
    allowing ``127.0.0.0/8`` (``hub_factory({}, {"HUB_ALLOW_PRIVATE_NETWORKS": …})``);
    ``config_for(base_url)`` returns the sink's tenant table pointing it at ``base_url``;
    ``customer`` is one it can address; ``success`` is what the provider answers when all is
    well (default ``200 {"id": "1"}``); ``message`` defaults to :func:`sample_message`.

    * declared: ``name``, ``channel``, ``config_schema``, ``idempotent`` set by the sink's own
      class (a decision, not an inherited default), secrets marked in the schema;
    * ``address``: a string for ``customer``; for ``{}`` a string, ``None`` or
      :class:`PermanentError`, never another exception;
    * ``send``: a 2xx is success; 429 is :class:`RetryableError` with ``Retry-After`` as
      ``retry_after``; 503 retryable; 400 permanent; a 3xx permanent and never followed; a
      refused connection retryable; an answer lost after the request arrived is retryable for
      an idempotent sink and :class:`OutcomeUnknown` otherwise.

    Returns the requests of the successful send, for the caller to assert their exact shape.
    """
    sink = harness.hub.sinks.get(sink_name)
    assert sink is not None, f"no sink {sink_name!r}: {harness.hub.registry.errors}"
    for attribute in ("name", "channel", "config_schema"):
        assert isinstance(getattr(sink, attribute, None), str | type), f"{sink_name}.{attribute}"
    assert _declares(sink, "idempotent"), (
        f"{sink_name}: set idempotent = True (the provider dedupes on the delivery id) or "
        "False on the sink class"
    )
    check_secrets_marked(sink.config_schema)
    success = success or Reply(200, {"id": "1"})
    script: list[Reply] = []

    def answer(request: RecordedRequest) -> Reply:
        return script.pop(0) if script else success

    server = HttpStandIn(answer).start()
    try:
        with harness.app.app_context():
            config = sink.config_schema().load(dict(config_for(server.url)))
            to = sink.address(customer, config, {"tenant": {"slug": "contract"}})
            assert isinstance(to, str) and to, f"{sink_name}: no address for {customer}"
            with suppress(PermanentError):  # "an address exists but is unusable" is allowed
                nobody = sink.address({}, config, {"tenant": {"slug": "contract"}})
                assert nobody is None or isinstance(nobody, str), f"{sink_name}: {nobody!r}"
            message = message or sample_message(sink, to, harness.hub.public_url())

            def outcome(*replies: Reply) -> Exception | None:
                script[:] = list(replies)
                before = len(server.requests)
                try:
                    sink.send(message, config)
                except (RetryableError, PermanentError, OutcomeUnknown) as exc:
                    return exc
                finally:
                    assert len(server.requests) > before or not replies, f"{sink_name}: no request"
                return None

            assert outcome() is None, f"{sink_name}: a 2xx answer is not success"
            done = list(server.requests)
            calls = len(done)
            limited = outcome(Reply(429, {"error": "slow down"}, {"Retry-After": "7"}))
            assert isinstance(limited, RetryableError), f"{sink_name}: 429 gave {limited!r}"
            assert limited.retry_after == 7, f"{sink_name}: Retry-After not passed on"
            for reply, kind in (
                (Reply(503, {"error": "down"}), RetryableError),
                (Reply(400, {"error": "bad request"}), PermanentError),
                (Reply(302, b"", {"Location": f"{server.url}/elsewhere"}), PermanentError),
            ):
                got = outcome(reply)
                assert isinstance(got, kind), f"{sink_name}: HTTP {reply.status} gave {got!r}"
            assert not any(r.path == "/elsewhere" for r in server.requests), "followed a redirect"
            lost = outcome(*[success] * (calls - 1), Reply(drop=True))
            expected = RetryableError if sink.idempotent else OutcomeUnknown
            assert isinstance(lost, expected), f"{sink_name}: a lost answer gave {lost!r}"
            nowhere = sink.config_schema().load(dict(config_for(f"http://127.0.0.1:{free_port()}")))
            try:
                sink.send(message, nowhere)
                refused: Exception | None = None
            except (RetryableError, PermanentError, OutcomeUnknown) as exc:
                refused = exc
            assert isinstance(refused, RetryableError), f"{sink_name}: refused gave {refused!r}"
    finally:
        server.stop()
    return done


@contextmanager
def redis_database(base_url: str) -> Iterator[str]:
    """Claim an empty Redis database number for one test run; remove its keys afterwards.

    Never ``FLUSHALL``/``FLUSHDB``: other runs may share the server, so only keys in the
    claimed database are deleted, one SCAN batch at a time.
    """
    import redis

    from hub.queues import Queues  # noqa: F401 - documents the queues that live there

    claim_key = "abandonment-hub:test-claim"
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    base = base_url.rstrip("/")
    root = base.rsplit("/", 1)[0] if base.rsplit("/", 1)[-1].isdigit() else base
    for db in range(1, 16):
        url = f"{root}/{db}" if not root.startswith("unix://") else f"{root}?db={db}"
        conn = redis.Redis.from_url(url)
        if conn.dbsize() == 0 and conn.set(claim_key, token, nx=True, ex=3 * 3600):
            break
    else:
        raise RuntimeError("no free Redis database number (1-15) for this test run")
    try:
        yield url
    finally:
        for key in conn.scan_iter(count=500):
            conn.delete(key)
        conn.close()
