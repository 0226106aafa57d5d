"""Tenant files: every mistake named with file and key; `hub config check` exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from hub.durations import parse_duration
from hub.plugins import load_plugins
from hub.tenants import load_tenants

GOOD = """
name = "Acme Shoes"
timezone = "Europe/Berlin"
locale = "de"
currency = "EUR"
quiet_hours = ["21:00", "08:00"]
frequency_cap = { max = 2, per = "12h" }

[consent]
email = "not_opted_out"
opt_in_countries = ["EU", "CH"]

[sources.stripe]
webhook_secret = "${ACME_STRIPE_WHSEC}"

[sinks.email]
smtp_url = "${ACME_SMTP_URL:-smtp://127.0.0.1:2525}"
from = "Acme <shop@acme.example>"

[[flows]]
name = "big"
when = { cart_total = { gte = "200.00" } }
  [[flows.steps]]
  after = "5s"
  channels = ["email"]
  template = "reminder"

[[flows]]
name = "default"
  [[flows.steps]]
  after = "1h"
  channels = ["email"]
  template = "reminder"
  when = { any = [ { stage = "payment" }, { abandons = { within = "30d", gte = 3 } } ] }
"""


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


def write(tmp_path: Path, slug: str, text: str) -> Path:
    (tmp_path / "tenants").mkdir(exist_ok=True)
    path = tmp_path / "tenants" / f"{slug}.toml"
    path.write_text(text)
    return path


def load(tmp_path, registry, env=None):  # noqa: ANN001, ANN201
    return load_tenants(tmp_path, registry.sources, registry.sinks, env or {})


def test_a_complete_tenant_file_loads_with_env_expansion(tmp_path, registry):
    write(tmp_path, "acme", GOOD)
    tenants, issues = load(tmp_path, registry, {"ACME_STRIPE_WHSEC": "whsec_abc"})
    assert issues == []
    acme = tenants["acme"]
    assert acme.sources["stripe"]["webhook_secret"] == "whsec_abc"
    assert acme.sinks["email"]["smtp_url"] == "smtp://127.0.0.1:2525"  # ${VAR:-default}
    assert acme.frequency_cap == (2, timedelta(hours=12))
    assert acme.flows[0].steps[0].after == timedelta(seconds=5)
    assert acme.consent_policy("email", "DE") == "opt_in"  # EU always needs opt-in
    assert acme.consent_policy("email", "US") == "not_opted_out"
    assert acme.consent_policy("whatsapp", "US") == "opt_in"  # unnamed channel: safe default


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (
            ('webhook_secret = "${ACME_STRIPE_WHSEC}"', 'webhook_secret = "${NOPE}"'),
            "sources.stripe.webhook_secret",
            "environment variable NOPE is not set",
        ),
        (
            ('{ gte = "200.00" }', '{ "=>" = "200.00" }'),
            "flows[0].when.cart_total",
            'unknown operator "=>"',
        ),
        (
            ('{ gte = "200.00" }', "{ gte = 200.0 }"),
            "flows[0].when.cart_total.gte",
            "never a float",
        ),
        (('after = "1h"', 'after = "1 hour"'), "flows[1].steps[0].after", "invalid duration"),
        (
            ('stage = "payment"', 'colour = "red"'),
            "flows[1].steps[0].when.any[0].colour",
            'unknown field "colour"',
        ),
        (
            (
                'channels = ["email"]\n  template = "reminder"\n\n[[flows]]',
                'channels = ["sms"]\n  template = "reminder"\n\n[[flows]]',
            ),
            "flows[0].steps[0].channels[0]",
            '"sms" is not a [sinks.*] table',
        ),
        (
            ('from = "Acme <shop@acme.example>"', 'from = "Acme <shop@acme.example>"\nport = 25'),
            "sinks.email.port",
            "Unknown field",
        ),
        (
            ("[sources.stripe]", "[sources.paypal]"),
            "sources.paypal",
            'no source plugin named "paypal"',
        ),
        (
            ('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"'),
            "timezone",
            "unknown time zone",
        ),
        (('currency = "EUR"', 'currency = "euro"'), "currency", "String does not match"),
        (('email = "not_opted_out"', 'email = "maybe"'), "consent.email", "Must be one of"),
    ],
    ids=[
        "env",
        "operator",
        "float-money",
        "duration",
        "field",
        "channel",
        "plugin-key",
        "plugin",
        "timezone",
        "currency",
        "consent",
    ],
)
def test_each_mistake_names_file_and_key(tmp_path, registry, change, key, message):
    path = write(tmp_path, "acme", GOOD.replace(*change))
    tenants, issues = load(tmp_path, registry, {"ACME_STRIPE_WHSEC": "whsec_abc"})
    assert "acme" not in tenants
    rendered = [str(i) for i in issues]
    assert any(r.startswith(f"{path}: {key}: ") and message in r for r in rendered), rendered


def test_a_bad_tenant_does_not_stop_the_good_ones(tmp_path, registry):
    write(tmp_path, "acme", GOOD)
    write(tmp_path, "broken", "name = 'x'\ncurrency = 'EUR'\n[sources.nope]\n")
    tenants, issues = load(tmp_path, registry, {"ACME_STRIPE_WHSEC": "whsec_abc"})
    assert list(tenants) == ["acme"]
    assert [i.key for i in issues] == ["sources.nope"]


def test_slug_key_must_match_the_file_name(tmp_path, registry):
    write(tmp_path, "acme", 'slug = "other"\n' + GOOD)
    _tenants, issues = load(tmp_path, registry, {"ACME_STRIPE_WHSEC": "whsec_abc"})
    assert [(i.key, i.message) for i in issues] == [
        ("slug", "'other' does not match the file name")
    ]


def test_hub_config_check_prints_every_error_and_exits_non_zero(tmp_path):
    write(
        tmp_path,
        "acme",
        GOOD.replace('"1h"', '"soon"').replace("${ACME_STRIPE_WHSEC}", "${MISSING_SECRET}"),
    )
    env = dict(
        os.environ,
        HUB_CONFIG_DIR=str(tmp_path),
        HUB_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path}/h.db",
    )
    env.pop("DATABASE_SCHEMA", None)
    done = subprocess.run(
        [sys.executable, "-m", "hub", "config", "check"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert f"{tmp_path}/tenants/acme.toml: flows[1].steps[0].after: invalid duration" in done.stderr
    assert (
        "acme.toml: sources.stripe.webhook_secret: environment variable MISSING_SECRET"
        in done.stderr
    )


def test_the_shipped_example_config_is_valid(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, HUB_CONFIG_DIR=str(root / "config"))
    env.pop("DATABASE_URL", None)
    env.pop("DATABASE_SCHEMA", None)
    env["HUB_VAR_DIR"] = str(tmp_path / "var")
    done = subprocess.run(
        [sys.executable, "-m", "hub", "config", "check"], env=env, capture_output=True, text=True
    )
    assert "ok:" in done.stdout, done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5s", timedelta(seconds=5)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("3d", timedelta(days=3)),
        ("24h", timedelta(days=1)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "m5", "1.5h", "-1h", "1w", 5])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)
