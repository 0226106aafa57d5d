"""Prometheus metrics: what the hub counts, where, and how ``GET /metrics`` collects it.

The metric objects are module globals, the one piece of global state the hub keeps, because
prometheus-client requires it in multiprocess mode: each process holds one value per metric
and label set, backed by its own mmap file in ``PROMETHEUS_MULTIPROC_DIR``; a second object of
the same name in the same process would overwrite the first one's entry. They are registered
in no registry: ``/metrics`` builds a fresh registry per scrape, so apps built in tests share
nothing but these counters.

Multiprocess mode is prometheus-client's own switch: it is on when ``PROMETHEUS_MULTIPROC_DIR``
is in the environment before the process imports the hub. ``hub.gunicorn_config`` sets it for
the web workers (default ``<HUB_VAR_DIR>/metrics``); ``hub worker`` processes on the same host
that get the same variable write there too, and the web's ``/metrics`` sums them all. A worker
on another host serves its own process's metrics with ``hub worker --metrics-port``.

Label values are bounded by configuration, never taken from a request path: a tenant or
source the hub does not know is counted as ``_unknown``; reasons are a closed set.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the files are opened as metrics are created
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from flask import Blueprint, Flask, Response, current_app, request  # noqa: E402
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402

log = logging.getLogger("hub.metrics")

UNKNOWN = "_unknown"

WEBHOOKS = Counter(
    "hub_webhook_requests",
    "Webhook requests by tenant, source, outcome (accepted/rejected), reason and HTTP status.",
    ["tenant", "source", "outcome", "reason", "code"],
    registry=None,
)
EVENTS = Counter(
    "hub_events",
    "Normalized events in accepted webhook requests: stored, or a duplicate of a stored one.",
    ["tenant", "source", "result"],
    registry=None,
)
INGEST_SECONDS = Histogram(
    "hub_ingest_seconds",
    "Time the webhook view took to answer (verify, parse, validate, store, enqueue).",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)
DELIVERIES = Counter(
    "hub_deliveries",
    "Delivery attempts by tenant, sink, outcome (sent, failed, retrying, unknown, skipped) "
    "and reason class.",
    ["tenant", "sink", "outcome", "reason"],
    registry=None,
)
STEP_LATENESS = Histogram(
    "hub_step_lateness_seconds",
    "When a scheduled step fired minus when it was due (RQ may start a job ~1 s early).",
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0),
    registry=None,
)
PROBES = Counter(
    "hub_conversion_probes",
    "Conversion probes asked before a step fired, by source and outcome: converted, open (not "
    "converted), timeout or error (the step went ahead).",
    ["source", "outcome"],
    registry=None,
)
PROCESS_METRICS = (WEBHOOKS, EVENTS, INGEST_SECONDS, DELIVERIES, STEP_LATENESS, PROBES)

# the error ``code`` of the ingress's JSON answer -> the reason label
_ERROR_REASONS = {
    "unverified": "bad_signature",
    "invalid_payload": "malformed",
    "request_entity_too_large": "too_large",
    "unknown_tenant": "unknown_tenant",
    "unknown_source": "unknown_source",
    "unavailable": "db_unavailable",
}
# ordered: the first fragment found in a delivery's reason text names its class
_DELIVERY_REASONS = (
    ("unsubscribed", "unsubscribed"),
    ("no consent", "no_consent"),
    ("no address", "no_address"),
    ("frequency cap", "frequency_cap"),
    ("not installed or not configured", "not_configured"),
    ("unusable address", "bad_address"),
    ("address lookup failed", "bad_address"),
    ("template", "template"),
    ("gave up after", "gave_up"),
    ("interrupted", "interrupted"),
    ("provider dedupes", "outcome_unknown"),
    ("outcome unknown", "outcome_unknown"),
)


# ``labels()`` re-checks and converts its arguments under a lock on every call (~2 µs per call,
# several times that on a loaded box); the label sets are bounded by configuration, so the
# children are cached per process (as bounded as the label values themselves)
@functools.lru_cache(maxsize=4096)
def _webhooks(tenant: str, source: str, outcome: str, reason: str, code: int) -> Any:
    return WEBHOOKS.labels(tenant, source, outcome, reason, str(code))


@functools.lru_cache(maxsize=4096)
def _events(tenant: str, source: str, result: str) -> Any:
    return EVENTS.labels(tenant, source, result)


@functools.lru_cache(maxsize=256)
def _ingest_seconds(source: str) -> Any:
    return INGEST_SECONDS.labels(source)


def multiproc_dir() -> Path | None:
    """The multiprocess directory this process writes to, if it runs in that mode."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(path) if path else None


# ------------------------------------------------------------------------------ recording


def delivery(tenant: str, sink: str, outcome: str, reason: str | None) -> None:
    """Count one delivery attempt (or skip) as the engine records it in the delivery log."""
    DELIVERIES.labels(tenant, sink, outcome, reason_class(outcome, reason)).inc()


def reason_class(outcome: str, reason: str | None) -> str:
    """A delivery's free-text reason reduced to a closed set of label values."""
    if outcome == "sent" or not reason:
        return "none"
    lowered = reason.lower()
    for fragment, name in _DELIVERY_REASONS:
        if fragment in lowered:
            return name
    return {"failed": "permanent", "retrying": "retryable", "unknown": "outcome_unknown"}.get(
        outcome, "other"
    )


def step_fired(lateness_seconds: float) -> None:
    STEP_LATENESS.observe(lateness_seconds)


def probe(source: str, outcome: str) -> None:
    """Count one conversion probe (``source`` is a registered source: bounded)."""
    PROBES.labels(source, outcome).inc()


def instrument_ingress(view: Callable[..., Any], hub: Any) -> Callable[..., Any]:
    """Wrap the webhook view: count each request and time it, whatever it answers.

    The view says what it stored through ``request.environ["hub.ingest_outcome"]`` (an
    :class:`~hub.hookspecs.IngestOutcome`); errors are read from the status and the JSON
    ``code`` of the answer, so the view needs no metrics calls of its own.
    """

    @wraps(view)
    def receive(tenant_slug: str, source_name: str) -> Any:
        started = time.perf_counter()
        try:
            # the answer as Flask would build it from the view's return value (it then uses
            # this Response as it is: no work is done twice)
            response = current_app.make_response(
                view(tenant_slug=tenant_slug, source_name=source_name)
            )
        except HTTPException as exc:  # 413 from the body reader, raised to the error handler
            _count(hub, tenant_slug, source_name, exc.code or 500, None, started)
            raise
        except Exception:
            _count(hub, tenant_slug, source_name, 500, None, started)
            raise
        _count(hub, tenant_slug, source_name, response.status_code, response, started)
        return response

    return receive


def _count(
    hub: Any,
    tenant_slug: str,
    source_name: str,
    status: int,
    response: Response | None,
    started: float,
) -> None:
    tenant = tenant_slug if tenant_slug in hub.tenants else UNKNOWN
    source = source_name if source_name in hub.sources else UNKNOWN
    outcome = request.environ.get("hub.ingest_outcome")
    if status < 400 and outcome is not None:
        if outcome.stored:
            reason = "accepted"
        elif outcome.duplicates:
            reason = "duplicate"
        else:
            reason = "ignored"
        if outcome.stored:
            _events(tenant, source, "stored").inc(outcome.stored)
        if outcome.duplicates:
            _events(tenant, source, "duplicate").inc(outcome.duplicates)
        verdict = "accepted"
    else:
        reason = _error_reason(status, response)
        verdict = "accepted" if status < 400 else "rejected"
    _webhooks(tenant, source, verdict, reason, status).inc()
    _ingest_seconds(source).observe(time.perf_counter() - started)


def _error_reason(status: int, response: Response | None) -> str:
    if status == 413:
        return "too_large"
    code = None
    if response is not None and response.is_json:
        with contextlib.suppress(Exception):
            code = (response.get_json(silent=True) or {}).get("code")
    return _ERROR_REASONS.get(code or "", "error" if status >= 500 else "other")


# ------------------------------------------------------------------------------ collecting


class QueueDepth:
    """Jobs per queue and state, read from Redis when scraped: one pipelined round trip."""

    STATES = ("queued", "scheduled", "started", "failed")

    def __init__(self, queues: Any) -> None:
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "hub_queue_jobs",
            "Jobs in each RQ queue by state (failed jobs are kept a week).",
            labels=["queue", "state"],
        )
        up = GaugeMetricFamily("hub_redis_up", "1 when Redis answered the queue-depth scrape.")
        prefix = self.queues.namespace  # labels stay "events" and "steps"
        try:
            pipe = self.queues.connection.pipeline(transaction=False)
            names = []
            for queue in self.queues.all:
                names.append(queue.name[len(prefix) :])
                pipe.llen(queue.key)
                pipe.zcard(queue.scheduled_job_registry.key)
                pipe.zcard(queue.started_job_registry.key)
                pipe.zcard(queue.failed_job_registry.key)
            pipe.llen(self.queues.event_list)  # stored events handed off, not RQ jobs
            *counts, handed_off = pipe.execute()
            counts[names.index("events") * len(self.STATES)] += handed_off
        except Exception as exc:  # a scrape must answer even when Redis does not
            log.warning("queue depth unavailable: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        for i, name in enumerate(names):
            for j, state in enumerate(self.STATES):
                jobs.add_metric([name, state], counts[i * len(self.STATES) + j])
        up.add_metric([], 1)
        yield jobs
        yield up


class MultiProcessFiles:
    """prometheus-client's multiprocess collector, reading under the compaction lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        with _locked(self.path, fcntl.LOCK_SH):
            files = [str(p) for p in self.path.glob("*.db")]
            return iter(list(MultiProcessCollector.merge(files, accumulate=True)))


def process_registry() -> CollectorRegistry:
    """A registry of this process's own metric values (one process, or a remote worker)."""
    registry = CollectorRegistry(auto_describe=False)
    for metric in PROCESS_METRICS:
        registry.register(metric)
    return registry


def scrape_registry(hub: Any) -> CollectorRegistry:
    """What ``/metrics`` shows: every process's metrics (or this one's) plus queue depth."""
    path = multiproc_dir()
    if path is None:
        registry = process_registry()
    else:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MultiProcessFiles(path))
    registry.register(QueueDepth(hub.queues))
    return registry


# ------------------------------------------------------------------------------ the files


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "compaction.lock", "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_of(file: Path) -> int | None:
    tail = file.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def compact(path: Path) -> int:
    """Fold the files of dead processes into one archive file per metric type.

    Run by the gunicorn master at start and whenever a worker exits, and by ``hub worker`` at
    start. Counters and histograms keep the dead processes' counts, so sums never go
    backwards when a worker is recycled (``max_requests``) or the server restarts, and the
    directory holds one file per live process plus one archive per type instead of growing
    with every worker that ever lived. Live gauges of dead processes are dropped
    (prometheus-client's ``mark_process_dead``). Returns how many files were folded.
    """
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    folded = 0
    with _locked(path, fcntl.LOCK_EX):
        for kind in ("counter", "histogram", "summary"):
            dead = [f for f in path.glob(f"{kind}_*.db") if (pid := _pid_of(f)) and not _alive(pid)]
            if not dead:
                continue
            archive = path / f"{kind}_archive.db"
            inputs = [*dead, archive] if archive.exists() else dead
            merged = MultiProcessCollector.merge([str(f) for f in inputs], accumulate=False)
            scratch = path / f"{kind}_archive.tmp"
            scratch.unlink(missing_ok=True)
            out = MmapedDict(str(scratch))
            for metric in merged:
                for sample in metric.samples:
                    key = mmap_key(
                        metric.name,
                        sample.name,
                        list(sample.labels),
                        list(sample.labels.values()),
                        metric.documentation,
                    )
                    out.write_value(key, sample.value, 0.0)
            out.close()
            os.replace(scratch, archive)
            for file in dead:
                file.unlink()
            folded += len(dead)
        for file in path.glob("gauge_live*_*.db"):
            pid = _pid_of(file)
            if pid and not _alive(pid):
                mark_process_dead(pid, str(path))
    return folded


def mark_dead(pid: int) -> None:
    """A gunicorn worker exited: drop its live gauges and fold its counts into the archive."""
    path = multiproc_dir()
    if path is not None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, str(path))
        compact(path)


def serve_process_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve this process's metrics on ``port`` (``hub worker --metrics-port``)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=process_registry())


# ------------------------------------------------------------------------------ the route


def init_app(app: Flask, hub: Any) -> None:
    """Add ``GET /metrics`` and instrument the webhook view of ``app``."""
    blueprint = Blueprint("metrics", __name__)

    @blueprint.get("/metrics")
    def metrics() -> Response:
        token = hub.settings.metrics_token
        if token:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                from hub.ingress import error

                return error(401, "unauthorized", "a bearer token is required for /metrics")
        return Response(generate_latest(scrape_registry(hub)), content_type=CONTENT_TYPE_LATEST)

    app.register_blueprint(blueprint)
    endpoint = "ingress.receive"
    app.view_functions[endpoint] = instrument_ingress(app.view_functions[endpoint], hub)
