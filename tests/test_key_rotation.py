"""HUB_SECRET_KEY rotation: links in messages already sent keep working while the old key is
listed in HUB_SECRET_KEY_FALLBACKS; new links are signed with the new key."""

from __future__ import annotations

from samples import stripe_event, stripe_headers, stripe_session, tenant_toml


def send_mail(harness, smtp_server, n: int):  # noqa: ANN001, ANN201
    """One abandonment of customer ``n`` through a real worker; returns the links of its mail
    as paths: (recovery, unsubscribe)."""
    session = stripe_session(f"cs_test_{n}")
    session["customer_details"].update(email=f"buyer{n}@example.com", phone=f"+49151123456{n:02}")
    body = stripe_event(event_id=f"evt_{n}", session=session)
    assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    mail = harness.wait_for(
        lambda: next((m for m in smtp_server.messages if m["To"] == f"buyer{n}@example.com"), None),
        message=f"mail to buyer{n}",
    )
    harness.stop_workers()
    text = mail.get_body(("plain",)).get_content()
    recovery = text.split("http://hub.test", 1)[1].split()[0]
    unsubscribe = str(mail["List-Unsubscribe"]).split("http://hub.test", 1)[1].split(">")[0]
    return recovery, unsubscribe


def test_links_signed_with_an_old_key_still_work_after_rotation(hub_factory, smtp_server):
    tenants = {"acme": tenant_toml(smtp_url=smtp_server.url)}
    before = hub_factory(tenants, settings={"HUB_SECRET_KEY": "key-2025"})
    recovery, unsubscribe = send_mail(before, smtp_server, 1)

    rotated = hub_factory(
        tenants, settings={"HUB_SECRET_KEY": "key-2026", "HUB_SECRET_KEY_FALLBACKS": "key-2025"}
    )
    answer = rotated.client.get(recovery)
    assert (answer.status_code, answer.headers["Location"]) == (
        302,
        "https://buy.stripe.com/r/test_Xyz123",
    )
    assert rotated.client.get(unsubscribe).status_code == 200  # the confirmation page

    # once the old key is dropped from the fallbacks, its links are just unknown
    dropped = hub_factory(tenants, settings={"HUB_SECRET_KEY": "key-2026"})
    assert dropped.client.get(recovery).status_code == 404
    assert dropped.client.get(unsubscribe).status_code == 404


def test_after_rotation_new_links_are_signed_with_the_new_key(hub_factory, smtp_server):
    tenants = {"acme": tenant_toml(smtp_url=smtp_server.url)}
    rotated = hub_factory(
        tenants, settings={"HUB_SECRET_KEY": "key-2026", "HUB_SECRET_KEY_FALLBACKS": "key-2025"}
    )
    recovery, unsubscribe = send_mail(rotated, smtp_server, 2)

    new_only = hub_factory(tenants, settings={"HUB_SECRET_KEY": "key-2026"})
    assert new_only.client.get(recovery).status_code == 302
    assert new_only.client.get(unsubscribe).status_code == 200
    old_only = hub_factory(tenants, settings={"HUB_SECRET_KEY": "key-2025"})
    assert old_only.client.get(recovery).status_code == 404


def test_fallback_keys_are_a_comma_separated_list(hub_factory):
    harness = hub_factory(
        {}, settings={"HUB_SECRET_KEY": "new", "HUB_SECRET_KEY_FALLBACKS": " older, old ,"}
    )
    settings = harness.hub.settings
    assert settings.secret_key_fallbacks == ("older", "old")
    assert settings.link_keys == ["old", "older", "new"]  # itsdangerous signs with the last
