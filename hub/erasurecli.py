"""``hub erase``, ``hub erasures`` and ``hub retention run``: the operator's side of
:mod:`hub.erasure` (the REST API calls the same functions)."""

from __future__ import annotations

import getpass
import json
from typing import Any

import click
import sqlalchemy as sa

from hub.cliparams import require_database
from hub.current import current_hub
from hub.erasure import ErasureResult, erase_counts, erase_person, find_erasures, purge_expired
from hub.store import events


def _tenant_with_data(hub: Any, slug: str, param_hint: str = "'TENANT_SLUG'") -> None:
    """A configured tenant, or one removed from the config whose data is still stored (its
    people may still ask to be erased); else a usage error listing the known ones."""
    if slug in hub.tenants:
        return
    with hub.store.begin() as conn:
        stored = conn.execute(sa.select(events.c.id).where(events.c.tenant == slug).limit(1))
        if stored.first() is not None:
            return
    known = ", ".join(sorted(hub.tenants)) or "none (see `hub config check`)"
    raise click.BadParameter(f"no tenant {slug!r}; known tenants: {known}", param_hint=param_hint)


def _print(result: ErasureResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    verb = "would erase" if result.dry_run else "erased"
    click.echo(f"{result.tenant}: {verb} {erase_counts(result.rows.items())}")
    for proof_id, digest in zip(result.proof_ids, result.digests, strict=False):
        click.echo(f"proof #{proof_id}: digest {digest}")
    for problem in result.problems:
        click.echo(f"incomplete: {problem}", err=True)


@click.command("erase")
@click.argument("tenant_slug")
@click.option("--email", default=None, help="The person's e-mail address.")
@click.option("--phone", default=None, help="The person's phone number (+49 151 …).")
@click.option("--dry-run", is_flag=True, help="Show what would go; change nothing.")
@click.option(
    "--suppress",
    is_flag=True,
    help="Also never message the person again (kept as a digest, not the address).",
)
@click.option("--actor", default=None, help="Who asked, for the proof (default: cli:<user>).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def erase_command(
    tenant_slug: str,
    email: str | None,
    phone: str | None,
    dry_run: bool,
    suppress: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Erase one person (e-mail and/or phone) from a tenant's data; counts stay, a proof is
    kept. Exits 1 when a plugin could not erase its part (run it again)."""
    hub = current_hub()
    require_database(hub)
    if not email and not phone:
        raise click.UsageError("give --email or --phone")
    _tenant_with_data(hub, tenant_slug)
    try:
        result = erase_person(
            hub,
            tenant_slug,
            email=email,
            phone=phone,
            actor=actor or f"cli:{getpass.getuser()}",
            dry_run=dry_run,
            suppress=suppress,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--email' / '--phone'") from None
    _print(result, as_json)
    if not result.complete:
        raise SystemExit(1)


@click.command("erasures")
@click.argument("tenant_slug")
@click.option("--email", default=None, help="Only erasures of this e-mail address.")
@click.option("--phone", default=None, help="Only erasures of this phone number.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def erasures_command(tenant_slug: str, email: str | None, phone: str | None, as_json: bool) -> None:
    """List a tenant's erasure proofs (newest first); with --email/--phone, that person's,
    matched by keyed digest under HUB_SECRET_KEY and HUB_SECRET_KEY_FALLBACKS."""
    hub = current_hub()
    require_database(hub)
    _tenant_with_data(hub, tenant_slug)
    try:
        rows = find_erasures(hub, tenant_slug, email=email, phone=phone)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--email' / '--phone'") from None
    for row in rows:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": row.id,
                        "tenant": row.tenant,
                        "kind": row.kind,
                        "identity_digest": row.identity_digest,
                        "actor": row.actor,
                        "erased_at": row.erased_at.isoformat(),
                        "rows": row.rows,
                    }
                )
            )
            continue
        click.echo(
            f"#{row.id} {row.erased_at:%Y-%m-%d %H:%M:%S} {row.kind} by {row.actor or '-'}: "
            f"{erase_counts(row.rows.items())}"
        )
    if not rows and (email or phone):
        click.echo("no erasure recorded for this person", err=True)
        raise SystemExit(1)


@click.group("retention")
def retention_group() -> None:
    """Purge raw payloads and personal data older than each tenant's ``retention``."""


@retention_group.command("run")
@click.option("--tenant", "slug", default=None, help="Only this tenant.")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tenant.")
def retention_run(slug: str | None, dry_run: bool, as_json: bool) -> None:
    """Run retention now (workers also run it hourly, and ``hub sweep`` runs it)."""
    hub = current_hub()
    require_database(hub)
    if slug is not None:
        _tenant_with_data(hub, slug, "'--tenant'")
    tenants = [hub.tenants[slug]] if slug in hub.tenants else []
    if slug is None:
        tenants = list(hub.tenants.values())
    for tenant in tenants:
        result = purge_expired(hub, tenant, dry_run=dry_run)
        if result is None:
            if not as_json:
                click.echo(f"{tenant.slug}: no retention set")
            continue
        _print(result, as_json)


COMMANDS = (erase_command, erasures_command, retention_group)
