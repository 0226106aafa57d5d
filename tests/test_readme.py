"""The README's command blocks that claim to work are run exactly as written.

A block marked ``<!-- readme-test -->`` right before its fence is run by bash from the checkout
(``set -euo pipefail``); it must succeed, print no traceback or error line, and leave no state
(no ``var/``) behind: these are the reading commands a new user types first.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from checkout import checkout_lock

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"<!-- readme-test -->\n```sh\n(.*?)```", re.S)


def marked_blocks() -> list[str]:
    return MARKED.findall((ROOT / "README.md").read_text())


def test_the_readme_marks_its_runnable_blocks():
    assert marked_blocks(), "no block of the README is marked <!-- readme-test -->"


@pytest.mark.parametrize("block", marked_blocks(), ids=lambda b: b.splitlines()[-1][:60])
def test_readme_block_runs_as_written(block, tmp_path):
    # other pytest-xdist workers' browser tests create var/screenshots: not meanwhile
    with checkout_lock("var"):
        had_var = (ROOT / "var").exists()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HUB_", "DATABASE_", "ACME_")) and k != "REDIS_URL"
        }
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + block],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert "Traceback" not in output
        assert not re.search(r"^Error:", output, re.M), output[-4000:]
        assert had_var or not (ROOT / "var").exists(), "a reading command created var/"
