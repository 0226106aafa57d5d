"""The ``hub`` command. Every command is a Click command on the app (``app.cli``), so
``hub …`` and ``flask --app wsgi …`` behave the same and run inside the app context."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask

from hub.cliparams import SINCE, known_tenant, require_database
from hub.current import current_hub
from hub.logs import mask
from hub.store import deliveries, delivery_log, journeys

log = logging.getLogger("hub.worker")


def register(app: Flask) -> None:
    """Attach the core commands and every plugin's commands to ``app.cli``."""
    app.cli.add_command(run_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(plugins_command)
    app.cli.add_command(config_group)
    app.cli.add_command(sweep_command)
    app.cli.add_command(log_command)
    from hub.consentcli import consent_command
    from hub.dbcli import db_group
    from hub.democli import demo_command
    from hub.erasurecli import COMMANDS as ERASURE_COMMANDS
    from hub.flowcli import flow_group
    from hub.keyscli import keys_group
    from hub.replaycli import replay_command
    from hub.reportcli import export_command, report_command
    from hub.scaffold import plugin_group
    from hub.userscli import users_group

    app.cli.add_command(demo_command)
    app.cli.add_command(consent_command)
    app.cli.add_command(flow_group)
    app.cli.add_command(db_group)
    app.cli.add_command(plugin_group)
    app.cli.add_command(report_command)
    app.cli.add_command(export_command)
    app.cli.add_command(keys_group)
    app.cli.add_command(users_group)
    app.cli.add_command(replay_command)
    for command in ERASURE_COMMANDS:
        app.cli.add_command(command)
    hub = app.extensions["hub"]
    for plugin_name, command in hub.registry.commands:
        group = app.cli.commands.get(plugin_name)
        if group is None:
            group = click.Group(plugin_name, help=f"Commands of the {plugin_name} plugin.")
            app.cli.add_command(group)
        group.add_command(command)


def webhook_urls(hub: Any, port: int) -> list[tuple[str, str, str]]:
    base = hub.public_url(port)
    return [
        (t.slug, name, f"{base}/webhooks/{t.slug}/{name}")
        for t in hub.tenants.values()
        for name in t.sources
    ]


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def run_command(host: str, port: int) -> None:
    """Run everything for a laptop or a demo: web server, a worker, the scheduler, and an
    embedded Redis when REDIS_URL is unset."""
    from werkzeug.serving import run_simple

    hub = current_hub()
    _report_problems(hub)
    hub.ensure_redis()
    env = dict(
        os.environ,
        REDIS_URL=hub.queues.url,
        DATABASE_URL=hub.settings.database_url,
        HUB_CONFIG_DIR=str(hub.settings.config_dir),
        HUB_VAR_DIR=str(hub.settings.var_dir),
        HUB_PUBLIC_URL=hub.public_url(port),
        HUB_SECRET_KEY=hub.settings.secret_key,
    )
    worker = subprocess.Popen([sys.executable, "-m", "hub", "worker"], env=env)
    click.echo(
        f"abandonment-hub on http://{host}:{port}  (redis: {hub.queues.url}, "
        f"database: {hub.store.engine.url.render_as_string(hide_password=True)})"
    )
    for slug, source, url in webhook_urls(hub, port):
        click.echo(f"  tenant {slug:<16} source {source:<12} POST {url}")
    for broken in hub.catalog.broken():
        count = len(broken.issues)
        served = "its last good version served" if broken.serving is not None else "not served"
        click.echo(
            f"  tenant {broken.slug:<16} {served}: {count} error{'s' if count != 1 else ''}, "
            "run hub config check"
        )
    click.echo("Try it: in another terminal run `hub demo`. Ctrl-C stops everything.")
    app = hub_app()
    # SIGTERM (systemd, `timeout`, a container stop) must reach the finally below, which stops
    # the worker and the embedded Redis; Python's default would just die and orphan them
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        hub.close()


def hub_app() -> Flask:
    from flask import current_app

    return current_app._get_current_object()  # type: ignore[attr-defined]


@click.command("worker")
@click.option("--burst", is_flag=True, help="Run what is queued, then exit (no scheduler wait).")
@click.option("--max-idle-time", type=int, default=None, help="Exit after this many idle seconds.")
@click.option(
    "--sweep-interval",
    type=float,
    default=None,
    help="Seconds between sweeps that re-queue work Redis lost (default: half of "
    "HUB_SWEEP_AFTER, at most 30).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve this worker's own Prometheus metrics on this port (for workers on another "
    "host than the web server; on the same host set PROMETHEUS_MULTIPROC_DIR instead).",
)
def worker_command(
    burst: bool,
    max_idle_time: int | None,
    sweep_interval: float | None,
    metrics_port: int | None = None,
) -> None:
    """Run an RQ worker with the scheduler on the hub's queues."""
    from hub import metrics
    from hub.engine import Engine
    from hub.erasure import RetentionSchedule

    hub = current_hub()
    _report_problems(hub)
    hub.ensure_redis()
    _start_metrics(metrics, metrics_port)
    app = hub_app()
    stop = threading.Event()
    interval = sweep_interval or min(hub.settings.sweep_after / 2, 30.0)

    retention = RetentionSchedule(hub)

    def sweep() -> None:
        with app.app_context():
            try:
                Engine(hub).sweep()
                retention.tick()  # hourly, not every round
            except Exception:
                app.logger.exception("sweep failed")

    def sweeper() -> None:
        while not stop.wait(interval):
            sweep()

    sweep()
    thread = threading.Thread(target=sweeper, name="hub-sweeper", daemon=True)
    thread.start()
    try:
        _work_until_stopped(hub, burst, max_idle_time)
    finally:
        stop.set()
        hub.close()


def _work_until_stopped(hub: Any, burst: bool, max_idle_time: int | None) -> None:
    """Run RQ's work loop, and run it again when it ends without being asked to.

    RQ's loop quits, and would end ``hub worker`` with exit code 0, on any Redis error outside
    its wait for jobs: Redis gone while a job runs (RQ cannot record the job's end), a Redis
    timeout. The jobs are safe (the database is the outbox), but a worker that silently exits
    delivers nothing more, and ``hub run`` starts its worker only once. So wait for Redis and
    go on; only a stop signal, ``--burst`` or ``--max-idle-time`` ends the worker.
    """
    import redis
    from rq.exceptions import StopRequested

    from hub.queues import DEQUEUE_STRATEGY
    from hub.worker import HubWorker

    pause = 1.0
    while True:
        worker = HubWorker(hub.queues.all, connection=hub.queues.connection)
        worker.hub = hub
        try:
            worked = worker.work(
                with_scheduler=True,
                dequeue_strategy=DEQUEUE_STRATEGY,
                burst=burst,
                max_idle_time=max_idle_time,
                logging_level=os.environ.get("HUB_LOG_LEVEL", "INFO"),
            )
        except redis.exceptions.RedisError as exc:  # Redis still down while starting up
            log.warning("worker: Redis unavailable (%s)", exc.__class__.__name__)
            worked = False
        if worker.stop_signalled or burst or max_idle_time is not None:
            return
        pause = 1.0 if worked else min(pause * 2, 30.0)
        log.warning("worker: RQ's loop ended unasked; starting it again in %.0f s", pause)
        try:
            time.sleep(pause)
        except StopRequested:  # a stop signal while waiting (RQ's handler is still installed)
            return


def _start_metrics(metrics: Any, port: int | None) -> None:
    """Fold dead processes' metric files (shared directory) and serve ``port`` if asked."""
    path = metrics.multiproc_dir()
    if path is not None:
        metrics.compact(path)
    if port:
        metrics.serve_process_metrics(port)


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins with version, origin, what they provide and any error."""
    hub = current_hub()
    infos = list(hub.registry.plugins.values())
    if as_json:
        click.echo(json.dumps([vars(i) for i in infos], indent=2))
        return
    for info in sorted(infos, key=lambda i: i.name):
        provides = (
            ", ".join([*(f"source:{s}" for s in info.sources), *(f"sink:{s}" for s in info.sinks)])
            or "-"
        )
        status = f"ERROR {info.error}" if info.error else "ok"
        click.echo(
            f"{info.name:<16} {info.version:<10} {info.origin:<20} {info.module:<28} "
            f"{provides:<40} {status}"
        )
    for message in hub.registry.errors:
        if "is disabled" not in message:
            click.echo(f"ERROR {message}", err=True)


@click.group("config")
def config_group() -> None:
    """Tenant configuration."""


@config_group.command("check")
def config_check() -> None:
    """Validate every tenant file; print each error with file and key; exit 1 on any."""
    hub = current_hub()
    problems = (
        list(hub.settings_problems)
        + [str(i) for i in hub.config_issues]
        + list(hub.registry.errors)
    )
    for problem in problems:
        click.echo(problem, err=True)
    broken = hub.catalog.broken()
    dropped = ", ".join(f.slug for f in broken if f.serving is None)
    kept = ", ".join(
        f"{f.slug} (read {f.served_since:%Y-%m-%d %H:%M:%S} UTC)"
        for f in broken
        if f.serving is not None
    )
    if dropped:
        click.echo(
            f"not served after a restart: {dropped}; running hub processes keep serving the "
            "last version that loaded without errors",
            err=True,
        )
    if kept:
        click.echo(
            f"served in their last good version until fixed (a copy in HUB_VAR_DIR): {kept}",
            err=True,
        )
    if problems:
        raise SystemExit(1)
    click.echo(f"ok: {len(hub.tenants)} tenant(s) in {hub.settings.config_dir / 'tenants'}")
    for slug, tenant in sorted(hub.tenants.items()):
        click.echo(f"  {slug}: {link_and_probe_summary(tenant, hub.probes)}")


def link_and_probe_summary(tenant: Any, probes: Mapping[str, Any]) -> str:
    """Which sources the conversion probe asks, and how links are kept alive: what a shop
    owner asks first ("will it mail someone who already paid?")."""
    from hub.durations import format_duration

    asked = [
        name
        for name, config in sorted(tenant.sources.items())
        if name in probes and config and probes[name].ready(config)
    ]
    if not tenant.probe.enabled:
        probe = "off"
    elif asked:
        probe = f"asks {', '.join(asked)} (timeout {format_duration(tenant.probe.timeout)})"
    else:
        probe = "no source can be asked (no API key)"
    links = tenant.links
    fallback = links.fallback_url or "none (410 page)"
    return (
        f"conversion probe {probe}; no message whose link or offer dies within "
        f"{format_duration(links.margin)}; expired links go to {fallback}"
    )


@click.command("sweep")
def sweep_command() -> None:
    """Re-queue events and steps that Redis lost (the workers also do this periodically).

    Uses the Redis of the running hub and never starts one: a Redis started just for this
    would hold the re-queued work with no worker to run it. Also runs retention (a tenant's
    ``retention`` key), as the workers do hourly."""
    from hub.engine import Engine
    from hub.erasure import purge_all

    hub = current_hub()
    _refuse_bad_settings(hub)
    require_database(hub)
    hub.queues.ping()  # unreachable: one line naming REDIS_URL or the embedded socket
    counts: dict[str, Any] = Engine(hub).sweep()
    purged = purge_all(hub)
    if purged:
        counts["retention"] = purged
    click.echo(json.dumps(counts))


@click.command("log")
@click.option("--tenant", default=None, help="Only this tenant's entries.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    help="Only these statuses (sent, skipped, failed, retrying, unknown, delivered, …); "
    "repeat the option or separate with commas.",
)
@click.option(
    "--since",
    type=SINCE,
    default=None,
    help="Only newer entries: a duration back from now (30m, 2h, 3d) or an ISO date or time "
    "(without a zone: UTC, like the times shown).",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--unmask", is_flag=True, help="Show recipients in full (personal data).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def log_command(
    tenant: str | None,
    statuses: tuple[str, ...],
    since: datetime | None,
    limit: int,
    unmask: bool,
    as_json: bool,
) -> None:
    """Show the newest entries of the delivery log (times in UTC), oldest first."""
    hub = current_hub()
    require_database(hub)
    if tenant is not None:
        known_tenant(hub, tenant, "--tenant", logged=True)
    rows = _log_rows(hub, tenant, _split(statuses), since, limit)
    for row in reversed(rows):
        recipient = (row.recipient or "-") if unmask else mask(row.recipient)
        if as_json:
            click.echo(json.dumps(_log_json(row, recipient)))
            continue
        click.echo(
            f"{row.at:%Y-%m-%d %H:%M:%S} {row.tenant} journey {row.journey_id} step "
            f"{row.step_index} {row.sink or '-'} → {recipient} attempt {row.attempt}: "
            f"{row.status}{' (' + row.reason + ')' if row.reason else ''}"
        )


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip().lower() for value in values for v in value.split(",") if v.strip()]


def _log_rows(
    hub: Any, tenant: str | None, statuses: list[str], since: datetime | None, limit: int
) -> list[Any]:
    """The newest ``limit`` matching rows with their recipient: the delivery's address, or
    for a step skipped before any channel was tried, the journey's e-mail or phone."""
    recipient = sa.func.coalesce(deliveries.c.identity, journeys.c.email, journeys.c.phone)
    query = (
        sa.select(delivery_log, recipient.label("recipient"))
        .select_from(
            delivery_log.outerjoin(
                deliveries, deliveries.c.id == delivery_log.c.delivery_id
            ).outerjoin(journeys, journeys.c.id == delivery_log.c.journey_id)
        )
        .order_by(delivery_log.c.id.desc())
        .limit(limit)
    )
    if tenant is not None:
        query = query.where(delivery_log.c.tenant == tenant)
    if statuses:
        query = query.where(delivery_log.c.status.in_(statuses))
    if since is not None:
        query = query.where(delivery_log.c.at >= since)
    with hub.store.begin() as conn:
        return list(conn.execute(query).all())


def _log_json(row: Any, recipient: str) -> dict[str, Any]:
    return {
        "at": row.at.isoformat(),
        "tenant": row.tenant,
        "journey_id": row.journey_id,
        "step_index": row.step_index,
        "sink": row.sink,
        "channel": row.channel,
        "recipient": recipient if row.recipient else None,
        "delivery_id": row.delivery_id,
        "attempt": row.attempt,
        "status": row.status,
        "reason": row.reason,
    }


def _refuse_bad_settings(hub: Any) -> None:
    """Stop before anything is queued: a bad setting would make every enqueue fail while the
    ingress answered 202."""
    if hub.settings_problems:
        raise click.ClickException(hub.settings_problems[0])


def _report_problems(hub: Any) -> None:
    _refuse_bad_settings(hub)
    # broken tenants were logged in one line each when the app loaded them
    for message in hub.registry.errors:
        click.echo(f"plugin error: {message}", err=True)
