"""Web Push end to end: a browser stand-in subscribes through the route, a Stripe abandonment
fires a step, and a push service stand-in over HTTPS checks what RFC 8030/8291/8292 require
(TTL, aes128gcm, a valid ES256 VAPID JWT for its own origin) before the test decrypts the
payload with the browser's private key, exactly as a browser would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import http_ece
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from samples import stripe_event, stripe_headers, tenant_toml

from hub.testing import RecordedRequest, Reply
from hub.testing.tls import write_test_certificates

ROOT = Path(__file__).resolve().parent.parent
SHOP = "https://shop.example"
SUBJECT = "mailto:ops@acme.example"
IDENTITY_SECRET = "test-identity-secret-0123456789"
CHECKOUT = "cs_test_a1B2c3"  # the checkout id of samples.stripe_session()
LOCAL = {"HUB_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"}


def local(tls: dict[str, str]) -> dict[str, str]:
    """Loopback allowed, and the operator's CA bundle trusts the stand-in's test CA."""
    return {**LOCAL, "HUB_CA_BUNDLE": tls["ca"]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


VAPID_KEY = ec.generate_private_key(ec.SECP256R1())
VAPID_PEM = VAPID_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
VAPID_RAW = b64url(VAPID_KEY.private_numbers().private_value.to_bytes(32, "big"))
APPLICATION_SERVER_KEY = b64url(public_bytes(VAPID_KEY))


# ---------------------------------------------------------------------------- TLS for 127.0.0.1


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    paths = write_test_certificates(tmp_path_factory.mktemp("tls"), "webpush test CA")
    return {k: str(v) for k, v in paths.items()}


# ---------------------------------------------------------------------------- stand-ins


@dataclass
class Browser:
    """What ``pushManager.subscribe()`` creates: a P-256 key pair and a 16-byte auth secret."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self) -> dict:
        """``PushSubscription.toJSON()``."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public_bytes(self.key)), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> dict:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


@dataclass
class Push:
    headers: dict[str, str]
    payload: dict
    at: float


class PushService:
    """A push service (RFC 8030) on https://127.0.0.1 that rejects what a real one rejects.

    Missing ``TTL`` or a content encoding other than ``aes128gcm`` → 400; a VAPID header that
    is missing, signed by another key, or whose JWT has a wrong ``aud``/``exp``/``sub`` → 403;
    a body over 4096 bytes → 413; a body the subscriber's key cannot decrypt → 400. Accepted
    pushes are decrypted with the browser's key and kept in ``pushes``; ``script`` replaces
    the answers to the first requests (410, 429 …).
    """

    def __init__(self, browser: Browser | None = None, script: list[Reply] | None = None) -> None:
        self.browser = browser
        self.script = list(script or [])
        self.origin = ""
        self.pushes: list[Push] = []
        self.requests: list[RecordedRequest] = []
        self.rejections: list[str] = []
        self.lock = threading.Lock()

    def handle(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.requests.append(request)
            problem = self.problem(request)
            if problem:
                self.rejections.append(problem[1])
                return Reply(problem[0], {"error": problem[1]})
            if self.script:
                return self.script.pop(0)
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.pushes.append(Push(headers, self.browser.decrypt(request.body), time.time()))
            return Reply(201, b"", {"Location": f"{self.origin}/m/{len(self.pushes)}"})

    def problem(self, request: RecordedRequest) -> tuple[int, str] | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if request.method != "POST" or not request.path.startswith("/push/"):
            return 404, f"no such subscription {request.method} {request.path}"
        if not re.fullmatch(r"\d+", headers.get("ttl", "")):
            return 400, "TTL header missing"
        if headers.get("content-encoding") != "aes128gcm":
            return 400, "Content-Encoding must be aes128gcm"
        vapid = self.vapid_problem(headers.get("authorization", ""))
        if vapid:
            return 403, vapid
        if len(request.body) > 4096:
            return 413, "payload too large"
        try:
            self.browser.decrypt(request.body)
        except Exception as exc:
            return 400, f"cannot decrypt: {exc!r}"
        return None

    def vapid_problem(self, authorization: str) -> str | None:
        match = re.fullmatch(r"vapid t=([\w-]+\.[\w-]+\.[\w-]+),\s*k=([\w-]+)", authorization)
        if not match:
            return f"Authorization is not 'vapid t=…, k=…': {authorization!r}"
        token, key = match.groups()
        if key != APPLICATION_SERVER_KEY:
            return "k is not the application server key the browser subscribed with"
        head, claims, signature = token.split(".")
        if json.loads(unb64url(head)) != {"typ": "JWT", "alg": "ES256"}:
            return f"JWT header {unb64url(head)!r}"
        raw = unb64url(signature)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
        try:
            public.verify(
                encode_dss_signature(
                    int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
                ),
                f"{head}.{claims}".encode(),
                ec.ECDSA(hashes.SHA256()),
            )
        except InvalidSignature:
            return "bad ES256 signature"
        body = json.loads(unb64url(claims))
        if body.get("aud") != self.origin:
            return f"aud {body.get('aud')!r} is not {self.origin!r}"
        if not time.time() < body.get("exp", 0) <= time.time() + 86400:
            return f"exp {body.get('exp')} not within 24 h"
        if body.get("sub") != SUBJECT:
            return f"sub {body.get('sub')!r}"
        return None


@pytest.fixture
def push_service(http_stand_in, tls):
    """``make(script=None) -> (service, browser)`` with the browser's endpoint at the service."""

    def make(script: list[Reply] | None = None) -> tuple[PushService, Browser]:
        service = PushService(script=script)
        server = http_stand_in(service.handle, tls=(tls["cert"], tls["key"]))
        service.origin = server.url
        service.browser = Browser(f"{server.url}/push/{b64url(os.urandom(12))}")
        return service, service.browser

    return make


def webpush_table(key: str = VAPID_PEM, extra: str = "") -> str:
    return f"""
[sinks.webpush]
vapid_private_key = '''{key}'''
vapid_subject = "{SUBJECT}"
allowed_origins = ["{SHOP}"]
identity_secret = "{IDENTITY_SECRET}"
{extra}
"""


def steps(channels: str = '["webpush"]', template: str = "nudge", after: str = "1s") -> str:
    return f"""
  [[flows.steps]]
  after = "{after}"
  channels = {channels}
  template = "{template}"
"""


def subscribe(harness, body: dict, tenant: str = "acme", origin: str | None = SHOP):
    headers = {"Origin": origin} if origin else {}
    return harness.client.post(
        f"/plugins/webpush/{tenant}/subscriptions", json=body, headers=headers
    )


def header(request: RecordedRequest, name: str) -> str | None:
    return {k.lower(): v for k, v in request.headers.items()}.get(name.lower())


def signed(value: str) -> str:
    return hmac.new(IDENTITY_SECRET.encode(), value.encode(), hashlib.sha256).hexdigest()


def abandon(harness) -> None:
    body = stripe_event()
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202


def stored_keys(harness, tenant: str = "acme") -> set[str]:
    return set(harness.hub.registry.services["webpush"].data.find(tenant))


def settled(harness, sink: str = "webpush"):
    rows = [d for d in harness.rows("deliveries") if d.sink == sink]
    return rows if rows and rows[0].status in ("sent", "failed", "unknown") else None


# ---------------------------------------------------------------------------- end to end


def test_subscribed_checkout_gets_an_encrypted_vapid_signed_push(
    hub_factory, push_service, smtp_server, tls
):
    service, browser = push_service()
    table = webpush_table(
        extra='ttl = 3600\nurgency = "high"\nicon = "https://shop.example/icon.png"\n'
        'stage_tags = { payment = "checkout-payment" }',
    )
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, extra=table, steps=steps())},
        settings=local(tls),
    )
    key = harness.client.get("/plugins/webpush/acme/vapid-public-key", headers={"Origin": SHOP})
    assert key.status_code == 200
    assert key.get_json() == {"application_server_key": APPLICATION_SERVER_KEY}
    assert key.headers["Access-Control-Allow-Origin"] == SHOP

    answer = subscribe(harness, {"subscription": browser.subscription(), "checkout_id": CHECKOUT})
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json() == {"subscribed": True, "bindings": ["checkout_id"]}
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP

    abandon(harness)
    harness.start_worker()
    harness.wait_for(lambda: service.pushes, message="a push at the push service")
    [push] = service.pushes
    assert service.rejections == []
    # the exact payload, decrypted with the browser's private key; customer locale is de
    url = push.payload.pop("url")
    beacon = push.payload.pop("click")
    assert beacon.startswith("http://hub.test/c/")
    assert push.payload == {
        "title": "Acme Shoes: Noch unentschlossen?",
        "body": "Ihre Zahlung wurde nicht abgeschlossen. Tippen Sie hier, um weiterzumachen.",
        "icon": "https://shop.example/icon.png",
        "tag": "checkout-payment",
    }
    assert url.startswith("http://hub.test/r/")
    redirect = harness.client.get(url.removeprefix("http://hub.test"))
    assert redirect.headers["Location"] == "https://buy.stripe.com/r/test_Xyz123"

    [delivery] = harness.wait_for(lambda: settled(harness), message="delivery settled")
    assert push.headers["ttl"] == "3600"
    assert push.headers["urgency"] == "high"
    assert push.headers["topic"] == f"delivery-{delivery.id}"
    assert push.headers["content-encoding"] == "aes128gcm"
    assert push.headers["authorization"].startswith("vapid t=")
    assert delivery.status == "sent" and delivery.attempts == 1
    assert delivery.provider_id == f"{service.origin}/m/1"
    assert smtp_server.messages == []


def test_the_service_workers_click_beacon_counts_one_click_per_push(
    hub_factory, push_service, smtp_server, tls
):
    service, browser = push_service()
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, extra=webpush_table(), steps=steps())},
        settings=local(tls),
    )
    subscribe(harness, {"subscription": browser.subscription(), "checkout_id": CHECKOUT})
    abandon(harness)
    harness.start_worker()
    harness.wait_for(lambda: service.pushes, message="a push at the push service")
    [delivery] = harness.wait_for(lambda: settled(harness), message="delivery settled")
    beacon = service.pushes[0].payload["click"].removeprefix("http://hub.test")

    # the service worker posts without CORS (mode: "no-cors"), perhaps more than once
    answers = [harness.client.post(beacon) for _ in range(2)]
    assert [a.status_code for a in answers] == [204, 204]
    [click] = harness.rows("tracking_events")
    assert (click.kind, click.delivery_id, click.journey_id) == (
        "clicked",
        delivery.id,
        delivery.journey_id,
    )
    clicks = [r for r in harness.rows("delivery_log") if r.status == "clicked"]
    assert [(r.sink, r.delivery_id) for r in clicks] == [("webpush", delivery.id)] * 2
    # a forged beacon records nothing
    assert harness.client.post(beacon[:-2] + "xx").status_code == 404
    assert len(harness.rows("tracking_events")) == 1


def test_the_service_worker_posts_the_click_beacon_before_opening_the_cart():
    worker = (ROOT / "plugins/webpush/static/abandonment-hub-sw.js").read_text()
    click = worker[worker.index('"notificationclick"') :]
    assert 'fetch(data.click, { method: "POST", mode: "no-cors", keepalive: true })' in click
    assert "openWindow(data.url)" in click
    assert "click: data.click" in worker  # kept from the push payload into the notification


def test_gone_subscription_is_deleted_and_the_step_falls_back_to_email(
    hub_factory, push_service, smtp_server, tls
):
    service, browser = push_service(script=[Reply(410, b"push subscription has unsubscribed")])
    harness = hub_factory(
        {
            "acme": tenant_toml(
                smtp_url=smtp_server.url,
                extra=webpush_table(),
                steps=steps('["webpush", "email"]', template="reminder"),
            )
        },
        settings=local(tls),
    )
    email = "Jane@Example.com"  # bindings are case-insensitive, the HMAC is over lower case
    answer = subscribe(
        harness,
        {
            "subscription": browser.subscription(),
            "email": email,
            "email_hmac": signed(email.lower()),
        },
    )
    assert answer.status_code == 201, answer.get_json()
    assert len(stored_keys(harness)) == 2  # the subscription and its e-mail binding

    abandon(harness)
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    assert mail["To"] == "jane@example.com"
    webpush = harness.wait_for(lambda: settled(harness), message="webpush settled")[0]
    assert webpush.status == "failed"
    assert webpush.reason.startswith("subscription gone (HTTP 410")
    assert len(service.requests) == 1 and service.rejections == []
    assert stored_keys(harness) == set()


def test_rate_limited_push_is_retried_after_retry_after_with_the_same_topic(
    hub_factory, push_service, smtp_server, tls
):
    service, browser = push_service(script=[Reply(429, b"slow down", {"Retry-After": "1"})])
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, extra=webpush_table(), steps=steps())},
        settings=local(tls),
    )
    subscribe(harness, {"subscription": browser.subscription(), "checkout_id": CHECKOUT})
    abandon(harness)
    harness.start_worker()
    [delivery] = harness.wait_for(lambda: settled(harness), message="delivery settled")
    assert delivery.status == "sent" and delivery.attempts == 2
    assert len(service.requests) == 2 and len(service.pushes) == 1
    topics = {header(r, "Topic") for r in service.requests}
    assert topics == {f"delivery-{delivery.id}"}
    log = [(r.status, r.reason) for r in harness.rows("delivery_log")]
    assert log[0][0] == "retrying" and "push service: HTTP 429" in log[0][1]
    assert log[0][1].endswith("retry in 1s")
    assert log[-1] == ("sent", None)


def test_push_that_times_out_is_resent_with_the_same_topic(
    hub_factory, push_service, smtp_server, tls
):
    """A lost answer may mean the push arrived: the Topic makes the resend replace it."""
    service, browser = push_service(script=[Reply(201, b"", delay=2.0)])
    harness = hub_factory(
        {
            "acme": tenant_toml(
                smtp_url=smtp_server.url,
                extra=webpush_table(extra="timeout = 0.5"),
                steps=steps(),
            )
        },
        settings=local(tls),
    )
    subscribe(harness, {"subscription": browser.subscription(), "checkout_id": CHECKOUT})
    abandon(harness)
    harness.start_worker()
    [delivery] = harness.wait_for(lambda: settled(harness), message="delivery settled")
    assert delivery.status == "sent" and delivery.attempts == 2
    assert len(service.requests) == 2
    assert {header(r, "Topic") for r in service.requests} == {f"delivery-{delivery.id}"}
    first = harness.rows("delivery_log")[0]
    assert first.status == "retrying"
    assert "no answer after sending (ReadTimeout); repeating it is safe" in first.reason


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(413, b"too big"), "payload too large for the push service (HTTP 413"),
        (Reply(403, b"bad jwt"), "VAPID or headers (HTTP 403"),
        (
            Reply(307, b"", {"Location": "/push/elsewhere"}),
            "redirected (HTTP 307",
        ),
    ],
    ids=["413", "403", "redirect"],
)
def test_permanent_push_failures_are_not_retried_and_keep_the_subscription(
    hub_factory, push_service, smtp_server, tls, reply, reason
):
    service, browser = push_service(script=[reply])
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, extra=webpush_table(), steps=steps())},
        settings=local(tls),
    )
    # bound by customer id: Stripe's client_reference_id is the customer's external_id
    answer = subscribe(
        harness,
        {
            "subscription": browser.subscription(),
            "customer_id": "cart_8812",
            "customer_id_hmac": signed("cart_8812"),
        },
    )
    assert answer.status_code == 201, answer.get_json()
    abandon(harness)
    harness.start_worker()
    [delivery] = harness.wait_for(lambda: settled(harness), message="delivery settled")
    assert delivery.status == "failed" and delivery.attempts == 1
    assert reason in delivery.reason
    time.sleep(1.5)  # a wrong retry or a followed redirect would show up here
    assert len(service.requests) == 1
    assert len(stored_keys(harness)) == 2


def test_a_push_service_whose_ca_the_operator_does_not_trust_is_a_permanent_failure(
    hub_factory, push_service, smtp_server, tls
):
    service, browser = push_service()
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, extra=webpush_table(), steps=steps())},
        settings=LOCAL,  # no HUB_CA_BUNDLE: the stand-in's test CA is unknown
    )
    subscribe(harness, {"subscription": browser.subscription(), "checkout_id": CHECKOUT})
    abandon(harness)
    harness.start_worker()
    [delivery] = harness.wait_for(lambda: settled(harness), message="delivery settled")
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "TLS certificate not trusted" in delivery.reason and "HUB_CA_BUNDLE" in delivery.reason
    assert service.pushes == []


def test_the_deprecated_per_tenant_ca_bundle_still_trusts_its_ca(
    hub_factory, push_service, smtp_server, tls
):
    service, browser = push_service()
    table = webpush_table(extra=f'ca_bundle = "{tls["ca"]}"')
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, extra=table, steps=steps())},
        settings=LOCAL,
    )
    subscribe(harness, {"subscription": browser.subscription(), "checkout_id": CHECKOUT})
    abandon(harness)
    harness.start_worker()
    [delivery] = harness.wait_for(lambda: settled(harness), message="delivery settled")
    assert delivery.status == "sent" and len(service.pushes) == 1


def test_push_to_a_private_address_is_refused_without_the_operator_setting(
    hub_factory, push_service, smtp_server, tls
):
    service, browser = push_service()
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=smtp_server.url, extra=webpush_table(), steps=steps())}
    )
    subscribe(harness, {"subscription": browser.subscription(), "checkout_id": CHECKOUT})
    abandon(harness)
    harness.start_worker()
    [delivery] = harness.wait_for(lambda: settled(harness), message="delivery settled")
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "destination refused" in delivery.reason and "non-public address" in delivery.reason
    assert service.requests == []


# ---------------------------------------------------------------------------- the route


@pytest.fixture
def routes(hub_factory, tls):
    """Two tenants with web push (PEM and raw key) and one without; no worker needed."""
    return hub_factory(
        {
            "acme": tenant_toml(smtp_url="smtp://127.0.0.1:1", extra=webpush_table()),
            "beta": tenant_toml(smtp_url="smtp://127.0.0.1:1", extra=webpush_table(key=VAPID_RAW)),
            "gamma": tenant_toml(smtp_url="smtp://127.0.0.1:1"),
        }
    )


def good_subscription() -> dict:
    return Browser("https://fcm.googleapis.com/fcm/send/abc123").subscription()


def without(data: dict, path: str) -> dict:
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    del node[last]
    return data


def with_value(data: dict, path: str, value: object) -> dict:
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


VALID = {"subscription": good_subscription(), "checkout_id": CHECKOUT}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            with_value(VALID, "subscription.endpoint", "http://push.example/x"),
            "subscription.endpoint",
        ),
        (with_value(VALID, "subscription.endpoint", "not a url"), "subscription.endpoint"),
        (
            with_value(VALID, "subscription.endpoint", "https://push.example:99x/x"),
            "subscription.endpoint",
        ),
        (without(VALID, "subscription.keys.auth"), "subscription.keys.auth"),
        (with_value(VALID, "subscription.keys.auth", b64url(b"x" * 15)), "subscription.keys.auth"),
        (
            with_value(VALID, "subscription.keys.p256dh", b64url(b"\x04" * 65)),
            "subscription.keys.p256dh",
        ),
        (with_value(VALID, "subscription.keys.p256dh", "$$$"), "subscription.keys.p256dh"),
        (without(VALID, "subscription"), "subscription"),
        (without(VALID, "checkout_id"), "checkout_id"),
        (with_value(VALID, "email", "jane@example.com"), "email_hmac"),
        (with_value(VALID, "shop", "acme"), "shop"),
    ],
    ids=[
        "http-endpoint",
        "not-a-url",
        "bad-port",
        "no-auth",
        "short-auth",
        "p256dh-off-curve",
        "p256dh-not-base64url",
        "no-subscription",
        "no-binding",
        "email-without-proof",
        "unknown-field",
    ],
)
def test_invalid_registration_is_400_naming_the_field(routes, body, field):
    answer = subscribe(routes, body)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field
    assert answer.get_json()["code"] == "invalid_subscription"
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP  # the page can read the error
    assert stored_keys(routes) == set()


def test_malformed_or_oversized_bodies_are_refused(routes):
    bad = routes.client.post(
        "/plugins/webpush/acme/subscriptions", data=b"{nope", content_type="application/json"
    )
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_json"
    array = routes.client.post("/plugins/webpush/acme/subscriptions", json=[VALID])
    assert array.status_code == 400
    huge = routes.client.post(
        "/plugins/webpush/acme/subscriptions", json={**VALID, "pad": "x" * 20000}
    )
    assert huge.status_code == 413


def test_cors_preflight_answers_only_the_shops_origin(routes):
    ok = routes.client.options(
        "/plugins/webpush/acme/subscriptions",
        headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"},
    )
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "DELETE" in ok.headers["Access-Control-Allow-Methods"]
    assert ok.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert "Origin" in ok.headers["Vary"]
    other = routes.client.options(
        "/plugins/webpush/acme/subscriptions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    # a foreign page's simple (un-preflighted) post is refused, not just unreadable
    refused = subscribe(routes, VALID, origin="https://evil.example")
    assert refused.status_code == 403 and refused.get_json()["code"] == "origin_not_allowed"
    assert stored_keys(routes) == set()
    # the shop's own server (no Origin) may register too
    assert subscribe(routes, VALID, origin=None).status_code == 201


def test_tenants_are_separate_and_unknown_ones_are_404(routes):
    assert subscribe(routes, VALID, tenant="gamma").status_code == 404  # no [sinks.webpush]
    assert subscribe(routes, VALID, tenant="nobody").status_code == 404
    assert routes.client.get("/plugins/webpush/nobody/vapid-public-key").status_code == 404
    assert subscribe(routes, VALID, tenant="acme").status_code == 201
    assert stored_keys(routes, "beta") == set()
    # the raw base64url key of beta is the same key as acme's PEM
    beta = routes.client.get("/plugins/webpush/beta/vapid-public-key")
    assert beta.get_json() == {"application_server_key": APPLICATION_SERVER_KEY}


def test_registering_again_refreshes_and_delete_unsubscribes(routes):
    assert subscribe(routes, VALID).status_code == 201
    again = subscribe(
        routes,
        {
            **VALID,
            "customer_id": "c-42",
            "customer_id_hmac": signed("c-42"),
        },
    )
    assert again.status_code == 200
    assert again.get_json()["bindings"] == ["checkout_id", "customer_id"]
    assert len(stored_keys(routes)) == 3  # one subscription, two bindings
    endpoint = VALID["subscription"]["endpoint"]
    gone = routes.client.delete(
        "/plugins/webpush/acme/subscriptions", json={"endpoint": endpoint}, headers={"Origin": SHOP}
    )
    assert gone.status_code == 204
    assert gone.headers["Access-Control-Allow-Origin"] == SHOP
    assert stored_keys(routes) == set()
    missing = routes.client.delete(
        "/plugins/webpush/acme/subscriptions", json={"subscription": {"endpoint": endpoint}}
    )
    assert missing.status_code == 404


def test_bad_vapid_key_is_a_config_error_naming_the_key(hub_factory, tls):
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url="smtp://127.0.0.1:1", extra=webpush_table(key="nope"))}
    )
    issues = [str(i) for i in harness.hub.config_issues]
    assert any("sinks.webpush.vapid_private_key" in i for i in issues), issues


def test_default_templates_render_in_english_and_german(routes):
    """Every stock step has a short webpush title and body in en and de."""
    context = {
        "customer": {"first_name": "Jane", "name": "Jane Doe"},
        "cart": {
            "total_display": "€49.99",
            "items": [{"name": "Red Shoes", "quantity": 1}, {"name": "Socks", "quantity": 2}],
        },
        "recovery_url": "http://hub.test/r/x",
        "offer": {"promo_code": "COMEBACK10"},
        "unsubscribe_url": "http://hub.test/u/x",
        "tenant": {"slug": "acme", "name": "Acme Shoes", "support": None},
        "stage": "cart",
    }
    seen = {}
    for name in ("nudge", "reminder", "discount"):
        for locale in ("en", "de"):
            used, parts = routes.hub.renderer.render("acme", name, "webpush", [locale], context)
            assert used == locale and set(parts) == {"title", "body"}
            assert "Acme Shoes" in parts["title"] and len(parts["title"]) <= 60
            assert 0 < len(parts["body"].strip()) <= 160
            seen[(name, locale)] = parts
    assert "COMEBACK10" in seen[("discount", "de")]["body"]
    bare = {**context, "customer": {"first_name": None}, "cart": None, "offer": None, "stage": None}
    for name in ("nudge", "reminder", "discount"):
        for locale in ("en", "de"):
            _, parts = routes.hub.renderer.render("acme", name, "webpush", [locale], bare)
            assert parts["title"].strip() and parts["body"].strip()
    assert "Red Shoes und 1 weitere" in seen[("reminder", "de")]["body"]


def test_docs_carry_the_scripts_the_blueprint_serves(routes):
    """docs/webpush.md shows the same snippet and service worker the hub serves."""
    docs = (ROOT / "docs" / "webpush.md").read_text()
    static = ROOT / "plugins" / "webpush" / "static"
    for name in ("abandonment-hub-push.js", "abandonment-hub-sw.js"):
        text = (static / name).read_text()
        assert text.strip() in docs, name
        served = routes.client.get(f"/plugins/webpush/static/{name}")
        assert served.status_code == 200
        assert served.mimetype in ("text/javascript", "application/javascript")
        assert served.get_data(as_text=True) == text
