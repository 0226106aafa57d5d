"""The worker: RQ's ``SimpleWorker`` on the hub's queues, plus the event list.

Stored events reach the workers as entries of a plain Redis list (``Queues.enqueue_event``), not
as RQ jobs: a job costs the ingress a 2 KB hash and ~8 Redis commands, and the worker ~60
commands, where one entry costs one ``RPUSH`` and a fraction of one ``LPOP``. Steps and
abandonment checks stay RQ jobs (RQ's scheduler holds them until due). So the dequeue loop takes
a batch of events, then gives one RQ job its turn, and when both are empty blocks on the RQ
queues and the event list together.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job

from hub.jobs import process_handed_off
from hub.queues import EVENT_BATCH

log = logging.getLogger("hub.worker")


class HubWorker(SimpleWorker):
    """No fork per job, so connections (SMTP, HTTP) are reused across messages."""

    stop_signalled = False
    hub: Any = None  # set by the caller: the Hub whose event list this worker drains

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stop_signalled = True
        super().request_stop(signum, frame)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """The next RQ job, after processing what the event list holds in between.

        ``timeout`` ``None`` (burst) returns ``None`` once the list and the queues are empty;
        otherwise wait up to ``timeout`` (and ``max_idle_time``) for either.
        """
        idle_since = time.monotonic()
        while True:
            taken = self._drain_once()
            if taken:
                idle_since = time.monotonic()
            result = super().dequeue_job_and_maintain_ttl(None)  # RQ's turn, without blocking
            if result is not None:
                return result
            if taken == EVENT_BATCH or (taken and timeout is None):
                continue  # more events are likely waiting
            if timeout is None:
                return None
            wait = timeout
            if max_idle_time is not None:
                wait = min(wait, max_idle_time - (time.monotonic() - idle_since))
                if wait <= 0:
                    return None
            # RQ's own blocking wait would not see the event list: wait on both here
            self._wait_for_work(max(1, int(wait)))

    def _drain_once(self) -> int:
        """Take and process one batch of events; 0 when the list is empty or Redis is not
        answering (RQ's own dequeue then waits for Redis the way it always does)."""
        try:
            entries = self.hub.queues.take_events()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("worker: cannot take events (%s)", exc.__class__.__name__)
            return 0
        process_handed_off(entries)
        return len(entries)

    def _wait_for_work(self, seconds: int) -> None:
        """Block until the event list or an RQ queue has something, at most ``seconds``.

        A job id popped from an RQ queue goes back to the front of that queue, for RQ's own
        dequeue to fetch on the next turn; an event entry is processed here.
        """
        lists = [self.hub.queues.event_list, *(q.key for q in self._ordered_queues)]
        try:
            popped = self.connection.blpop(lists, seconds)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("worker: Redis unavailable (%s)", exc.__class__.__name__)
            time.sleep(1)
            return
        if popped is None:
            return
        key, value = popped
        if key.decode() == self.hub.queues.event_list:
            process_handed_off([self.hub.queues.parse_event_entry(value)])
        else:
            self.connection.lpush(key, value)
