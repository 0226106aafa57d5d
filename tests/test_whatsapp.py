"""WhatsApp sink: template messages to a Cloud API stand-in, fallback to e-mail, status webhooks.

The stand-in checks every request exactly as Meta documents ``POST /{phone-number-id}/messages``
(Cloud API reference): path, bearer token, JSON shape, parameter order, E.164 digits without ``+``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator

import pytest
from samples import STRIPE_SECRET, stripe_event, stripe_headers, stripe_session

from hub import OutboundMessage, OutcomeUnknown, PermanentError, RetryableError
from hub.testing import RecordedRequest, Reply

PHONE_NUMBER_ID = "1122334455667"
TOKEN = "EAAG-test-system-user-token"
APP_SECRET = "app_secret_value"
VERIFY_TOKEN = "verify-me-42"
WAMID = "wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjQ1RkEwQjg5"
TEMPLATE = {
    "name": "cart_reminder",
    "language": "de",
    "body": ["first_name", "cart_total", "recovery_url", "support"],
    "button_url_param": "recovery_url",
}


def graph_error(code: int, message: str = "error", status: int = 400, **extra: object) -> Reply:
    """An error answer in the Graph API's documented shape."""
    error = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": f"details of {code}"},
        "fbtrace_id": "AbCdEf123",
        **extra,
    }
    return Reply(status, {"error": error})


class GraphApi:
    """A Cloud API stand-in: asserts each request, answers the scripted replies, then success."""

    def __init__(self, make_stand_in, replies: list[Reply] | None = None) -> None:  # noqa: ANN001
        self.replies = list(replies or [])
        self.server = make_stand_in(self.handle)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests

    @property
    def api_base(self) -> str:
        return f"{self.server.url}/v26.0"

    def handle(self, request: RecordedRequest) -> Reply:
        assert_cloud_api_request(request)
        if self.replies:
            return self.replies.pop(0)
        to = request.json()["to"]
        return Reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": WAMID, "message_status": "accepted"}],
            },
        )


def assert_cloud_api_request(request: RecordedRequest) -> None:
    """What Meta documents for sending a template (and nothing else)."""
    assert request.method == "POST"
    assert request.path == f"/v26.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    sent = request.json()
    assert set(sent) == {
        "messaging_product",
        "recipient_type",
        "to",
        "type",
        "template",
        "biz_opaque_callback_data",
    }
    assert sent["messaging_product"] == "whatsapp"
    assert sent["recipient_type"] == "individual"
    assert sent["type"] == "template"
    assert sent["to"].isdigit() and not sent["to"].startswith("0")  # E.164 digits, no "+"
    template = sent["template"]
    assert set(template) <= {"name", "language", "components"}
    assert set(template["language"]) == {"code"}
    for component in template.get("components", []):
        assert component["type"] in ("body", "button")
        for parameter in component["parameters"]:
            assert set(parameter) == {"type", "text"} and parameter["type"] == "text"
            assert parameter["text"] and "\n" not in parameter["text"]
        if component["type"] == "button":
            assert component["sub_type"] == "url" and component["index"] == "0"
            assert len(component["parameters"]) == 1  # a URL button has one variable


def tenant_toml(
    smtp_url: str,
    api_base: str,
    channels: str = '["whatsapp", "email"]',
    consent: str = "not_opted_out",
    extra: str = "",
) -> str:
    return f"""
name = "Acme Shoes"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"
support = "help@acme.example"

[consent]
email = "opt_in"
whatsapp = "{consent}"

[sources.stripe]
webhook_secret = "{STRIPE_SECRET}"

[sinks.email]
smtp_url = "{smtp_url}"
from = "Acme <shop@acme.example>"

[sinks.whatsapp]
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "{TOKEN}"
api_base = "{api_base}"
app_secret = "{APP_SECRET}"
verify_token = "{VERIFY_TOKEN}"
read_timeout = 1.0
connect_timeout = 0.5
{extra}
[sinks.whatsapp.templates.reminder]
name = "cart_reminder"
body = ["first_name", "cart_total", "recovery_url", "support"]
button_url_param = "recovery_url"

[[flows]]
name = "default"
  [[flows.steps]]
  after = "1s"
  channels = {channels}
  template = "reminder"
"""


PRIVATE = {"HUB_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"}


@pytest.fixture
def graph_api(http_stand_in) -> GraphApi:  # noqa: ANN001
    return GraphApi(http_stand_in)


def post_abandonment(harness, session: dict | None = None, event_id: str = "evt_1Expired"):  # noqa: ANN001, ANN201
    body = stripe_event(event_id=event_id, session=session)
    answer = harness.post("acme", "stripe", body, stripe_headers(body))
    assert answer.status_code == 202
    return answer


def settled(harness) -> bool:  # noqa: ANN001
    steps = harness.rows("steps")
    return bool(steps) and steps[0].status not in ("scheduled", "retrying")


def by_sink(harness) -> dict:  # noqa: ANN001
    return {d.sink: d for d in harness.rows("deliveries")}


def run_until_email_fallback(harness, smtp_server, session: dict | None = None) -> dict:  # noqa: ANN001
    """Post an abandonment and run a worker until the step's e-mail went out instead."""
    post_abandonment(harness, session)
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    harness.wait_for(lambda: settled(harness), message="step settled")
    assert mail["To"] == "jane@example.com"
    deliveries = by_sink(harness)
    assert deliveries["email"].status == "sent"
    assert harness.rows("steps")[0].status == "sent"
    return deliveries


# ------------------------------------------------------------------------------ end to end


def test_abandoned_checkout_sends_the_mapped_whatsapp_template(hub_factory, smtp_server, graph_api):
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, graph_api.api_base)}, PRIVATE)
    post_abandonment(harness)
    harness.start_worker()
    harness.wait_for(lambda: graph_api.requests, message="a request at the Cloud API")
    harness.wait_for(lambda: by_sink(harness).get("whatsapp", None), message="delivery row")
    harness.wait_for(lambda: by_sink(harness)["whatsapp"].status == "sent", message="sent")

    [request] = graph_api.requests
    sent = request.json()
    link = sent["template"]["components"][0]["parameters"][2]["text"]
    assert link.startswith("http://hub.test/r/")
    journey = harness.rows("journeys")[0]
    delivery = by_sink(harness)["whatsapp"]
    assert (
        sent
        == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "4915112345678",
            "type": "template",
            "template": {
                "name": "cart_reminder",
                "language": {"code": "de"},  # the customer's locale (Stripe session: de)
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Jane"},
                            {"type": "text", "text": "49,99\xa0€"},
                            {"type": "text", "text": link},
                            {"type": "text", "text": "help@acme.example"},
                        ],
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": link[len("http://hub.test/") :]}],
                    },
                ],
            },
            "biz_opaque_callback_data": f"journey:{journey.id}:step:0:delivery:{delivery.id}",
        }
    )
    # the link in the message leads to Stripe's recovery page
    assert harness.client.get(link[len("http://hub.test") :]).headers["Location"] == (
        "https://buy.stripe.com/r/test_Xyz123"
    )
    assert delivery.provider_id == WAMID and delivery.attempts == 1
    assert delivery.identity == "+4915112345678"
    assert "email" not in by_sink(harness)  # the first channel worked: no fallback
    assert smtp_server.messages == []


def test_rate_limit_with_retry_after_is_retried_and_sends_once(
    hub_factory, smtp_server, http_stand_in
):
    api = GraphApi(
        http_stand_in,
        [
            Reply(
                429,
                graph_error(130429, "Rate limit hit", 429).body,
                headers={"Retry-After": "1"},
            )
        ],
    )
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, api.api_base)}, PRIVATE)
    post_abandonment(harness)
    harness.start_worker()
    harness.wait_for(lambda: settled(harness), message="step settled")
    delivery = by_sink(harness)["whatsapp"]
    assert delivery.status == "sent" and delivery.attempts == 2
    assert delivery.provider_id == WAMID
    assert len(api.requests) == 2
    assert api.requests[0].body == api.requests[1].body  # the same message, sent again
    log = [(r.status, r.reason) for r in harness.rows("delivery_log")]
    assert log[0][0] == "retrying"
    assert "130429" in log[0][1] and "retry in 1s" in log[0][1]  # Retry-After honoured
    assert log[-1] == ("sent", None)
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    "reply, expected_reason",
    [
        (graph_error(131026, "Message undeliverable"), "131026"),
        (graph_error(131047, "Re-engagement message"), "131047"),
        (graph_error(132000, "Number of parameters does not match"), "132000"),
        (graph_error(132001, "Template name does not exist in the translation", 404), "132001"),
        (graph_error(131009, "Parameter value is not valid"), "131009"),
        (graph_error(100, "Invalid parameter"), "Graph API error 100"),
        (graph_error(190, "Error validating access token", 401), "190"),
        (graph_error(131048, "Spam rate limit hit"), "131048"),
        (Reply(302, b"", {"Location": "http://169.254.169.254/latest"}), "HTTP 302 redirect"),
    ],
    ids=["131026", "131047", "132000", "132001", "131009", "100", "190", "131048", "302"],
)
def test_permanent_error_falls_back_to_email(
    hub_factory, smtp_server, http_stand_in, reply, expected_reason
):
    api = GraphApi(http_stand_in, [reply])
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, api.api_base)}, PRIVATE)
    whatsapp = run_until_email_fallback(harness, smtp_server)["whatsapp"]
    assert whatsapp.status == "failed"
    assert expected_reason in whatsapp.reason
    assert whatsapp.attempts == 1  # permanent: never retried
    assert len(api.requests) == 1


def test_toll_free_phone_is_unusable_and_falls_back_to_email(hub_factory, smtp_server, graph_api):
    """Stripe accepts the shop's own hotline as a phone; no customer's WhatsApp is on it."""
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, graph_api.api_base)}, PRIVATE)
    session = stripe_session()
    session["customer_details"]["phone"] = "+49 800 12345678"
    whatsapp = run_until_email_fallback(harness, smtp_server, session)["whatsapp"]
    assert whatsapp.status == "failed"
    assert whatsapp.reason.startswith("unusable address: phone +49********678 is a toll-free")
    assert graph_api.requests == []


def test_customer_without_phone_gets_email(hub_factory, smtp_server, graph_api):
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, graph_api.api_base)}, PRIVATE)
    session = stripe_session()
    session["customer_details"]["phone"] = None
    whatsapp = run_until_email_fallback(harness, smtp_server, session)["whatsapp"]
    assert whatsapp.status == "skipped" and whatsapp.reason == "no address"
    assert graph_api.requests == []


def test_whatsapp_needs_consent_under_the_opt_in_policy(hub_factory, smtp_server, graph_api):
    """Stripe never reports WhatsApp consent: with the default opt_in policy, e-mail only."""
    toml = tenant_toml(smtp_server.url, graph_api.api_base, consent="opt_in")
    harness = hub_factory({"acme": toml}, PRIVATE)
    whatsapp = run_until_email_fallback(harness, smtp_server)["whatsapp"]
    assert whatsapp.reason == "no consent (whatsapp: unknown, tenant requires opt_in)"
    assert graph_api.requests == []


def test_read_timeout_is_outcome_unknown_and_not_resent(hub_factory, smtp_server, http_stand_in):
    slow = Reply(200, {"messages": [{"id": WAMID}]}, delay=2.0)  # read_timeout is 1 s
    api = GraphApi(http_stand_in, [slow])
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, api.api_base)}, PRIVATE)
    post_abandonment(harness)
    harness.start_worker()
    harness.wait_for(lambda: settled(harness), message="step settled")
    delivery = by_sink(harness)["whatsapp"]
    assert delivery.status == "unknown"
    assert "no answer after sending (ReadTimeout)" in delivery.reason
    assert harness.rows("steps")[0].status == "unknown"
    time.sleep(3)  # longer than any retry would wait (HUB_RETRY_MAX=5, base 1)
    assert len(api.requests) == 1
    assert smtp_server.messages == []  # it may have arrived: no second message on e-mail


def test_without_private_networks_the_local_api_is_refused(hub_factory, smtp_server, graph_api):
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, graph_api.api_base)})
    whatsapp = run_until_email_fallback(harness, smtp_server)["whatsapp"]
    assert whatsapp.status == "failed" and whatsapp.attempts == 1
    assert "destination refused" in whatsapp.reason and "non-public" in whatsapp.reason
    assert graph_api.requests == []


def test_step_template_without_mapping_fails_and_falls_back(hub_factory, smtp_server, graph_api):
    toml = tenant_toml(smtp_server.url, graph_api.api_base).replace(
        "[sinks.whatsapp.templates.reminder]", "[sinks.whatsapp.templates.other]"
    )
    harness = hub_factory({"acme": toml}, PRIVATE)
    whatsapp = run_until_email_fallback(harness, smtp_server)["whatsapp"]
    assert 'no WhatsApp template mapped for step template "reminder"' in whatsapp.reason
    assert graph_api.requests == []


# ------------------------------------------------------------------------------ status webhooks


def signed(body: bytes, secret: str = APP_SECRET) -> dict:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def status_body(*statuses: tuple[str, str], errors: list | None = None) -> bytes:
    items = []
    for wamid, status in statuses:
        item = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": "4915112345678",
            "biz_opaque_callback_data": "journey:1:step:0:delivery:1",
        }
        if status == "failed":
            item["errors"] = errors or []
        items.append(item)
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "5467539754836534",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "4930123456",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "statuses": items,
                        },
                    }
                ],
            }
        ],
    }
    # Meta escapes non-ASCII; the signature is over these exact bytes
    return json.dumps(payload).encode()


@pytest.fixture
def status_hub(hub_factory, smtp_server, graph_api) -> Iterator:
    yield hub_factory({"acme": tenant_toml(smtp_server.url, graph_api.api_base)}, PRIVATE)


def test_verification_handshake_echoes_the_challenge(status_hub):
    answer = status_hub.client.get(
        "/plugins/whatsapp/acme/status",
        query_string={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == "1158201444"
    assert answer.mimetype == "text/plain"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
    ids=["wrong token", "wrong mode", "nothing"],
)
def test_verification_handshake_is_forbidden_without_the_token(status_hub, query):
    answer = status_hub.client.get("/plugins/whatsapp/acme/status", query_string=query)
    assert answer.status_code == 403
    assert answer.get_json()["code"] == "forbidden"
    assert answer.get_data(as_text=True) != "1"


def test_status_routes_of_an_unknown_tenant_are_404(status_hub):
    assert status_hub.client.get("/plugins/whatsapp/nobody/status").status_code == 404
    body = status_body()
    answer = status_hub.client.post(
        "/plugins/whatsapp/nobody/status", data=body, headers=signed(body)
    )
    assert answer.status_code == 404


def test_status_signature_known_answer_vector(status_hub):
    """the WhatsApp Cloud API reference: secret app_secret_value over this body → this signature."""
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    header = "sha256=5a4ab5d6f46664344f0c573f7e36c822d90e4438ef0281bffeafdc7cc80b4edf"
    answer = status_hub.client.post(
        "/plugins/whatsapp/acme/status",
        data=body,
        headers={"X-Hub-Signature-256": header, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    assert answer.get_json() == {"recorded": 0, "repeated": 0, "unmatched": 0}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha256="},
        {"X-Hub-Signature-256": "sha1=abc"},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": "sha256=ünicode"},
        "other secret",
        "tampered",
    ],
    ids=["missing", "empty", "sha1", "wrong", "non-ascii", "other secret", "tampered"],
)
def test_status_with_bad_signature_is_401_and_records_nothing(status_hub, headers):
    body = status_body((WAMID, "read"))
    if headers == "other secret":
        headers = signed(body, "not the app secret")
    elif headers == "tampered":
        headers = signed(body)
        body = body.replace(b'"read"', b'"sent"')
    answer = status_hub.client.post("/plugins/whatsapp/acme/status", data=body, headers=headers)
    assert answer.status_code == 401
    assert answer.get_json()["code"] == "unverified"
    assert status_hub.rows("delivery_log") == []


def test_signed_garbage_is_400_naming_the_field(status_hub):
    body = b"not json"
    answer = status_hub.client.post(
        "/plugins/whatsapp/acme/status", data=body, headers=signed(body)
    )
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "_body"
    body = b'{"entry": {"not": "a list"}}'
    answer = status_hub.client.post(
        "/plugins/whatsapp/acme/status", data=body, headers=signed(body)
    )
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "entry"


def test_delivered_and_read_are_recorded_and_a_late_sent_does_not_overwrite_read(
    status_hub, graph_api
):
    harness = status_hub
    post_abandonment(harness)
    harness.start_worker()
    harness.wait_for(lambda: settled(harness), message="whatsapp sent")
    assert by_sink(harness)["whatsapp"].status == "sent"

    def post(body: bytes):  # noqa: ANN202
        return harness.client.post("/plugins/whatsapp/acme/status", data=body, headers=signed(body))

    answer = post(status_body((WAMID, "delivered")))
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 1
    assert by_sink(harness)["whatsapp"].status == "delivered"
    # Meta retries and reorders: read, then the same delivered again, then a late sent
    answer = post(status_body((WAMID, "read"), (WAMID, "delivered"), ("wamid.other", "read")))
    assert answer.get_json() == {"recorded": 1, "repeated": 1, "unmatched": 1}
    assert post(status_body((WAMID, "sent"))).get_json()["recorded"] == 1
    delivery = by_sink(harness)["whatsapp"]
    assert delivery.status == "read"
    statuses = [r.status for r in harness.rows("delivery_log", delivery_id=delivery.id)]
    assert statuses == ["sent", "delivered", "read", "sent"]  # each (wamid, status) once


def test_failed_status_is_recorded_with_meta_error(status_hub, graph_api):
    harness = status_hub
    post_abandonment(harness)
    harness.start_worker()
    harness.wait_for(lambda: settled(harness), message="whatsapp sent")
    errors = [
        {
            "code": 131026,
            "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."},
        }
    ]
    body = status_body((WAMID, "failed"), errors=errors)
    answer = harness.client.post("/plugins/whatsapp/acme/status", data=body, headers=signed(body))
    assert answer.get_json()["recorded"] == 1
    delivery = by_sink(harness)["whatsapp"]
    assert delivery.status == "failed"
    assert delivery.reason == "131026 Message undeliverable: Message Undeliverable."


# ------------------------------------------------------------------------------ in process
# The sink called directly (real HTTP to a stand-in, no worker): the classification table.


def message(harness, template: str = "reminder", locale: str = "de", **context) -> OutboundMessage:  # noqa: ANN001
    base = {
        "customer": {"first_name": "Ana", "name": "Ana Silva"},
        "cart": {"total_display": "€49.99"},
        "recovery_url": "http://hub.test/r/tok123",
        "offer": None,
        "tenant": {"slug": "acme", "name": "Acme Shoes", "support": "help@acme.example"},
    }
    base.update(context)
    return OutboundMessage(
        tenant="acme",
        journey_id=7,
        step_index=0,
        delivery_id=9,
        channel="whatsapp",
        to="+4915112345678",
        locale=locale,
        parts={},
        context=base,
        template=template,
    )


def send(harness, msg: OutboundMessage) -> str | None:  # noqa: ANN001
    with harness.app.app_context():
        return harness.hub.sinks["whatsapp"].send(
            msg, harness.hub.tenants["acme"].sinks["whatsapp"]
        )


@pytest.mark.parametrize(
    "reply, expected",
    [
        (graph_error(4, "Application request limit reached"), RetryableError),
        (graph_error(80007, "Rate limit issues"), RetryableError),
        (graph_error(130429, "Rate limit hit", 429), RetryableError),
        (graph_error(131056, "Pair rate limit hit"), RetryableError),
        (graph_error(131000, "Something went wrong", 500), RetryableError),
        (graph_error(131016, "Service unavailable", 503), RetryableError),
        (graph_error(999999, "New code", 400, is_transient=True), RetryableError),
        (Reply(503, b"<html>upstream down</html>"), RetryableError),
        (Reply(429, b""), RetryableError),
        (graph_error(131026, "Message undeliverable", 500), PermanentError),  # code wins
        (graph_error(131049, "Ecosystem engagement"), PermanentError),
        (graph_error(131050, "User stopped marketing messages"), PermanentError),
        (graph_error(131008, "Required parameter is missing"), PermanentError),
        (graph_error(132012, "Parameter format does not match"), PermanentError),
        (graph_error(10, "Permission denied", 403), PermanentError),
        (graph_error(999999, "New code"), PermanentError),
        (Reply(301, b"", {"Location": "https://example.com/"}), PermanentError),
        (Reply(200, {"messaging_product": "whatsapp", "messages": []}), OutcomeUnknown),
        (Reply(200, b"not json"), OutcomeUnknown),
    ],
)
def test_graph_api_answers_are_classified(hub_factory, smtp_server, http_stand_in, reply, expected):
    api = GraphApi(http_stand_in, [reply])
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, api.api_base)}, PRIVATE)
    with pytest.raises(expected):
        send(harness, message(harness))
    assert len(api.requests) == 1


def test_retry_after_as_http_date_is_honoured(hub_factory, smtp_server, http_stand_in):
    from email.utils import formatdate

    later = formatdate(time.time() + 120, usegmt=True)
    api = GraphApi(http_stand_in, [Reply(429, b"", {"Retry-After": later})])
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, api.api_base)}, PRIVATE)
    with pytest.raises(RetryableError) as caught:
        send(harness, message(harness))
    assert 110 <= caught.value.retry_after <= 120


def test_connection_refused_is_retryable(hub_factory, smtp_server):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    harness = hub_factory(
        {"acme": tenant_toml(smtp_server.url, f"http://127.0.0.1:{port}/v26.0")}, PRIVATE
    )
    with pytest.raises(RetryableError, match="could not connect"):
        send(harness, message(harness))


def test_connect_timeout_is_retryable_because_nothing_was_sent(hub_factory, smtp_server):
    """A listener whose accept queue is full drops our SYN: the connect times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        harness = hub_factory(
            {"acme": tenant_toml(smtp_server.url, f"http://127.0.0.1:{port}/v26.0")}, PRIVATE
        )
        started = time.monotonic()
        with pytest.raises(RetryableError):
            send(harness, message(harness))
        assert time.monotonic() - started < 3  # connect_timeout = 0.5 s
    finally:
        for s in (*fillers, server):
            s.close()


def test_one_session_is_reused_across_sends(hub_factory, smtp_server, graph_api):
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, graph_api.api_base)}, PRIVATE)
    for _ in range(3):
        assert send(harness, message(harness)) == WAMID
    assert len(graph_api.requests) == 3
    assert len({r.client_port for r in graph_api.requests}) == 1  # one kept-alive connection


def test_empty_variable_uses_the_default_or_fails_permanently(hub_factory, smtp_server, graph_api):
    defaults = '\n[sinks.whatsapp.templates.named]\nname = "hi"\nbody = ["first_name"]\n'
    defaults += 'defaults = { first_name = "there" }\n'
    harness = hub_factory(
        {"acme": tenant_toml(smtp_server.url, graph_api.api_base, extra=defaults)}, PRIVATE
    )
    anonymous = {"customer": {"first_name": None}}
    send(harness, message(harness, template="named", **anonymous))
    parameters = graph_api.requests[-1].json()["template"]["components"][0]["parameters"]
    assert parameters == [{"type": "text", "text": "there"}]
    with pytest.raises(PermanentError, match="'first_name' is empty"):
        send(harness, message(harness, **anonymous))
    assert len(graph_api.requests) == 1


def test_parameters_lose_new_lines_and_promo_code_fills_a_button(
    hub_factory, smtp_server, graph_api
):
    extra = (
        "\n[sinks.whatsapp.templates.discount]\n"
        'name = "cart_discount"\nlanguages = ["en_US", "de"]\n'
        'body = ["name", "shop", "promo_code"]\nbutton_url_param = "promo_code"\n'
    )
    harness = hub_factory(
        {"acme": tenant_toml(smtp_server.url, graph_api.api_base, extra=extra)}, PRIVATE
    )
    send(
        harness,
        message(
            harness,
            template="discount",
            locale="fr_CA",  # not approved: the first listed translation is used
            customer={"name": "Ana\n\tSilva      Costa"},
            offer={"promo_code": "COMEBACK10"},
        ),
    )
    template = graph_api.requests[-1].json()["template"]
    assert template["language"] == {"code": "en_US"}
    assert template["components"] == [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Ana Silva    Costa"},
                {"type": "text", "text": "Acme Shoes"},
                {"type": "text", "text": "COMEBACK10"},
            ],
        },
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "COMEBACK10"}],
        },
    ]
    send(harness, message(harness, template="discount", locale="de_AT", offer={"promo_code": "X"}))
    assert graph_api.requests[-1].json()["template"]["language"] == {"code": "de"}


@pytest.mark.parametrize(
    "phone, country, expected",
    [
        ("+4915112345678", "DE", "+4915112345678"),
        ("015112345678", "DE", "+4915112345678"),  # national form, the customer's country
        (None, "DE", None),
        ("", None, None),
    ],
)
def test_address_is_the_e164_phone(hub_factory, smtp_server, graph_api, phone, country, expected):
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, graph_api.api_base)}, PRIVATE)
    sink = harness.hub.sinks["whatsapp"]
    config = harness.hub.tenants["acme"].sinks["whatsapp"]
    assert sink.address({"phone": phone, "country": country}, config, {}) == expected


@pytest.mark.parametrize(
    "phone, why",
    [
        ("+4990012345678", "not a valid number"),  # looks like E.164, is no number
        ("+4990012345", "not a valid number"),
        ("+49 900 1234567", "premium-rate"),
        ("+44 9090 123456", "premium-rate"),
        ("call me", "not a valid number"),
    ],
)
def test_unusable_phone_is_a_permanent_error(hub_factory, smtp_server, graph_api, phone, why):
    harness = hub_factory({"acme": tenant_toml(smtp_server.url, graph_api.api_base)}, PRIVATE)
    sink = harness.hub.sinks["whatsapp"]
    config = harness.hub.tenants["acme"].sinks["whatsapp"]
    with pytest.raises(PermanentError, match=why):
        sink.address({"phone": phone, "country": "DE"}, config, {})


@pytest.mark.parametrize(
    "old, new, key, message_part",
    [
        (
            f'phone_number_id = "{PHONE_NUMBER_ID}"',
            'phone_number_id = "+49 30 123"',
            "sinks.whatsapp.phone_number_id",
            "phone number ID",
        ),
        (
            'api_base = "https://graph.facebook.com/v26.0"',
            'api_base = "ftp://graph"',
            "sinks.whatsapp.api_base",
            "https://graph.facebook.com",
        ),
        (
            'body = ["first_name",',
            'body = ["cart_value",',
            "sinks.whatsapp.templates.reminder.body[0]",
            "unknown variable 'cart_value'",
        ),
        (
            'name = "cart_reminder"',
            'name = "Cart Reminder"',
            "sinks.whatsapp.templates.reminder.name",
            "lower-case",
        ),
    ],
)
def test_bad_config_names_the_key(hub_factory, smtp_server, old, new, key, message_part):
    toml = tenant_toml(smtp_server.url, "https://graph.facebook.com/v26.0")
    assert old in toml
    harness = hub_factory({"acme": toml.replace(old, new)})
    issues = [(i.key, i.message) for i in harness.hub.config_issues]
    assert any(k == key and message_part in m for k, m in issues), issues
    assert "acme" not in harness.hub.tenants
