"""The conversion probe: right before a step fires the hub asks the platform whether the
checkout was completed; converted skips the step and closes the journey, a slow, broken or
nonsensical platform never blocks the send and is counted. The stand-ins for Stripe's and
Shopify's APIs assert the exact request (auth, path, API version)."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from test_engine import T0, TENANT, Sim
from ticket_stand_ins import ALLOW_LOOPBACK

from hub import ConversionProbe, ProbeQuestion
from hub.engine.probe import bounded
from hub.metrics import PROBES
from hub.testing import Reply

STEP0 = T0 + timedelta(hours=1)
STRIPE_KEY = "sk_test_51Probe"
SHOPIFY_TOKEN = "shpat_0123456789abcdef"


def stripe_api(session_status: str = "expired", completed_since: list | None = None):
    """Stripe's Checkout Sessions API as documented: retrieve by id, list with filters."""

    def handle(request):
        assert request.method == "GET"
        assert request.headers["Authorization"] == f"Bearer {STRIPE_KEY}"
        assert request.headers["Stripe-Version"] == "2025-01-27.acacia"
        url = urlsplit(request.path)
        if url.path == "/v1/checkout/sessions/cs_1":
            assert url.query == ""
            return Reply(
                200, {"id": "cs_1", "object": "checkout.session", "status": session_status}
            )
        assert url.path == "/v1/checkout/sessions"
        assert dict(parse_qsl(url.query)) == {
            "customer_details[email]": "jane@example.com",
            "status": "complete",
            "created[gte]": str(int(T0.timestamp())),
            "limit": "1",
        }
        return Reply(200, {"object": "list", "data": completed_since or [], "has_more": False})

    return handle


def shopify_api(completed_at: str | None):
    """Shopify's GraphQL Admin API: one POST per question, the token in its own header."""

    def handle(request):
        assert request.method == "POST"
        assert request.path == "/admin/api/2026-07/graphql.json"
        assert request.headers["X-Shopify-Access-Token"] == SHOPIFY_TOKEN
        assert request.headers["Content-Type"] == "application/json"
        body = request.json()
        assert "completedAt" in body["query"] and "AbandonedCheckout" in body["query"]
        assert body["variables"] == {"id": "gid://shopify/AbandonedCheckout/981820079255243537"}
        node = {"id": body["variables"]["id"], "completedAt": completed_at}
        return Reply(200, {"data": {"node": node}, "extensions": {"cost": {}}})

    return handle


@pytest.fixture
def world(hub_factory, http_stand_in, tmp_path):
    def make(handler, extra: str = "", source: str = "stripe", key: bool = True) -> tuple:
        server = http_stand_in(handler)
        text = TENANT.format(policy="opt_in", extra=extra, outbox=tmp_path / "outbox")
        if source == "stripe" and key:
            text = text.replace(
                'webhook_secret = "whsec_x"',
                f'webhook_secret = "whsec_x"\napi_key = "{STRIPE_KEY}"\napi_base = "{server.url}"',
            )
        if source == "shopify":
            text = text.replace(
                "[sinks.outbox]",
                f'[sources.shopify]\nshop_domain = "acme.myshopify.com"\nclient_secret = "s"\n'
                f'admin_access_token = "{SHOPIFY_TOKEN}"\nadmin_base = "{server.url}"\n\n'
                "[sinks.outbox]",
            )
        return Sim(hub_factory({"acme": text}, ALLOW_LOOPBACK)), server

    return make


def count(source: str, outcome: str) -> float:
    return PROBES.labels(source, outcome)._value.get()


def probe_lines(s: Sim) -> list:
    return [r for r in s.harness.rows("delivery_log") if r.status == "probe_failed"]


def test_stripe_says_complete_so_the_step_is_skipped_and_the_journey_closes(world):
    s, server = world(stripe_api("complete"))
    before = count("stripe", "converted")
    s.event()
    s.run_until(T0 + timedelta(days=2))
    assert s.sent == []
    assert len(server.requests) == 1  # one question: later steps were cancelled with it
    first, second = sorted(s.steps(), key=lambda r: r.step_index)
    assert (first.status, first.reason) == ("skipped", "converted (probe)")
    assert (second.status, second.reason) == ("cancelled", "converted (probe)")
    journey = s.harness.rows("journeys", checkout_id="cs_1")[0]
    assert (journey.status, journey.closed_reason) == ("converted", "converted (probe)")
    assert journey.recovered is False  # nothing was sent: not ours to claim
    assert count("stripe", "converted") == before + 1


def test_stripe_finds_a_completed_session_of_the_customer_since_the_abandonment(world):
    s, server = world(stripe_api("expired", [{"id": "cs_2", "object": "checkout.session"}]))
    s.event()
    s.run_until(STEP0)
    assert s.sent == []
    assert [urlsplit(r.path).path for r in server.requests] == [
        "/v1/checkout/sessions/cs_1",
        "/v1/checkout/sessions",
    ]


def test_stripe_says_not_converted_so_the_step_sends(world):
    s, server = world(stripe_api("expired"))
    before = count("stripe", "open")
    s.event()
    s.run_until(STEP0)
    assert len(s.sent) == 1 and len(server.requests) == 2
    assert probe_lines(s) == []
    assert count("stripe", "open") == before + 1


@pytest.mark.parametrize(
    ("reply", "outcome", "detail"),
    [
        (Reply(500, {"error": {"message": "boom"}}), "error", "HTTP 500"),
        (Reply(200, "<html>maintenance</html>"), "error", "not JSON"),
        (Reply(200, {"object": "balance"}), "error", "not a Checkout Session"),
        (Reply(200, {"object": "checkout.session", "status": "complete"}, delay=3), "timeout", ""),
    ],
)
def test_a_broken_or_slow_platform_never_blocks_the_send_and_is_counted(
    world, reply, outcome, detail
):
    s, _server = world(lambda r: reply, extra='[probe]\ntimeout = "1s"')
    before = count("stripe", outcome)
    s.event()
    started = time.monotonic()
    s.run_until(STEP0)
    assert time.monotonic() - started < 2.5  # bounded by the tenant's timeout, not the API
    assert len(s.sent) == 1
    [line] = probe_lines(s)
    assert line.reason.startswith(f"conversion probe {outcome}") and detail in line.reason
    assert line.reason.endswith("sending anyway")
    assert count("stripe", outcome) == before + 1


def test_a_tenant_can_turn_the_probe_off(world):
    s, server = world(stripe_api("complete"), extra="[probe]\nenabled = false")
    s.event()
    s.run_until(STEP0)
    assert len(s.sent) == 1 and server.requests == []


def test_without_an_api_key_stripe_is_not_asked(world):
    s, server = world(stripe_api("complete"), key=False)
    s.event()
    s.run_until(STEP0)
    assert len(s.sent) == 1 and server.requests == [] and probe_lines(s) == []


SHOPIFY_CHECKOUT = "981820079255243537"


def test_shopify_says_completed_so_the_step_is_skipped(world):
    s, server = world(shopify_api("2026-06-01T10:30:00Z"), source="shopify")
    s.event(checkout=SHOPIFY_CHECKOUT, source="shopify")
    s.run_until(STEP0)
    assert s.sent == [] and len(server.requests) == 1
    assert s.steps()[0].reason == "converted (probe)"


def test_shopify_says_not_completed_so_the_step_sends(world):
    s, server = world(shopify_api(None), source="shopify")
    s.event(checkout=SHOPIFY_CHECKOUT, source="shopify")
    s.run_until(STEP0)
    assert len(s.sent) == 1 and len(server.requests) == 1


def test_a_shopify_graphql_error_is_a_probe_failure(world):
    denied = Reply(200, {"errors": [{"message": "Access denied for abandonedCheckouts"}]})
    s, _server = world(lambda r: denied, source="shopify")
    s.event(checkout=SHOPIFY_CHECKOUT, source="shopify")
    s.run_until(STEP0)
    assert len(s.sent) == 1
    [line] = probe_lines(s)
    assert "Access denied" in line.reason


def test_a_checkout_known_only_by_token_is_not_asked_about(world):
    s, server = world(shopify_api("2026-06-01T10:30:00Z"), source="shopify")
    s.event(checkout="token:abc", source="shopify")
    s.run_until(STEP0)
    assert len(s.sent) == 1 and server.requests == []


def test_the_hub_stops_waiting_for_a_probe_that_ignores_its_timeout():
    class Sleepy(ConversionProbe):
        source = "acme"

        def converted(self, question, config, timeout):
            time.sleep(timeout * 10)
            return True

    question = ProbeQuestion("t", "acme", "c1", None, None, {})
    started = time.monotonic()
    assert bounded(Sleepy(), question, {}, 0.2) == ("timeout", "no answer within 0.2s")
    assert time.monotonic() - started < 0.5


def test_a_conversion_the_probe_finds_after_a_message_counts_as_recovered(world):
    answers = iter(["expired", "complete"])
    status = {"now": "expired"}

    def handle(request):
        if urlsplit(request.path).path == "/v1/checkout/sessions/cs_1":
            status["now"] = next(answers)
        return stripe_api(status["now"])(request)

    s, _server = world(handle)
    s.event(recovery_expires_at=T0 + timedelta(days=30))
    s.run_until(T0 + timedelta(days=2))
    assert [m.step_index for m in s.sent] == [0]
    journey = s.harness.rows("journeys", checkout_id="cs_1")[0]
    assert journey.status == "converted" and journey.recovered is True
    assert (journey.recovered_amount, journey.recovered_currency) == (4999, "EUR")
