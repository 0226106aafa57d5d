"""Observability as production runs it: `gunicorn -c python:hub.gunicorn_config --workers 2`
plus a `hub worker` on the same host, metrics summed over every process, logs as JSON lines
with no e-mail, phone or secret in them."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading

import requests
from prometheus_client.parser import text_string_to_metric_families
from samples import stripe_event, stripe_headers, stripe_session, tenant_toml

from hub.testing import wait_for


def scrape(base: str, token: str | None = None) -> dict[tuple[str, frozenset], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.get(f"{base}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def abandonment(session_id: str, email: str, phone: str = "+4915112345678") -> bytes:
    session = stripe_session(session_id)
    session["customer_details"] = {**session["customer_details"], "email": email, "phone": phone}
    return stripe_event(event_id=f"evt_{session_id}", session=session)


def post_all(requests_to_send: list[tuple[str, bytes, dict]]) -> list[int]:
    """Each on its own connection and thread, so both gunicorn workers take some."""
    codes: list[int] = [0] * len(requests_to_send)

    def send(i: int, url: str, body: bytes, headers: dict) -> None:
        codes[i] = requests.post(url, data=body, headers=headers, timeout=10).status_code

    threads = [
        threading.Thread(target=send, args=(i, *request))
        for i, request in enumerate(requests_to_send)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def test_metrics_are_exact_sums_over_gunicorn_workers_and_hub_worker(hub_factory, smtp_server):
    token = secrets.token_urlsafe(12)
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url)}, settings={"HUB_METRICS_TOKEN": token}
    )
    first = abandonment("cs_one", "one@example.com", "+4915111111111")
    second = abandonment("cs_two", "two@example.com", "+4915122222222")
    base = f"http://127.0.0.1:{harness.start_web(workers=2)}"
    master = harness.webs[-1]
    hook = f"{base}/webhooks/acme/stripe"
    batch = [(hook, first, stripe_headers(first)), (hook, second, stripe_headers(second))]
    assert post_all(batch) == [202, 202]
    again = [(hook, first, stripe_headers(first))] * 3
    forged = [(hook, first, {"Stripe-Signature": "t=1,v1=00"})] * 4
    strangers = [(f"{base}/webhooks/nobody-{i}/stripe", first, {}) for i in range(2)]
    assert post_all(again + forged + strangers) == [202] * 3 + [401] * 4 + [404] * 2
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 401

    before = scrape(base, token)
    # two events wait in the queue: no worker runs yet
    assert value(before, "hub_queue_jobs", queue="events", state="queued") == 2
    assert value(before, "hub_redis_up") == 1

    metrics_dir = harness.root / "var" / "metrics"  # gunicorn_config's default
    harness.config["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    harness.start_worker()
    smtp_server.wait_for_messages(2)
    harness.wait_for(lambda: all(s.status == "sent" for s in harness.rows("steps")))
    harness.stop_workers()  # the worker is gone; its counts stay in the shared directory

    # a recycled web worker: its counts are folded into the archive, not lost
    children = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True)
    recycled = int(children.stdout.split()[0])
    os.kill(recycled, signal.SIGTERM)
    # the master folds dead processes' files when the worker exits: under load that may come
    # a moment after the worker's own files are gone (or it may never have had a counter)
    archive = metrics_dir / "counter_archive.db"
    wait_for(
        lambda: not list(metrics_dir.glob(f"*_{recycled}.db")) and archive.exists(),
        20,
        message="files folded into the archive",
    )
    after = scrape(base, token)
    harness.stop_webs()

    webhooks = "hub_webhook_requests_total"
    labels = {"tenant": "acme", "source": "stripe"}
    assert value(after, webhooks, **labels, outcome="accepted", reason="accepted", code="202") == 2
    assert value(after, webhooks, **labels, outcome="accepted", reason="duplicate", code="202") == 3
    assert (
        value(after, webhooks, **labels, outcome="rejected", reason="bad_signature", code="401")
        == 4
    )
    unknown = dict(tenant="_unknown", source="stripe", outcome="rejected", code="404")
    assert value(after, webhooks, **unknown, reason="unknown_tenant") == 2
    assert not any("nobody" in str(labels) for _name, labels in after)  # bounded labels
    assert value(after, "hub_events_total", **labels, result="stored") == 2
    assert value(after, "hub_events_total", **labels, result="duplicate") == 3
    assert value(after, "hub_ingest_seconds_count", source="stripe") == 11
    assert value(after, "hub_ingest_seconds_bucket", source="stripe", le="+Inf") == 11

    sent = dict(tenant="acme", sink="email", outcome="sent", reason="none")
    assert value(after, "hub_deliveries_total", **sent) == 2
    assert value(after, "hub_step_lateness_seconds_count") == 2
    buckets = [n for n, labels in after if n == "hub_step_lateness_seconds_bucket"]
    assert len(buckets) == 13  # twelve bounds and +Inf
    assert value(after, "hub_step_lateness_seconds_bucket", le="+Inf") == 2
    # what Redis holds now (the stopped worker's sweep may have re-queued a slow event)
    queues = harness.hub.queues
    waiting = queues.events.count + queues.queued_events()  # checks + handed-off events
    assert value(after, "hub_queue_jobs", queue="events", state="queued") == waiting
    assert value(after, "hub_queue_jobs", queue="steps", state="queued") == queues.steps.count


CANARY_HEX = secrets.token_hex(6)


def test_no_email_phone_or_secret_reaches_any_log_line_of_any_process(hub_factory, smtp_server):
    email = f"canary{CANARY_HEX}@mail-{CANARY_HEX}.test"
    phone = "+49151" + str(int(CANARY_HEX, 16))[-8:].rjust(8, "7")
    webhook_secret = f"whsec_canary{CANARY_HEX}"
    secret_key = f"key-canary-{CANARY_HEX}"
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, stripe_secret=webhook_secret)},
        settings={"HUB_LOG_FORMAT": "json", "HUB_LOG_LEVEL": "DEBUG", "HUB_SECRET_KEY": secret_key},
    )
    body = abandonment("cs_canary", email, phone)
    json_logs = {"HUB_LOG_FORMAT": "json", "HUB_LOG_LEVEL": "DEBUG"}
    port = harness.start_web(2, "--access-logfile", "-", "--log-level", "debug", env=json_logs)
    base = f"http://127.0.0.1:{port}"
    # a platform that puts the customer and a secret into the query string
    query = f"email={email}&phone={phone}&token={webhook_secret}"
    hook = f"{base}/webhooks/acme/stripe?{query}"
    headers = stripe_headers(body, webhook_secret)
    assert requests.post(hook, data=body, headers=headers, timeout=10).status_code == 202
    assert requests.post(hook, data=body, headers={}, timeout=10).status_code == 401
    harness.config["PROMETHEUS_MULTIPROC_DIR"] = str(harness.root / "var" / "metrics")
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    assert mail["To"] == email
    harness.wait_for(lambda: all(s.status == "sent" for s in harness.rows("steps")))
    harness.stop_workers()
    harness.stop_webs()
    cli = subprocess.run(
        [sys.executable, "-m", "hub", "sweep"],
        env={**os.environ, **{k: str(v) for k, v in harness.config.items()}},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    (harness.root / "cli.log").write_text(cli.stdout + cli.stderr)

    lines = [
        (log.name, line)
        for log in sorted(harness.root.glob("*.log"))
        for line in log.read_text().splitlines()
    ]
    by_file = {name for name, _ in lines}
    assert {"web-0.log", "worker-0.log", "cli.log"} <= by_file
    for name, line in lines:
        record = json.loads(line)  # every line of every process is one JSON object
        assert isinstance(record, dict), (name, line)
    text = "\n".join(line for _, line in lines)
    for canary in (email, f"canary{CANARY_HEX}", phone, phone[1:], webhook_secret, secret_key):
        assert canary not in text, canary
    # not vacuous: the values were there (SQL parameters at DEBUG, the access line), masked
    assert f"c***@mail-{CANARY_HEX}.test" in text
    assert phone[:3] + "*" * (len(phone) - 6) + phone[-3:] in text
    assert any(json.loads(line).get("logger") == "gunicorn.access" for _, line in lines)


def test_masking_filter_covers_arguments_extra_fields_and_tracebacks():
    import io
    import logging

    from hub.logs import MaskingFilter, formatter_for

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for("json"))
    handler.addFilter(MaskingFilter(["literal-secret-value"]))
    logger = logging.getLogger("test.masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "to %s via %s",
            "jane.doe@example.com",
            "smtps://shop:hunter22@mail.example:465",
            extra={"customer": {"phone": "+4915112345678", "api_key": "k-123"}, "n": 3},
        )
        try:
            raise ValueError("rejected jane.doe@example.com with literal-secret-value")
        except ValueError:
            logger.exception("send failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "to j***@example.com via smtps://shop:***@mail.example:465"
    assert first["customer"] == {"phone": "+49********678", "api_key": "***"}
    assert first["n"] == 3
    assert "jane.doe" not in second["exc_info"] and "literal-secret-value" not in second["exc_info"]
    assert "j***@example.com with ***" in second["exc_info"]
