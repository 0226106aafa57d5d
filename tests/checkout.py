"""Locks on what the tests of one checkout share outside their own tmp_path.

The suite runs on several pytest-xdist workers (and a helper may run a second suite in the same
checkout): building the wheel writes build/ and *.egg-info/ into the checkout, and the browser
tests create the checkout's var/ that test_readme watches. ``flock`` on a file named after the
checkout makes those steps take turns; the kernel drops the lock when a process dies, so a
killed run never leaves a stale one behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def checkout_lock(name: str) -> Iterator[None]:
    """Hold the lock ``name`` of this checkout (e.g. "build", "var") until the block ends.

    The lock file lives in the temp dir, never in the checkout: creating ``var/`` to hold it
    would be the very change test_readme looks for."""
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"abandonment-hub-{key}-{name}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
