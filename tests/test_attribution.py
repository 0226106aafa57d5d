"""Attribution and tracking: which journey a conversion recovers, which message gets the credit
(clicked > delivered > sent, within the window), refunds, and tracking facts counted once per
message. The engine runs on a controllable clock (test_engine's simulator); the links, the
pixel and the bounce go through real HTTP and a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from samples import stripe_completed, stripe_event, stripe_headers, tenant_toml
from test_engine import T0, TENANT, Sim

from hub.attribution import record_tracking
from hub.engine import link_serializer
from hub.services import record_provider_status
from hub.store import deliveries

WINDOW = timedelta(days=7)  # the tenant's default attribution_window


@pytest.fixture
def sim(hub_factory, tmp_path):
    def make(extra: str = "") -> Sim:
        text = TENANT.format(policy="opt_in", extra=extra, outbox=tmp_path / "outbox")
        return Sim(hub_factory({"acme": text}))

    return make


def _both_steps_sent(s: Sim) -> list:
    """The default flow's two messages: step 0 at T0+1h, step 1 at T0+24h."""
    s.event()
    s.run_until(T0 + timedelta(hours=25))
    rows = sorted(s.harness.rows("deliveries"), key=lambda r: r.step_index)
    assert [r.status for r in rows] == ["sent", "sent"]
    return rows


def _track(s: Sim, delivery, kind: str, at) -> bool:  # noqa: ANN001
    with s.hub.store.begin() as conn:
        row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery.id)).first()
        return record_tracking(conn, s.hub.store, row, kind, at)


def _journey(s: Sim, checkout: str = "cs_1"):  # noqa: ANN202
    [journey] = s.harness.rows("journeys", checkout_id=checkout)
    return journey


# ------------------------------------------------------------------------ credit


def test_the_last_clicked_message_gets_the_credit_over_later_sends(sim):
    s = sim()
    first, second = _both_steps_sent(s)
    _track(s, first, "clicked", T0 + timedelta(hours=2))
    _track(s, second, "delivered", T0 + timedelta(hours=24, minutes=1))
    event_id = s.event("checkout.converted", at=T0 + timedelta(hours=26))
    journey = _journey(s)
    assert journey.status == "converted" and journey.recovered
    assert (journey.credit, journey.credited_delivery_id) == ("clicked", first.id)
    assert (journey.recovered_amount, journey.recovered_currency) == (4999, "EUR")
    assert journey.recovered_at == T0 + timedelta(hours=26)
    assert journey.conversion_event_id == event_id


def test_without_a_click_the_last_delivered_message_wins_over_a_later_send(sim):
    s = sim()
    first, _second = _both_steps_sent(s)
    _track(s, first, "delivered", T0 + timedelta(hours=1, minutes=1))
    s.event("checkout.converted", at=T0 + timedelta(hours=26))
    journey = _journey(s)
    assert (journey.credit, journey.credited_delivery_id) == ("delivered", first.id)


def test_without_click_or_delivery_report_the_last_sent_message_wins(sim):
    s = sim()
    _first, second = _both_steps_sent(s)
    s.event("checkout.converted", at=T0 + timedelta(hours=26))
    journey = _journey(s)
    assert (journey.credit, journey.credited_delivery_id) == ("sent", second.id)


def test_a_conversion_before_any_message_is_recovered_without_message(sim):
    s = sim()
    s.event()
    s.event("checkout.converted", at=T0 + timedelta(minutes=30))
    s.run_until(T0 + timedelta(days=2))
    journey = _journey(s)
    assert s.sent == []
    assert journey.recovered and journey.recovered_amount == 4999
    assert (journey.credit, journey.credited_delivery_id) == ("none", None)


# ------------------------------------------------------------------------ conversion paths


def test_stripe_recovered_from_names_the_recovered_checkout(sim):
    s = sim()
    _first, second = _both_steps_sent(s)
    s.event(
        "checkout.converted",
        checkout="cs_new",
        email="someone.else@example.com",
        recovered_from="cs_1",
        at=T0 + timedelta(hours=26),
        cart={"total": 3000},
    )
    journey = _journey(s)
    assert journey.recovered and (journey.credit, journey.credited_delivery_id) == (
        "sent",
        second.id,
    )
    assert journey.recovered_amount == 3000
    marker = _journey(s, "cs_new")  # the converting checkout's own row: never abandoned
    assert marker.status == "converted" and not marker.recovered


def test_an_order_for_the_same_checkout_recovers_it(sim):
    """Shopify's order carries its checkout id; Digistore24's on_payment the same buyer and
    product id; the generic webhook its checkout_id: the same rule for all."""
    s = sim()
    _both_steps_sent(s)
    s.event("checkout.converted", checkout="cs_1", email=None, at=T0 + timedelta(hours=26))
    assert _journey(s).recovered and _journey(s).credit == "sent"


def test_the_same_person_buying_another_cart_within_the_window_recovers_the_latest(sim):
    s = sim()
    s.event(checkout="cs_old")
    s.now = T0 + timedelta(minutes=10)
    s.event(checkout="cs_1")  # supersedes cs_old
    s.run_until(T0 + timedelta(hours=2))
    s.event("checkout.converted", checkout="order:1", at=T0 + timedelta(hours=3))
    assert _journey(s).recovered and _journey(s).credit == "sent"
    old = _journey(s, "cs_old")
    assert old.status == "converted" and not old.recovered  # one purchase, counted once


@pytest.mark.parametrize(
    ("converted_after", "recovered"),
    [(WINDOW, True), (WINDOW + timedelta(seconds=1), False)],
)
def test_the_identity_rule_holds_up_to_the_window_edge(sim, converted_after, recovered):
    s = sim()
    s.event()
    s.event("checkout.converted", checkout="order:1", at=T0 + converted_after)
    assert _journey(s).recovered is recovered
    assert _journey(s).status == ("converted" if recovered else "open")


@pytest.mark.parametrize(
    ("clicked_before", "credit"),
    [(WINDOW, "clicked"), (WINDOW + timedelta(seconds=1), "none")],
)
def test_a_message_counts_only_within_the_window_before_the_conversion(sim, clicked_before, credit):
    s = sim()
    s.event()
    s.run_until(T0 + timedelta(hours=1))
    [first] = s.harness.rows("deliveries")
    converted = T0 + timedelta(days=30)
    _track(s, first, "clicked", converted - clicked_before)
    # the same checkout converts weeks later: recovered, but credited only inside the window
    s.event("checkout.converted", at=converted)
    assert _journey(s).credit == credit


def test_a_click_after_the_conversion_earns_nothing(sim):
    s = sim()
    s.event()
    s.run_until(T0 + timedelta(hours=1))
    [first] = s.harness.rows("deliveries")
    _track(s, first, "clicked", T0 + timedelta(hours=3))
    s.event("checkout.converted", at=T0 + timedelta(hours=2))
    assert _journey(s).credit == "sent"


# ------------------------------------------------------------------------ refunds


def test_refunds_after_a_recovery_add_up_and_never_exceed_the_revenue(sim):
    s = sim()
    _both_steps_sent(s)
    s.event("checkout.converted", at=T0 + timedelta(hours=26))
    s.event("checkout.refunded", at=T0 + timedelta(days=2), cart={"total": 1000})
    assert _journey(s).refunded_amount == 1000
    s.event("checkout.refunded", at=T0 + timedelta(days=3), cart={"total": 1000, "currency": "USD"})
    assert _journey(s).refunded_amount == 1000  # another currency: recorded, not counted
    s.event("checkout.refunded", at=T0 + timedelta(days=4), cart={"total": 9000})
    journey = _journey(s)
    assert (journey.recovered_amount, journey.refunded_amount) == (4999, 4999)
    assert journey.recovered and journey.credit == "sent"  # the recovery itself stays
    notes = [e.note for e in s.harness.rows("events", kind="checkout.refunded")]
    assert notes[1].endswith("refund in USD, not counted")


def test_a_refund_without_amount_takes_back_the_whole_purchase(sim):
    s = sim()
    s.event()
    s.event("checkout.converted", at=T0 + timedelta(minutes=5))
    s.event("checkout.refunded", at=T0 + timedelta(days=1), cart=None)
    assert _journey(s).refunded_amount == 4999


def test_a_refund_that_arrives_before_its_conversion_is_counted_with_it(sim):
    s = sim()
    s.event()
    s.event("checkout.refunded", at=T0 + timedelta(days=1), cart={"total": 500})
    assert _journey(s).refunded_amount is None
    s.event("checkout.converted", at=T0 + timedelta(minutes=5))
    assert _journey(s).refunded_amount == 500


def test_a_refund_of_an_unrecovered_checkout_changes_nothing(sim):
    s = sim()
    s.event()
    s.event("checkout.refunded", checkout="cs_other", at=T0 + timedelta(days=1))
    assert _journey(s).refunded_amount is None
    [refund] = s.harness.rows("events", kind="checkout.refunded")
    assert refund.note.startswith("recorded; no recovered journey")


# ------------------------------------------------------------------------ tracking facts


def test_provider_delivered_and_read_are_tracking_facts_once_each(sim):
    s = sim()
    s.event()
    s.run_until(T0 + timedelta(hours=1))
    [delivery] = s.harness.rows("deliveries")
    with s.hub.store.begin() as conn:
        conn.execute(
            sa.update(deliveries).where(deliveries.c.id == delivery.id).values(provider_id="m-1")
        )
    for status in ("delivered", "delivered", "read", "read"):
        assert record_provider_status(s.hub.store, "outbox", "m-1", status)
    facts = sorted((r.kind, r.delivery_id) for r in s.harness.rows("tracking_events"))
    assert facts == [("delivered", delivery.id), ("read", delivery.id)]
    logged = [r.status for r in s.harness.rows("delivery_log") if r.delivery_id == delivery.id]
    assert logged == ["sent", "delivered", "delivered", "read", "read"]  # every callback kept


# ------------------------------------------------------------------------ end to end: mail


def _mailed(hub_factory, smtp_server, extra: str = ""):  # noqa: ANN001, ANN202
    harness = hub_factory({"acme": tenant_toml(smtp_url=smtp_server.url, extra=extra)})
    body = stripe_event()
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    harness.wait_for(lambda: [r for r in harness.rows("deliveries") if r.status == "sent"])
    return harness, mail


def test_an_opened_mail_loads_its_pixel_and_counts_once(hub_factory, smtp_server):
    harness, mail = _mailed(hub_factory, smtp_server)
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    pixel = html.split('<img src="http://hub.test', 1)[1].split('"', 1)[0]
    assert pixel.startswith("/o/") and pixel.endswith(".gif")
    assert "/o/" not in text  # plain text cannot load images
    assert html.index(pixel) < html.lower().rindex("</body>")

    answers = [harness.client.get(pixel) for _ in range(2)]  # Apple MPP and the reader
    for answer in answers:
        assert answer.status_code == 200 and answer.mimetype == "image/gif"
        assert answer.data.startswith(b"GIF89a") and len(answer.data) == 43
        assert "no-store" in answer.headers["Cache-Control"]
    [delivery] = harness.rows("deliveries")
    [opened] = harness.rows("tracking_events")
    assert (opened.kind, opened.delivery_id, opened.journey_id) == (
        "opened",
        delivery.id,
        delivery.journey_id,
    )
    assert [r.status for r in harness.rows("delivery_log")] == ["sent", "opened", "opened"]


def test_a_forged_pixel_still_answers_the_gif_and_records_nothing(hub_factory, smtp_server):
    harness, mail = _mailed(hub_factory, smtp_server)
    html = mail.get_body(("html",)).get_content()
    pixel = html.split('<img src="http://hub.test', 1)[1].split('"', 1)[0]
    forged = pixel.replace(".gif", "x.gif")
    wrong_purpose = link_serializer(harness.hub.settings.secret_key, "recovery").dumps(
        [harness.hub.installation[:8], 1, "0" * 16, 0, "email"]
    )
    for path in (forged, "/o/nonsense.gif", f"/o/{wrong_purpose}.gif"):
        answer = harness.client.get(path)
        assert answer.status_code == 200 and answer.mimetype == "image/gif"
    assert harness.rows("tracking_events") == []


def test_a_tenant_can_switch_the_open_pixel_off(hub_factory, smtp_server):
    off = 'support = "help@acme.example"\ntrack_opens = false'
    harness = hub_factory(
        {
            "acme": tenant_toml(smtp_url=smtp_server.url).replace(
                'support = "help@acme.example"', off
            )
        }
    )
    body = stripe_event()
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    [mail] = smtp_server.wait_for_messages(1)
    html = mail.get_body(("html",)).get_content()
    assert "/r/" in html and "/o/" not in html


def test_the_recovery_link_records_one_click_on_its_delivery(hub_factory, smtp_server):
    harness, mail = _mailed(hub_factory, smtp_server)
    text = mail.get_body(("plain",)).get_content()
    link = text.split("http://hub.test", 1)[1].split()[0]
    for _ in range(2):
        answer = harness.client.get(link)
        assert answer.status_code == 302
        assert answer.headers["Location"] == "https://buy.stripe.com/r/test_Xyz123"
    [delivery] = harness.rows("deliveries")
    [click] = harness.rows("tracking_events")
    assert (click.kind, click.delivery_id) == ("clicked", delivery.id)
    clicks = [r for r in harness.rows("delivery_log") if r.status == "clicked"]
    assert [(r.delivery_id, r.channel) for r in clicks] == [(delivery.id, "email")] * 2

    # and the purchase through that link is credited to it
    completed = stripe_completed(recovered_from="cs_test_a1B2c3")
    assert harness.post("acme", "stripe", completed, stripe_headers(completed)).status_code == 202
    harness.wait_for(lambda: harness.rows("journeys", checkout_id="cs_test_a1B2c3")[0].recovered)
    [journey] = harness.rows("journeys", checkout_id="cs_test_a1B2c3")
    assert (journey.credit, journey.credited_delivery_id) == ("clicked", delivery.id)


def test_a_tampered_recovery_link_redirects_nowhere(hub_factory, smtp_server):
    harness, mail = _mailed(hub_factory, smtp_server)
    text = mail.get_body(("plain",)).get_content()
    link = text.split("http://hub.test", 1)[1].split()[0]
    payload, signature = link.removeprefix("/r/").rsplit(".", 1)
    evil = link_serializer("not-our-secret", "recovery").dumps(
        [harness.hub.installation[:8], 1, "x", 0, "https://evil.example/"]
    )
    for path in (
        f"/r/{payload}.{signature[:-2]}AA",
        f"/r/{payload}x.{signature}",
        f"/r/{evil}",
        "/r/https%3A%2F%2Fevil.example%2F",
    ):
        answer = harness.client.get(path)
        assert answer.status_code == 404 and "Location" not in answer.headers
    assert harness.rows("tracking_events") == []


def test_a_recipient_refused_at_rcpt_is_a_bounce(hub_factory):
    from aiosmtpd.controller import Controller

    from hub.testing import free_port

    class Refusing:
        async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: ANN001, ANN201, N802
            return "550 5.1.1 no such user"

    port = free_port()
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        harness = hub_factory({"acme": tenant_toml(smtp_url=f"smtp://127.0.0.1:{port}")})
        body = stripe_event()
        assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
        harness.start_worker()
        [delivery] = harness.wait_for(
            lambda: [r for r in harness.rows("deliveries") if r.status == "failed"],
            message="the refused delivery",
        )
    finally:
        controller.stop()
    assert delivery.reason.startswith("SMTP 550 at RCPT TO")
    [bounce] = harness.rows("tracking_events")
    assert (bounce.kind, bounce.delivery_id) == ("bounced", delivery.id)
    assert bounce.detail.startswith("SMTP 550 at RCPT TO")


def test_only_refusals_of_the_recipient_or_message_are_bounces():
    from plugins.email.sink import _classify

    assert _classify(550, b"no such user", "RCPT TO").bounce
    assert _classify(554, b"message refused", "end of DATA").bounce
    assert not _classify(550, b"sender rejected", "MAIL FROM").bounce
    assert not _classify(535, b"auth", "connect to x:25").bounce


# ------------------------------------------------------------------------ purchases and late order


def test_a_refund_naming_only_the_purchase_finds_the_journey_by_it(sim):
    s = sim()
    s.event()
    s.event("checkout.converted", checkout="cs_new", recovered_from="cs_1", order_ref="pi_1")
    s.event("checkout.refunded", checkout_id=None, order_ref="pi_1", cart={"total": 700})
    assert _journey(s).refunded_amount == 700
    s.event("checkout.refunded", checkout_id=None, order_ref="pi_other", cart={"total": 700})
    assert _journey(s).refunded_amount == 700  # another purchase: not this journey's


def test_a_conversion_before_an_abandonment_of_the_same_person_recovers_it(sim):
    s = sim()
    s.event("checkout.converted", checkout="order:9", at=T0 + timedelta(hours=2))
    s.event(at=T0)  # cs_1, abandoned before the purchase, arrives after it
    journey = _journey(s)
    assert journey.status == "converted" and journey.recovered
    assert (journey.recovered_amount, journey.credit) == (4999, "none")
    assert s.steps() == []


def test_a_late_abandonment_gets_nothing_when_the_purchase_was_already_credited(sim):
    s = sim()
    s.event(checkout="cs_old", at=T0)
    s.event("checkout.converted", checkout="order:9", at=T0 + timedelta(hours=2))
    assert _journey(s, "cs_old").recovered
    s.now = T0 + timedelta(hours=3)
    s.event(checkout="cs_1", at=T0 + timedelta(hours=1))
    journey = _journey(s)
    assert journey.status == "converted" and not journey.recovered  # one purchase, once
    [event] = s.harness.rows("events", checkout_id="cs_1")
    assert event.note.endswith("its revenue went to another journey")


def test_a_late_abandonment_after_its_own_conversion_stays_unrecovered(sim):
    """The checkout's conversion came first and *before* the abandonment's time: the marker
    is no recovery (nothing was abandoned before that purchase)."""
    s = sim()
    s.event("checkout.converted", at=T0)
    s.event(at=T0 + timedelta(hours=1))
    journey = _journey(s)
    assert journey.status == "converted" and not journey.recovered
    assert journey.abandoned_at == T0 + timedelta(hours=1)
