"""``hub users …``: the dashboard's accounts (agency admins and client viewers).

The first admin can only be made here: the dashboard has no sign-up page, so nobody on the
network can make themselves an account.
"""

from __future__ import annotations

import sys

import click

from hub.cliparams import known_tenant, require_database
from hub.current import current_hub
from hub.dashboard.accounts import AccountError, create_user, delete_user, list_users


@click.group("users")
def users_group() -> None:
    """Dashboard accounts: create, list and delete them."""


@users_group.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="An agency admin: sees every tenant.")
@click.option("--tenant", default=None, help="A client viewer of this tenant (read-only).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (scripts) instead of prompting.",
)
def create_command(email: str, admin: bool, tenant: str | None, password_stdin: bool) -> None:
    """Create the account EMAIL: give --admin or --tenant SLUG."""
    if admin == bool(tenant):
        raise click.UsageError("give exactly one of --admin and --tenant SLUG")
    hub = current_hub()
    if tenant:
        known_tenant(hub, tenant, "--tenant")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(hub.store, email, password, tenant)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    scope = "admin of every tenant" if user.is_admin else f"viewer of {user.tenant}"
    click.echo(f"created {user.email}: {scope}")


@users_group.command("delete")
@click.argument("email")
def delete_command(email: str) -> None:
    """Delete the account EMAIL; its sessions end with it."""
    if not delete_user(current_hub().store, email):
        raise click.ClickException(f"no account for {email}")
    click.echo(f"deleted {email}")


@users_group.command("list")
def list_command() -> None:
    """List the accounts: e-mail, role, tenant, last sign-in (UTC)."""
    hub = current_hub()
    require_database(hub)  # only reads: never creates a database where it happens to run
    for row in list_users(hub.store):
        last = f"{row.last_sign_in_at:%Y-%m-%d %H:%M}" if row.last_sign_in_at else "never"
        click.echo(f"{row.email:<40} {row.role:<7} {row.tenant or '*':<16} last sign-in {last}")
