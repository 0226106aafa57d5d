"""The `hub` command as a new user meets it: bad input gets one line and the right exit code,
reading commands create nothing, `hub log` filters, `flow preview` takes a Shopify payload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from hub import hookimpl
from hub.app import create_app
from hub.console import HubGroup
from hub.engine import Engine
from hub.events import load_event
from hub.ingress import store_event
from plugins.shopify.source import ShopifySource

ROOT = Path(__file__).resolve().parents[1]

SHOP = """
name = "Bakery"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"
frequency_cap = {{ max = 5, per = "1h" }}

[consent]
email = "opt_in"

[sources.shopify]
shop_domain = "bakery.myshopify.com"
client_secret = "shpss_test"
abandon_after = "15m"

[sinks.outbox]
dir = "{outbox}"

[[flows]]
name = "default"
  [[flows.steps]]
  after = "1h"
  channels = ["outbox"]
  template = "reminder"
"""


@click.command("load")
@click.argument("file", type=click.Path(path_type=Path))
def load_command(file: Path) -> None:
    """A third-party command that trusts its input, as plugin code may."""
    click.echo(len(json.loads(file.read_text())))


def _plugin() -> types.ModuleType:
    plugin = types.ModuleType("acme_tools")
    plugin.hub_commands = hookimpl(lambda: [load_command])
    return plugin


@dataclass
class Cli:
    """`hub` in-process on a test hub, with one third-party plugin command."""

    harness: Any
    root: Path

    @property
    def config(self) -> dict:
        return self.harness.config

    def group(self, **overrides: str) -> HubGroup:
        config = {**self.config, **overrides}
        return HubGroup(
            create_app=lambda create_state: create_app(
                config, extra_plugins=(_plugin(),), create_state=create_state
            )
        )

    def __call__(self, *args: str, env: dict | None = None, **overrides: str):  # noqa: ANN204
        return CliRunner().invoke(self.group(**overrides), list(args), env=env)


@pytest.fixture
def cli(hub_factory, tmp_path) -> Cli:
    harness = hub_factory({"bakery": SHOP.format(outbox=tmp_path / "outbox")})
    return Cli(harness, tmp_path)


def _files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "in").mkdir(exist_ok=True)
    files = {
        "not_json": "{ not json",
        "bad_line": '{"kind": "checkout.abandoned"}\n{broken\n',
        "payload": ShopifySource()
        .demo_request({"shop_domain": "bakery.myshopify.com", "client_secret": "x"}, _now())
        .body.decode(),
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / "in" / f"{name}.json"
        paths[name].write_text(text)
    return paths


def _now() -> datetime:
    return datetime.now(UTC)


def _preview(payload: Path, topic: str) -> list[str]:
    """`hub flow preview` of a saved Shopify payload and its topic header (the README's form)."""
    return [
        "flow",
        "preview",
        "bakery",
        str(payload),
        "--source",
        "shopify",
        "--header",
        f"X-Shopify-Topic: {topic}",
    ]


# (command path, arguments after it, config overrides, exit code, words in the error line)
BAD_INPUT = [
    ("run", ["--port", "eighty"], {}, 2, "Invalid value for '--port'"),
    ("worker", ["--max-idle-time", "soon"], {}, 2, "'--max-idle-time'"),
    ("plugins", ["--yaml"], {}, 2, "No such option '--yaml'"),
    ("config check", ["bakery"], {}, 2, "unexpected extra argument"),
    ("demo", ["--tenant", "nope"], {}, 2, "no tenant 'nope'; known tenants: bakery"),
    ("sweep", [], {"REDIS_URL": "redis://127.0.0.1:1/0"}, 1, "cannot reach Redis"),
    ("log", ["--since", "yesterday"], {}, 2, "'--since': 'yesterday' is neither a duration"),
    (
        "flow preview",
        ["bakery", "{payload}", "--source", "shopify", "--header", "X-Shopify-Topic update"],
        {},
        2,
        "'X-Shopify-Topic update' is not 'Name: value'",
    ),
    ("flow simulate", ["bakery", "{bad_line}"], {}, 2, "bad_line.json: line 2 is not JSON"),
    ("acme_tools load", ["{not_json}"], {}, 1, "plugin acme_tools: not valid JSON"),
    ("db upgrade", [], {"DATABASE_URL": "postgresql://hub@127.0.0.1:1/hub"}, 1, "database "),
    ("db current", ["now"], {}, 2, "unexpected extra argument"),
    ("db history", ["--all"], {}, 2, "No such option '--all'"),
    ("plugin new", ["sink", "Acme-SMS"], {}, 2, "use lower-case letters, digits and _"),
    ("report", ["bakery", "--by", "week"], {}, 2, "Invalid value for '--by'"),
    ("export", ["bakery", "--since", "2026-11-05", "--until", "2026-11-01"], {}, 2, "is before"),
    ("keys create", ["nope"], {}, 2, "no tenant 'nope'; known tenants: bakery"),
    ("keys list", ["--all"], {}, 2, "No such option '--all'"),
    ("keys revoke", ["0123456789ab"], {}, 2, "no active key '0123456789ab'"),
    ("users create", ["a@b.example", "--tenant", "nope"], {}, 2, "no tenant 'nope'"),
    ("users delete", ["nobody@agency.example"], {}, 1, "no account for nobody@agency.example"),
    ("users list", ["--all"], {}, 2, "No such option '--all'"),
    ("erase", ["bakery", "--email", "jane@"], {}, 2, "'jane@' is not an e-mail address"),
    ("erasures", ["nope"], {}, 2, "no tenant 'nope'; known tenants: bakery"),
    ("consent", ["bakery", "--phone", "12"], {}, 2, "'12' is not a phone number"),
    ("retention run", ["--tenant", "nope"], {}, 2, "no tenant 'nope'; known tenants: bakery"),
    ("replay", ["bakery", "--since", "2026-11-05", "--until", "2026-11-01"], {}, 2, "is before"),
]

# more bad input for the commands users reach first
MORE_BAD_INPUT = [
    ("log", ["--tenant", "nope"], {}, 2, "no tenant 'nope'; known tenants: bakery"),
    ("flow preview", ["bakery", "{not_json}"], {}, 2, "not_json.json: not JSON"),
    ("flow preview", ["bakery", "{payload}", "--source", "shopify"], {}, 2, "X-Shopify-Topic"),
    ("flow preview", ["bakery", "missing.json"], {}, 2, "'missing.json' does not exist"),
    ("flow simulate", ["bakery", "{bad_line}", "--until", "1 week"], {}, 2, "'1 week'"),
    ("log", [], {"DATABASE_URL": "postgresql://hub@127.0.0.1:1/hub"}, 1, "database "),
    ("log", [], {"HUB_MAX_BODY_BYTES": "lots"}, 1, "HUB_MAX_BODY_BYTES='lots': expected a num"),
    ("", ["--app", "wsgi"], {}, 2, "No such option '--app'"),
    ("report", ["nope"], {}, 2, "no tenant 'nope'; known tenants: bakery"),
    ("report", ["bakery", "--since", "1.11.2026"], {}, 2, "'1.11.2026' does not match"),
    ("report", ["bakery", "--since", "2026-12-01", "--until", "2026-11-01"], {}, 2, "is before"),
    ("report", ["bakery", "--format", "xml"], {}, 2, "Invalid value for '--format'"),
    ("export", ["nope"], {}, 2, "no tenant 'nope'"),
    ("replay", ["nope", "--since", "7d"], {}, 2, "no tenant 'nope'; known tenants: bakery"),
    ("replay", ["bakery"], {}, 2, "Missing option '--since'"),
    ("replay", ["bakery", "--since", "7d", "--flow", "{not_json}"], {}, 2, "not_json.json: cannot"),
]


def _leaf_commands(group: click.Group, ctx: click.Context, prefix: str = "") -> set[str]:
    paths = set()
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            paths |= _leaf_commands(command, ctx, path)
        else:
            paths.add(path)
    return paths


def test_every_command_has_a_bad_input_case(cli):
    """A new command (a plugin's, `hub db …`) must join BAD_INPUT: the test names it."""
    app = cli.group().create_app(False)
    with app.app_context():
        ctx = click.Context(app.cli)
        assert _leaf_commands(app.cli, ctx) == {case[0] for case in BAD_INPUT}


@pytest.mark.parametrize(
    ("command", "args", "overrides", "code", "words"),
    BAD_INPUT + MORE_BAD_INPUT,
    ids=[f"{c[0] or 'hub'} {' '.join(c[1])}" for c in BAD_INPUT + MORE_BAD_INPUT],
)
def test_bad_input_gets_one_error_line_and_exit_code(cli, command, args, overrides, code, words):
    files = _files(cli.root)
    argv = [*command.split(), *(a.format(**files) for a in args)]
    result = cli(*argv, **overrides)
    assert result.exit_code == code, result.stdout
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert words in lines[0]
    assert "Traceback" not in result.output


def test_hub_debug_lets_the_traceback_through(cli):
    files = _files(cli.root)
    result = cli("acme_tools", "load", str(files["not_json"]), env={"HUB_DEBUG": "1"})
    assert isinstance(result.exception, json.JSONDecodeError)


def test_version_and_help_are_the_hubs_own(cli):
    version = cli("--version")
    assert version.exit_code == 0
    assert version.stdout.startswith("abandonment-hub 0.1.0 (Python 3.")
    helped = cli("--help").stdout
    assert "Commands:" in helped and "flow" in helped and "acme_tools" in helped
    assert "--app" not in helped and "--debug" not in helped and "--env-file" not in helped
    bare = cli("flow")  # a group alone shows its help, not a one-line squeeze of it
    assert bare.exit_code == 2 and "preview" in bare.output and "Commands:" in bare.output


# ------------------------------------------------------------------------------ hub log


def _deliver(harness, email: str, consent: str, at: datetime) -> None:  # noqa: ANN001
    """One abandonment through the real engine, its step fired an hour later."""
    engine = Engine(harness.hub, clock=lambda: at + timedelta(hours=1, seconds=1))
    event = load_event(
        {
            "kind": "checkout.abandoned",
            "event_key": f"e-{email}",
            "checkout_id": f"c-{email}",
            "occurred_at": at.isoformat(),
            "tenant": "bakery",
            "source": "shopify",
            "customer": {"email": email, "first_name": "Jane"},
            "cart": {"total": 4999, "currency": "EUR"},
            "consent": {"email": consent},
        }
    )
    engine.process_event(store_event(harness.hub.store, event, None, at))
    for step in harness.rows("steps", status="scheduled"):
        engine.run_step(step.id)


@pytest.fixture
def logged(cli) -> Cli:
    """A sent reminder two days ago, and a reminder skipped for want of consent an hour ago."""
    now = _now()
    _deliver(cli.harness, "jane@example.com", "opt_in", now - timedelta(days=2, hours=1))
    _deliver(cli.harness, "max@example.com", "opt_out", now - timedelta(hours=2))
    return cli


def test_hub_log_shows_masked_recipients_oldest_first(logged):
    result = logged("log")
    assert result.exit_code == 0, result.stdout
    sent, skipped, step = result.stdout.strip().splitlines()
    assert "bakery journey 1 step 0 outbox → j***@example.com attempt 1: sent" in sent
    assert "outbox → m***@example.com attempt 0: skipped (no consent (email: opt_out))" in skipped
    # the step's own row has no delivery: the recipient comes from the journey
    assert "journey 2 step 0 - → m***@example.com attempt 0: skipped (outbox: skipped" in step
    assert "jane@" not in result.stdout and "max@" not in result.stdout


def test_hub_log_filters_by_status_and_since(logged):
    skipped = logged("log", "--status", "skipped").stdout.splitlines()
    assert len(skipped) == 2 and all(": skipped (" in line for line in skipped)
    assert len(logged("log", "--status", "sent,skipped").stdout.splitlines()) == 3
    assert len(logged("log", "--status", "sent", "--status", "failed").stdout.splitlines()) == 1
    recent = logged("log", "--since", "1d").stdout
    assert "m***@" in recent and "j***@" not in recent
    yesterday = (_now() - timedelta(days=1)).isoformat(timespec="seconds")
    assert logged("log", "--since", yesterday).stdout == recent
    assert logged("log", "--since", "2000-01-01").stdout.count("\n") == 3


def test_hub_log_json_one_object_per_line_and_unmask(logged):
    lines = logged("log", "--json", "--unmask").stdout.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["recipient"] for r in rows] == ["jane@example.com"] + ["max@example.com"] * 2
    assert rows[0]["status"] == "sent" and rows[0]["sink"] == "outbox"
    assert rows[1]["reason"] == "no consent (email: opt_out)" and rows[1]["channel"] == "email"
    assert datetime.fromisoformat(rows[0]["at"]).tzinfo is not None
    masked = json.loads(logged("log", "--json").stdout.splitlines()[0])
    assert masked["recipient"] == "j***@example.com"


# -------------------------------------------------------------------- reading creates nothing


def _bare_env(**extra: str) -> dict:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DATABASE_", "REDIS_URL"))
    }
    env.update(extra)
    return env


def _hub(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=cwd,
        env=_bare_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hub_log_elsewhere_says_where_it_looked_and_creates_nothing(tmp_path):
    done = _hub(tmp_path, "log")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"Error: no hub database at {tmp_path}/var/hub.db")
    )
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("group", ["users", "keys"])
def test_listing_accounts_or_keys_elsewhere_creates_nothing(tmp_path, group):
    """`list` only reads, though `create` in the same group may make the database."""
    done = _hub(tmp_path, group, "list")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("Error: no hub database at ")
    assert list(tmp_path.iterdir()) == []


def test_help_and_preview_in_a_fresh_directory_create_nothing(tmp_path):
    (tmp_path / "config" / "tenants").mkdir(parents=True)
    (tmp_path / "config" / "tenants" / "bakery.toml").write_text(
        SHOP.format(outbox=tmp_path / "outbox")
    )
    payload = _files(tmp_path)["payload"]
    assert _hub(tmp_path, "--help").returncode == 0
    done = _hub(tmp_path, *_preview(payload, "checkouts/update"))
    assert done.returncode == 0, done.stderr
    assert "previewing that abandonment" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config", "in"]


def test_sweep_never_starts_an_embedded_redis(cli):
    result = cli("sweep", REDIS_URL="")
    assert result.exit_code == 1
    assert "REDIS_URL is not set and no embedded Redis runs at unix://" in result.stderr
    assert not (Path(cli.config["HUB_VAR_DIR"]) / "redis.sock").exists()


# -------------------------------------------------------------------------- flow preview


def test_a_shopify_update_previews_the_abandonment_it_becomes(cli):
    """The README's own example: a saved checkouts/update payload and its topic header."""
    payload = _files(cli.root)["payload"]
    result = cli(*_preview(payload, "checkouts/update"))
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert "the hub infers its abandonment at" in lines[0]
    assert "(abandon_after 15m); previewing that abandonment" in lines[0]
    assert lines[1].startswith("flow 'default' for checkout ")
    assert "step 0 at" in lines[2] and "(reminder): outbox → j***@example.com [en]" in lines[2]


def test_an_order_payload_previews_no_flow(cli):
    payload = _files(cli.root)["payload"]
    result = cli(*_preview(payload, "orders/create"))
    assert result.exit_code == 0, result.stdout
    assert result.stdout.strip().endswith("only abandonments start a flow")


def test_a_fresh_install_with_a_secret_key_creates_its_var_folder(tmp_path):
    """HUB_SECRET_KEY set means no generated key file, which used to be what made var/: the
    SQLite database then could not be opened on the first start."""
    var = tmp_path / "not" / "yet" / "var"
    app = create_app(
        {
            "HUB_SECRET_KEY": "a-key-from-the-environment",
            "HUB_VAR_DIR": str(var),
            "HUB_CONFIG_DIR": str(tmp_path / "config"),
            "DATABASE_URL": f"sqlite:///{var / 'hub.db'}",
        }
    )
    assert (var / "hub.db").is_file()
    app.extensions["hub"].close()
