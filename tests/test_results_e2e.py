"""Results end to end through the real engine: signed Stripe webhooks at the ingress, an RQ
worker in its own process, mail at a real SMTP server, the customer opening and clicking, a
Stripe purchase recovering the session, and the report (``hub report`` and the API) counting
exactly what happened, by hand:

=========  ==========================  ========  ======  =======  =========
checkout   customer                    messaged  opened  clicked  recovered
=========  ==========================  ========  ======  =======  =========
cs_anna    opts in, clicks, buys 49.99 yes       no      yes      49.99 EUR
cs_ben     opted out at Stripe         no        no      no       no
cs_cleo    opts in, opens the mail     yes       yes     no       no
=========  ==========================  ========  ======  =======  =========
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from samples import stripe_completed, stripe_event, stripe_headers, stripe_session, tenant_toml

from hub import apikeys
from hub.app import create_app
from hub.console import HubGroup
from hub.store import utcnow

CUSTOMERS = {
    "cs_anna": ("anna@example.com", "opt_in"),
    "cs_ben": ("ben@example.com", "opt_out"),
    "cs_cleo": ("cleo@example.com", "opt_in"),
}
EXPECTED_TOTAL = {
    "abandoned": 3,
    "messaged": 2,
    "messages": 2,
    "delivered": 2,
    "bounced": 0,
    "opened": 1,
    "clicked": 1,
    "recovered": 1,
    "recovered_without_message": 0,
    "revenue": {"EUR": 4999},
    "revenue_without_message": {},
    "refunded": {},
    "recovery_rate": 1 / 3,
    "messages_per_recovery": 2.0,
}


def _abandon(harness, session_id: str, email: str, consent: str) -> None:  # noqa: ANN001
    session = stripe_session(session_id, consent={"promotions": consent, "terms_of_service": None})
    session["customer_details"]["email"] = email
    body = stripe_event(event_id=f"evt_expired_{session_id}", session=session)
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202


def _mails(smtp_server) -> dict[str, tuple[str, str]]:  # noqa: ANN001
    """Recipient → (plain text, HTML) of every mail the SMTP server took."""
    return {
        str(mail["To"]): (
            mail.get_body(("plain",)).get_content(),
            mail.get_body(("html",)).get_content(),
        )
        for mail in smtp_server.wait_for_messages(2)
    }


def _path(url_prefix: str, text: str) -> str:
    return re.search(rf"http://hub\.test({url_prefix}[^\s\"'<>]+)", text).group(1)


def test_the_report_counts_what_the_engine_did_from_webhook_to_purchase(hub_factory, smtp_server):
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, consent="not_opted_out")})
    for session_id, (email, consent) in CUSTOMERS.items():
        _abandon(harness, session_id, email, consent)
    harness.start_worker()
    mails = _mails(smtp_server)
    assert sorted(mails) == ["anna@example.com", "cleo@example.com"]

    # cleo's mail client loads the pixel (twice: counted once); anna clicks through to Stripe
    pixel = _path("/o/", mails["cleo@example.com"][1])
    assert [harness.client.get(pixel).status_code for _ in range(2)] == [200, 200]
    link = _path("/r/", mails["anna@example.com"][0])
    assert harness.client.get(link).headers["Location"] == "https://buy.stripe.com/r/test_Xyz123"
    bought = stripe_completed("cs_new_anna", recovered_from="cs_anna", email="anna@example.com")
    assert harness.post("acme", "stripe", bought, stripe_headers(bought)).status_code == 202
    harness.wait_for(
        lambda: harness.rows("journeys", checkout_id="cs_anna")[0].recovered,
        message="anna's journey recovered",
    )

    today = datetime.now(ZoneInfo("Europe/Berlin")).date().isoformat()
    group = HubGroup(create_app=lambda state: create_app(harness.config, create_state=state))
    printed = CliRunner().invoke(
        group, ["report", "acme", "--since", today, "--until", today, "--format", "json"]
    )
    assert printed.exit_code == 0, printed.output
    from_cli = json.loads(printed.output)
    assert from_cli["total"] == EXPECTED_TOTAL

    key, _ = apikeys.create_key(
        harness.hub.store, harness.hub.settings.secret_key, "acme", "", utcnow()
    )
    answer = harness.client.get(
        "/api/v1/reports",
        query_string={"tenant": "acme", "since": today, "until": today, "by": "channel"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200
    assert answer.get_json()["total"] == EXPECTED_TOTAL
    rows = {row["channel"]: row for row in answer.get_json()["rows"]}
    assert (rows["email"]["messaged"], rows["email"]["recovered"]) == (2, 1)
    assert rows["email"]["revenue"] == {"EUR": 4999}
    assert rows[None]["abandoned"] == 1  # ben, never messaged

    [anna] = harness.rows("journeys", checkout_id="cs_anna")
    assert (anna.credit, anna.recovered_amount, anna.recovered_currency) == ("clicked", 4999, "EUR")
