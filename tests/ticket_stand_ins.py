"""Stand-ins for Zendesk, HubSpot and a signed-webhook receiver, plus tenant files for tickets.

Each fake checks every request exactly as the real API documents it (method, path, auth header,
idempotency header, JSON shape) and behaves like the real thing where it matters to us: Zendesk
answers a repeated ``Idempotency-Key`` with the ticket it already made,
the webhook receiver verifies the Standard Webhooks signature with the official package and
dedupes on ``webhook-id``. A request that breaks the documented API is recorded in ``errors``
(tests assert it stays empty) and answered 400.

``script`` holds answers for the next requests: a :class:`~hub.testing.Reply` is answered as is
(nothing is created), :class:`Slow` creates normally but answers late (a read timeout for us),
``None`` answers normally.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from samples import STRIPE_SECRET, stripe_event, stripe_headers, stripe_session
from standardwebhooks.webhooks import Webhook

from hub.testing import RecordedRequest, Reply

ZENDESK_AGENT = "agent@acme.example"
ZENDESK_TOKEN = "zd-token-6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv"
HUBSPOT_TOKEN = "pat-eu1-0a1b2c3d-test-token"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FINAL_STEP_STATUSES = {"sent", "skipped", "failed", "unknown", "cancelled"}
# the stand-ins listen on 127.0.0.1, which a tenant's URL may only reach if the operator says so
ALLOW_LOOPBACK = {"HUB_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"}
# the customer of tests/samples.stripe_session() as sinks see her (context["customer"])
JANE = {
    "email": "jane@example.com",
    "phone": "+4915112345678",
    "first_name": "Jane",
    "last_name": "Doe",
    "name": "Jane Doe",
    "locale": "en",
    "country": "DE",
}


@dataclass
class Slow:
    """Handle the request normally, then wait ``seconds`` before answering."""

    seconds: float = 2.0


class FakeApi:
    """Common bookkeeping: every request, scripted answers, documented-API violations."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.script: list[Reply | Slow | None] = []  # None: answer normally
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.requests.append(request)
            scripted = self.script.pop(0) if self.script else None
            if isinstance(scripted, Reply):
                return scripted
            try:
                reply = self.handle(request)
            except AssertionError as exc:
                self.errors.append(f"{request.method} {request.path}: {exc}")
                return Reply(400, {"error": "stand-in: request breaks the documented API"})
        if isinstance(scripted, Slow):
            reply.delay = scripted.seconds
        return reply

    def handle(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError


def _json_body(request: RecordedRequest) -> Any:
    content_type = request.headers.get("Content-Type", "")
    assert content_type.split(";")[0].strip() == "application/json", content_type
    return json.loads(request.body)


class FakeZendesk(FakeApi):
    """``POST /api/v2/tickets`` with API-token basic auth and ``Idempotency-Key``."""

    PRIORITIES = {"urgent", "high", "normal", "low"}
    TICKET_KEYS = {"subject", "comment", "priority", "requester", "tags", "external_id", "group_id"}

    def __init__(self) -> None:
        super().__init__()
        self.tickets: list[dict] = []  # created tickets, in order
        self.by_key: dict[str, tuple[bytes, dict]] = {}
        self.lookups: list[str] = []  # x-idempotency-lookup of every 201

    def handle(self, request: RecordedRequest) -> Reply:
        assert request.method == "POST", request.method
        assert request.path == "/api/v2/tickets", request.path
        token = base64.b64encode(f"{ZENDESK_AGENT}/token:{ZENDESK_TOKEN}".encode()).decode()
        assert request.headers.get("Authorization") == f"Basic {token}", "API token basic auth"
        key = request.headers.get("Idempotency-Key")
        assert key, "Idempotency-Key header"
        body = _json_body(request)
        assert set(body) == {"ticket"}, set(body)
        ticket = body["ticket"]
        assert set(ticket) <= self.TICKET_KEYS, set(ticket) - self.TICKET_KEYS
        assert isinstance(ticket["subject"], str) and ticket["subject"].strip()
        assert "\n" not in ticket["subject"]
        assert set(ticket["comment"]) == {"body", "public"}, ticket["comment"]
        assert isinstance(ticket["comment"]["body"], str) and ticket["comment"]["body"].strip()
        assert isinstance(ticket["comment"]["public"], bool)
        assert ticket["priority"] in self.PRIORITIES, ticket["priority"]
        if "requester" in ticket:
            assert set(ticket["requester"]) == {"name", "email"}, ticket["requester"]
        assert all(isinstance(t, str) and t and " " not in t for t in ticket["tags"])
        assert isinstance(ticket["external_id"], str)
        if key in self.by_key:
            # Zendesk answers a repeated key with the original response; the request must match
            first_body, created = self.by_key[key]
            assert request.body == first_body, "same Idempotency-Key with a different body"
            self.lookups.append("hit")
            return Reply(201, {"ticket": created}, {"x-idempotency-lookup": "hit"})
        created = {"id": 35436 + len(self.tickets), **ticket, "status": "new"}
        self.tickets.append(created)
        self.by_key[key] = (request.body, created)
        self.lookups.append("miss")
        return Reply(201, {"ticket": created}, {"x-idempotency-lookup": "miss"})


class FakeHubSpot(FakeApi):
    """Contact batch upsert by e-mail, then ``POST /crm/v3/objects/tasks`` or ``…/tickets``."""

    def __init__(self) -> None:
        super().__init__()
        self.contacts: dict[str, str] = {}  # e-mail -> contact id
        self.tasks: list[dict] = []
        self.tickets: list[dict] = []

    def handle(self, request: RecordedRequest) -> Reply:
        assert request.method == "POST", request.method
        assert request.headers.get("Authorization") == f"Bearer {HUBSPOT_TOKEN}"
        body = _json_body(request)
        if request.path == "/crm/v3/objects/contacts/batch/upsert":
            return self._upsert(body)
        if request.path == "/crm/v3/objects/tasks":
            return self._create(body, self.tasks, 9001, 204, self._check_task)
        if request.path == "/crm/v3/objects/tickets":
            return self._create(body, self.tickets, 7001, 16, self._check_ticket)
        raise AssertionError(f"unknown path {request.path}")

    def _upsert(self, body: dict) -> Reply:
        assert set(body) == {"inputs"} and len(body["inputs"]) == 1, body
        entry = body["inputs"][0]
        assert set(entry) == {"id", "idProperty", "properties"}, entry
        assert entry["idProperty"] == "email"
        props = entry["properties"]
        assert props["email"] == entry["id"]
        assert set(props) <= {"email", "firstname", "lastname", "phone"}, props
        new = entry["id"] not in self.contacts
        contact_id = self.contacts.setdefault(entry["id"], str(501 + len(self.contacts)))
        result = {"id": contact_id, "properties": props, "new": new, "archived": False}
        return Reply(200, {"status": "COMPLETE", "results": [result]})

    @staticmethod
    def _check_task(props: dict) -> None:
        assert {"hs_timestamp", "hs_task_subject", "hs_task_body"} <= set(props), props
        assert props["hs_timestamp"].endswith("Z"), props["hs_timestamp"]
        assert props["hs_task_status"] == "NOT_STARTED"
        assert props["hs_task_priority"] in {"LOW", "MEDIUM", "HIGH"}
        assert props["hs_task_type"] in {"TODO", "CALL", "EMAIL"}

    @staticmethod
    def _check_ticket(props: dict) -> None:
        assert {"subject", "content", "hs_pipeline", "hs_pipeline_stage"} <= set(props), props
        assert props["hs_ticket_priority"] in {"LOW", "MEDIUM", "HIGH"}

    def _create(self, body: dict, store: list, first_id: int, type_id: int, check) -> Reply:  # noqa: ANN001
        assert set(body) == {"properties", "associations"}, set(body)
        check(body["properties"])
        for association in body["associations"]:
            assert association["to"]["id"] in self.contacts.values(), association
            assert association["types"] == [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
            ], association["types"]
        created = {"id": str(first_id + len(store)), **body}
        store.append(created)
        return Reply(201, {"id": created["id"], "properties": body["properties"]})


class FakeTicketReceiver(FakeApi):
    """A receiver of the generic ticket webhook: verifies with ``standardwebhooks``."""

    FIELDS = {
        "reason",
        "subject",
        "body",
        "priority",
        "customer",
        "cart",
        "recovery_url",
        "journey_id",
    }

    def __init__(self, secret: str = WEBHOOK_SECRET) -> None:
        super().__init__()
        self.webhook = Webhook(secret)
        self.tickets: dict[str, dict] = {}  # webhook-id -> payload (deduped, as receivers do)

    def handle(self, request: RecordedRequest) -> Reply:
        assert request.method == "POST", request.method
        assert request.path == "/hooks/tickets", request.path
        _json_body(request)
        try:
            payload = self.webhook.verify(request.body, request.headers)
        except Exception as exc:
            raise AssertionError(f"signature does not verify: {exc!r}") from None
        assert set(payload) == self.FIELDS, set(payload) ^ self.FIELDS
        self.tickets.setdefault(request.headers["webhook-id"], payload)
        return Reply(200, {"received": True})


def abandon(
    harness: Any,
    session_id: str = "cs_test_a1B2c3",
    amount: int = 4999,
    *,
    locale: str = "en",
    age: int = 0,
    who: tuple[str | None, str | None] | None = None,
    **fields: Any,
) -> None:
    """Post a signed ``checkout.session.expired`` that happened ``age`` seconds ago.

    The customer is Jane unless ``who`` gives another (e-mail, phone): the hub matches a person
    on e-mail *or* phone, so a different person needs both changed.
    """
    session = stripe_session(
        session_id, amount_total=amount, amount_subtotal=amount, locale=locale, **fields
    )
    if who:
        session["customer_details"]["email"], session["customer_details"]["phone"] = who
    body = stripe_event(
        event_id=f"evt_{session_id}", session=session, created=int(time.time()) - age
    )
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202


def wait_until_steps_settle(harness: Any, count: int, timeout: float = 20.0) -> list:
    """Wait until ``count`` steps exist and none of them is still scheduled or retrying."""

    def settled() -> list | None:
        rows = harness.rows("steps")
        if len(rows) >= count and all(r.status in FINAL_STEP_STATUSES for r in rows):
            return rows
        return None

    return harness.wait_for(settled, timeout, message=f"{count} settled step(s)")


def pause(seconds: float) -> None:
    """Give a wrongly scheduled retry the time to happen before asserting it did not."""
    time.sleep(seconds)


# ------------------------------------------------------------------------------- tenant files


def zendesk_table(base_url: str, **extra: str) -> str:
    lines = [
        "[sinks.zendesk]",
        f'base_url = "{base_url}"',
        f'email = "{ZENDESK_AGENT}"',
        f'api_token = "{ZENDESK_TOKEN}"',
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def hubspot_table(base_url: str, **extra: str) -> str:
    lines = ["[sinks.hubspot]", f'base_url = "{base_url}"', f'access_token = "{HUBSPOT_TOKEN}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def webhook_table(url: str, **extra: str) -> str:
    lines = ["[sinks.ticket_webhook]", f'url = "{url}"', f'secret = "{WEBHOOK_SECRET}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def step(channels: list[str], template: str = "call_prospect", when: str = "") -> str:
    text = f"""
  [[flows.steps]]
  after = "1s"
  channels = {json.dumps(channels)}
  template = "{template}"
"""
    return text + (f"  when = {when}\n" if when else "")


def ticket_tenant(sinks: str, steps: str, staff_locale: str = "en") -> str:
    """A shop selling through Stripe whose flow opens tickets for its sales staff."""
    return f"""
name = "Acme Shoes"
timezone = "Europe/Berlin"
locale = "en"
staff_locale = "{staff_locale}"
currency = "EUR"

[consent]
email = "opt_in"

[sources.stripe]
webhook_secret = "{STRIPE_SECRET}"

{sinks}
[[flows]]
name = "sales"
{steps}
"""
