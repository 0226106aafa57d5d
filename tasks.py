#!/usr/bin/env python3
"""The README's commands, needing nothing but Python 3.11+:

    python3 tasks.py run     # set up .venv/, then run the hub on embedded defaults
    python3 tasks.py test    # set up .venv/, then lint and run the whole test suite (pytest)
    python3 tasks.py test -n 0 tests/test_x.py   # pytest's own options pass through
    python3 tasks.py bench   # set up .venv/, then run the benchmarks

Set-up is idempotent: the virtual environment in .venv/ is (re)installed from constraints.txt
only when pyproject.toml or constraints.txt changed since the last install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run by the system python, not .venv
        sys.exit("abandonment-hub needs Python 3.11 or 3.12")
    if not (BIN / "python").exists():
        print("creating .venv/ …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    inputs = [ROOT / "pyproject.toml", ROOT / "constraints.txt"]
    if STAMP.exists() and all(STAMP.stat().st_mtime >= p.stat().st_mtime for p in inputs):
        return
    print("installing dependencies into .venv/ (pinned by constraints.txt) …", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run(
        [*pip, "install", "-c", str(ROOT / "constraints.txt"), "-e", ".[test]"],
        check=True,
        cwd=ROOT,
    )
    STAMP.touch()


BROWSER = ("/usr/bin/chromium", "/usr/bin/chromedriver")


def ensure_browser() -> None:
    """The dashboard's browser tests drive Debian's chromium with its chromium-driver: install
    them when missing and we are root (CI is), else say loudly why those tests will skip."""
    if all(os.access(path, os.X_OK) for path in BROWSER):
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            "WARNING: no chromium/chromedriver and not root with apt-get: the dashboard's "
            "browser tests will be skipped (apt-get install chromium chromium-driver)",
            flush=True,
        )
        return
    print("installing chromium and chromium-driver for the browser tests …", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    for attempt in range(20):  # another apt-get may hold the lock for a while
        if subprocess.call(install, env=env, stdout=subprocess.DEVNULL) == 0:
            return
        if attempt == 0:
            subprocess.call(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        time.sleep(15)
    print("WARNING: could not install chromium: the browser tests will be skipped", flush=True)


def workers(pytest_args: list[str]) -> list[str]:
    """``-n N`` for pytest-xdist unless the caller chose (``-n 0`` runs in this one process).

    Most tests wait on subprocesses, sockets, RQ workers and polls rather than use a core, so
    one worker more than there are cores keeps the CPU busy; more than four only adds
    processes (each worker starts its own hub workers, gunicorns and, without REDIS_URL, its
    own redis-server) that compete for it. What tests share outside their tmp_path takes
    turns under a file lock (tests/checkout.py)."""
    chosen = ("-n", "--numprocesses", "no:xdist")
    if any(a in chosen or a.startswith(("-n", "--numprocesses=")) for a in pytest_args):
        return []
    return ["-n", str(min(4, max(2, (os.cpu_count() or 1) + 1)))]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("setup", "run", "test", "bench", "lint"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    setup()
    os.chdir(ROOT)
    if command == "setup":
        return 0
    if command == "run":  # become the hub, so Ctrl-C and SIGTERM reach it directly
        os.execv(str(BIN / "hub"), [str(BIN / "hub"), "run", *rest])
    if command == "lint":
        return subprocess.call([str(BIN / "ruff"), "check", "."])
    if command == "bench":
        return subprocess.call([str(BIN / "python"), "-m", "bench", *rest])
    ensure_browser()
    lint = subprocess.call([str(BIN / "ruff"), "check", "."])
    tests = subprocess.call([str(BIN / "python"), "-m", "pytest", *workers(rest), *rest])
    return tests or lint


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
