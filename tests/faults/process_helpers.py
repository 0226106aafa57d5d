"""Tools of the process-level fault suite (tests/faults/test_process_*.py).

Every fault here is real: the hub is served by gunicorn on 127.0.0.1 and hit by concurrent
clients, workers are ``hub worker`` processes killed with SIGKILL, Redis is a ``redis-server``
child of the test (no persistence) killed with SIGKILL, and the database is made unreachable
by pointing the hub at a port with nothing behind it or at a TCP server that never answers.
The machine's shared Redis and PostgreSQL are never stopped or flushed.

Each scenario is bounded in seconds and asserts on counts: 2xx answers = stored events,
messages at the stand-in = unique journey steps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import requests
from samples import STRIPE_SECRET
from ticket_stand_ins import WEBHOOK_SECRET

from hub.queues import _redis_binary
from hub.testing import HubHarness, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
# the stand-ins listen on 127.0.0.1, which a tenant's sink URL may only reach if allowed
ALLOW_LOOPBACK = {"HUB_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"}
PHONE_NUMBER_ID = "1122334455667"  # the WhatsApp sender of the fault tenants


def fault_tenant(sinks: str, steps: list[tuple[str, str, str]], name: str = "Acme Shoes") -> str:
    """A tenant file fed by Stripe with the ``sinks`` tables and one flow whose ``steps`` are
    ``(after, channels, template)``; WhatsApp may reach a customer whose consent is unknown."""
    step_tables = "".join(
        f'\n  [[flows.steps]]\n  after = "{after}"\n  channels = {channels}\n'
        f'  template = "{template}"'
        for after, channels, template in steps
    )
    return f"""
name = "{name}"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"
support = "help@acme.example"

[consent]
email = "opt_in"
whatsapp = "not_opted_out"

[sources.stripe]
webhook_secret = "{STRIPE_SECRET}"

{sinks}
[[flows]]
name = "default"{step_tables}
"""


def email_sink(smtp_url: str) -> str:
    return f'[sinks.email]\nsmtp_url = "{smtp_url}"\nfrom = "Acme <shop@acme.example>"\n'


def webhook_sink(url: str, timeout: float = 10.0) -> str:
    """The signed ticket webhook, posting to the stand-in at ``url``."""
    return (
        f'[sinks.ticket_webhook]\nurl = "{url}/hooks/tickets"\n'
        f'secret = "{WEBHOOK_SECRET}"\ntimeout = {timeout}\n'
    )


def whatsapp_sink(url: str, read_timeout: float) -> str:
    """WhatsApp Cloud API at the stand-in at ``url``, with the step's template mapped."""
    return f"""[sinks.whatsapp]
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "EAAG-test-token"
api_base = "{url}/v26.0"
app_secret = "app_secret_value"
verify_token = "verify-me"
read_timeout = {read_timeout}

[sinks.whatsapp.templates.call_prospect]
name = "cart_reminder"
body = ["first_name"]
"""


def client() -> requests.Session:
    """A client for 127.0.0.1 that ignores proxy settings of the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


# ----------------------------------------------------------------------------- served hub


class LiveHub:
    """``gunicorn wsgi:app`` for one harness's configuration, as production runs it."""

    def __init__(self, harness: HubHarness, workers: int, threads: int) -> None:
        self.harness = harness
        self.port = free_port()
        env = dict(os.environ)
        env.update({k: str(v) for k, v in harness.config.items()})
        self.log = open(harness.root / "gunicorn.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--graceful-timeout",
                "2",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = client()
        wait_for(self._ready, 30, message="gunicorn answering /healthz")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.logs()}")
        try:
            return self.http.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # bound, workers still booting
            return False

    def post(self, tenant: str, source: str, body: bytes, headers: dict) -> requests.Response:
        return self.http.post(
            f"{self.url}/webhooks/{tenant}/{source}", data=body, headers=headers, timeout=15
        )

    def logs(self) -> str:
        return (self.harness.root / "gunicorn.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        self.http.close()


# ----------------------------------------------------------------------------- processes


def process_tree(root_pid: int) -> set[int]:
    """``root_pid``, every process in its process group and every descendant (from /proc).

    RQ's work-horse puts itself in a new process group, so killing the group
    alone is not enough in general; the hub's SimpleWorker has no horse, but its scheduler is a
    forked child, and a test that claims "the worker is dead" must prove it for all of them.
    """
    parents: dict[int, int] = {}
    groups: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie is dead already; only its parent's wait() is missing
            continue
        parents[int(entry.name)] = int(fields[1])
        groups[int(entry.name)] = int(fields[2])
    found = {root_pid} | {pid for pid, group in groups.items() if group == root_pid}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found}
        grew = not children <= found
        found |= children
    return {pid for pid in found if pid in parents}


def kill_hard(process: subprocess.Popen) -> set[int]:
    """``kill -9`` of the worker's process group, then of any process of its tree that was
    outside the group; returns the pids that were killed and asserts none survives."""
    pids = process_tree(process.pid)
    assert process.pid in pids, "the worker had already exited"
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)
    wait_for(lambda: not process_tree(process.pid) - {process.pid}, 10, message="no survivor")
    return pids


# ----------------------------------------------------------------------------- own Redis


class RedisProcess:
    """A ``redis-server`` child of this test with no persistence, on a unix socket.

    ``kill()`` is ``kill -9``: everything queued in it is gone, as after a crash of a Redis
    without AOF. ``start()`` again brings up an empty server on the same socket.
    """

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.socket = var_dir / "redis.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> RedisProcess:
        import redis

        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                _redis_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.var_dir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def answers() -> bool:
            try:
                return bool(redis.Redis(unix_socket_path=str(self.socket)).ping())
            except (redis.RedisError, OSError):
                return False

        wait_for(answers, 10, interval=0.05, message="own redis-server answering")
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.kill()


# ----------------------------------------------------------------------------- dead database


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never says a word: a
    database host that hangs (a half-dead server, a black-holing firewall after the SYN)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for conn in self.accepted:
            conn.close()


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused at once)."""
    return free_port()


def settle(seconds: float) -> None:
    """Give a wrongly duplicated or wrongly early job the time to show before asserting it
    did not happen."""
    time.sleep(seconds)
