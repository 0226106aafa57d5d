"""Shared fixtures come from the hub's own test kit (hub.testing.pytest_plugin, registered as a
pytest11 entry point), the same one third-party plugin authors use. Only the packaging tests'
installed hub lives here: plugin authors have no use for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment made by deploy/install.sh, the script the Dockerfile runs.

    Made once per run: building the wheel and installing the pinned dependencies is most of a
    packaging test's time, and the tests that use it only read it (test_deploy) or layer a
    venv of their own on top of it (test_scaffold)."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    done = subprocess.run(
        ["sh", str(ROOT / "deploy" / "install.sh"), str(venv)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


# Under pytest-xdist (``python3 tasks.py test`` runs with ``-n``, ``--dist loadgroup``), tests
# that share something outside their tmp_path run on one worker, in the group named here:
# - "installed": the `installed` venv is built once per worker process, and its build
#   (and test_scaffold's) writes build/ and *.egg-info/ into the checkout, so two at once
#   would collide and each worker would pay the 1-2 min install again;
# - "checkout-var": test_readme asserts that the README's commands create no var/ in the
#   checkout, and the browser tests write their screenshots to var/screenshots/ there.
GROUPS = {"test_readme.py": "checkout-var", "test_dashboard_browser.py": "checkout-var"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "installed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("installed"))
        elif item.path.name in GROUPS:
            item.add_marker(pytest.mark.xdist_group(GROUPS[item.path.name]))
