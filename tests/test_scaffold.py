"""`hub plugin new` writes packages a third party can use from their own repository: built into
wheels, installed with the hub into a fresh virtual environment the way deploy/install.sh
installs it, their own tests pass there at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from checkout import checkout_lock

ROOT = Path(__file__).resolve().parents[1]


def hub_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HUB_CONFIG_DIR": str(cwd / "config"), "HUB_VAR_DIR": str(cwd / "var")}
    env.pop("DATABASE_SCHEMA", None)
    env["DATABASE_URL"] = f"sqlite:///{cwd / 'var' / 'hub.db'}"
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_plugin_new_refuses_a_bad_name_and_an_existing_folder(tmp_path):
    bad = hub_cli("plugin", "new", "sink", "Acme-SMS", cwd=tmp_path)
    assert bad.returncode == 2 and "lower-case letters, digits and _" in bad.stderr
    (tmp_path / "taken").mkdir()
    taken = hub_cli("plugin", "new", "sink", "acme_sms", "--dir", "taken", cwd=tmp_path)
    assert taken.returncode == 2 and "exists" in taken.stderr
    assert list((tmp_path / "taken").iterdir()) == []  # nothing overwritten


def test_a_scaffolded_sms_sink_is_under_50_lines(tmp_path):
    done = hub_cli("plugin", "new", "sink", "acme_sms", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    module = tmp_path / "hub-plugin-acme-sms" / "acme_sms" / "__init__.py"
    assert len(module.read_text().splitlines()) < 50
    pyproject = (tmp_path / "hub-plugin-acme-sms" / "pyproject.toml").read_text()
    assert '[project.entry-points.abandonment_hub]\nacme_sms = "acme_sms"' in pyproject
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub-plugin-acme-sms"]  # no var/


def layer_on(venv: Path, base: Path) -> None:
    """Let ``venv`` see what ``base`` has installed, below its own packages: a ``.pth`` line
    puts ``base``'s site-packages on ``sys.path`` (pip counts those distributions as installed)."""
    [own] = venv.glob("lib/python*/site-packages")
    [under] = base.glob("lib/python*/site-packages")
    (own / "_installed_hub.pth").write_text(f"{under}\n")


@pytest.mark.packaging
def test_scaffolded_plugins_build_install_and_pass_their_own_tests_in_a_fresh_venv(
    tmp_path, installed
):
    for kind, name in (("sink", "acme_sms"), ("source", "acme_shop")):
        done = hub_cli("plugin", "new", kind, name, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    venv, wheels = tmp_path / "venv", tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the hub and its pinned dependencies as deploy/install.sh installed them (built once per
    # run, shared with test_deploy); this venv adds the plugins and the test extras on top
    layer_on(venv, installed)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]

    def run(*args: str) -> None:
        done = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr

    plugins = [tmp_path / "hub-plugin-acme-sms", tmp_path / "hub-plugin-acme-shop"]
    # one build back-end for the three wheels instead of an isolated one each
    run("install", "setuptools>=77")
    with checkout_lock("build"):  # the hub's wheel is built in the checkout's build/
        run(
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(ROOT),
            *map(str, plugins),
        )
    [hub_wheel] = wheels.glob("abandonment_hub-*.whl")
    others = [str(w) for w in wheels.glob("hub_plugin_*.whl")]
    assert len(others) == 2
    run("install", "-c", str(ROOT / "constraints.txt"), f"{hub_wheel}[test]", *others)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "PYTEST_"))}
    env.pop("DATABASE_SCHEMA", None)
    outcome = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            *(str(p / "tests") for p in plugins),
        ],  # fmt: skip
        cwd=tmp_path / "venv",  # away from the sources: the installed wheels are tested
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert outcome.returncode == 0, outcome.stdout[-6000:] + outcome.stderr[-3000:]
    assert re.search(r"\b4 passed\b", outcome.stdout), outcome.stdout[-2000:]
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "hub", "plugins"],  # the script is in `installed`
        cwd=tmp_path,
        env={**env, "HUB_CONFIG_DIR": str(tmp_path / "config"), "HUB_VAR_DIR": str(tmp_path / "v")},
        capture_output=True,
        text=True,
    )
    assert "hub-plugin-acme-sms" in listed.stdout and "hub-plugin-acme-shop" in listed.stdout
