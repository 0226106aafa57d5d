"""Tenant files: every mistake named with file and key; `hub config check` exits non-zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from hub.durations import parse_duration
from hub.plugins import load_plugins
from hub.templates import Renderer
from hub.tenants import load_tenants
from hub.testing import free_port, wait_for

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
    renderer = Renderer(tmp_path, registry)
    return load_tenants(tmp_path, registry.sources, registry.sinks, env or {}, templates=renderer)


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


ENV = {"ACME_STRIPE_WHSEC": "whsec_abc"}


def issue_lines(tmp_path, registry, text):  # noqa: ANN001, ANN201
    """The issues of one tenant file as `hub config check` prints them, file name shortened."""
    path = write(tmp_path, "acme", text)
    tenants, issues = load(tmp_path, registry, ENV)
    assert "acme" not in tenants
    return [str(i).replace(f"{path}: ", "acme.toml: ") for i in issues]


def test_a_misspelt_template_is_a_config_error_with_a_suggestion(tmp_path, registry):
    text = GOOD.replace(
        'after = "5s"\n  channels = ["email"]\n  template = "reminder"',
        'after = "5s"\n  channels = ["email"]\n  template = "remider"',
    )
    assert issue_lines(tmp_path, registry, text) == [
        'acme.toml: flows[0].steps[0].template: no "remider" template for email; '
        "did you mean 'reminder'?"
    ]


def test_a_template_must_exist_for_each_channel_of_the_step(tmp_path, registry):
    # the stock "lead" template has e-mail files but no web push ones
    text = GOOD.replace(
        "[sinks.email]",
        '[sinks.webpush]\nvapid_private_key = "${VAPID}"\n'
        'vapid_subject = "mailto:shop@acme.example"\n\n[sinks.email]',
    )
    text = text.replace(
        'channels = ["email"]\n  template = "reminder"\n\n[[flows]]',
        'channels = ["webpush", "email"]\n  template = "lead"\n\n[[flows]]',
    )
    assert issue_lines(tmp_path, registry, text) == [
        "acme.toml: sinks.webpush.vapid_private_key: environment variable VAPID is not set",
        'acme.toml: flows[0].steps[0].template: no "lead" template for webpush',
    ]


def test_a_template_in_the_config_dir_satisfies_the_check(tmp_path, registry):
    (tmp_path / "templates" / "acme" / "remider").mkdir(parents=True)
    (tmp_path / "templates" / "acme" / "remider" / "email.fr.txt").write_text("Bonjour")
    write(tmp_path, "acme", GOOD.replace('template = "reminder"', 'template = "remider"'))
    tenants, issues = load(tmp_path, registry, ENV)
    assert issues == []
    assert tenants["acme"].flows[0].steps[0].template == "remider"


@pytest.mark.parametrize(
    ("when", "line"),
    [
        (
            '{ stage = "checkout" }',
            "acme.toml: flows[0].when.stage: stage is never 'checkout' "
            "(one of: cart, contact, payment)",
        ),
        (
            '{ stage = { in = ["cart", "paymnet"] } }',
            "acme.toml: flows[0].when.stage.in[1]: stage is never 'paymnet'; did you mean "
            "'payment'? (one of: cart, contact, payment)",
        ),
        (
            '{ cart_total = { gte = "30.001" } }',
            "acme.toml: flows[0].when.cart_total.gte: '30.001' is no amount in EUR, "
            "which has 2 decimals",
        ),
        (
            '{ cart_total = { gte = "thirty" } }',
            "acme.toml: flows[0].when.cart_total.gte: not a decimal amount: 'thirty'",
        ),
        (
            '{ item_count = { gte = "3" } }',
            "acme.toml: flows[0].when.item_count.gte: expected an integer, got '3'",
        ),
        ("{ country = 49 }", "acme.toml: flows[0].when.country: expected text, got 49"),
        (
            '{ country = "Germany" }',
            'acme.toml: flows[0].when.country: expected an ISO country code such as "DE", '
            "got 'Germany'",
        ),
        (
            '{ consent_email = "yes" }',
            "acme.toml: flows[0].when.consent_email: consent_email is never 'yes' "
            "(one of: opt_in, opt_out, unknown)",
        ),
        (
            '{ source = "strpe" }',
            "acme.toml: flows[0].when.source: source is never 'strpe'; did you mean 'stripe'? "
            "(one of: digistore24, shopify, stripe, webhook)",
        ),
        (
            '{ cart_totl = { gte = "1" } }',
            'acme.toml: flows[0].when.cart_totl: unknown field "cart_totl"; did you mean '
            "'cart_total'? (known: abandons, any, cart_total, consent_email, consent_whatsapp, "
            "country, item_count, locale, source, stage)",
        ),
        (
            '{ cart_total = { gtee = "1" } }',
            "acme.toml: flows[0].when.cart_total: unknown operator \"gtee\"; did you mean 'gte'? "
            "(use eq, ne, in, not_in, lt, lte, gt, gte)",
        ),
    ],
    ids=[
        "stage",
        "stage-in-list",
        "money-decimals",
        "money-text",
        "int-type",
        "text-type",
        "country",
        "consent",
        "source",
        "field",
        "operator",
    ],
)
def test_invalid_when_values_are_config_errors(tmp_path, registry, when, line):
    text = GOOD.replace('when = { cart_total = { gte = "200.00" } }', f"when = {when}")
    assert issue_lines(tmp_path, registry, text) == [line]


def test_money_in_conditions_follows_the_tenant_currency(tmp_path, registry):
    text = GOOD.replace('currency = "EUR"', 'currency = "JPY"')
    assert issue_lines(tmp_path, registry, text.replace('"200.00"', '"199.50"')) == [
        "acme.toml: flows[0].when.cart_total.gte: '199.50' is no amount in JPY, "
        "which has 0 decimals"
    ]
    write(tmp_path, "acme", text)  # "200.00" is an exact yen amount
    assert load(tmp_path, registry, ENV)[1] == []


def test_an_unknown_currency_is_a_config_error(tmp_path, registry):
    text = GOOD.replace('currency = "EUR"', 'currency = "EUX"')
    assert issue_lines(tmp_path, registry, text) == ["acme.toml: currency: unknown currency 'EUX'"]


def test_a_misspelt_key_suggests_the_key_and_hides_its_missing_error(tmp_path, registry):
    text = GOOD.replace(
        '  template = "reminder"\n  when = { any', '  templte = "reminder"\n  when = { any'
    )
    assert issue_lines(tmp_path, registry, text) == [
        "acme.toml: flows[1].steps[0].templte: Unknown field; did you mean 'template'?"
    ]
    assert issue_lines(tmp_path, registry, GOOD.replace("currency =", "curency =")) == [
        "acme.toml: curency: Unknown field; did you mean 'currency'?"
    ]


def test_a_misspelt_plugin_key_names_the_plugins_key(tmp_path, registry):
    text = GOOD.replace("webhook_secret =", "webhok_secret =")
    assert issue_lines(tmp_path, registry, text) == [
        "acme.toml: sources.stripe.webhok_secret: Unknown field; did you mean 'webhook_secret'?"
    ]


def test_misspelt_plugin_and_channel_names_get_a_suggestion(tmp_path, registry):
    text = GOOD.replace("[sinks.email]", "[sinks.emial]")
    assert issue_lines(tmp_path, registry, text) == [
        'acme.toml: sinks.emial: no sink plugin named "emial" is installed; did you mean '
        "'email'? (installed: email, hubspot, outbox, ticket_webhook, webpush, whatsapp, zendesk)",
        'acme.toml: flows[0].steps[0].channels[0]: "email" is not a [sinks.*] table of this '
        "tenant; did you mean 'emial'?",
        'acme.toml: flows[1].steps[0].channels[0]: "email" is not a [sinks.*] table of this '
        "tenant; did you mean 'emial'?",
    ]


def test_an_unset_variable_is_reported_once_without_follow_on_errors(tmp_path, registry):
    # empty, the secret would also fail the Stripe schema ("must be ... whsec_")
    path = write(tmp_path, "acme", GOOD)
    _tenants, issues = load(tmp_path, registry, {})
    assert [str(i) for i in issues] == [
        f"{path}: sources.stripe.webhook_secret: environment variable ACME_STRIPE_WHSEC is not set"
    ]


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


def test_hub_run_lists_a_broken_tenant_as_not_served_in_one_line(tmp_path, redis_url):
    write(tmp_path, "acme", GOOD)
    write(tmp_path, "broken", GOOD.replace('"1h"', '"soon"').replace('"5s"', '"later"'))
    env = dict(
        os.environ,
        HUB_CONFIG_DIR=str(tmp_path),
        HUB_VAR_DIR=str(tmp_path / "var"),
        HUB_SECRET_KEY="test-key",
        DATABASE_URL=f"sqlite:///{tmp_path}/h.db",
        REDIS_URL=redis_url,
        ACME_STRIPE_WHSEC="whsec_abc",
    )
    env.pop("DATABASE_SCHEMA", None)
    port = free_port()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "hub", "run", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "Ctrl-C" in log.read_text(), 30, message="hub run started")
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=30)
    lines = log.read_text().splitlines()
    about_broken = [line for line in lines if "tenant broken" in line]
    assert len(about_broken) == 2, lines
    assert about_broken[0].endswith(
        f"ERROR hub.tenants tenant broken is not served: 2 config errors in "
        f"{tmp_path}/tenants/broken.toml (hub config check lists them)"
    )
    assert about_broken[1] == (
        "  tenant broken           not served: 2 errors, run hub config check"
    )
    assert (
        f"  tenant acme             source stripe       POST http://127.0.0.1:{port}"
        "/webhooks/acme/stripe"
    ) in lines


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
