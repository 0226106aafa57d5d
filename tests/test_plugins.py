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
    for cls in (hookspecs.Source, hookspecs.Sink, hookspecs.ConversionProbe):
        for method in (
            "ready",
            "converted",
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
    assert {"hub_sources", "hub_sinks", "hub_conversion_probes"} <= implemented


PROBER = """
from hub import ConversionProbe, hookimpl


class StripeAgain(ConversionProbe):
    source = "stripe"

    def converted(self, question, config, timeout):
        return True


@hookimpl
def hub_conversion_probes():
    return [StripeAgain()]
"""


def test_two_plugins_probing_one_source_is_an_error_naming_both(site_dir):
    make_distribution(site_dir, "hub-plugin-prober", "1.0", "acme_prober", PROBER, "prober")
    registry = load_plugins()
    [clash] = [e for e in registry.errors if 'conversion probe "stripe"' in e]
    assert '"stripe"' in clash and '"prober"' in clash
    assert "stripe" not in registry.probes  # never "last one wins"
    assert "shopify" in registry.probes


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


SMS_PLUGIN = """
import json

from marshmallow import Schema, fields

from hub import HttpSink, hookimpl, to_e164, url_field


class Config(Schema):
    url = url_field(required=True)
    api_key = fields.String(required=True, metadata={"secret": True})


class Sms(HttpSink):
    name = "acme_sms"
    channel = "sms"  # a channel the core has never heard of; needs_consent stays True
    config_schema = Config
    idempotent = False

    def address(self, customer, config, context):
        return to_e164(customer.get("phone"), customer.get("country"))

    def send(self, message, config):
        body = json.dumps({"to": message.to, "text": message.parts["txt"].strip()}).encode()
        self.post(config["url"], body=body, headers={}, timeout=5, what="SMS")
        return f"sms-{message.delivery_id}"


@hookimpl
def hub_sinks(services):
    return [Sms(services)]
"""


def sms_tenant(url: str, secret: str, when: str = '{ consent_sms = "opt_in" }') -> str:
    return f"""
name = "Acme Shoes"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"

[consent]
sms = "opt_in"

[sources.webhook]
secret = "{secret}"

[sinks.acme_sms]
url = "{url}/messages"
api_key = "k-1"

[[flows]]
name = "default"
  [[flows.steps]]
  after = "1s"
  channels = ["acme_sms"]
  template = "reminder"
  when = {when}
"""


def test_a_third_party_sms_channel_gets_a_consent_policy_end_to_end(
    site_dir, hub_factory, http_stand_in, monkeypatch
):
    from datetime import UTC, datetime, timedelta

    from plugins.webhook.signature import signed_headers

    make_distribution(site_dir, "hub-plugin-sms", "1.0", "acme_plugin_sms", SMS_PLUGIN, "sms")
    monkeypatch.setenv("PYTHONPATH", str(site_dir))  # the worker process loads it too
    provider = http_stand_in()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    harness = hub_factory(
        {"acme": sms_tenant(provider.url, secret, when='{ consent_sms = { ne = "opt_out" } }')},
        {"HUB_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"},
        {"reminder/sms.en.txt": "{{ tenant.name }}: your cart is waiting {{ recovery_url }}"},
    )
    assert harness.hub.config_issues == []
    for n, consent in enumerate(("opt_in", "unknown")):
        event = {
            "kind": "checkout.abandoned",
            "checkout_id": f"cart_{n}",
            "occurred_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
            "customer": {"phone": f"+4915112345{n:03d}", "country": "DE"},
            "cart": {"total": 4999, "currency": "EUR"},
            "recovery_url": "https://shop.example/cart",
            "consent": {"sms": consent},
        }
        body = json.dumps(event).encode()
        answer = harness.post("acme", "webhook", body, signed_headers(secret, f"msg_{n}", body))
        assert answer.status_code == 202, answer.get_json()
    harness.start_worker()
    deliveries = harness.wait_for(
        lambda: (rows := harness.rows("deliveries")) and len(rows) == 2
        and all(r.status in ("sent", "skipped") for r in rows) and rows,
        message="both deliveries settled",
    )  # fmt: skip
    sent, skipped = sorted(deliveries, key=lambda d: d.journey_id)  # opt_in, then unknown
    assert (sent.status, sent.identity) == ("sent", "+4915112345000")
    assert (skipped.status, skipped.reason) == (
        "skipped",
        "no consent (sms: unknown, tenant requires opt_in)",
    )
    [sms] = provider.requests
    assert sms.json() == {
        "to": "+4915112345000",
        "text": f"Acme Shoes: your cart is waiting {sms.json()['text'].split()[-1]}",
    }
    assert sms.json()["text"].split()[-1].startswith("http://hub.test/r/")


def test_consent_keys_and_conditions_follow_the_installed_channels(site_dir, tmp_path):
    from hub.templates import Renderer
    from hub.tenants import load_tenants

    def load(registry):  # noqa: ANN001, ANN202
        templates = Renderer(tmp_path, registry)
        return load_tenants(tmp_path, registry.sources, registry.sinks, {}, templates=templates)

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    (tmp_path / "tenants").mkdir()
    (tmp_path / "templates" / "reminder").mkdir(parents=True)
    (tmp_path / "templates" / "reminder" / "sms.en.txt").write_text("{{ recovery_url }}")
    text = sms_tenant("https://sms.example", secret)
    (tmp_path / "tenants" / "acme.toml").write_text(text)
    without = load_plugins()  # no sms sink installed: sms is no channel
    _, issues = load(without)
    rendered = sorted(f"{i.key}: {i.message}" for i in issues)
    assert any(
        r.startswith('consent.sms: no installed sink has the channel "sms"') for r in rendered
    )
    assert any(r.startswith("flows[0].steps[0].when.consent_sms: unknown field") for r in rendered)

    make_distribution(site_dir, "hub-plugin-sms", "1.0", "acme_plugin_sms", SMS_PLUGIN, "sms")
    with_sms = load_plugins()
    tenants, issues = load(with_sms)
    assert issues == [] and tenants["acme"].consent == {"sms": "opt_in"}
    (tmp_path / "tenants" / "acme.toml").write_text(
        text.replace('\nsms = "opt_in"', '\nsmss = "opt_in"')
    )
    _, issues = load(with_sms)
    assert [i.key for i in issues] == ["consent.smss"] and "did you mean" in issues[0].message
