"""The plugin manager: entry points in, broken plugins named and isolated, no private path."""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from hub import hookspecs
from hub.plugins import load_plugins

THIRD_PARTY = '''
"""A throw-away third-party plugin: one source, one sink, one command."""
import click
from marshmallow import Schema, fields

from hub import Sink, Source, hookimpl


class AcmeConfig(Schema):
    token = fields.String(required=True)


class AcmeSource(Source):
    name = "acme_source"
    config_schema = AcmeConfig

    def verify(self, request, config):
        pass

    def parse(self, request, config):
        return []


class AcmeSink(Sink):
    name = "acme_sink"
    channel = "sms"
    config_schema = AcmeConfig

    def address(self, customer, config, context):
        return customer.get("phone")

    def send(self, message, config):
        return "acme-1"


@hookimpl
def hub_sources():
    return [AcmeSource()]


@hookimpl
def hub_sinks():
    return [AcmeSink()]


@click.command("hello")
def hello():
    click.echo("hello from acme")


@hookimpl
def hub_commands():
    return [hello]


@hookimpl
def hub_template_filters():
    return {"shout": lambda text: str(text).upper() + "!"}
'''


def make_distribution(
    root: Path, dist: str, version: str, module: str, source: str, entry_name: str
) -> Path:
    """An installed distribution on disk: a module plus a .dist-info with an entry point,
    exactly what `pip install` leaves in site-packages."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[abandonment_hub]\n{entry_name} = {module}\n")
    (info / "RECORD").write_text("")
    return root


@pytest.fixture
def site_dir(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith(("acme_plugin", "broken_"))]:
        del sys.modules[name]


def test_a_pip_installed_third_party_plugin_loads_like_a_built_in(site_dir):
    make_distribution(site_dir, "hub-plugin-acme", "1.2.3", "acme_plugin", THIRD_PARTY, "acme")
    registry = load_plugins()
    assert "acme_source" in registry.sources and "acme_sink" in registry.sinks
    acme = registry.plugins["acme"]
    assert (acme.version, acme.origin, acme.error) == ("1.2.3", "hub-plugin-acme", None)
    assert acme.sources == ["acme_source"] and acme.sinks == ["acme_sink"]
    # the built-ins arrive through the very same entry-point group
    stripe = registry.plugins["stripe"]
    assert stripe.origin == "built-in" and stripe.sources == ["stripe"]
    assert [name for name, _cmd in registry.commands] == ["acme"]
    assert registry.template_filters["shout"]("hi") == "HI!"


def test_hub_plugins_lists_version_and_origin_and_runs_plugin_commands(site_dir, tmp_path):
    make_distribution(site_dir, "hub-plugin-acme", "1.2.3", "acme_plugin", THIRD_PARTY, "acme")
    (tmp_path / "config" / "tenants").mkdir(parents=True)
    env = dict(
        os.environ,
        PYTHONPATH=str(site_dir),
        HUB_CONFIG_DIR=str(tmp_path / "config"),
        HUB_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path}/h.db",
    )
    env.pop("DATABASE_SCHEMA", None)
    out = subprocess.run(
        [sys.executable, "-m", "hub", "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = {p["name"]: p for p in json.loads(out)}
    assert listed["acme"]["version"] == "1.2.3"
    assert listed["acme"]["origin"] == "hub-plugin-acme"
    assert listed["email"]["origin"] == "built-in"
    hello = subprocess.run(
        [sys.executable, "-m", "hub", "acme", "hello"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert hello.strip() == "hello from acme"


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import does_not_exist_anywhere\n", "import failed"),
        (
            "from hub import hookimpl\n@hookimpl\ndef hub_sorces():\n    return []\n",
            "unknown hook(s): hub_sorces",
        ),
        (
            "from hub import hookimpl\n@hookimpl\ndef hub_sources(app):\n    return []\n",
            "invalid hook",
        ),
        (
            "from hub import hookimpl\n@hookimpl\ndef hub_sources():\n"
            "    raise RuntimeError('x')\n",
            "hub_sources raised",
        ),
        (
            "from hub import hookimpl\n@hookimpl\ndef hub_sinks():\n    return [object()]\n",
            "not a named Sink",
        ),
    ],
    ids=["import-error", "misspelled-hook", "bad-arguments", "raising-hook", "wrong-type"],
)
def test_a_broken_plugin_is_reported_by_name_and_the_rest_load(site_dir, source, error):
    make_distribution(site_dir, "hub-plugin-broken", "0.1", "broken_plugin", source, "broken")
    registry = load_plugins()
    assert error in registry.plugins["broken"].error
    assert any('plugin "broken"' in e for e in registry.errors)
    assert "stripe" in registry.sources and "email" in registry.sinks


def test_two_plugins_claiming_one_source_name_is_an_error_naming_both(site_dir):
    clash = THIRD_PARTY.replace('name = "acme_source"', 'name = "stripe"')
    make_distribution(site_dir, "hub-plugin-acme", "1.0", "acme_plugin", clash, "acme")
    registry = load_plugins()
    [message] = [e for e in registry.errors if "provided by both" in e]
    assert '"stripe"' in message and '"acme"' in message
    assert "stripe" not in registry.sources  # never "last one wins"


def test_the_app_starts_with_a_broken_plugin(site_dir, tmp_path):
    make_distribution(
        site_dir,
        "hub-plugin-broken",
        "0.1",
        "broken_plugin",
        "raise ImportError('boom')\n",
        "broken",
    )
    (tmp_path / "config" / "tenants").mkdir(parents=True)
    from hub.app import create_app

    app = create_app(
        {
            "HUB_CONFIG_DIR": str(tmp_path / "config"),
            "HUB_VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": f"sqlite:///{tmp_path}/h.db",
            "DATABASE_SCHEMA": "",
        }
    )
    assert app.test_client().get("/healthz").status_code == 200
    assert app.extensions["hub"].registry.plugins["broken"].error


def test_every_hookspec_is_documented_and_implemented_by_a_built_in():
    specs = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("hub_")
    ]
    assert specs, "no hookspecs found"
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 40, f"hookspec {name} needs a docstring for plugin authors"
    for cls in (hookspecs.Source, hookspecs.Sink):
        for method in (
            "verify",
            "parse",
            "respond",
            "demo_request",
            "preview_headers",
            "address",
            "send",
        ):
            if hasattr(cls, method):
                assert inspect.getdoc(getattr(cls, method)), f"{cls.__name__}.{method}"
    implemented = set()
    for ep in metadata.entry_points(group="abandonment_hub"):
        if ep.dist and ep.dist.metadata["Name"] == "abandonment-hub":
            module = Path(ep.load().__file__)
            tree = ast.parse(module.read_text())
            implemented |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    # hub_commands and hub_template_filters are exercised by the third-party plugin tests
    assert {"hub_sources", "hub_sinks"} <= implemented


SHOUTER = """
from hub import hookimpl


@hookimpl
def hub_template_filters():
    return {"shout": lambda text: str(text) + "?", "e": lambda text: text}
"""


def test_two_plugins_claiming_one_template_filter_is_an_error_naming_both(site_dir):
    make_distribution(site_dir, "hub-plugin-acme", "1.0", "acme_plugin", THIRD_PARTY, "acme")
    make_distribution(
        site_dir, "hub-plugin-shouter", "1.0", "acme_plugin_shouter", SHOUTER, "shouter"
    )
    registry = load_plugins()
    [clash] = [e for e in registry.errors if 'template filter "shout"' in e]
    assert '"acme"' in clash and '"shouter"' in clash
    assert "shout" not in registry.template_filters  # never "last one wins"
    # Jinja2's own filters cannot be replaced either: "e" escapes HTML in e-mail templates
    [escape] = [e for e in registry.errors if 'template filter "e"' in e]
    assert '"Jinja2"' in escape and '"shouter"' in escape
    assert "e" not in registry.template_filters


SERVICES_PLUGIN = """
from marshmallow import Schema, fields

from hub import Sink, hookimpl

SEEN = {}


class Config(Schema):
    api_key = fields.String(required=True, metadata={"secret": True})


class AcmeSms(Sink):
    name = "acme_sms"
    channel = "sms"
    config_schema = Config
    idempotent = False

    def __init__(self, services):
        self.services = services

    def address(self, customer, config, context):
        return customer.get("phone")

    def send(self, message, config):
        return "sms-1"


@hookimpl
def hub_sinks(services):
    SEEN["services"] = services
    try:
        services.public_url()
    except RuntimeError as exc:
        SEEN["too_early"] = str(exc)
    return [AcmeSms(services)]
"""


def test_a_plugin_gets_services_scoped_to_itself(site_dir, hub_factory):
    make_distribution(site_dir, "hub-plugin-sms", "1.0", "acme_plugin_sms", SERVICES_PLUGIN, "sms")
    tenant = """
name = "Acme"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"

[sinks.acme_sms]
api_key = "k-1"

[sinks.outbox]
"""
    harness = hub_factory({"acme": tenant})
    import acme_plugin_sms

    services = acme_plugin_sms.SEEN["services"]
    assert services is harness.hub.sinks["acme_sms"].services
    assert services.plugin == "sms"
    assert "not inside the hook call" in acme_plugin_sms.SEEN["too_early"]
    assert services.config("acme") == {"api_key": "k-1"}
    assert services.config("nobody") is None
    with pytest.raises(LookupError):
        services.config("acme", "outbox")  # another plugin's table
    with harness.app.app_context():
        services.data.put("acme", "k", {"v": 1})
        outbox = harness.hub.registry.services["outbox"]
        assert outbox.data.get("acme", "k") is None  # another plugin's data is invisible
        assert services.data.get("acme", "k") == {"v": 1}
        assert services.public_url() == "http://hub.test"
        answer = services.error_response(404, "not_found", "no such tenant", "tenant")
        assert answer.status_code == 404
        assert answer.get_json() == {
            "code": "not_found",
            "message": "no such tenant",
            "field": "tenant",
        }
    with pytest.raises(LookupError):
        services.record_provider_status("id-1", "delivered", sink="email")
