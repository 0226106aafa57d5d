"""``hub keys …``: make, list and revoke the REST API's keys (see :mod:`hub.apikeys`)."""

from __future__ import annotations

import click

from hub import apikeys
from hub.cliparams import known_tenant, require_database
from hub.current import current_hub


@click.group("keys")
def keys_group() -> None:
    """API keys: an agency admin key sees every tenant, a tenant's key only its own."""


@keys_group.command("create")
@click.argument("tenant", required=False)
@click.option("--admin", is_flag=True, help="An agency admin key (every tenant).")
@click.option("--name", default=None, help="What the key is for (shown in `hub keys list`).")
def create_command(tenant: str | None, admin: bool, name: str | None) -> None:
    """Make a key for TENANT (or --admin) and print it once: only its hash is kept."""
    hub = current_hub()
    if admin == (tenant is not None):
        raise click.UsageError("name a TENANT or pass --admin (one of them)")
    if tenant is not None:
        known_tenant(hub, tenant, "'TENANT'")
    label = name or ("agency admin" if admin else tenant)
    key, prefix = apikeys.create_key(hub.store, hub.settings.secret_key, tenant, label)
    click.echo(key)
    click.echo(
        f"key {prefix} for {'every tenant' if admin else tenant}: store it now, it is not shown "
        "again",
        err=True,
    )


@keys_group.command("list")
def list_command() -> None:
    """List the keys (prefix, tenant, name, created, last used, revoked); never the keys."""
    hub = current_hub()
    require_database(hub)  # only reads: never creates a database where it happens to run
    for row in apikeys.list_keys(hub.store):
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        revoked = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        click.echo(
            f"{row.prefix}  {row.tenant or '(admin)':<16} {row.name:<24} "
            f"created {row.created_at:%Y-%m-%d %H:%M}  used {used}  {revoked}"
        )


@keys_group.command("revoke")
@click.argument("prefix")
def revoke_command(prefix: str) -> None:
    """Revoke the key with PREFIX (as `hub keys list` shows it); effective at once."""
    if not apikeys.revoke_key(current_hub().store, prefix):
        raise click.BadParameter(f"no active key {prefix!r}", param_hint="'PREFIX'")
    click.echo(f"revoked {prefix}")
