"""``hub plugin new sink|source NAME``: a pip-installable plugin package whose tests pass at once.

The package is what docs/plugins.md describes: a module registered through the entry-point group
``abandonment_hub``, a marshmallow config schema with its secrets marked, a README naming the
tenant-file table, and tests that run the hub's own contract check (``hub.testing``) against real
local servers. The author's first edit starts from green.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

import click

NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "hub-plugin-$dash"
version = "0.1.0"
description = "$summary"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["abandonment-hub"]

[project.optional-dependencies]
test = ["abandonment-hub[test]"]

# how the hub finds the plugin: the same group its built-in plugins use
[project.entry-points.abandonment_hub]
$name = "$name"

[tool.setuptools]
packages = ["$name"]

[tool.setuptools.package-data]
$name = ["templates/**/*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """\
# hub-plugin-$dash

$summary

Install it next to the hub (`pip install hub-plugin-$dash`, or this folder with
`pip install '.[test]'`); `hub plugins` then lists `$name`. Enable it per tenant:

```toml
$table
```

Run its tests with `pytest`: they use the hub's own test kit (`hub.testing`), real local
servers, and the contract check every built-in $kind passes. The plugin author's guide is the
hub's `docs/plugins.md`.
"""

SINK = '''\
"""$summary"""

import json
from pathlib import Path

from marshmallow import Schema, fields

from hub import HttpSink, PermanentError, hookimpl, timeout_field, to_e164, url_field


class Config(Schema):  # the [sinks.$name] table of a tenant file
    url = url_field(required=True)  # the provider's "send a message" endpoint
    api_key = fields.String(required=True, metadata={"secret": True})
    sender = fields.String(required=True)
    timeout = timeout_field()


class Sink(HttpSink):
    name = "$name"
    channel = "$channel"  # consent, caps and templates ($channel.<locale>.txt) are per channel
    config_schema = Config
    idempotent = False  # True only if the provider dedupes on the Idempotency-Key below
    template_dirs = (str(Path(__file__).parent / "templates"),)  # templates/<name>/...

    def address(self, customer, config, context):
        return to_e164(customer.get("phone"), customer.get("country"))

    def send(self, message, config):
        text = (message.parts.get("txt") or "").strip()
        if not text:
            raise PermanentError(f"the {message.template} template has no $channel.<locale>.txt")
        data = json.dumps({"from": config["sender"], "to": message.to, "text": text}).encode()
        headers = {
            "Authorization": f"Bearer {config['api_key']}",
            "Idempotency-Key": str(message.delivery_id),
        }
        _, answer = self.post(
            config["url"], body=data, headers=headers, timeout=config["timeout"], what="$channel"
        )
        try:
            return str(json.loads(answer)["id"])
        except (ValueError, KeyError, TypeError):
            return None  # sent (2xx), but the answer carried no id


@hookimpl
def hub_sinks(services):
    return [Sink(services)]
'''

SINK_TEMPLATE = "{{ tenant.name }}: your cart is waiting. {{ recovery_url }}\n"

SINK_TESTS = '''\
"""The sink's own tests: the hub's contract check, then the exact request, on real servers."""

import json

from hub.testing import Reply, check_sink_contract

ALLOW_LOOPBACK = {"HUB_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"}  # the stand-ins run on 127.0.0.1
CUSTOMER = {"phone": "0151 12345678", "country": "DE"}
TENANT = """
name = "Acme Shoes"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"

[consent]
$channel = "opt_in"

[sinks.$name]
url = "https://provider.example/v1/messages"
api_key = "test-key"
sender = "AcmeShoes"
"""


def config_for(base_url):
    return {"url": f"{base_url}/v1/messages", "api_key": "test-key", "sender": "AcmeShoes"}


def test_the_sink_passes_the_hubs_sink_contract(hub_factory):
    harness = hub_factory({}, ALLOW_LOOPBACK)
    requests = check_sink_contract(
        harness, "$name", config_for, CUSTOMER, Reply(200, {"id": "msg-1"})
    )
    [sent] = requests
    assert sent.path == "/v1/messages"
    assert sent.headers["Authorization"] == "Bearer test-key"
    assert sent.headers["Idempotency-Key"] == "1"
    body = json.loads(sent.body)
    assert body["to"] == "+4915112345678" and body["from"] == "AcmeShoes"
    assert body["text"].startswith("Hi Jane")


def test_a_tenant_enabling_the_sink_is_valid(hub_factory):
    harness = hub_factory({"acme": TENANT})
    assert harness.hub.config_issues == []
    assert harness.hub.tenants["acme"].sinks["$name"]["sender"] == "AcmeShoes"
    assert not harness.hub.registry.errors
'''

SOURCE = '''\
"""$summary"""

import hashlib
import hmac

from marshmallow import Schema, fields

from hub import PayloadError, Source, VerificationError, hookimpl, to_e164, to_minor


class Config(Schema):
    """The [sources.$name] table of a tenant file."""

    secret = fields.String(required=True, metadata={"secret": True})


class $cls(Source):
    name = "$name"  # POST /webhooks/<tenant>/$name
    config_schema = Config

    def verify(self, request, config):
        sent = request.headers.get("X-Signature", "").encode()
        expected = hmac.new(config["secret"].encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sent, expected.encode()):
            raise VerificationError("X-Signature is missing or wrong")

    def parse(self, request, config):
        data = request.json()
        if not isinstance(data, dict) or data.get("type") != "cart.abandoned":
            return []  # answered 2xx, stored nowhere
        cart, customer = data.get("cart") or {}, data.get("customer") or {}
        try:
            total = to_minor(str(cart["total"]), str(cart["currency"]))
            event = {
                "kind": "checkout.abandoned",
                "event_key": str(data["id"]),
                "checkout_id": str(cart["id"]),
                "occurred_at": data["created_at"],
                "customer": {
                    "email": customer.get("email"),
                    "phone": to_e164(customer.get("phone"), customer.get("country")),
                },
                "cart": {"total": total, "currency": str(cart["currency"]).upper()},
                "recovery_url": cart.get("url"),
            }
        except KeyError as exc:
            raise PayloadError(f"missing {exc.args[0]}", exc.args[0]) from None
        except ValueError as exc:
            raise PayloadError(str(exc), "cart.total") from None
        return [event]


@hookimpl
def hub_sources():
    return [$cls()]
'''

SOURCE_TESTS = '''\
"""The source's own tests: the hub's contract check, then a signed callback end to end."""

import hashlib
import hmac
import json

from hub.testing import SignedSample, check_source_contract

from $name import $cls

SECRET = "test-secret"
TENANT = """
name = "Acme Shoes"
timezone = "Europe/Berlin"
locale = "en"
currency = "EUR"

[sources.$name]
secret = "test-secret"
"""
ABANDONED = {
    "id": "evt_1",
    "type": "cart.abandoned",
    "created_at": "2026-01-01T12:00:00Z",
    "customer": {"email": "jane@example.com", "phone": "0151 12345678", "country": "DE"},
    "cart": {"id": "cart_1", "total": "49.99", "currency": "eur", "url": "https://shop.example/1"},
}


def signed(payload):
    body = json.dumps(payload).encode()
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return SignedSample(body, {"X-Signature": mac})


def tamper(sample):
    return SignedSample(sample.body + b" ", sample.headers, sample.content_type)


def test_the_source_passes_the_hubs_source_contract():
    [event] = check_source_contract($cls(), {"secret": SECRET}, signed(ABANDONED), tamper)
    assert event["cart"] == {"total": 4999, "currency": "EUR", "items": [], "discount": 0}
    assert event["customer"]["phone"] == "+4915112345678"


def test_a_signed_abandonment_is_stored_once(hub_factory):
    harness = hub_factory({"acme": TENANT})
    sample = signed(ABANDONED)
    for expected in (1, 1):  # a platform retry is a duplicate, not a second event
        answer = harness.post("acme", "$name", sample.body, sample.headers, "application/json")
        assert answer.status_code == 202, answer.get_json()
        assert len(harness.rows("events")) == expected
'''


def _write(root: Path, files: dict[str, str], values: dict[str, str]) -> list[Path]:
    written = []
    for rel, text in files.items():
        path = root / Template(rel).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
        written.append(path)
    return written


def scaffold(kind: str, name: str, root: Path, channel: str = "sms") -> list[Path]:
    """Write the package for a ``sink`` or ``source`` named ``name`` into ``root``.

    Raises ``ValueError`` for a name that is no Python identifier or a folder that exists.
    """
    if not NAME.match(name):
        raise ValueError(f"{name!r}: use lower-case letters, digits and _ (e.g. acme_sms)")
    if not NAME.match(channel):
        raise ValueError(f"channel {channel!r}: use lower-case letters, digits and _")
    if root.exists():
        raise ValueError(f"{root} exists: choose another --dir")
    values = {
        "name": name,
        "dash": name.replace("_", "-"),
        "kind": kind,
        "channel": channel,
        "cls": "".join(p.title() for p in name.split("_")) + "Source",
    }
    if kind == "sink":
        values["summary"] = f"An abandonment-hub sink: the {channel} channel over an HTTP API."
        values["table"] = (
            f'[sinks.{name}]\nurl = "https://…"\napi_key = "${{ACME_KEY}}"\nsender = "Acme"'
        )
        files = {
            "$name/__init__.py": SINK,
            "$name/templates/reminder/$channel.en.txt": SINK_TEMPLATE,
            "tests/test_$name.py": SINK_TESTS,
        }
    else:
        values["summary"] = "An abandonment-hub source: a platform's signed callbacks in."
        values["table"] = f'[sources.{name}]\nsecret = "${{ACME_SECRET}}"'
        files = {"$name/__init__.py": SOURCE, "tests/test_$name.py": SOURCE_TESTS}
    files |= {"pyproject.toml": PYPROJECT, "README.md": README}
    return _write(root, files, values)


@click.group("plugin")
def plugin_group() -> None:
    """Write a new plugin package (see docs/plugins.md)."""


@plugin_group.command("new")
@click.argument("kind", type=click.Choice(["sink", "source"]))
@click.argument("name")
@click.option("--channel", default="sms", show_default=True, help="a sink's channel kind")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help="where to write it (default: ./hub-plugin-NAME)",
)
def new_command(kind: str, name: str, channel: str, directory: Path | None) -> None:
    """Write a pip-installable KIND plugin package named NAME, with tests that pass."""
    root = directory or Path(f"hub-plugin-{name.replace('_', '-')}")
    try:
        written = scaffold(kind, name, root, channel)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: cd {root} && pip install -e '.[test]' && pytest")
