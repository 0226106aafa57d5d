"""``hub consent``: one person's consent evidence, as JSON or a short table.

What the hub knew (the consent value, the platform field or subscription that gave it, when it
arrived), which tenant policy it applied, and what it sent or refused because of it, oldest
first (:mod:`hub.consent_evidence`). Read-only, like ``hub report``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from hub.cliparams import known_tenant, require_database
from hub.consent_evidence import history
from hub.current import current_hub
from hub.erasure import normalize


@click.command("consent")
@click.argument("tenant_slug", metavar="TENANT")
@click.option("--email", default=None, help="The person's e-mail address.")
@click.option("--phone", default=None, help="The person's phone number (+49 151 …).")
@click.option("--json", "as_json", is_flag=True, help="JSON for a client or a regulator.")
def consent_command(tenant_slug: str, email: str | None, phone: str | None, as_json: bool) -> None:
    """Every send and skip decision about one person with the consent fact and the tenant
    policy it relied on."""
    if not email and not phone:
        raise click.UsageError("give --email or --phone")
    try:
        email = normalize("email", email) if email else None
        phone = normalize("phone", phone) if phone else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    hub = current_hub()
    tenant = known_tenant(hub, tenant_slug)
    require_database(hub)
    with hub.store.begin() as conn:
        entries = history(conn, tenant.slug, email=email, phone=phone)
    if as_json:
        person = {"email": email, "phone": phone}
        click.echo(json.dumps({"tenant": tenant.slug, "person": person, "history": entries}))
        return
    if not entries:
        click.echo("no consent decisions recorded for this person")
        return
    for entry in entries:
        click.echo(_line(entry))


def _line(entry: dict[str, Any]) -> str:
    fact = entry["fact"]
    outcome = entry["delivery_status"] if entry["decision"] == "allowed" else entry["reason"]
    return (
        f"{entry['decided_at']}  journey {entry['journey_id']} step {entry['step_index']} "
        f"{entry['sink']}: {entry['decision']} ({outcome}); policy {entry['policy']}; "
        f"fact {fact.get('value')} from {fact.get('source')} {fact.get('field')}"
        f" received {fact.get('received_at') or '-'}"
    )
