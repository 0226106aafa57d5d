"""What counting one webhook request costs: ``python -m bench.metrics_cost``.

Times what ``hub.metrics`` does for each webhook request (``_count``) in a Flask request
context. Run
once per mode: in-process values, and prometheus-client's multiprocess mode (mmap files, as
under gunicorn with ``hub.gunicorn_config``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import timeit


def _measure() -> float:
    """Microseconds ``hub.metrics`` adds per accepted webhook request, best of seven runs.

    The wrapper's own work is two clock reads and ``_count`` (label lookups, two counter
    increments, one histogram observation); Flask builds the Response either way.
    """
    import time

    from flask import Flask

    from hub import metrics
    from hub.hookspecs import IngestOutcome

    class _Hub:
        tenants = {"acme": object()}
        sources = {"stripe": object()}

    hub = _Hub()
    app = Flask("bench")
    n = 20000
    with app.test_request_context("/webhooks/acme/stripe", method="POST") as ctx:
        ctx.request.environ["hub.ingest_outcome"] = IngestOutcome(1, 0, False, (1,))

        def once() -> None:
            metrics._count(hub, "acme", "stripe", 202, None, time.perf_counter())

        return min(timeit.repeat(once, number=n, repeat=7)) / n * 1e6


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(f"{_measure():.1f}")
        return
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    single = subprocess.run(
        [sys.executable, "-m", "bench.metrics_cost", "--child"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as path:
        multi = subprocess.run(
            [sys.executable, "-m", "bench.metrics_cost", "--child"],
            env={**env, "PROMETHEUS_MULTIPROC_DIR": path},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    print(f"metrics per webhook request: {single} µs in-process, {multi} µs multiprocess (mmap)")


if __name__ == "__main__":
    main()
