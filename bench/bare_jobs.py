"""The worker baseline's job: one HTTP POST to the bench's local stand-in, nothing else.

A module-level ``requests.Session`` keeps the connection open across jobs, as the hub's sinks
do (connections are reused), so the comparison is RQ + one POST against the hub.
"""

from __future__ import annotations

import requests

_session = requests.Session()
_session.trust_env = False  # no proxy or CA variables from the machine: loopback only


def post_once(url: str) -> int:
    """POST a small JSON document to ``url``; returns the status code."""
    if not url:  # the ingest baseline enqueues jobs nobody runs
        return 0
    return _session.post(url, json={"reason": "bench"}, timeout=10).status_code
