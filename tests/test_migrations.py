"""The schema is versioned by Alembic: first boots of many processes never race, and a database
the previous release created is adopted without losing a row."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

from hub.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]

# gunicorn calls this in each worker after it loaded wsgi:app (create_app returned)
_GUNICORN_CONF = """
def post_worker_init(worker):
    worker.log.info("hub-worker-ready %s", worker.pid)
"""


def _env(tmp_path: Path, redis_url: str, database: tuple[str, str | None], **extra: str) -> dict:
    (tmp_path / "config" / "tenants").mkdir(parents=True, exist_ok=True)
    return dict(
        os.environ,
        HUB_CONFIG_DIR=str(tmp_path / "config"),
        HUB_VAR_DIR=str(tmp_path / "var"),
        HUB_SECRET_KEY="test-secret",
        REDIS_URL=redis_url,
        DATABASE_URL=database[0],
        DATABASE_SCHEMA=database[1] or "",
        **extra,
    )


def _status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_gunicorn_with_several_workers_boots_on_a_fresh_database(tmp_path, redis_url, database):
    """Issue 9: every worker of a first boot migrates at once; none may crash the master."""
    workers = 4
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text(_GUNICORN_CONF)
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(conf),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--chdir",
                str(ROOT),
                "wsgi:app",
            ],
            env=_env(tmp_path, redis_url, database),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()
        wait_for(
            lambda: (
                server.poll() is not None
                or log_path.read_text().count("hub-worker-ready") >= workers
            ),
            90,
            message=f"{workers} gunicorn workers booted",
        )
        booted = time.monotonic() - started
        text = log_path.read_text()
        assert server.poll() is None, f"gunicorn exited:\n{text[-4000:]}"
        assert "Worker failed to boot" not in text and "Traceback" not in text, text[-4000:]
        assert _status(port, "/readyz") == 200
        print(f"{workers} workers booted in {booted:.1f}s")
    finally:
        server.terminate()
        server.wait(20)
