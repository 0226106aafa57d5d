"""How the three ticket sinks classify what the network does to them, called directly.

Each test hands one rendered ticket to a real sink instance inside the hub's app context and
points it at a real local server (or at nothing): no worker is needed to see whether a failure
is permanent, retryable or of unknown outcome. The end-to-end files show the engine acting on it.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from ticket_stand_ins import (
    HUBSPOT_TOKEN,
    JANE,
    WEBHOOK_SECRET,
    ZENDESK_AGENT,
    ZENDESK_TOKEN,
    FakeHubSpot,
    FakeTicketReceiver,
    FakeZendesk,
    Slow,
)

from hub import OutboundMessage, OutcomeUnknown, PermanentError, RetryableError
from hub.outbound import retry_after_seconds
from hub.testing import Reply
from hub.tickets import UNKNOWN_PROSPECT
from plugins.hubspot.sink import HubSpotConfig
from plugins.ticket_webhook.sink import TicketWebhookConfig
from plugins.zendesk.sink import ZendeskConfig

TENANT = """
name = "Acme Shoes"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"
"""


def config_for(sink: str, base_url: str, timeout: float = 10.0) -> dict:
    """The sink's loaded config, through its own schema, pointing at ``base_url``."""
    if sink == "zendesk":
        raw = {"base_url": base_url, "email": ZENDESK_AGENT, "api_token": ZENDESK_TOKEN}
        return ZendeskConfig().load({**raw, "timeout": timeout})
    if sink == "hubspot":
        raw = {"base_url": base_url, "access_token": HUBSPOT_TOKEN, "timeout": timeout}
        return HubSpotConfig().load(raw)
    raw = {"url": f"{base_url}/hooks/tickets", "secret": WEBHOOK_SECRET, "timeout": timeout}
    return TicketWebhookConfig().load(raw)


def fake_for(sink: str):  # noqa: ANN201
    return {"zendesk": FakeZendesk, "hubspot": FakeHubSpot}.get(sink, FakeTicketReceiver)()


def rendered_ticket(delivery_id: int = 41) -> OutboundMessage:
    return OutboundMessage(
        tenant="acme",
        journey_id=7,
        step_index=0,
        delivery_id=delivery_id,
        channel="ticket",
        to="jane@example.com",
        locale="en",
        parts={"subject": "Call this prospect: Jane Doe (€250.00)\n", "txt": "Call Jane.\n"},
        context={
            "customer": JANE,
            "cart": {"total": 25000, "currency": "EUR", "total_display": "€250.00", "items": []},
            "recovery_url": "http://hub.test/r/token",
        },
        template="call_prospect",
    )


@pytest.fixture
def hub_app(hub_factory):  # noqa: ANN001, ANN201
    """A hub whose operator allows loopback, so stand-ins on 127.0.0.1 are reachable."""
    return hub_factory({"acme": TENANT}, settings={"HUB_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"})


def send(harness, sink: str, config: dict, message: OutboundMessage | None = None):  # noqa: ANN001, ANN201
    with harness.app.app_context():
        return harness.hub.sinks[sink].send(message or rendered_ticket(), config)


SINKS = ["zendesk", "hubspot", "ticket_webhook"]


@pytest.mark.parametrize("sink", SINKS)
def test_ticket_sinks_need_no_consent_and_always_have_an_address(hub_app, sink):
    instance = hub_app.hub.sinks[sink]
    assert instance.channel == "ticket" and instance.needs_consent is False
    assert instance.address({"email": "a@b.example", "phone": "+4915112345678"}, {}, {}) == (
        "a@b.example"
    )
    assert instance.address({"email": None, "phone": "+4915112345678"}, {}, {}) == "+4915112345678"
    assert instance.address({"email": None, "phone": None}, {}, {}) == UNKNOWN_PROSPECT


@pytest.mark.parametrize("sink", SINKS)
def test_a_redirect_is_permanent_and_never_followed(hub_app, http_stand_in, sink):
    elsewhere = http_stand_in(fake_for(sink))
    fake = fake_for(sink)
    fake.script = [Reply(302, b"", {"Location": f"{elsewhere.url}/hooks/tickets"})] * 2
    server = http_stand_in(fake)
    with pytest.raises(PermanentError, match=r"HTTP 302 redirect to .* not followed"):
        send(hub_app, sink, config_for(sink, server.url))
    assert len(fake.requests) == 1
    assert elsewhere.requests == []


@pytest.mark.parametrize(
    "host",
    ["127.1", "2130706433", "0x7f000001", "localhost", "[::1]", "169.254.169.254", "10.0.0.1"],
)
def test_private_and_loopback_destinations_are_refused_without_the_operator(
    hub_factory, http_stand_in, host
):
    """The check runs on what DNS returns, so every spelling of 127.0.0.1 is caught."""
    harness = hub_factory({"acme": TENANT})  # HUB_ALLOW_PRIVATE_NETWORKS unset
    receiver = FakeTicketReceiver()
    server = http_stand_in(receiver)
    port = server.server.server_address[1]
    config = config_for("ticket_webhook", f"http://{host}:{port}")
    with pytest.raises(PermanentError, match="destination refused: .*non-public address"):
        send(harness, "ticket_webhook", config)
    assert receiver.requests == []


def test_metadata_host_name_is_refused_before_any_lookup(hub_app):
    config = config_for("ticket_webhook", "http://metadata.google.internal")
    with pytest.raises(PermanentError, match="cloud metadata host"):
        send(hub_app, "ticket_webhook", config)


@pytest.mark.parametrize(
    ("sink", "script", "expected"),
    [
        ("zendesk", [Slow(1.5)], RetryableError),  # Idempotency-Key: Zendesk dedupes
        ("ticket_webhook", [Slow(1.5)], RetryableError),  # receivers dedupe on webhook-id
        ("hubspot", [Slow(1.5)], RetryableError),  # the contact upsert is harmless to repeat
        ("hubspot", [None, Slow(1.5)], OutcomeUnknown),  # the task create is not
    ],
    ids=["zendesk", "ticket_webhook", "hubspot-upsert", "hubspot-create"],
)
def test_read_timeout_is_retryable_only_where_repeating_is_harmless(
    hub_app, http_stand_in, sink, script, expected
):
    fake = fake_for(sink)
    fake.script = list(script)
    server = http_stand_in(fake)
    with pytest.raises(expected, match="no answer after sending"):
        send(hub_app, sink, config_for(sink, server.url, timeout=0.5))


@pytest.mark.parametrize("sink", SINKS)
def test_a_refused_connection_is_retryable_because_nothing_was_sent(hub_app, sink):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableError, match="could not connect"):
        send(hub_app, sink, config_for(sink, f"http://127.0.0.1:{port}"))


def test_an_unresolvable_host_is_retryable_not_unknown(hub_app):
    """DNS failed, so HubSpot cannot have the task: retry, even though HubSpot has no dedupe."""
    with pytest.raises(RetryableError, match="could not connect"):
        send(hub_app, "hubspot", config_for("hubspot", "http://no-such-host.invalid"))


@pytest.mark.parametrize("sink", SINKS)
def test_429_carries_retry_after_as_an_http_date(hub_app, http_stand_in, sink):
    fake = fake_for(sink)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    fake.script = [Reply(429, {"status": "error"}, {"Retry-After": format_datetime(when, True)})]
    server = http_stand_in(fake)
    with pytest.raises(RetryableError) as caught:
        send(hub_app, sink, config_for(sink, server.url))
    assert 27 <= caught.value.retry_after <= 30


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_are_permanent(hub_app, http_stand_in, status):
    fake = FakeHubSpot()
    fake.script = [Reply(status, {"status": "error", "category": "INVALID_AUTHENTICATION"})]
    server = http_stand_in(fake)
    with pytest.raises(PermanentError, match=f"HTTP {status} category: INVALID_AUTHENTICATION"):
        send(hub_app, "hubspot", config_for("hubspot", server.url))


def test_retry_after_parsing():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("1", now) == 1
    assert retry_after_seconds(" 120 ", now) == 120
    assert retry_after_seconds("Wed, 25 Nov 2026 12:00:45 GMT", now) == 45
    assert retry_after_seconds("Wed, 25 Nov 2026 11:00:00 GMT", now) == 0  # in the past
    assert retry_after_seconds("-5", now) is None
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


@pytest.mark.parametrize(
    ("schema", "table", "key"),
    [
        (TicketWebhookConfig, {"url": "http://x.example", "secret": "not-whsec"}, "secret"),
        (TicketWebhookConfig, {"url": "http://x.example", "secret": "whsec_%%%"}, "secret"),
        (TicketWebhookConfig, {"url": "ftp://x.example", "secret": WEBHOOK_SECRET}, "url"),
        (ZendeskConfig, {"subdomain": "acme", "email": ZENDESK_AGENT}, "api_token"),
        (ZendeskConfig, {"subdomain": "acme.evil.example", "oauth_token": "t"}, "subdomain"),
        (
            ZendeskConfig,
            {"subdomain": "acme", "base_url": "http://x", "oauth_token": "t"},
            "subdomain",
        ),
        (ZendeskConfig, {"subdomain": "acme", "oauth_token": "t", "priority": "asap"}, "priority"),
        (HubSpotConfig, {"access_token": "t", "create": "deal"}, "create"),
    ],
)
def test_config_mistakes_are_named_by_key(schema, table, key):
    from marshmallow import ValidationError

    with pytest.raises(ValidationError) as caught:
        schema().load(table)
    assert key in caught.value.messages


def test_zendesk_url_and_auth_from_subdomain_or_oauth():
    from plugins.zendesk.sink import authorization, tickets_url

    token = ZendeskConfig().load(
        {"subdomain": "acme", "email": ZENDESK_AGENT, "api_token": ZENDESK_TOKEN}
    )
    assert tickets_url(token) == "https://acme.zendesk.com/api/v2/tickets"
    assert authorization(token).startswith("Basic ")
    oauth = ZendeskConfig().load({"subdomain": "acme", "oauth_token": "abc"})
    assert authorization(oauth) == "Bearer abc"
