"""HTTP load for the ingest benchmark: gunicorn servers, signed Stripe bodies, and ``wrk``.

``wrk`` (C, event loop) generates the load because a Python client saturates before a
two-worker gunicorn does on a 2-core machine. It cannot sign requests, so the
bench writes signed requests to a file, one ``signature<TAB>body`` per line, and a Lua script
hands each ``wrk`` thread its share. Every hub request carries a new event id, so the hub does
its full work (a duplicate would only cost a failed insert).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from hub.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
PATH = "/webhooks/bench/stripe"

LUA = """
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local n = tonumber(args[2])
  requests_ = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i %% n == id then
      local tab = string.find(line, "\\t", 1, true)
      requests_[#requests_ + 1] = wrk.format("POST", "%(path)s", {
        ["Content-Type"] = "application/json",
        ["Stripe-Signature"] = string.sub(line, 1, tab - 1),
      }, string.sub(line, tab + 1))
    end
    i = i + 1
  end
  next_ = 0
end

function request()
  next_ = next_ %% #requests_ + 1
  return requests_[next_]
end
%(delay)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def find_wrk() -> str:
    """The ``wrk`` binary: on PATH, else installed with apt-get when running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk with apt-get …", flush=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "bench: the load generator `wrk` is not installed. Install it with your package "
        "manager (Debian/Ubuntu: `apt-get install wrk`, macOS: `brew install wrk`) and run again."
    )


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_ms: float | None = None  # CPU of the server's processes per request (see Gunicorn.cpu)


class Wrk:
    """Runs ``wrk`` against one port with the requests of one file."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir

    def run(
        self,
        port: int,
        requests_file: Path,
        seconds: float,
        connections: int = 8,
        rate: float | None = None,
    ) -> WrkResult:
        """Closed-loop load for ``seconds``; with ``rate``, each connection waits
        ``connections / rate`` between requests (wrk's ``delay()``), so the offered load is
        at most ``rate`` requests/s."""
        delay = ""
        if rate:
            delay = f"function delay() return {connections * 1000.0 / rate:.3f} end\n"
        script = self.workdir / ("paced.lua" if rate else "full.lua")
        script.write_text(LUA % {"path": PATH, "delay": delay})
        threads = 1
        out = subprocess.run(
            [
                self.binary,
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{seconds:g}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}",
                "--",
                str(requests_file),
                str(threads),
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
        line = next((x for x in out.stdout.splitlines() if x.startswith("JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
        data = json.loads(line[5:])
        # gunicorn's sync workers close every connection; wrk may count the close as a read
        # error of a request that never went out, so only answers with an error status count
        return WrkResult(
            rps=data["requests"] / (data["duration_us"] / 1e6),
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            requests=data["requests"],
            errors=data["status"] + data["timeout"],
        )


class StripeBodies:
    """Signed ``checkout.session.expired`` events, each with its own event, session and e-mail."""

    def __init__(self, secret: str) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        from samples import stripe_event, stripe_session

        session = stripe_session("cs_@@TAG@@")
        # a phone shared by every event would make each journey supersede all earlier ones
        session["customer_details"].update(email="buyer@@TAG@@@example.com", phone=None)
        self.template = stripe_event(event_id="evt_@@TAG@@", session=session).decode()
        self.secret = secret.encode()

    def one(self, tag: str) -> tuple[bytes, str]:
        """(body, Stripe-Signature header) for one event tagged ``tag``."""
        stamp = str(int(time.time()))
        body = self.template.replace("@@TAG@@", tag).encode()
        digest = hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return body, f"t={stamp},v1={digest}"

    def write(self, path: Path, count: int, prefix: str) -> Path:
        """``count`` signed events, one ``signature<TAB>body`` line each (JSON has no raw tabs
        or newlines)."""
        with path.open("wb") as out:
            for i in range(count):
                body, signature = self.one(f"{prefix}_{i}")
                out.write(signature.encode() + b"\t" + body + b"\n")
        return path


class Gunicorn:
    """``gunicorn -w 2`` serving ``app`` on a free loopback port: sync workers, or with
    ``threads`` gthread workers (requests waiting on a commit overlap, so PostgreSQL can flush
    several commits with one fsync)."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        log: Path,
        workers: int = 2,
        threads: int = 0,
        root: Path = ROOT,
    ) -> None:
        self.app = app
        self.port = free_port()
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                *(["--worker-class", "gthread", "--threads", str(threads)] if threads else []),
                "--chdir",
                str(root),
                "--log-level",
                "warning",
                app,
            ],
            env=env,
            cwd=root,  # `python -m` puts the working directory first on sys.path
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 60, message=f"{app} up")

    def cpu(self) -> float:
        """CPU seconds (user + system) used so far by the master and its workers.

        On a machine other processes share, a rate measures the server's share of the CPU as
        much as its work; CPU per request measures the work (the database's and Redis' own
        CPU are not in it).
        """
        tick = os.sysconf("SC_CLK_TCK")
        pids = [self.proc.pid]
        with suppress(OSError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            pids += [int(p) for p in children.split()]
        total = 0
        for pid in pids:
            with suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn {self.app} exited with {self.proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
