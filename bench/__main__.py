"""Run the benchmarks and print ratios against bare baselines measured in the same run."""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from samples import STRIPE_SECRET, stripe_event, stripe_headers, stripe_session, tenant_toml  # noqa: E402

from hub.testing import SmtpServer, free_port, redis_database, wait_for  # noqa: E402


def _load(port: int, seconds: float, make_body, threads: int = 8) -> float:  # noqa: ANN001
    """Requests per second from `threads` keep-alive clients posting for `seconds`."""
    done = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(worker: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = 0
        while time.monotonic() < stop:
            body, headers = make_body(worker, n)
            conn.request("POST", "/webhooks/bench/stripe", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status not in (200, 202):
                raise SystemExit(f"unexpected status {response.status}")
            n += 1
        with lock:
            done[0] += n

    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return done[0] / (time.monotonic() - start)


def _gunicorn(app: str, port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--chdir",
            str(ROOT),
            app,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            c.getresponse().read()
            return True
        except OSError:
            return False

    wait_for(up, 30, message=f"{app} up")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()

    embedded = None
    base = os.environ.get("REDIS_URL")
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    if not base:
        from hub.queues import EmbeddedRedis

        embedded = EmbeddedRedis(tmp / "redis")
        base = embedded.start()
    smtp = SmtpServer().start()
    try:
        with redis_database(base) as redis_url:
            (tmp / "config" / "tenants").mkdir(parents=True)
            (tmp / "config" / "tenants" / "bench.toml").write_text(
                tenant_toml(smtp_url=smtp.url, after="0s", consent="not_opted_out")
            )
            env = dict(
                os.environ,
                HUB_CONFIG_DIR=str(tmp / "config"),
                REDIS_URL=redis_url,
                HUB_VAR_DIR=str(tmp / "var"),
                HUB_LOG_LEVEL="WARNING",
                HUB_SECRET_KEY="bench",
                HUB_QUEUE_PREFIX="bench-",
            )
            env.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'hub.db'}")
            print(f"redis {redis_url}  database {env['DATABASE_URL']}")

            def hub_body(worker: int, n: int) -> tuple[bytes, dict]:
                tag = f"{worker}_{n}_{time.monotonic_ns()}"
                session = stripe_session(f"cs_{tag}")
                session["customer_details"].update(email=f"buyer{tag}@example.com", phone=None)
                body = stripe_event(event_id=f"evt_{tag}", session=session)
                return body, stripe_headers(body, STRIPE_SECRET)

            port = free_port()
            bare = _gunicorn("bench.bare_app:app", port, env)
            try:
                bare_rps = _load(port, args.seconds, hub_body)
            finally:
                bare.terminate()
                bare.wait()
            port = free_port()
            hub = _gunicorn("wsgi:app", port, env)
            try:
                hub_rps = _load(port, args.seconds, hub_body)
            finally:
                hub.terminate()
                hub.wait()
            print(
                f"ingest  bare endpoint {bare_rps:8.0f} req/s   hub ingress {hub_rps:8.0f} req/s"
                f"   ratio {hub_rps / bare_rps:.2f}"
            )

            # worker: the journeys queued above become e-mail steps; time one worker sending
            import redis
            from rq import Queue, SimpleWorker

            conn = redis.Redis.from_url(redis_url)
            q = Queue("bench-noop", connection=conn)
            for i in range(args.messages):
                q.enqueue("bench.noop.noop", i, result_ttl=0)
            start = time.monotonic()
            SimpleWorker([q], connection=conn).work(burst=True, logging_level="WARNING")
            bare_jobs = args.messages / (time.monotonic() - start)

            # the ingested events each open a journey whose e-mail step is due at once
            # ("0s"): one in-process SimpleWorker processes events, then sends the steps
            from hub.app import create_app

            config = {
                k: env[k]
                for k in (
                    "HUB_CONFIG_DIR",
                    "REDIS_URL",
                    "HUB_VAR_DIR",
                    "HUB_SECRET_KEY",
                    "HUB_QUEUE_PREFIX",
                    "DATABASE_URL",
                )
            }
            app = create_app(config)
            hub_state = app.extensions["hub"]
            already = len(smtp.messages)
            start = time.monotonic()
            with app.app_context():
                SimpleWorker(hub_state.queues.all, connection=hub_state.queues.connection).work(
                    burst=True, logging_level="WARNING"
                )
            wait_for(lambda: len(smtp.messages) > already, 10, message="mail")
            elapsed = time.monotonic() - start
            sent = len(smtp.messages) - already
            jobs = 2 * sent  # one event job and one step job per message
            print(
                f"worker  bare RQ no-op  {bare_jobs:8.0f} jobs/s   hub jobs {jobs / elapsed:8.0f}"
                f" jobs/s = {sent / elapsed:.0f} e-mails/s ({sent} sent)   ratio "
                f"{(jobs / elapsed) / bare_jobs:.2f}"
            )
    finally:
        smtp.stop()
        if embedded:
            embedded.stop()


if __name__ == "__main__":
    main()
