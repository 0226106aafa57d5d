"""``python -m bench``: the hub beside bare baselines, measured in the same run, as ratios.

Phases (bench/README.md has the method):

1. ingest: ``wrk`` against three ``gunicorn -w 2`` servers in interleaved rounds — a bare
   HMAC + LPUSH endpoint, a bare HMAC + RQ enqueue endpoint, and the hub's Stripe ingress —
   then the hub again at half its measured rate for p50/p99;
2. worker: one bare ``rq worker`` (SimpleWorker) whose jobs each make one HTTP POST, against
   one ``hub worker`` turning Stripe events into one signed ticket POST each, to the same local
   stand-in, interleaved;
3. scheduling: with ``--pending`` journeys waiting on a step an hour away, how late probe steps
   fire against their stored due time, and the Redis bytes each pending journey holds;
4. reports (only when asked, PostgreSQL): report queries and the CSV export on ``--journeys``
   journeys (see :mod:`bench.reports`).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path

import redis
import sqlalchemy as sa

from bench.load import ROOT, Gunicorn, StripeBodies, Wrk, WrkResult, find_wrk
from hub.testing import HttpStandIn, Reply, redis_database, wait_for

SECRET = "whsec_bench_secret"
TICKET_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CLAIM_KEY = "abandonment-hub:test-claim"
BIN = Path(sys.executable).parent


def tenant(after: str, url: str) -> str:
    """A Stripe shop whose one step opens a signed ticket at ``url`` ``after`` the event."""
    return f"""
name = "Bench"
timezone = "UTC"
locale = "en"
currency = "EUR"

[sources.stripe]
webhook_secret = "{SECRET}"

[sinks.ticket_webhook]
url = "{url}"
secret = "{TICKET_SECRET}"

[[flows]]
name = "bench"
  [[flows.steps]]
  after = "{after}"
  channels = ["ticket_webhook"]
  template = "call_prospect"
"""


class Bench:
    """Shared set-up: a Redis database number, databases per phase, key prefixes."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
        base = os.environ.get("REDIS_URL")
        if not base:
            from hub.queues import EmbeddedRedis

            embedded = EmbeddedRedis(self.tmp / "redis")
            base = embedded.start()
            stack.callback(embedded.stop)
        self.redis_url = stack.enter_context(redis_database(base))
        self.redis = redis.Redis.from_url(self.redis_url)
        self.database_url = args.database_url or f"sqlite:///{self.tmp / 'unused.db'}"
        self.postgres = self.database_url.startswith(("postgres", "postgresql"))
        self.schemas: list[str] = []
        stack.callback(self._drop_schemas)

    def database(self, phase: str) -> tuple[str, str]:
        """A fresh database for one phase: a schema on PostgreSQL, a file on SQLite."""
        if self.postgres:
            schema = f"bench_{os.getpid()}_{phase}"
            self.schemas.append(schema)
            return self.database_url, schema
        return f"sqlite:///{self.tmp / phase}.db", ""

    def _drop_schemas(self) -> None:
        if not self.schemas:
            return
        from hub.store import make_engine

        engine = make_engine(self.database_url)
        with engine.begin() as conn:
            for schema in self.schemas:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()

    def hub_env(self, phase: str, tenants: dict[str, str], **extra: str) -> dict[str, str]:
        """Environment of a hub (web or worker) for one phase, with its own config and keys."""
        config = self.tmp / phase / "config"
        (config / "tenants").mkdir(parents=True, exist_ok=True)
        for slug, text in tenants.items():
            (config / "tenants" / f"{slug}.toml").write_text(text)
        url, schema = self.database(phase)
        return dict(
            os.environ,
            HUB_CONFIG_DIR=str(config),
            HUB_VAR_DIR=str(self.tmp / phase / "var"),
            DATABASE_URL=url,
            DATABASE_SCHEMA=schema,
            REDIS_URL=self.redis_url,
            HUB_QUEUE_PREFIX=f"bench-{phase}-",
            HUB_SECRET_KEY="bench",
            HUB_PUBLIC_URL="http://hub.bench",
            HUB_LOG_LEVEL="WARNING",
            HUB_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8",
            BENCH_STRIPE_SECRET=SECRET,
            PYTHONPATH=str(ROOT),
            **extra,
        )

    def clear_redis(self) -> None:
        """Drop every key of the bench's own Redis database (never FLUSHDB: the claim stays)."""
        batch = [k for k in self.redis.scan_iter(count=1000) if k != CLAIM_KEY.encode()]
        for i in range(0, len(batch), 1000):
            self.redis.unlink(*batch[i : i + 1000])


def hub_app(env: dict[str, str]):  # noqa: ANN201
    """An in-process app on ``env``'s settings, to post events and read the database."""
    from hub.app import create_app

    keys = [k for k in env if k.startswith(("HUB_", "DATABASE_", "REDIS_URL"))]
    return create_app({k: env[k] for k in keys})


def post_events(app, bodies: StripeBodies, slug: str, tags: list[str]) -> None:  # noqa: ANN001
    client = app.test_client()
    for tag in tags:
        body, signature = bodies.one(tag)
        answer = client.post(
            f"/webhooks/{slug}/stripe",
            data=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
        if answer.status_code != 202:
            raise RuntimeError(f"hub answered {answer.status_code}: {answer.get_data()[:200]!r}")


# ------------------------------------------------------------------------------------ ingest


def ingest(bench: Bench, wrk: Wrk) -> dict:
    args = bench.args
    env = bench.hub_env("ingest", {"bench": tenant("1h", "http://127.0.0.1:9/unused")})
    bodies = StripeBodies(SECRET)
    # the baselines do not dedupe, so a fixed set of signed bodies serves every round
    bare_file = bodies.write(bench.tmp / "bare.txt", 4000, "bare")
    hub_app(env).extensions["hub"].close()  # tables exist before two workers start at once
    base_env, tree = None, ROOT
    if args.baseline_tree:  # the same hub at another commit, in the same interleaved rounds
        tree = Path(args.baseline_tree).resolve()
        base_env = {
            **bench.hub_env("ingest_base", {"bench": tenant("1h", "http://127.0.0.1:9/unused")}),
            "PYTHONPATH": str(tree),
        }
        subprocess.run(  # its tables, by its own migrations
            [sys.executable, "-c", "from hub.app import create_app; create_app()"],
            env=base_env,
            cwd=tree,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    servers = {
        "lpush": Gunicorn(
            "bench.bare_app:lpush_app", env, bench.tmp / "lpush.log", threads=args.threads
        ),
        "enqueue": Gunicorn(
            "bench.bare_app:enqueue_app", env, bench.tmp / "enqueue.log", threads=args.threads
        ),
        "hub": Gunicorn("wsgi:app", env, bench.tmp / "hub.log", threads=args.threads),
    }
    if base_env is not None:
        servers["base"] = Gunicorn(
            "wsgi:app", base_env, bench.tmp / "base.log", threads=args.threads, root=tree
        )
    results: dict[str, list[WrkResult]] = {name: [] for name in servers}
    try:
        warm = bodies.write(bench.tmp / "warm.txt", 3000, f"warm{secrets.token_hex(3)}")
        for name, server in servers.items():
            wrk.run(server.port, warm if name in ("hub", "base") else bare_file, 1.0)
        for r in range(args.rounds):
            for name, server in servers.items():
                if name in ("hub", "base"):
                    # every hub request a new event: enough bodies for the fastest rate seen
                    ceiling = max(x.rps for x in results["lpush"])
                    count = int(ceiling * args.seconds * 1.3) + 1000
                    file = bodies.write(bench.tmp / "hub.txt", count, f"r{r}{secrets.token_hex(3)}")
                else:
                    file = bare_file
                cpu = server.cpu()
                result = wrk.run(server.port, file, args.seconds, args.connections)
                result.cpu_ms = (server.cpu() - cpu) * 1000 / max(result.requests, 1)
                if name in ("hub", "base") and result.requests > count:
                    print(f"  note: hub round {r} reused {result.requests - count} bodies")
                results[name].append(result)
                print(
                    f"  round {r + 1} {name:<8} {result.rps:8.0f} req/s "
                    f"{result.cpu_ms:6.2f} CPU ms/req",
                    flush=True,
                )
            bench.clear_redis()
        hub_rate = statistics.median(x.rps for x in results["hub"])
        half_file = bodies.write(
            bench.tmp / "half.txt", int(hub_rate * args.seconds) + 1000, f"h{secrets.token_hex(3)}"
        )
        half = wrk.run(servers["hub"].port, half_file, args.seconds, 16, rate=hub_rate / 2)
    finally:
        for server in servers.values():
            server.stop()
        bench.clear_redis()
    return {"results": results, "half": half, "half_target": hub_rate / 2}


# ------------------------------------------------------------------------------------ worker


class Receiver:
    """The local stand-in every message is posted to; keeps the arrival time of each."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, float, str, bytes]] = []  # monotonic, wall, path, body
        self.server = HttpStandIn(self._handle).start()

    def _handle(self, request) -> Reply:  # noqa: ANN001
        self.arrivals.append((time.monotonic(), time.time(), request.path, request.body))
        return Reply(200, b'{"id": "t-1"}', {"Content-Type": "application/json"})

    def on(self, path: str) -> list[tuple[float, float, str, bytes]]:
        return [a for a in self.arrivals if a[2] == path]


def _first_dequeue(conn: redis.Redis, keys: list[str], total: int, stop: threading.Event) -> list:
    """Polls the queue lengths; returns [monotonic time the first job left the queue]."""
    seen: list[float] = []

    def poll() -> None:
        while not stop.is_set():
            if sum(conn.llen(k) for k in keys) < total:
                seen.append(time.monotonic())
                return
            time.sleep(0.002)

    threading.Thread(target=poll, daemon=True).start()
    return seen


def _timed_run(
    command: list[str], env: dict, conn: redis.Redis, keys: list[str], total: int
) -> float:
    """Run a burst worker; seconds from its first dequeue to its exit."""
    stop = threading.Event()
    first = _first_dequeue(conn, keys, total, stop)
    subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    stop.set()
    end = time.monotonic()
    if not first:
        raise RuntimeError("the worker never took a job")
    return end - first[0]


def worker(bench: Bench) -> dict:
    args = bench.args
    receiver = Receiver()
    url = receiver.server.url
    env = bench.hub_env("worker", {"bench": tenant("0s", f"{url}/hub")})
    app = hub_app(env)
    hub = app.extensions["hub"]
    bodies = StripeBodies(SECRET)
    from rq import Queue

    bare_queue = Queue(f"bench-bare-{secrets.token_hex(3)}", connection=bench.redis)
    hub_keys = [hub.queues.event_list, *(q.key for q in hub.queues.all)]
    rates: dict[str, list[float]] = {"bare": [], "hub": []}
    n = args.messages
    try:
        for r in range(args.worker_rounds):
            bare_queue.enqueue_many(
                [
                    Queue.prepare_data("bench.bare_jobs.post_once", (f"{url}/bare",), result_ttl=0)
                    for _ in range(n)
                ]
            )
            before = len(receiver.on("/bare"))
            elapsed = _timed_run(
                [
                    str(BIN / "rq"),
                    "worker",
                    "--burst",
                    "--worker-class",
                    "rq.worker.SimpleWorker",
                    "--url",
                    bench.redis_url,
                    "--logging_level",
                    "WARNING",
                    bare_queue.name,
                ],
                env,
                bench.redis,
                [bare_queue.key],
                n,
            )
            assert len(receiver.on("/bare")) - before == n, "bare worker lost messages"
            rates["bare"].append(n / elapsed)

            post_events(app, bodies, "bench", [f"w{r}_{i}" for i in range(n)])
            queued = sum(bench.redis.llen(k) for k in hub_keys)
            before = len(receiver.on("/hub"))
            elapsed = _timed_run(
                [sys.executable, "-m", "hub", "worker", "--burst"],
                env,
                bench.redis,
                hub_keys,
                queued,
            )
            sent = len(receiver.on("/hub")) - before
            if sent != n:
                raise RuntimeError(f"hub worker sent {sent} of {n} messages")
            rates["hub"].append(n / elapsed)
            print(
                f"  round {r + 1} bare {rates['bare'][-1]:6.0f} msg/s   hub "
                f"{rates['hub'][-1]:6.0f} msg/s",
                flush=True,
            )
    finally:
        receiver.server.stop()
        hub.close()
        bench.clear_redis()
    return rates


# ------------------------------------------------------------------------------------ scheduling


def _used_memory(conn: redis.Redis) -> int:
    return int(conn.info("memory")["used_memory"])


def scheduling(bench: Bench) -> dict:
    args = bench.args
    receiver = Receiver()
    url = receiver.server.url
    env = bench.hub_env(
        "sched",
        {"bulk": tenant("1h", f"{url}/bulk"), "probe": tenant("5s", f"{url}/probe")},
    )
    app = hub_app(env)
    hub = app.extensions["hub"]
    bodies = StripeBodies(SECRET)
    log = (bench.tmp / "sched-worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "worker"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    from hub.store import steps

    def count(status: str) -> int:
        with hub.store.begin() as conn:
            query = sa.select(sa.func.count()).where(steps.c.status == status)
            return conn.execute(query.select_from(steps)).scalar_one()

    def idle() -> bool:
        return hub.queues.queued_events() == 0 and all(q.count == 0 for q in hub.queues.all)

    try:
        time.sleep(3)  # the worker's start-up, scheduler and first sweep
        memory_before = _used_memory(bench.redis)
        start = time.monotonic()
        _seed_pending(hub, args.pending)
        wait_for(lambda: count("scheduled") >= args.pending and idle(), 600, message="pending")
        build = time.monotonic() - start
        time.sleep(1)
        memory_after = _used_memory(bench.redis)
        sample = _memory_usage_per_step(bench.redis, hub)
        for i in range(args.probes):
            post_events(app, bodies, "probe", [f"probe{i}"])
            time.sleep(0.37)  # spread the probes over the scheduler's one-second ticks
        wait_for(lambda: len(receiver.on("/probe")) >= args.probes, 60, message="probes")
        lateness = _lateness(hub, receiver.on("/probe"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        receiver.server.stop()
        hub.close()
        bench.clear_redis()
    return {
        "pending": args.pending,
        "build_seconds": build,
        "bytes_info": (memory_after - memory_before) / args.pending,
        "bytes_sample": sample,
        "lateness": lateness,
    }


def _seed_pending(hub, n: int) -> None:  # noqa: ANN001
    """``n`` open journeys whose one step is due in an hour, scheduled through the hub's own
    ``Queues.schedule_step`` (the Redis state a real journey leaves). The rows are written in
    bulk rather than through n webhooks: on a busy 2-core machine that would take minutes and
    measure the worker again, not the scheduler."""
    from datetime import timedelta

    from hub.store import journeys, steps

    now = datetime.now(UTC)
    due = now + timedelta(hours=1)
    with hub.store.begin() as conn:
        conn.execute(
            sa.insert(journeys),
            [
                dict(
                    tenant="bulk",
                    checkout_id=f"cs_seed_{i}",
                    source="stripe",
                    status="open",
                    flow="bench",
                    event={},
                    created_at=now,
                    recovered=False,
                )
                for i in range(n)
            ],
        )
        ids = conn.execute(sa.select(journeys.c.id).where(journeys.c.tenant == "bulk")).scalars()
        conn.execute(
            sa.insert(steps),
            [
                dict(journey_id=j, step_index=0, due_at=due, status="scheduled", updated_at=now)
                for j in ids
            ],
        )
        seeded = conn.execute(
            sa.select(steps.c.id, steps.c.token).where(steps.c.due_at == due)
        ).all()
    for step_id, token in seeded:
        hub.queues.schedule_step(step_id, due, tenant="bulk", token=token)


def _memory_usage_per_step(conn: redis.Redis, hub) -> float | None:  # noqa: ANN001
    """MEMORY USAGE of one scheduled step job plus its share of the scheduled registry."""
    registry = hub.queues.steps.scheduled_job_registry
    size = conn.zcard(registry.key)
    if not size:
        return None
    job_id = conn.zrange(registry.key, 0, 0)[0].decode()
    job_bytes = conn.memory_usage(f"rq:job:{job_id}") or 0
    return job_bytes + (conn.memory_usage(registry.key, samples=0) or 0) / size


def _lateness(hub, arrivals: list) -> list[float]:  # noqa: ANN001
    """Seconds between each probe's stored due time and its arrival (negative = early)."""
    import json

    from hub.store import journeys, steps

    late = []
    with hub.store.begin() as conn:
        for _mono, wall, _path, body in arrivals:
            journey_id = json.loads(body)["journey_id"]
            due = conn.execute(
                sa.select(steps.c.due_at).where(steps.c.journey_id == journey_id)
            ).scalar_one()
            assert conn.execute(sa.select(journeys.c.id).where(journeys.c.id == journey_id)).first()
            late.append(wall - due.timestamp())
    return late


# ------------------------------------------------------------------------------------ report


def report(args: argparse.Namespace, bench: Bench, found: dict) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    db = "PostgreSQL" if bench.postgres else "SQLite"
    print(
        f"\nabandonment-hub bench, {when}; {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {db}, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    if "ingest" in found:
        r = found["ingest"]["results"]
        med = {k: statistics.median(x.rps for x in v) for k, v in r.items()}
        print(
            f"\ningest: gunicorn -w 2 {f'gthread x{args.threads}' if args.threads else 'sync'}, "
            f"wrk -c {args.connections}, {args.rounds} interleaved rounds of "
            f"{args.seconds:g} s, medians"
        )
        print(
            f"  {'endpoint':<34} {'req/s':>7} {'× LPUSH':>8} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'CPU ms/req':>10}"
        )
        names = {
            "lpush": "bare HMAC + Redis LPUSH",
            "enqueue": "bare HMAC + RQ enqueue",
            "hub": "hub Stripe ingest (stored in DB)",
            "base": f"the same, at {args.baseline_tree}"[:34],
        }
        for key, label in names.items():
            if key not in r:
                continue
            p50 = statistics.median(x.p50_ms for x in r[key])
            p99 = statistics.median(x.p99_ms for x in r[key])
            cpu = statistics.median(x.cpu_ms or 0.0 for x in r[key])
            print(
                f"  {label:<34} {med[key]:7.0f} {med[key] / med['lpush']:8.2f} "
                f"{p50:7.1f} {p99:7.1f} {cpu:10.2f}"
            )
        if "base" in med:
            print(f"  hub ÷ the same at {args.baseline_tree}: {med['hub'] / med['base']:.2f}")
        half = found["ingest"]["half"]
        print(
            f"  hub / RQ enqueue endpoint: {med['hub'] / med['enqueue']:.2f}   "
            f"hub at half load (offered {found['ingest']['half_target']:.0f}, got "
            f"{half.rps:.0f} req/s): p50 {half.p50_ms:.1f} ms, p99 {half.p99_ms:.1f} ms"
        )
        errors = sum(x.errors for v in r.values() for x in v) + half.errors
        if errors:
            print(f"  ! {errors} error answers or timeouts")
    if "worker" in found:
        w = found["worker"]
        bare, hub = statistics.median(w["bare"]), statistics.median(w["hub"])
        print(
            f"\nworker: one process, {args.messages} messages of one POST each, "
            f"{args.worker_rounds} interleaved rounds, medians"
        )
        print(f"  bare rq SimpleWorker, one POST per job {bare:7.0f} msg/s")
        print(f"  hub worker, Stripe event -> ticket    {hub:7.0f} msg/s   ratio {hub / bare:.2f}")
    if "scheduling" in found:
        s = found["scheduling"]
        late = sorted(s["lateness"])
        print(
            f"\nscheduling: {s['pending']} pending journeys (built in {s['build_seconds']:.0f} s)"
        )
        print(
            f"  probe steps vs stored due time: median {statistics.median(late):+.2f} s, "
            f"earliest {late[0]:+.2f} s, latest {late[-1]:+.2f} s ({len(late)} probes)"
        )
        sample = s["bytes_sample"]
        print(
            f"  Redis per pending journey: {s['bytes_info']:.0f} B (INFO used_memory delta)"
            + (f", {sample:.0f} B (MEMORY USAGE job + registry share)" if sample else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per ingest round and side")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved ingest rounds")
    parser.add_argument(
        "--threads", type=int, default=8, help="gthread threads per gunicorn worker; 0: sync"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--messages", type=int, default=1000, help="per worker round")
    parser.add_argument("--worker-rounds", type=int, default=2)
    parser.add_argument("--pending", type=int, default=10_000, help="pending journeys")
    parser.add_argument("--probes", type=int, default=12, help="steps timed at that load")
    parser.add_argument(
        "--baseline-tree",
        default=None,
        help="ingest: also run the hub of this checkout (e.g. a `git worktree` of an earlier "
        "commit) in the same interleaved rounds, for a before/after in one run",
    )
    parser.add_argument(
        "--only",
        choices=("ingest", "worker", "scheduling", "reports"),
        action="append",
        default=None,
    )
    parser.add_argument("--journeys", type=int, default=1_000_000, help="for --only reports")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL (a schema per phase is created and dropped); default SQLite",
    )
    args = parser.parse_args()
    # SIGTERM (a timeout, Ctrl-C in a wrapper) must reach the clean-up below: schemas, keys,
    # servers and workers the bench started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    os.environ["HUB_LOG_LEVEL"] = "WARNING"  # the in-process app that posts events and reads
    phases = args.only or ["ingest", "worker", "scheduling"]
    wrk = (
        Wrk(find_wrk(), Path(tempfile.mkdtemp(prefix="hub-bench-wrk-")))
        if "ingest" in phases
        else None
    )
    found: dict = {}
    with ExitStack() as stack:
        bench = Bench(args, stack)
        print(f"redis {bench.redis_url}  database {bench.database_url}", flush=True)
        if "ingest" in phases:
            print("ingest …", flush=True)
            found["ingest"] = ingest(bench, wrk)
        if "worker" in phases:
            print("worker …", flush=True)
            found["worker"] = worker(bench)
        if "scheduling" in phases:
            print("scheduling …", flush=True)
            found["scheduling"] = scheduling(bench)
        if "reports" in phases:
            from bench import reports

            print("reports …", flush=True)
            found["reports"] = reports.run(bench)
        with suppress(Exception):
            bench.redis.close()
    report(args, bench, found)
    if "reports" in found:
        from bench import reports

        reports.print_report(found["reports"])


if __name__ == "__main__":
    main()
