"""Tenant files reload without a restart: a web process and a worker pick up a changed, new or
removed tenant file within seconds, and a broken edit keeps the last good version."""

from __future__ import annotations

import http.client
import logging
import os
import time

import pytest
from samples import STRIPE_SECRET, stripe_event, stripe_headers, stripe_session, tenant_toml

from hub.catalog import TenantCatalog
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


# ----------------------------------------------------------------------- the catalog itself


class Clock:
    """A hand-moved monotonic clock: the catalog looks at the files when it has advanced."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def catalog(tmp_path):  # noqa: ANN201
    (tmp_path / "tenants").mkdir()
    registry = load_plugins()
    clock = Clock()

    def make() -> TenantCatalog:
        return TenantCatalog(
            tmp_path, registry.sources, registry.sinks, {}, Renderer(tmp_path, registry), clock
        )

    return tmp_path, clock, make


def acme(template: str = "reminder") -> str:
    return tenant_toml(smtp_url="smtp://127.0.0.1:2525", steps=steps(template))


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
