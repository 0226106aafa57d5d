"""Shared fixtures come from the hub's own test kit (hub.testing.pytest_plugin, registered as a
pytest11 entry point), the same one third-party plugin authors use. Only the packaging tests'
installed hub lives here: plugin authors have no use for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from checkout import checkout_lock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment made by deploy/install.sh, the script the Dockerfile runs.

    Made once per run: building the wheel and installing the pinned dependencies is most of a
    packaging test's time, and the tests that use it only read it (test_deploy) or layer a
    venv of their own on top of it (test_scaffold). Under pytest-xdist the first worker that
    needs it builds it where the run's workers all look (their temp dirs share a parent) and
    the others wait on the "build" lock, which also keeps two wheel builds out of the
    checkout's build/ at once."""
    base = tmp_path_factory.getbasetemp()
    venv = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "installed-venv"
    with checkout_lock("build"):
        if not (venv / ".installed").exists():
            shutil.rmtree(venv, ignore_errors=True)  # a worker that died half-way
            done = subprocess.run(
                ["sh", str(ROOT / "deploy" / "install.sh"), str(venv)],
                env={**os.environ, "PYTHON": sys.executable},
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            (venv / ".installed").touch()
    return venv
