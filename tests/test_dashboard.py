"""The dashboard behind its sign-in: what an admin and a client's viewer see, and never see."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from dashboard_kit import PASSWORD, csrf_token, make_dashboard, sign_in

from hub.store import deliveries, events, journeys, utcnow


@pytest.fixture
def dash(hub_factory, tmp_path):
    return make_dashboard(hub_factory, tmp_path)


def _journey(harness, slug: str) -> int:
    with harness.hub.store.begin() as conn:
        return conn.execute(
            sa.select(sa.func.min(journeys.c.id)).where(journeys.c.tenant == slug)
        ).scalar()


def test_every_page_wants_a_signed_in_account(dash):
    response = dash.client.get("/dashboard/clients/acme/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/dashboard/sign-in?next=")


def test_the_admin_signs_in_and_sees_every_client_with_its_results(dash):
    assert sign_in(dash.client, "admin@agency.example").status_code == 302
    page = dash.client.get("/dashboard/").get_data(as_text=True)
    assert "Acme Shoes" in page and "Globex Corp" in page
    assert page.count('class="spark"') >= 10  # five figures with a sparkline per client
    assert "€" in page  # revenue in the client's currency and locale


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(dash):
    response = sign_in(dash.client, "admin@agency.example", "wrong password!")
    assert response.status_code == 401
    assert "The e-mail address or the password is wrong." in response.get_data(as_text=True)
    unknown = sign_in(dash.client, "nobody@agency.example", "wrong password!")
    assert unknown.status_code == 401


def test_sign_in_is_limited_per_account_in_redis_under_the_hub_namespace(dash):
    for _ in range(8):
        assert sign_in(dash.client, "admin@agency.example", "wrong password!").status_code == 401
    # the right password no longer helps: the account is locked for the window
    assert sign_in(dash.client, "admin@agency.example").status_code == 429
    namespace = dash.hub.queues.namespace
    keys = [k.decode() for k in dash.hub.queues.connection.keys(f"{namespace}dashboard:signin:*")]
    assert len(keys) == 2  # this address and this account, under this hub's namespace
    assert not any("admin@agency.example" in k for k in keys)  # hashed, not the address
    # another account from the same address is not locked
    assert sign_in(dash.client, "viewer@acme.example").status_code == 302


def test_sign_in_is_limited_per_address(dash):
    statuses = [
        sign_in(dash.client, f"guess{n}@agency.example", "wrong password!").status_code
        for n in range(31)
    ]
    assert statuses[:30] == [401] * 30 and statuses[30] == 429


def test_the_session_cookie_is_httponly_lax_and_secure_behind_https(hub_factory, tmp_path):
    harness = make_dashboard(hub_factory, tmp_path, {"HUB_TRUSTED_PROXIES": "1"}, journeys=2)
    plain = sign_in(harness.client, "admin@agency.example")
    cookie = plain.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    other = harness.app.test_client()
    token = csrf_token(other)
    proxied = other.post(
        "/dashboard/sign-in",
        data={"email": "admin@agency.example", "password": PASSWORD, "csrf_token": token},
        # over HTTPS flask-wtf also wants a same-origin Referer, as browsers send it
        headers={"X-Forwarded-Proto": "https", "Referer": "https://localhost/dashboard/sign-in"},
    )
    assert proxied.status_code == 302
    assert "Secure" in proxied.headers["Set-Cookie"]


def test_a_post_without_its_csrf_token_is_refused(dash):
    sign_in(dash.client, "admin@agency.example")
    response = dash.client.post("/dashboard/sign-out")
    assert response.status_code == 400
    assert "did not come from this site" in response.get_data(as_text=True)
    assert dash.client.get("/dashboard/").status_code == 200  # still signed in


def test_webhooks_still_take_posts_without_a_csrf_token(dash):
    response = dash.post("acme", "webhook", b"{}", {"Content-Type": "application/json"})
    assert response.status_code != 400 or "csrf" not in response.get_data(as_text=True).lower()


def test_deleting_an_account_ends_its_sessions(dash):
    from hub.dashboard.accounts import delete_user

    sign_in(dash.client, "viewer@acme.example")
    assert dash.client.get("/dashboard/clients/acme/").status_code == 200
    delete_user(dash.hub.store, "viewer@acme.example")
    assert dash.client.get("/dashboard/clients/acme/").status_code == 302


def _dashboard_rules(app):
    return [
        r
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/dashboard/") and r.endpoint != "dashboard.static"
    ]


def _fill(rule, slug: str, journey_id: int) -> str:
    values = {"slug": slug, "journey_id": journey_id, "token": "t"}
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{rule.rule}: teach this test the argument(s) {missing}"
    return (
        rule.rule.replace("<slug>", slug)
        .replace("<int:journey_id>", str(journey_id))
        .replace("<token>", "t")
    )


def test_a_viewer_never_sees_another_clients_pages_numbers_or_emails(dash):
    """Generic over every dashboard rule, so pages added later are covered: with the other
    tenant's ids a page is 404, and without ids nothing of the other tenant shows."""
    foreign = _journey(dash, "globex")
    with dash.hub.store.begin() as conn:
        foreign_email = conn.execute(
            sa.select(journeys.c.email).where(journeys.c.id == foreign)
        ).scalar()
    sign_in(dash.client, "viewer@acme.example")
    token = csrf_token(dash.client, "/dashboard/clients/acme/preview")
    checked = 0
    for rule in _dashboard_rules(dash.app):
        url = _fill(rule, "globex", foreign)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            query = {"q": foreign_email, "client": "globex"}
            if method == "GET":
                response = dash.client.get(url, query_string=query)
            else:
                response = dash.client.post(url, data={"csrf_token": token, **query})
            # the viewer's own query echoed in the search box is not the other client's data
            body = response.get_data(as_text=True)
            body = body.replace(f'value="{foreign_email}"', "").replace(f"“{foreign_email}”", "")
            if "<slug>" in rule.rule:
                assert response.status_code == 404, f"{method} {url}: {response.status_code}"
            assert "Globex" not in body and "globex" not in body.replace("client=globex", ""), (
                f"{method} {url} shows the other client"
            )
            assert foreign_email not in body, f"{method} {url} shows another client's e-mail"
            checked += 1
    assert checked >= 8


def test_a_viewer_lands_on_its_own_client_and_sees_no_raw_payloads(dash):
    sign_in(dash.client, "viewer@acme.example")
    first = dash.client.get("/dashboard/")
    assert first.headers["Location"] == "/dashboard/clients/acme/"
    own = _journey(dash, "acme")
    page = dash.client.get(f"/dashboard/clients/acme/journeys/{own}").get_data(as_text=True)
    assert "Timeline" in page and "raw payload of" not in page


def test_the_admin_reads_a_journeys_timeline_with_its_raw_payload(dash):
    sign_in(dash.client, "admin@agency.example")
    own = _journey(dash, "acme")
    page = dash.client.get(f"/dashboard/clients/acme/journeys/{own}").get_data(as_text=True)
    assert "checkout.abandoned from webhook" in page
    assert "raw payload of cs_" in page  # the admin may open it (escaped JSON)
    assert re.search(r"step 0 (sent|skipped)", page)


def test_a_journey_of_another_tenant_is_not_found_under_this_tenant(dash):
    sign_in(dash.client, "admin@agency.example")
    foreign = _journey(dash, "globex")
    assert dash.client.get(f"/dashboard/clients/acme/journeys/{foreign}").status_code == 404


def test_search_finds_a_checkout_by_email_and_by_id(dash):
    sign_in(dash.client, "admin@agency.example")
    own = _journey(dash, "acme")
    by_mail = dash.client.get(f"/dashboard/search?q=CUSTOMER{own}@example.com")
    assert f"cs_{own}</a>" in by_mail.get_data(as_text=True)
    by_id = dash.client.get(f"/dashboard/clients/acme/journeys/?q=cs_{own}")
    assert f"cs_{own}</a>" in by_id.get_data(as_text=True)
    nothing = dash.client.get("/dashboard/search?q=nobody@example.com")
    assert "Nothing matches" in nothing.get_data(as_text=True)


def test_the_client_page_shows_webhook_urls_last_call_and_a_valid_file(dash):
    sign_in(dash.client, "admin@agency.example")
    page = dash.client.get("/dashboard/clients/acme/").get_data(as_text=True)
    assert 'value="http://hub.test/webhooks/acme/webhook"' in page
    assert "last valid call" in page
    assert "The tenant file is valid." in page
    assert 'data-copy="url-webhook"' in page


def test_a_broken_tenant_file_shows_its_errors_and_an_alert(dash):
    path = dash.config_dir / "tenants" / "acme.toml"
    path.write_text(path.read_text().replace('timezone = "Europe/Berlin"', 'timezone = "Mars"'))
    dash.hub.catalog.refresh()
    sign_in(dash.client, "admin@agency.example")
    page = dash.client.get("/dashboard/clients/acme/").get_data(as_text=True)
    assert "acme.toml: timezone:" in page
    assert "still served" in page
    assert "tenant file has 1 error" in dash.client.get("/dashboard/").get_data(as_text=True)


def test_the_preview_shows_the_flow_and_the_mail_in_a_sandboxed_iframe(dash):
    sign_in(dash.client, "admin@agency.example")
    token = csrf_token(dash.client, "/dashboard/clients/acme/preview")
    event = (
        '{"kind": "checkout.abandoned", "checkout_id": "cart_1", "occurred_at": '
        '"2026-11-30T10:00:00Z", "customer": {"email": "jane@example.com"}, '
        '"consent": {"email": "opt_in"}, "recovery_url": "https://shop.example/r/1"}'
    )
    response = dash.client.post(
        "/dashboard/clients/acme/preview", data={"csrf_token": token, "event": event}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert "Flow <strong>default</strong>" in page
    assert "outbox → j***@example.com" in page
    mail = MAIL_URL.search(page).group(0)
    assert 'sandbox=""' in page and "srcdoc=" not in page
    served = dash.client.get(mail)
    assert served.status_code == 200 and served.mimetype == "text/html"
    assert "background-color:#f4f4f5" in served.get_data(as_text=True)
    policy = served.headers["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and policy.endswith("; sandbox")
    assert "script-src" not in policy and "default-src 'none'" in policy
    assert served.headers["Cache-Control"] == "no-store"


MAIL_URL = re.compile(r"/dashboard/clients/acme/preview/mail/[\w-]+")
EVENT = (
    '{"kind": "checkout.abandoned", "checkout_id": "cart_1", "occurred_at": '
    '"2026-11-30T10:00:00Z", "customer": {"email": "jane@example.com"}, '
    '"consent": {"email": "opt_in"}, "recovery_url": "https://shop.example/r/1"}'
)


def _previewed_mail(client) -> str:  # noqa: ANN001
    token = csrf_token(client, "/dashboard/clients/acme/preview")
    page = client.post(
        "/dashboard/clients/acme/preview", data={"csrf_token": token, "event": EVENT}
    ).get_data(as_text=True)
    return MAIL_URL.search(page).group(0)


def test_a_previewed_mail_is_served_only_to_its_account_under_its_client(dash):
    from hub.dashboard.accounts import create_user

    sign_in(dash.client, "viewer@acme.example")
    mail = _previewed_mail(dash.client)
    assert dash.client.get(mail).status_code == 200
    token = mail.rsplit("/", 1)[1]
    assert dash.client.get(f"/dashboard/clients/globex/preview/mail/{token}").status_code == 404
    assert dash.client.get(mail.replace(token, token[:-2] + "xx")).status_code == 404

    create_user(dash.hub.store, "other@acme.example", PASSWORD, "acme")
    colleague = dash.app.test_client()
    sign_in(colleague, "other@acme.example")
    assert colleague.get(mail).status_code == 404  # same client, another account
    stranger = dash.app.test_client()
    sign_in(stranger, "viewer@globex.example")
    assert stranger.get(mail).status_code == 404
    assert dash.app.test_client().get(mail).status_code == 302  # signed out: sign in first


def test_the_preview_names_the_mistake_in_a_bad_event(dash):
    sign_in(dash.client, "admin@agency.example")
    token = csrf_token(dash.client, "/dashboard/clients/acme/preview")
    response = dash.client.post(
        "/dashboard/clients/acme/preview", data={"csrf_token": token, "event": '{"kind": 1'}
    )
    assert response.status_code == 400
    assert "not JSON" in response.get_data(as_text=True)


def test_alerts_name_a_permanently_failing_sink_and_overdue_steps(dash):
    now = utcnow()
    acme = _journey(dash, "acme")
    with dash.hub.store.begin() as conn:
        for n in range(3):
            conn.execute(
                sa.insert(deliveries).values(
                    tenant="acme",
                    journey_id=acme,
                    step_index=10 + n,
                    sink="whatsapp",
                    channel="whatsapp",
                    status="failed",
                    reason="template 'reminder' was deleted",
                    attempts=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        conn.execute(
            sa.text(
                "INSERT INTO steps (journey_id, step_index, due_at, status, updated_at, token) "
                "VALUES (:j, 9, :due, 'scheduled', :due, 'tok')"
            ),
            {"j": acme, "due": (now - timedelta(hours=1)).replace(tzinfo=None)},
        )
    sign_in(dash.client, "admin@agency.example")
    page = dash.client.get("/dashboard/").get_data(as_text=True)
    assert "whatsapp: 3 messages failed permanently" in page
    assert "template &#39;reminder&#39; was deleted" in page
    assert "1 steps overdue" in page
    assert 'href="/dashboard/clients/acme/#deliveries"' in page


def test_a_source_that_went_silent_is_an_alert(dash):
    now = utcnow()
    with dash.hub.store.begin() as conn:
        conn.execute(sa.delete(events).where(events.c.tenant == "globex"))
        for n in range(6):  # hourly calls, then nothing for a day
            at = now - timedelta(days=1, hours=n)
            conn.execute(
                sa.insert(events).values(
                    tenant="globex",
                    source="webhook",
                    event_key=f"silent-{n}",
                    kind="checkout.updated",
                    checkout_id=f"c{n}",
                    occurred_at=at,
                    received_at=at,
                    payload={},
                    status="processed",
                )
            )
    sign_in(dash.client, "admin@agency.example")
    page = dash.client.get("/dashboard/").get_data(as_text=True)
    assert "webhook: no webhook for 1 d (usually every 1 h)" in page


def test_an_empty_hub_says_what_to_do_next(hub_factory):
    from hub.dashboard.accounts import create_user

    harness = hub_factory({})
    create_user(harness.hub.store, "admin@agency.example", PASSWORD, None)
    sign_in(harness.client, "admin@agency.example")
    page = harness.client.get("/dashboard/").get_data(as_text=True)
    assert "No clients yet" in page and "hub config check" in page


def test_a_sink_that_sent_again_after_its_failures_is_no_alert(dash):
    now = utcnow()
    acme = _journey(dash, "acme")
    with dash.hub.store.begin() as conn:
        for n, status in enumerate(["failed"] * 3 + ["sent"]):
            at = now - timedelta(minutes=10 - n)
            conn.execute(
                sa.insert(deliveries).values(
                    tenant="acme",
                    journey_id=acme,
                    step_index=20 + n,
                    sink="whatsapp",
                    channel="whatsapp",
                    status=status,
                    reason="token expired" if status == "failed" else None,
                    attempts=1,
                    created_at=at,
                    updated_at=at,
                    sent_at=at if status == "sent" else None,
                )
            )
    sign_in(dash.client, "admin@agency.example")
    assert "failed permanently" not in dash.client.get("/dashboard/").get_data(as_text=True)


# ------------------------------------------------------------- the short cache of the figures

ABANDONED_7D = re.compile(r'<dt>Abandoned</dt><dd><span class="big">(\d+)</span>')


def _abandon_now(harness, slug: str, count: int) -> None:
    now = utcnow()
    with harness.hub.store.begin() as conn:
        for n in range(count):
            conn.execute(
                sa.insert(journeys).values(
                    tenant=slug,
                    checkout_id=f"fresh-{n}",
                    source="webhook",
                    status="open",
                    flow="default",
                    abandoned_at=now,
                    created_at=now,
                    recovered=False,
                    token=f"{n:032x}",
                )
            )


def test_figures_are_reused_for_a_minute_under_the_hub_namespace_and_say_as_of_when(dash):
    from hub.dashboard import cache

    sign_in(dash.client, "admin@agency.example")
    first = dash.client.get("/dashboard/clients/acme/").get_data(as_text=True)
    before = int(ABANDONED_7D.search(first).group(1))
    assert re.search(r"Figures and alerts as of <time [^>]*data-clock>\d\d:\d\d</time>", first)

    _abandon_now(dash, "acme", 2)
    again = dash.client.get("/dashboard/clients/acme/").get_data(as_text=True)
    assert int(ABANDONED_7D.search(again).group(1)) == before  # from the cache

    redis = dash.hub.queues.connection
    keys = sorted(k.decode() for k in redis.keys(f"{dash.hub.queues.namespace}dashboard:figures:*"))
    assert keys == [
        f"{dash.hub.queues.namespace}dashboard:figures:{kind}:acme"
        for kind in ("alerts", "report", "results")
    ]
    assert all(0 < redis.ttl(k) <= cache.SECONDS for k in keys)

    cache.clear(dash.hub)
    fresh = dash.client.get("/dashboard/clients/acme/").get_data(as_text=True)
    assert int(ABANDONED_7D.search(fresh).group(1)) == before + 2


def test_the_first_page_computes_only_the_clients_missing_from_the_cache(dash):
    sign_in(dash.client, "admin@agency.example")
    dash.client.get("/dashboard/clients/acme/")  # caches acme's results and alerts
    _abandon_now(dash, "acme", 1)
    _abandon_now(dash, "globex", 1)
    page = dash.client.get("/dashboard/").get_data(as_text=True)
    acme, globex = (
        re.search(rf'id="client-{slug}".*?<span class="big">(\d+)</span>', page, re.S).group(1)
        for slug in ("acme", "globex")
    )
    viewer = dash.app.test_client()
    sign_in(viewer, "viewer@globex.example")
    own = viewer.get("/dashboard/clients/globex/").get_data(as_text=True)
    assert ABANDONED_7D.search(own).group(1) == globex  # the entry the first page stored
    from hub.dashboard import cache

    cache.clear(dash.hub)
    fresh = dash.client.get("/dashboard/").get_data(as_text=True)
    again = re.search(r'id="client-acme".*?<span class="big">(\d+)</span>', fresh, re.S)
    assert int(again.group(1)) == int(acme) + 1  # acme's came from the cache before


def test_the_pages_still_show_their_figures_when_redis_does_not_answer(hub_factory, tmp_path):
    from hub.dashboard.accounts import authenticate

    harness = make_dashboard(hub_factory, tmp_path, {"REDIS_URL": "redis://127.0.0.1:9/0"})
    user = authenticate(harness.hub.store, "admin@agency.example", PASSWORD)
    with harness.client.session_transaction() as session:  # sign-in itself needs Redis
        session["user"], session["stamp"] = user.id, user.session_stamp
    page = harness.client.get("/dashboard/clients/acme/")
    assert page.status_code == 200
    assert ABANDONED_7D.search(page.get_data(as_text=True))
    first = harness.client.get("/dashboard/")
    assert first.status_code == 200 and "Redis unreachable" in first.get_data(as_text=True)


def test_results_count_a_journey_messaged_once_and_revenue_net_of_refunds(hub_factory, tmp_path):
    from zoneinfo import ZoneInfo

    from hub.dashboard.figures import results

    harness = make_dashboard(hub_factory, tmp_path, journeys=0)
    now = utcnow()
    with harness.hub.store.begin() as conn:
        for n, (recovered, sends) in enumerate(
            [(False, ["sent", "sent"]), (False, ["failed"]), (False, []), (True, [])], start=1
        ):
            conn.execute(
                sa.insert(journeys).values(
                    id=n,
                    tenant="acme",
                    checkout_id=f"c{n}",
                    source="webhook",
                    status="open",
                    abandoned_at=now - timedelta(minutes=5),
                    created_at=now,
                    recovered=recovered,
                    recovered_amount=5000 if recovered else None,
                    recovered_currency="EUR" if recovered else None,
                    refunded_amount=1000 if recovered else None,
                    token=f"{n:032x}",
                )
            )
            for step, status in enumerate(sends):
                conn.execute(
                    sa.insert(deliveries).values(
                        tenant="acme",
                        journey_id=n,
                        step_index=step,
                        sink="outbox",
                        channel="email",
                        status=status,
                        attempts=1,
                        created_at=now,
                        updated_at=now,
                        sent_at=now if status == "sent" else None,
                    )
                )
    series = results(harness.hub.store, {"acme": ZoneInfo("Europe/Berlin")}, now)["acme"]
    week = [series.total(name, 7) for name in ("abandoned", "messaged", "recovered")]
    assert week == [4, 1, 1]
    assert series.revenue_total("EUR", 30) == 4000 and list(series.revenue) == ["EUR"]


def test_the_client_page_breaks_results_down_by_step_and_channel_as_hub_report_does(dash):
    from zoneinfo import ZoneInfo

    from hub.reports import report

    sign_in(dash.client, "admin@agency.example")
    page = dash.client.get("/dashboard/clients/acme/").get_data(as_text=True)
    zone = ZoneInfo("Europe/Berlin")
    until = utcnow().astimezone(zone).date()
    for by, name in (("step", "default · step 0"), ("channel", "email")):
        rows = report(dash.hub.store, "acme", until - timedelta(days=29), until, by, zone).rows
        messaged = next(r.figures for r in rows if getattr(r, by) is not None)
        shown = re.search(rf"<td>{name}</td><td class=\"num\">(\d+)</td>", page)
        assert shown, f"no {by} row {name!r}"
        assert int(shown.group(1)) == messaged.abandoned > 0
    assert page.count("<td>(no message)</td>") == 2  # the checkouts no message reached


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_the_first_pages_grouped_figures_are_the_reports_by_day(hub_factory, tmp_path, zone):
    """One grouped query for every client (whole-hour zones) or the report itself (others):
    either way the figures are `hub report`'s."""
    from zoneinfo import ZoneInfo

    from hub.dashboard import figures
    from hub.reports import report

    harness = make_dashboard(hub_factory, tmp_path, journeys=300)
    now, local = utcnow(), ZoneInfo(zone)
    series = figures.results(harness.hub.store, {"acme": local}, now)["acme"]
    until = now.astimezone(local).date()
    by_day = report(harness.hub.store, "acme", until - timedelta(days=29), until, "day", local)
    assert series == figures._from_report(by_day)
    assert sum(series.abandoned) > 0 and sum(series.messaged) > 0 and sum(series.recovered) > 0
