"""The deployment kit: the wheel installs and serves the way the container image installs it,
the systemd units verify against that install, and the compose file wires what it promises."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_PLUGINS = {
    "stripe", "email", "outbox", "shopify", "digistore24", "webhook",
    "whatsapp", "webpush", "zendesk", "hubspot", "ticket_webhook",
}  # fmt: skip


def run_installed(venv: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a command of the installed hub away from the checkout, so nothing of it is imported."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DATABASE_"))}
    clean.pop("REDIS_URL", None)
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_installed_wheel_carries_every_plugin_and_the_wsgi_app(installed, tmp_path):
    plugins = run_installed(installed, "hub", "plugins", "--json", cwd=tmp_path)
    assert plugins.returncode == 0, plugins.stderr
    listed = {p["name"]: p for p in json.loads(plugins.stdout)}
    assert set(listed) >= BUILTIN_PLUGINS
    assert not [name for name, p in listed.items() if p.get("error")]

    (tmp_path / "config" / "tenants").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "tenants" / "demo.toml", tmp_path / "config" / "tenants")
    probe = (
        "import hub, hub.wsgi, pathlib;"
        "rules = {r.rule for r in hub.wsgi.app.url_map.iter_rules()};"
        "assert '/webhooks/<tenant_slug>/<source_name>' in rules, rules;"
        "assert 'site-packages' in hub.__file__, hub.__file__;"
        "root = pathlib.Path(hub.__file__).parent;"
        "assert (root / 'default_templates' / 'reminder').is_dir();"
        "print('ok')"
    )
    served = run_installed(
        installed,
        "python",
        "-c",
        probe,
        cwd=tmp_path,
        HUB_CONFIG_DIR=str(tmp_path / "config"),
        HUB_VAR_DIR=str(tmp_path / "var"),
    )
    assert served.returncode == 0 and served.stdout.strip().endswith("ok"), served.stderr


def test_the_installed_wheel_carries_the_migrations(installed, tmp_path):
    """`hub db upgrade` (the compose and systemd migrate step) runs from the wheel alone."""
    env = {"HUB_VAR_DIR": str(tmp_path / "var"), "HUB_SECRET_KEY": "x"}
    first = run_installed(installed, "hub", "db", "upgrade", cwd=tmp_path, **env)
    assert first.returncode == 0, first.stderr
    # the newest revision of the checkout's migrations: the wheel must carry all of them
    head = max(p.stem for p in (ROOT / "hub" / "migrations" / "versions").glob("[0-9]*.py"))
    assert first.stdout.strip() == f"database upgraded: empty → {head}"
    again = run_installed(installed, "hub", "db", "current", cwd=tmp_path, **env)
    assert again.stdout.strip() == f"{head} (up to date)", again.stderr


def test_the_distribution_declares_its_license(installed):
    [metadata] = installed.glob("lib/python*/site-packages/abandonment_hub-*.dist-info/METADATA")
    text = metadata.read_text()
    assert re.search(r"^License-Expression: MIT$", text, re.M)
    assert (metadata.parent / "licenses" / "LICENSE").is_file()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_units_verify_against_the_installed_hub(installed, tmp_path):
    units = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
    assert {u.name for u in units} == {
        "abandonment-hub-migrate.service",
        "abandonment-hub-web.service",
        "abandonment-hub-worker@.service",
    }
    for unit in units:
        text = unit.read_text().replace("/opt/abandonment-hub", str(installed))
        name = unit.name.replace("@.service", "@1.service")
        (tmp_path / name).write_text(text)
        done = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        problems = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if str(tmp_path) in line or name.split("@")[0] in line
        ]
        assert done.returncode == 0 and not problems, done.stdout + done.stderr


def test_compose_runs_migrations_then_web_and_workers_on_postgres_and_redis_with_aof():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker"}
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == (
        "yes"
    )
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["web"]["command"][-1] == "hub.wsgi:app"
    assert services["worker"]["command"] == ["worker"]
    for name in ("web", "worker"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
        assert needs["redis"]["condition"] == "service_healthy"
        assert services[name]["environment"]["HUB_AUTO_MIGRATE"] == "0"
    for service in services.values():
        for needed in service.get("depends_on", {}):
            assert needed in services
        if "build" in service:
            assert service["build"] == "."
    # every secret compose asks for is in the example environment file
    asked = set(re.findall(r"\$\{(\w+):\?", (ROOT / "compose.yaml").read_text()))
    example = (ROOT / "deploy" / "env.example").read_text()
    assert asked and all(re.search(rf"^{var}=", example, re.M) for var in asked)


def test_the_image_is_multi_stage_non_root_with_hub_as_entry_point():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert "deploy/install.sh" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["hub"\]', text, re.M)
