"""The spine end to end: signed Stripe webhook → ingress → RQ worker → mail at a real SMTP
server."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from samples import stripe_completed, stripe_event, stripe_headers, stripe_session, tenant_toml


def test_stripe_expired_session_sends_localized_recovery_mail(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    body = stripe_event()
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 202
    assert answer.get_json() == {"stored": 1, "duplicates": 0, "ignored": False}

    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    assert mail["To"] == "jane@example.com"
    assert mail["From"] == "Acme <shop@acme.example>"
    assert "Jane" in mail["Subject"] and "Warenkorb" in mail["Subject"]  # customer locale de
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "49,99\xa0€" in text and "49,99\xa0€" in html  # Babel, German formatting
    assert "http://hub.test/r/" in text  # tracked recovery link
    unsubscribe = str(mail["List-Unsubscribe"]).strip()
    assert unsubscribe.startswith("<http://hub.test/u/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Message-ID"].endswith("@acme.example>")

    # the tracked link leads to Stripe's recovery URL and is recorded
    link = text.split("http://hub.test", 1)[1].split()[0]
    redirect = harness.client.get(link)
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == "https://buy.stripe.com/r/test_Xyz123"

    [delivery] = harness.rows("deliveries")
    assert delivery.status == "sent" and delivery.attempts == 1
    statuses = [r.status for r in harness.rows("delivery_log")]
    assert statuses == ["sent", "clicked"]


def test_duplicate_stripe_delivery_five_times_sends_one_mail(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    body = stripe_event()
    answers = [harness.post("acme", "stripe", body, stripe_headers(body)) for _ in range(5)]
    assert [a.status_code for a in answers] == [202] * 5
    assert [a.get_json()["duplicates"] for a in answers] == [0, 1, 1, 1, 1]
    harness.start_worker()
    smtp_server.wait_for_messages(1)
    harness.wait_for(lambda: all(s.status == "sent" for s in harness.rows("steps")))
    time.sleep(2)  # give a wrongly duplicated job time to send a second mail
    assert len(smtp_server.messages) == 1
    assert len(harness.rows("events")) == 1
    assert len(harness.rows("journeys")) == 1


def test_tampered_body_is_rejected_and_sends_nothing(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    body = stripe_event()
    headers = stripe_headers(body)
    tampered = body.replace(b"4999", b"4998")
    answer = harness.post("acme", "stripe", tampered, headers)
    assert answer.status_code == 401
    assert answer.get_json()["code"] == "unverified"
    assert harness.rows("events") == []
    harness.run_burst()
    assert smtp_server.messages == []


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_stale_or_future_timestamp_is_rejected(hub_factory, smtp_server, offset):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    body = stripe_event()
    answer = harness.post(
        "acme", "stripe", body, stripe_headers(body, timestamp=int(time.time()) + offset)
    )
    assert answer.status_code == 401
    assert harness.rows("events") == []


def test_opt_out_sends_nothing_and_records_missing_consent(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, consent="not_opted_out")})
    session = stripe_session(consent={"promotions": "opt_out", "terms_of_service": None})
    body = stripe_event(session=session)
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    harness.wait_for(
        lambda: harness.rows("steps") and harness.rows("steps")[0].status == "skipped",
        message="step skipped",
    )
    [delivery] = harness.rows("deliveries")
    assert delivery.status == "skipped"
    assert delivery.reason == "no consent (email: opt_out)"
    assert any(r.reason == "no consent (email: opt_out)" for r in harness.rows("delivery_log"))
    assert smtp_server.messages == []


def test_unknown_consent_follows_tenant_policy(hub_factory, smtp_server):
    """consent.promotions is null for most EU shops: opt_in policy → nothing is sent."""
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, consent="opt_in")})
    session = stripe_session(consent=None)
    body = stripe_event(session=session)
    harness.post("acme", "stripe", body, stripe_headers(body))
    harness.start_worker()
    harness.wait_for(lambda: harness.rows("deliveries"), message="delivery row")
    [delivery] = harness.rows("deliveries")
    assert delivery.reason == "no consent (email: unknown, tenant requires opt_in)"
    assert smtp_server.messages == []


def test_conversion_before_the_step_fires_sends_nothing(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, after="6s")})
    harness.start_worker()  # listening before the abandonment, so its 6 s are not eaten
    harness.wait_for(lambda: "Listening on" in harness.worker_logs(), message="worker listening")
    body = stripe_event()
    harness.post("acme", "stripe", body, stripe_headers(body))
    [step] = harness.wait_for(lambda: harness.rows("steps"), message="step scheduled")
    done = stripe_completed(recovered_from="cs_test_a1B2c3")
    assert harness.post("acme", "stripe", done, stripe_headers(done)).status_code == 202
    harness.wait_for(lambda: harness.rows("steps")[0].status == "cancelled", message="cancel")
    journey = harness.rows("journeys", checkout_id="cs_test_a1B2c3")[0]
    assert journey.status == "converted"
    time.sleep(max(0.0, (step.due_at - datetime.now(UTC)).total_seconds()) + 1.5)
    assert smtp_server.messages == []
    assert harness.rows("deliveries") == []


def test_conversion_arriving_before_the_abandonment_prevents_any_message(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    done = stripe_completed(recovered_from="cs_test_a1B2c3")
    harness.post("acme", "stripe", done, stripe_headers(done))
    body = stripe_event(created=int(time.time()) - 60)
    harness.post("acme", "stripe", body, stripe_headers(body))
    harness.start_worker()
    harness.wait_for(
        lambda: (
            all(e.status == "processed" for e in harness.rows("events"))
            and len(harness.rows("events")) == 2
        ),
        message="events processed",
    )
    time.sleep(2)
    assert smtp_server.messages == []
    assert harness.rows("steps") == []


def test_smtp_outage_is_retried_and_delivered_when_the_server_returns(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    smtp_server.stop()
    body = stripe_event()
    harness.post("acme", "stripe", body, stripe_headers(body))
    harness.start_worker()
    harness.wait_for(
        lambda: any(r.status == "retrying" for r in harness.rows("delivery_log")),
        message="a retry after connection refused",
    )
    smtp_server.start()
    smtp_server.wait_for_messages(1, timeout=30)
    harness.wait_for(lambda: harness.rows("deliveries")[0].status == "sent", message="sent")
    [delivery] = harness.rows("deliveries")
    assert delivery.attempts >= 2
    log = harness.rows("delivery_log")
    assert log[0].status == "retrying" and "unreachable" in log[0].reason
    assert log[-1].status == "sent"
    assert len(smtp_server.messages) == 1


def test_one_click_unsubscribe_stops_the_journey(hub_factory, smtp_server):
    steps = """
  [[flows.steps]]
  after = "1s"
  channels = ["email"]
  template = "reminder"
  [[flows.steps]]
  after = "30s"
  channels = ["email"]
  template = "reminder"
"""
    # the second step far enough out that a slow worker start cannot make both steps due
    # before the unsubscribe below
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, steps=steps)})
    body = stripe_event()
    harness.post("acme", "stripe", body, stripe_headers(body))
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    path = str(mail["List-Unsubscribe"]).strip().strip("<>").replace("http://hub.test", "")
    # a link scanner's GET must not unsubscribe
    assert harness.client.get(path).status_code == 200
    assert harness.rows("journeys")[0].status == "open"
    # the mail client's one-click POST (RFC 8058) does, without a redirect
    answer = harness.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert harness.rows("journeys")[0].status == "unsubscribed"
    assert harness.rows("steps")[1].status == "cancelled"
    time.sleep(4)
    assert len(smtp_server.messages) == 1
    # and a later abandonment of the same person is suppressed on that channel
    again = stripe_event(event_id="evt_2", session=stripe_session("cs_other"))
    harness.post("acme", "stripe", again, stripe_headers(again))
    harness.wait_for(
        lambda: [d for d in harness.rows("deliveries") if d.reason == "unsubscribed"],
        message="suppressed delivery",
    )
    assert len(smtp_server.messages) == 1


def test_redis_outage_keeps_the_event_and_the_sweep_delivers_it(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    good_redis = harness.hub.queues
    from hub.queues import Queues

    harness.hub.queues = Queues(  # nothing listens
        "redis://127.0.0.1:1/0", good_redis.prefix, good_redis.installation
    )
    body = stripe_event()
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 202  # the row is the outbox: stored, not lost
    assert harness.rows("events")[0].status == "stored"
    harness.hub.queues = good_redis
    harness.start_worker()  # its sweep finds the stored event (HUB_SWEEP_AFTER=3s)
    smtp_server.wait_for_messages(1, timeout=30)


def test_database_outage_answers_503_so_the_platform_retries(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url)})
    from hub.store import Store

    harness.hub.store = Store("postgresql://nobody@127.0.0.1:1/none")
    body = stripe_event()
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "30"


def test_wrong_secret_and_another_tenants_secret_are_rejected(hub_factory, smtp_server):
    harness = hub_factory(
        {
            "acme": tenant_toml(smtp_url=smtp_server.url),
            "beta": tenant_toml(
                smtp_url=smtp_server.url, name="Beta", stripe_secret="whsec_beta_secret"
            ),
        }
    )
    body = stripe_event()
    assert (
        harness.post("acme", "stripe", body, stripe_headers(body, "whsec_wrong")).status_code == 401
    )
    # acme's correctly signed delivery posted to beta's URL: beta's secret does not verify it
    assert harness.post("beta", "stripe", body, stripe_headers(body)).status_code == 401
    assert (
        harness.post("acme", "stripe", body, {"Content-Type": "application/json"}).status_code
        == 401
    )
    assert harness.rows("events") == []
