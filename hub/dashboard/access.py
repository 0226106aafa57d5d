"""Who is signed in and which clients they may see: the one place that decides.

Views never query a tenant's rows before :func:`client` has allowed the slug from the URL; a
row found through a tenant (a journey) is looked up *with* that tenant, so an id of another
tenant's row is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import abort, g, redirect, render_template, request, session, url_for

from hub.current import current_hub
from hub.dashboard.accounts import User, user_by_id
from hub.tenants import ConfigIssue


@dataclass
class Client:
    """A tenant as the dashboard shows it: its served version (``None`` when its file has
    never loaded) and the errors of its file as it is now."""

    slug: str
    tenant: Any
    issues: list[ConfigIssue] = field(default_factory=list)
    stale: bool = False  # the file has errors; an older version is still served

    @property
    def name(self) -> str:
        return self.tenant.name if self.tenant is not None else self.slug

    @property
    def zone(self) -> Any:
        from datetime import UTC

        return self.tenant.timezone if self.tenant is not None else UTC

    @property
    def locale(self) -> str:
        return self.tenant.locale if self.tenant is not None else "en"


def load_user() -> User | None:
    """The account of this session, if it still exists with the same password."""
    user_id, stamp = session.get("user"), session.get("stamp")
    if user_id is None:
        return None
    user = user_by_id(current_hub().store, user_id)
    if user is None or user.session_stamp != stamp:
        session.clear()
        return None
    return user


def sign_in_redirect() -> Any:
    return redirect(url_for("dashboard.sign_in", next=request.full_path.rstrip("?")))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path of this dashboard, never another site."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard/"):
        return url_for("dashboard.portfolio")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def clients() -> list[Client]:
    """Every client the signed-in account may see, by name."""
    hub = current_hub()
    user: User = g.user
    served = hub.tenants
    files = {f.slug: f for f in hub.catalog.broken()}
    found = []
    for slug in sorted(set(served) | set(files)):
        if not user.may_see(slug):
            continue
        broken = files.get(slug)
        tenant = served.get(slug) or (broken.serving if broken else None)
        issues = list(broken.issues) if broken else []
        found.append(Client(slug, tenant, issues, bool(broken and broken.serving)))
    return sorted(found, key=lambda c: c.name.lower())


def client(slug: str) -> Client:
    """The client ``slug`` if the account may see it; 404 otherwise (also for a slug that
    does not exist, so a viewer cannot tell another client's slug from a typo)."""
    if not g.user.may_see(slug):
        abort(404)
    for found in clients():
        if found.slug == slug:
            return found
    abort(404)


def error_page(status: int, message: str) -> Any:
    return render_template("dashboard/error.html", status=status, message=message), status
