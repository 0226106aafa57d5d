"""The shipped example tenant (examples/config/tenants/acme.toml) is valid and does what it says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(tmp_path):
    (tmp_path / "config" / "tenants").mkdir(parents=True)
    example_tenant = ROOT / "examples" / "config" / "tenants" / "acme.toml"
    shutil.copy(example_tenant, tmp_path / "config" / "tenants")
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_SCHEMA")}
    env.update(
        HUB_CONFIG_DIR=str(tmp_path / "config"),
        HUB_VAR_DIR=str(tmp_path / "var"),
        ACME_STRIPE_WHSEC="whsec_example",
        ACME_SHOPIFY_SECRET="shpss_example",
        ACME_STRIPE_API_KEY="rk_test_example",
        ACME_SHOPIFY_ADMIN_TOKEN="shpat_example",
        ACME_DS24_PASSPHRASE="passphrase",
        ACME_SMTP_URL="smtp+starttls://u:p@mail.example:587",
        ACME_WHATSAPP_PHONE_ID="1122334455667",
        ACME_WHATSAPP_TOKEN="EAAG-example-token",
        ACME_META_APP_SECRET="meta-secret",
        ACME_WHATSAPP_VERIFY_TOKEN="verify-me",
        ACME_VAPID_PRIVATE_KEY=pem,
        ACME_ZENDESK_TOKEN="zendesk-token",
    )
    return tmp_path, env


def hub(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], env=env, capture_output=True, text=True, timeout=60
    )


def event(tmp_path: Path, total: int, source: str = "stripe") -> Path:
    path = tmp_path / f"event-{total}-{source}.json"
    path.write_text(
        json.dumps(
            {
                "kind": "checkout.abandoned",
                "event_key": f"e{total}",
                "checkout_id": f"c{total}",
                "occurred_at": "2026-06-02T10:00:00+02:00",
                "source": source,
                "stage": "payment",
                "customer": {
                    "email": "max@example.com",
                    "first_name": "Max",
                    "country": "US",
                    "phone": "+12025550143",
                    "locale": "en",
                },
                "cart": {"total": total, "currency": "EUR"},
                "consent": {"email": "unknown", "whatsapp": "opt_in"},
                "recovery_url": "https://acme.example/r/1",
            }
        )
    )
    return path


def test_the_example_tenant_passes_config_check(example):
    _tmp, env = example
    done = hub(env, "config", "check")
    assert done.returncode == 0, done.stderr
    assert "ok: 1 tenant(s)" in done.stdout
    assert (
        "  acme: conversion probe asks shopify, stripe (timeout 2s); no message whose link or "
        "offer dies within 1h; expired links go to https://acme.example/cart"
    ) in done.stdout


def test_config_check_reports_each_unset_variable_once_and_nothing_it_causes(example):
    tmp, env = example
    env = {k: v for k, v in env.items() if not k.startswith("ACME_")}
    env["HUB_SECRET_KEY"] = "test-key"  # no "generated a key" warning in the output
    (tmp / "var").mkdir()  # the default SQLite database lives there
    done = hub(env, "config", "check")
    assert done.returncode == 1
    file = tmp / "config" / "tenants" / "acme.toml"
    unset = [
        ("sources.stripe.webhook_secret", "ACME_STRIPE_WHSEC"),
        ("sources.stripe.api_key", "ACME_STRIPE_API_KEY"),
        ("sources.shopify.client_secret", "ACME_SHOPIFY_SECRET"),
        ("sources.shopify.admin_access_token", "ACME_SHOPIFY_ADMIN_TOKEN"),
        ("sources.digistore24.ipn_passphrase", "ACME_DS24_PASSPHRASE"),
        ("sinks.email.smtp_url", "ACME_SMTP_URL"),
        ("sinks.whatsapp.phone_number_id", "ACME_WHATSAPP_PHONE_ID"),
        ("sinks.whatsapp.access_token", "ACME_WHATSAPP_TOKEN"),
        ("sinks.whatsapp.app_secret", "ACME_META_APP_SECRET"),
        ("sinks.whatsapp.verify_token", "ACME_WHATSAPP_VERIFY_TOKEN"),
        ("sinks.webpush.vapid_private_key", "ACME_VAPID_PRIVATE_KEY"),
        ("sinks.zendesk.api_token", "ACME_ZENDESK_TOKEN"),
    ]
    # one log line when the app loads the tenant, each error once, where the tenant stands
    lines = done.stderr.splitlines()
    assert lines[0].endswith(
        f" ERROR hub.tenants tenant acme is not served: 12 config errors in {file} "
        "(hub config check lists them)"
    )
    assert lines[1:] == [
        *(f"{file}: {key}: environment variable {name} is not set" for key, name in unset),
        "not served after a restart: acme; running hub processes keep serving the last "
        "version that loaded without errors",
    ]


def test_a_cheap_cart_gets_a_push_then_reminder_and_discount(example):
    tmp, env = example
    out = hub(env, "flow", "preview", "acme", str(event(tmp, 4999))).stdout
    lines = [line for line in out.splitlines() if line.startswith("  step")]
    assert lines[0].startswith("  step 0 at 2026-06-02 10:15:00 CEST (nudge): nothing would be")
    assert "webpush: no address" in lines[0]  # no subscription registered for this checkout
    assert "(reminder): skipped (condition not met)" in lines[1]
    assert "(call_prospect): skipped (condition not met)" in lines[2]
    assert "(check_repeated_abandons): skipped (condition not met)" in lines[3]
    assert "step 4 at 2026-06-02 11:00:00 CEST (reminder): email" in lines[4]
    assert "step 5 at 2026-06-03 10:00:00 CEST (discount): email" in lines[5]
    assert "COMEBACK10" in out


def test_an_expensive_cart_gets_whatsapp_and_a_ticket_for_sales(example):
    tmp, env = example
    out = hub(env, "flow", "preview", "acme", str(event(tmp, 25000))).stdout
    lines = [line for line in out.splitlines() if line.startswith("  step")]
    assert "(nudge): skipped (condition not met)" in lines[0]
    assert "(reminder): whatsapp → +12******143 [en]: the provider renders" in lines[1]
    assert "(call_prospect): zendesk" in lines[2]
    assert "(reminder): skipped (condition not met)" in lines[4]


def test_leads_from_digistore24_take_the_leads_flow(example):
    tmp, env = example
    out = hub(env, "flow", "preview", "acme", str(event(tmp, 4900, "digistore24"))).stdout
    assert out.startswith("flow 'leads'")
