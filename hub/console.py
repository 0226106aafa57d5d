"""The ``hub`` console script: one Click group that builds the app for the command being run
and turns every failure a user can cause into one line on stderr.

Why not Flask's ``FlaskGroup``: it adds ``-A/--app``, ``--debug`` and ``--env-file`` (the hub
has one app and reads ``.env`` itself), its ``--version`` prints Flask's versions, and it builds
the app before it knows the command, so ``hub log`` in the wrong directory would create
``var/`` there. The commands still live on ``app.cli``, so ``flask --app wsgi …`` runs them too.

Exit codes: 2 when the command line is wrong (an option, an argument, the content of a file
named as an argument), 1 when the command could not do its job (configuration, database,
Redis, the network, a plugin). ``HUB_DEBUG=1`` lets the original exception and its traceback
through.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
from flask import Flask, current_app

# Top-level commands that only read: their app writes nothing to disk (no var/, no tables).
# Anything else (run, worker, plugin groups) may create what it needs. `db` is here because
# its app must not migrate, nor refuse a database that is behind: its commands do the work.
# `plugin new` writes only the package it was asked for, in an author's repository: no var/.
READ_ONLY = frozenset(
    {
        "config",
        "consent",
        "db",
        "demo",
        "erasures",
        "export",
        "flow",
        "log",
        "plugin",
        "plugins",
        "replay",  # writes only with --apply, to a database that must exist already
        "report",
        "sweep",
    }
)
# Groups whose other commands write (`users create` makes the first admin, and with it the
# database) but where these subcommands only read.
READ_ONLY_SUBCOMMANDS = {"keys": frozenset({"list"}), "users": frozenset({"list"})}
USAGE = 2
FAILURE = 1
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", click.exceptions.Exit)


class HubError(click.ClickException):
    """An error shown as exactly one line, ``Error: …``, with its exit code."""

    def __init__(self, message: str, exit_code: int = FAILURE) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause printed
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True, file=file)


def version() -> str:
    try:
        number = metadata.version("abandonment-hub")
    except metadata.PackageNotFoundError:  # a source checkout that was never installed
        from hub.version import __version__ as number
    return f"abandonment-hub {number} (Python {platform.python_version()})"


class HubGroup(click.Group):
    """The ``hub`` group: builds the app lazily, once, knowing which command runs."""

    def __init__(self, create_app: Callable[[bool], Flask] | None = None, **attrs: Any) -> None:
        attrs.setdefault("help", "abandonment-hub: win back abandoned checkouts.")
        attrs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(name="hub", **attrs)
        self.create_app = create_app or _default_create_app
        self.params.append(
            click.Option(
                ["--version"],
                is_flag=True,
                expose_value=False,
                is_eager=True,
                help="Show the version and exit.",
                callback=_print_version,
            )
        )

    def app(self, ctx: click.Context, command: str | None) -> Flask:
        """The app of this invocation; ``command`` decides whether it may create state."""
        meta = ctx.find_root().meta
        if "hub.app" not in meta:
            rest = meta.get("hub.args", [])
            helping = any(a in ctx.help_option_names for a in rest)
            create = command is not None and not helping and not _reads_only(command, rest)
            meta["hub.app"] = self.create_app(create)
        return meta["hub.app"]

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        ctx.find_root().meta["hub.args"] = args[1:]  # `hub run --help` must not create var/
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        app = self.app(ctx, cmd_name)
        if not current_app or current_app._get_current_object() is not app:  # type: ignore[attr-defined]
            ctx.with_resource(app.app_context())
        return app.cli.get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self.app(ctx, None).cli.list_commands(ctx)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with one_line_errors(None):  # `hub --bogus`, and `hub --help` building the app
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors(ctx):
            return super().invoke(ctx)


def _reads_only(command: str, rest: list[str]) -> bool:
    """Whether ``hub COMMAND REST…`` only reads (``rest``: what follows the command)."""
    if command in READ_ONLY:
        return True
    subcommand = next((a for a in rest if not a.startswith("-")), None)
    return subcommand in READ_ONLY_SUBCOMMANDS.get(command, ())


def _default_create_app(create_state: bool) -> Flask:
    from hub.app import create_app

    # not strict: `hub config check` lists a bad setting, `hub run`/`hub worker` refuse it
    return create_app(create_state=create_state, strict=False)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version())
        ctx.exit()


@contextmanager
def one_line_errors(ctx: click.Context | None) -> Iterator[None]:
    """Turn every exception into a :class:`HubError` unless ``HUB_DEBUG`` is set."""
    try:
        yield
    except (click.exceptions.Exit, click.Abort, HubError, _NoArgsIsHelp):
        raise  # `hub` or `hub flow` alone prints its help, as Click does
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        raise HubError(exc.format_message() + hint, USAGE) from exc
    except click.ClickException as exc:
        raise HubError(exc.format_message(), exc.exit_code) from exc
    except BrokenPipeError:
        # `hub log | head`: the reader left; end quietly as Unix tools do (no message, exit 1)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python's flush at exit must not fail
        raise click.exceptions.Exit(1) from None
    except Exception as exc:
        if os.environ.get("HUB_DEBUG"):
            raise
        message = describe(exc, ctx.find_root().meta.get("hub.app") if ctx else None)
        plugin = _plugin_of(ctx)
        raise HubError(f"plugin {plugin}: {message}" if plugin else message) from exc


def _plugin_of(ctx: click.Context | None) -> str | None:
    """The plugin whose command group is running (plugin commands live under its name)."""
    if ctx is None or ctx.invoked_subcommand is None:
        return None
    app = ctx.find_root().meta.get("hub.app")
    if app is None:
        return None
    plugins = {name for name, _command in app.extensions["hub"].registry.commands}
    return ctx.invoked_subcommand if ctx.invoked_subcommand in plugins else None


def describe(exc: BaseException, app: Flask | None) -> str:
    """One line that says what failed and what to do, for the failures we know."""
    import redis
    import requests
    import sqlalchemy as sa
    from marshmallow import ValidationError

    from hub.events import first_error_field
    from hub.hookspecs import PayloadError

    hub = app.extensions["hub"] if app is not None else None
    if isinstance(exc, PayloadError):
        return f"unusable payload: {exc.field or 'body'}: {exc.message}"
    if isinstance(exc, ValidationError):
        field, message = first_error_field(exc.messages)
        return f"{field}: {message}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, sa.exc.ArgumentError | sa.exc.NoSuchModuleError):
        return f"DATABASE_URL: {exc}"
    if isinstance(exc, sa.exc.DBAPIError | sa.exc.NoSuchTableError):
        where = _database(hub)
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return (
            f"database {where}: {cause} (check DATABASE_URL / DATABASE_SCHEMA and that the "
            "server is up)"
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return f"cannot reach Redis: {_redis_hint(hub)} ({exc})"
    if isinstance(exc, redis.RedisError):
        return f"Redis: {exc}"
    if isinstance(exc, requests.RequestException):
        return f"HTTP request failed: {exc.__class__.__name__}: {exc}"
    if hub is None:  # the app itself could not be built: a setting or the environment
        return f"cannot start the hub: {exc}"
    return (
        f"unexpected {exc.__class__.__name__}: {exc} (HUB_DEBUG=1 shows the traceback; "
        "please report it)"
    )


def _database(hub: Any) -> str:
    if hub is None:
        return "(DATABASE_URL)"
    return hub.store.engine.url.render_as_string(hide_password=True)


def _redis_hint(hub: Any) -> str:
    if hub is None:
        return "REDIS_URL"
    return hub.redis_unset_reason() or f"REDIS_URL={_without_password(hub.queues.url)}"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***", 1)))


def main() -> None:
    """Entry point of the ``hub`` console script."""
    HubGroup().main(prog_name="hub")
