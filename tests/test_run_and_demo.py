"""A newcomer's first five minutes: `hub run` on embedded defaults, then `hub demo`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from samples import tenant_toml

from hub.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_hub_run_on_embedded_defaults_and_hub_demo_shows_the_message(tmp_path, smtp_server):
    """`hub demo` posts to the demo tenant only (a client shop's SMTP server gets nothing), and
    run again it reports the frequency cap at once instead of "the hub is not running"."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATABASE_URL", "DATABASE_SCHEMA", "HUB_PUBLIC_URL")
    }
    config = tmp_path / "config"
    (config / "tenants").mkdir(parents=True)  # the shipped demo tenant, as it is
    shutil.copy(ROOT / "config" / "tenants" / "demo.toml", config / "tenants")
    # and a client shop with real channels, which the demo must leave alone
    (config / "tenants" / "client.toml").write_text(tenant_toml(smtp_url=smtp_server.url))
    env["HUB_CONFIG_DIR"] = str(config)
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    run = subprocess.Popen(
        [sys.executable, "-m", "hub", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        printed = wait_for(
            lambda: (
                "Ctrl-C" in (tmp_path / "run.log").read_text()
                and (tmp_path / "run.log").read_text()
            ),
            30,
            message="hub run started",
        )
        assert f"POST http://127.0.0.1:{port}/webhooks/demo/stripe" in printed
        assert (tmp_path / "var" / "redis.sock").exists()  # the embedded Redis
        demo_env = dict(env, HUB_PUBLIC_URL=f"http://127.0.0.1:{port}")
        demo = _demo(tmp_path, demo_env)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "202" in demo.stdout
        assert "outbox: sent" in demo.stdout
        assert "/webhooks/client/" not in demo.stdout
        [eml] = (tmp_path / "var" / "outbox" / "demo").glob("*.eml")
        text = eml.read_text()
        assert "Jane" in text and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in text
        started = time.monotonic()
        again = _demo(tmp_path, demo_env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "outbox: skipped (frequency cap (1 per 12h))" in again.stdout
        assert "done: nothing was sent (outbox: skipped, frequency cap (1 per 12h))" in again.stdout
        assert time.monotonic() - started < 25  # the 5 s step, not the 40 s --wait
        assert smtp_server.messages == []
    finally:
        os.killpg(run.pid, signal.SIGINT)
        try:
            run.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
    wait_for(
        lambda: (
            not (tmp_path / "var" / "redis.sock").exists()
            or subprocess.run(
                ["pgrep", "-f", str(tmp_path / "var" / "redis.sock")], capture_output=True
            ).returncode
            != 0
        ),
        15,
        message="embedded redis stopped",
    )


def _demo(cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--wait", "40"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
