"""A newcomer's first five minutes: `hub run` on embedded defaults, then `hub demo`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from hub.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_hub_run_on_embedded_defaults_and_hub_demo_shows_the_message(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATABASE_URL", "DATABASE_SCHEMA", "HUB_PUBLIC_URL")
    }
    env["HUB_CONFIG_DIR"] = str(ROOT / "config")  # the shipped example tenants, as they are
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
        demo = subprocess.run(
            [sys.executable, "-m", "hub", "demo", "--wait", "40"],
            cwd=tmp_path,
            env=dict(env, HUB_PUBLIC_URL=f"http://127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "202" in demo.stdout
        assert "outbox: sent" in demo.stdout
        [eml] = (tmp_path / "var" / "outbox" / "demo").glob("*.eml")
        text = eml.read_text()
        assert "Jane" in text and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in text
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
