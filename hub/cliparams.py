"""What the hub's command modules share: command-line value types, and the checks that a
tenant and the database exist.

``hub.cli`` registers the commands and the app registers ``hub.cli``; the command groups in
their own modules (``hub flow``, ``hub demo``) take these from here rather than from
``hub.cli`` or ``hub.console``, so no command module imports back into the app.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from hub.store import delivery_log


class Duration(click.ParamType):
    """``15m``, ``2h``, ``7d``: the durations of tenant files, as a command-line value."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from hub.durations import parse_duration

        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Since(click.ParamType):
    """A point in time given as a duration back from now (``2h``) or an ISO date or time;
    a time without a zone is UTC (the zone ``hub log`` prints)."""

    name = "since"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.now(UTC) - DURATION.convert(value, param, ctx)
        except click.BadParameter:
            pass
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            self.fail(
                f"{value!r} is neither a duration (30m, 2h, 3d) nor an ISO date or time "
                "(2026-06-01, 2026-06-01T08:00+02:00)",
                param,
                ctx,
            )
        return when if when.tzinfo else when.replace(tzinfo=UTC)


DURATION = Duration()
SINCE = Since()


def known_tenant(
    hub: Any, slug: str, param_hint: str = "'TENANT_SLUG'", *, logged: bool = False
) -> Any:
    """The configured tenant ``slug``; a usage error listing the tenants there are.

    With ``logged``, a tenant removed from the config that still has history is accepted
    (``None`` is returned for it).
    """
    tenant = hub.tenants.get(slug)
    if tenant is not None:
        return tenant
    names = set(hub.tenants)
    if logged:  # a tenant removed from the config still has its history
        with hub.store.begin() as conn:
            names |= set(conn.execute(sa.select(delivery_log.c.tenant).distinct()).scalars())
        if slug in names:
            return None
    if not hub.settings.config_dir.is_dir():
        raise click.ClickException(
            f"no configuration at {hub.settings.config_dir}: run hub where config/ is, or set "
            "HUB_CONFIG_DIR"
        )
    known = ", ".join(sorted(names)) or "none (see `hub config check`)"
    raise click.BadParameter(f"no tenant {slug!r}; known tenants: {known}", param_hint=param_hint)


def require_database(hub: Any) -> None:
    """Fail with where the hub looked unless its database exists and has its tables: a
    command that only reads must not create a database in whatever directory it runs in."""
    url = hub.store.engine.url
    file = url.database if url.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(file).exists():
        raise click.ClickException(
            f"no hub database at {file}: nothing has run with this HUB_VAR_DIR "
            f"({hub.settings.var_dir}); run hub where `hub run` ran, or set HUB_VAR_DIR "
            "or DATABASE_URL"
        )
    if not sa.inspect(hub.store.engine).has_table(
        delivery_log.name, schema=hub.settings.database_schema
    ):
        where = url.render_as_string(hide_password=True)
        raise click.ClickException(
            f"database {where} has no hub tables yet: start `hub run` or `hub worker` once "
            "against it, or check DATABASE_URL / DATABASE_SCHEMA"
        )
