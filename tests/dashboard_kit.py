"""Shared set-up of the dashboard tests: two clients with history, an admin and a viewer of
each, and signing in through the real form (CSRF token and all)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bench.dashboard import seed
from hub.dashboard.accounts import create_user

PASSWORD = "correct horse battery"
SECRET = "whsec_" + "A" * 32


def tenant(name: str, outbox: str, zone: str = "Europe/Berlin", locale: str = "de") -> str:
    return f"""
name = "{name}"
timezone = "{zone}"
locale = "{locale}"
currency = "EUR"

[sources.webhook]
secret = "{SECRET}"

[sinks.outbox]
dir = "{outbox}"

[[flows]]
name = "default"
  [[flows.steps]]
  after = "1h"
  channels = ["outbox"]
  template = "reminder"
"""


def make_dashboard(hub_factory, tmp_path, settings=None, journeys: int = 40):  # noqa: ANN001, ANN201
    """A hub with clients ``acme`` and ``globex`` (seeded), an admin and one viewer each."""
    harness = hub_factory(
        {
            "acme": tenant("Acme Shoes", str(tmp_path / "outbox")),
            "globex": tenant("Globex Corp", str(tmp_path / "outbox"), "America/New_York", "en"),
        },
        settings,
    )
    seed(harness.hub.store, ["acme", "globex"], journeys, datetime.now(UTC))
    store = harness.hub.store
    create_user(store, "admin@agency.example", PASSWORD, None)
    create_user(store, "viewer@acme.example", PASSWORD, "acme")
    create_user(store, "viewer@globex.example", PASSWORD, "globex")
    return harness


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, url: str = "/dashboard/sign-in") -> str:  # noqa: ANN001
    page = client.get(url)
    return CSRF.search(page.get_data(as_text=True)).group(1)


def sign_in(client, email: str, password: str = PASSWORD, **kwargs):  # noqa: ANN001, ANN201
    token = csrf_token(client)
    return client.post(
        "/dashboard/sign-in",
        data={"email": email, "password": password, "csrf_token": token, **kwargs},
    )
