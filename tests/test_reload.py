"""Tenant files reload without a restart: a web process and a worker pick up a changed, new or
removed tenant file within seconds, and a broken edit keeps the last good version."""

from __future__ import annotations

import http.client
import logging
import os
import subprocess
import sys
import time

import pytest
from samples import STRIPE_SECRET, stripe_event, stripe_headers, stripe_session, tenant_toml

from hub.app import create_app
from hub.catalog import TenantCatalog
from hub.lastgood import LastGood
from hub.plugins import load_plugins
from hub.templates import Renderer
from hub.testing import wait_for

TEMPLATES = {
    "first/email.en.subject": "First {{ customer.first_name }}",
    "first/email.en.txt": "one",
    "second/email.en.subject": "Second {{ customer.first_name }}",
    "second/email.en.txt": "two",
}


def steps(template: str) -> str:
    return f"""
  [[flows.steps]]
  after = "1s"
  channels = ["email"]
  template = "{template}"
"""


NEW_SECRET = "whsec_rotated_for_acme"


def abandon(port: int, tenant: str, n: int, secret: str = STRIPE_SECRET) -> int:
    """Post one expired Stripe checkout of a new customer (the frequency cap is per person)
    to the gunicorn web process on ``port``; returns the status."""
    session = stripe_session(f"cs_test_{n}")
    session["customer_details"].update(email=f"buyer{n}@example.com", phone=f"+49151123456{n:02}")
    body = stripe_event(event_id=f"evt_{n}", session=session)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", f"/webhooks/{tenant}/stripe", body, stripe_headers(body, secret))
        return conn.getresponse().status
    finally:
        conn.close()


def mail_to(smtp_server, n: int):  # noqa: ANN001, ANN201
    """The message to customer ``n``, once it has arrived."""

    def find():  # noqa: ANN202
        return next((m for m in smtp_server.messages if m["To"] == f"buyer{n}@example.com"), None)

    return wait_for(find, 20, message=f"mail to buyer{n}")


def settle() -> None:
    """Let every process's next look at the files be due (they look at most once a second)."""
    time.sleep(1.2)


def test_web_and_worker_pick_up_edited_new_and_broken_tenant_files(hub_factory, smtp_server):
    acme_text = tenant_toml(smtp_url=smtp_server.url, steps=steps("first"))
    harness = hub_factory({"acme": acme_text}, templates=TEMPLATES)
    acme_file = harness.config_dir / "tenants" / "acme.toml"
    port = harness.start_web(workers=2)  # gunicorn: each worker process reloads on its own
    harness.start_worker()

    assert abandon(port, "acme", 1) == 202
    first = mail_to(smtp_server, 1)
    assert (first["Subject"], first["From"]) == ("First Jane", "Acme <shop@acme.example>")

    # the source's secret, a step's template and the sink's config change while all run
    acme_file.write_text(
        acme_text.replace('template = "first"', 'template = "second"')
        .replace("Acme <shop@acme.example>", "Acme Sales <sales@acme.example>")
        .replace(STRIPE_SECRET, NEW_SECRET)
    )
    settle()
    assert abandon(port, "acme", 2) == 401  # signed with the old secret
    assert abandon(port, "acme", 2, NEW_SECRET) == 202
    second = mail_to(smtp_server, 2)
    assert (second["Subject"], second["From"]) == ("Second Jane", "Acme Sales <sales@acme.example>")

    # a broken edit: every process keeps serving the last good version and says so, once
    acme_file.write_text(acme_file.read_text().replace('after = "1s"', 'after = "soon"'))
    settle()
    assert abandon(port, "acme", 3, NEW_SECRET) == 202
    assert mail_to(smtp_server, 3)["Subject"] == "Second Jane"
    assert [str(i) for i in harness.hub.config_issues] == [
        f"{acme_file}: flows[0].steps[0].after: invalid duration 'soon': "
        'use an integer plus s, m, h or d ("15m")'
    ]
    still_serving = f"tenant acme: {acme_file} has 1 config error; still serving the version"
    harness.wait_for(lambda: still_serving in harness.worker_logs(), 5, message="worker to log")
    assert still_serving in harness.web_logs()

    # a new tenant file is served without a restart, and a removed one no longer is
    assert abandon(port, "beta", 4) == 404
    (harness.config_dir / "tenants" / "beta.toml").write_text(
        tenant_toml(smtp_url=smtp_server.url, name="Beta Bikes", steps=steps("first"))
    )
    settle()
    assert abandon(port, "beta", 5) == 202
    assert mail_to(smtp_server, 5)["Subject"] == "First Jane"
    (harness.config_dir / "tenants" / "beta.toml").unlink()
    settle()
    assert abandon(port, "beta", 6) == 404

    assert harness.worker_logs().count(still_serving) == 1  # once per change, not per look
    assert harness.web_logs().count(still_serving) <= 2  # at most once per gunicorn worker


def test_a_web_worker_that_missed_the_rotated_secret_accepts_it_when_the_file_breaks(
    hub_factory,
):
    """The bug behind this test's flakes: gunicorn worker B got no request between the edit
    that rotated the secret (v2) and a broken edit (v3), so it fell back to v1 and answered
    401 to webhooks signed with the new secret while worker A answered 202."""
    busy = hub_factory({"acme": acme(secret=STRIPE_SECRET)})
    idle = create_app(busy.config)  # a second process of the same host: same config and var/
    path = busy.config_dir / "tenants" / "acme.toml"
    path.write_text(acme(secret=NEW_SECRET))
    busy.hub.catalog.refresh()  # a request reaches A only
    path.write_text(acme("remider", secret=NEW_SECRET))
    body = stripe_event(event_id="evt_rotated", session=stripe_session("cs_test_rotated"))
    signed = stripe_headers(body, NEW_SECRET)
    idle.extensions["hub"].catalog.refresh()  # B's next request, a second later
    assert (
        idle.test_client().post("/webhooks/acme/stripe", data=body, headers=signed).status_code
        == 202
    )

    # a process started now (here: hub config check) serves v2 as well, and says so
    env = {**os.environ, **{k: str(v) for k, v in busy.config.items()}}
    done = subprocess.run(
        [sys.executable, "-m", "hub", "config", "check"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(
        "served in their last good version until fixed (a copy in HUB_VAR_DIR): acme (read "
    )


# ----------------------------------------------------------------------- the catalog itself


class Clock:
    """A hand-moved monotonic clock: the catalog looks at the files when it has advanced."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def catalog(tmp_path):  # noqa: ANN201
    """``make()`` builds one process's catalog; those made with ``shared=True`` keep their last
    good copies in one var/, as the processes of one HUB_VAR_DIR do."""
    (tmp_path / "tenants").mkdir()
    registry = load_plugins()
    clock = Clock()

    def make(shared: bool = False) -> TenantCatalog:
        return TenantCatalog(
            tmp_path,
            registry.sources,
            registry.sinks,
            {},
            Renderer(tmp_path, registry),
            clock,
            last_good=LastGood(tmp_path / "var" / "tenants-last-good") if shared else None,
        )

    return tmp_path, clock, make


def acme(template: str = "reminder", secret: str = STRIPE_SECRET) -> str:
    return tenant_toml(
        smtp_url="smtp://127.0.0.1:2525", steps=steps(template), stripe_secret=secret
    )


def secret_of(tenants: TenantCatalog) -> str:
    return tenants.current()["acme"].sources["stripe"]["webhook_secret"]


def test_files_are_looked_at_no_more_than_once_a_second(catalog):
    root, clock, make = catalog
    (root / "tenants" / "acme.toml").write_text(acme())
    tenants = make()
    assert tenants.current()["acme"].flows[0].steps[0].template == "reminder"
    (root / "tenants" / "acme.toml").write_text(acme("discount"))
    clock.now += 0.5
    assert tenants.current()["acme"].flows[0].steps[0].template == "reminder"
    clock.now += 0.5
    assert tenants.current()["acme"].flows[0].steps[0].template == "discount"


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(catalog):
    # file systems with coarse timestamps: a second edit within the same tick
    root, clock, make = catalog
    path = root / "tenants" / "acme.toml"
    path.write_text(acme("reminder"))
    stat = path.stat()
    tenants = make()
    path.write_text(acme("discount"))  # same length as "reminder"
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    clock.now += 1
    assert tenants.current()["acme"].flows[0].steps[0].template == "discount"


def test_a_broken_edit_is_logged_once_and_the_last_good_version_served(catalog, caplog):
    root, clock, make = catalog
    path = root / "tenants" / "acme.toml"
    path.write_text(acme())
    tenants = make()
    good = tenants.current()["acme"]
    caplog.set_level(logging.INFO, logger="hub.tenants")
    path.write_text(acme("remider"))
    for _ in range(3):
        clock.now += 1
        assert tenants.current()["acme"] is good
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith(
        f"tenant acme: {path} has 1 config error; still serving the version loaded at "
    )
    assert [f.slug for f in tenants.broken()] == ["acme"]
    assert [str(i) for i in tenants.issues()] == [
        f'{path}: flows[0].steps[0].template: no "remider" template for email; '
        "did you mean 'reminder'?"
    ]

    caplog.clear()
    path.write_text(acme("discount"))
    clock.now += 1
    assert tenants.current()["acme"].flows[0].steps[0].template == "discount"
    assert tenants.issues() == []
    assert [r.getMessage() for r in caplog.records] == [f"tenant acme reloaded from {path}"]


def test_a_process_that_missed_an_edit_serves_it_when_the_next_edit_is_broken(catalog):
    """Two gunicorn workers load v1; v2 rotates the webhook secret and only one worker gets a
    request before v3 breaks the file. The other must serve v2 (its secret), not its own v1."""
    root, clock, make = catalog
    path = root / "tenants" / "acme.toml"
    path.write_text(acme(secret=STRIPE_SECRET))
    busy, idle = make(shared=True), make(shared=True)
    assert secret_of(busy) == secret_of(idle) == STRIPE_SECRET
    path.write_text(acme(secret=NEW_SECRET))
    clock.now += 1
    assert secret_of(busy) == NEW_SECRET  # idle gets no request now
    path.write_text(acme("remider", secret=NEW_SECRET))
    clock.now += 1
    assert secret_of(idle) == NEW_SECRET
    assert secret_of(busy) == NEW_SECRET
    assert [f.slug for f in idle.broken()] == ["acme"]
    assert secret_of(make(shared=True)) == NEW_SECRET  # a worker started after the broken edit


def test_a_process_keeps_its_own_version_when_it_read_a_newer_one_than_the_copy(catalog):
    root, clock, make = catalog
    path = root / "tenants" / "acme.toml"
    path.write_text(acme(secret=STRIPE_SECRET))
    tenants = make(shared=True)
    copies = tenants.last_good
    assert copies is not None
    path.write_text(acme(secret=NEW_SECRET))
    clock.now += 1
    assert secret_of(tenants) == NEW_SECRET
    kept = copies.get("acme")
    assert kept is not None
    copies.put("acme", acme(secret=STRIPE_SECRET).encode(), kept.read_ns - 1)  # a late writer
    assert copies.get("acme") == kept  # an older read never replaces a newer copy
    (copies.folder / "acme.toml").write_text(acme(secret=STRIPE_SECRET))  # older than NEW_SECRET's
    os.utime(copies.folder / "acme.toml", ns=(kept.read_ns - 1, kept.read_ns - 1))
    path.write_text(acme("remider", secret=NEW_SECRET))
    clock.now += 1
    assert secret_of(tenants) == NEW_SECRET


def test_a_removed_tenant_file_takes_its_last_good_copy_along(catalog):
    root, clock, make = catalog
    path = root / "tenants" / "acme.toml"
    path.write_text(acme())
    tenants = make(shared=True)
    assert "acme" in tenants.current()
    path.unlink()
    clock.now += 1
    assert tenants.current() == {}
    path.write_text(acme("remider"))  # the slug reused, broken from the start
    clock.now += 1
    assert tenants.current() == {}
    assert make(shared=True).current() == {}


def test_without_a_shared_copy_a_process_falls_back_to_the_version_it_loaded(catalog):
    root, clock, make = catalog
    path = root / "tenants" / "acme.toml"
    path.write_text(acme(secret=STRIPE_SECRET))
    idle = make()  # no var/ to share: what a process did not read it cannot know
    path.write_text(acme(secret=NEW_SECRET))
    make()  # another process reads v2 and keeps it to itself
    path.write_text(acme("remider", secret=NEW_SECRET))
    clock.now += 1
    assert secret_of(idle) == STRIPE_SECRET


def test_adding_the_missing_template_folder_mends_the_tenant(catalog):
    root, clock, make = catalog
    (root / "tenants" / "acme.toml").write_text(acme("welcome"))
    tenants = make()
    assert "acme" not in tenants.current()
    folder = root / "templates" / "welcome"
    folder.mkdir(parents=True)
    (folder / "email.en.txt").write_text("Hello")
    clock.now += 1
    assert tenants.current()["acme"].flows[0].steps[0].template == "welcome"


def test_a_new_file_with_errors_is_not_served_and_says_so(catalog, caplog):
    root, clock, make = catalog
    tenants = make()
    caplog.set_level(logging.INFO, logger="hub.tenants")
    path = root / "tenants" / "beta.toml"
    path.write_text(acme().replace(STRIPE_SECRET, "not-a-secret"))
    clock.now += 1
    assert tenants.current() == {}
    assert [r.getMessage() for r in caplog.records] == [
        f"tenant beta is not served: 1 config error in {path} (hub config check lists them)"
    ]


def test_looking_at_unchanged_files_reloads_nothing(catalog):
    """A request pays for the look once a second per process: it must stay a few stats, never
    a reload. Unchanged files keep the very Tenant objects loaded at start (nothing re-parsed);
    the one edited file is the only one replaced."""
    root, clock, make = catalog
    an_hour_ago = time.time_ns() - 3600 * 10**9
    for i in range(100):
        path = root / "tenants" / f"shop{i}.toml"
        path.write_text(acme())
        os.utime(path, ns=(an_hour_ago, an_hour_ago))  # long saved, as in production
    tenants = make()
    loaded = dict(tenants.current())
    for _ in range(20):
        clock.now += 1
        assert all(tenants.current()[slug] is tenant for slug, tenant in loaded.items())
    (root / "tenants" / "shop7.toml").write_text(acme("discount"))
    clock.now += 1
    now = tenants.current()
    assert now["shop7"] is not loaded["shop7"]
    assert [slug for slug in loaded if now[slug] is not loaded[slug]] == ["shop7"]


def test_each_hub_keeps_its_own_tenants(hub_factory):
    one = hub_factory({"acme": acme()})
    two = hub_factory({"beta": acme()})
    assert list(one.hub.tenants) == ["acme"] and list(two.hub.tenants) == ["beta"]
