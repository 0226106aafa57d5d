"""Settings the hub cannot run with are refused at start-up, in one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hub.app import SettingsError, create_app
from hub.queues import queue_prefix_problem

BAD_PREFIXES = ["acme:", "prod:hub-", "a b", "hub/1", "hüb-"]


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_a_queue_prefix_rq_job_ids_cannot_carry_stops_the_app(tmp_path, prefix):
    """RQ refuses such a job id: every enqueue would fail while the ingress answered 202."""
    with pytest.raises(SettingsError) as caught:
        create_app(
            {
                "HUB_CONFIG_DIR": str(tmp_path),
                "HUB_VAR_DIR": str(tmp_path / "var"),
                "DATABASE_URL": f"sqlite:///{tmp_path}/h.db",
                "HUB_QUEUE_PREFIX": prefix,
            }
        )
    message = str(caught.value)
    assert message.startswith(f"HUB_QUEUE_PREFIX={prefix!r} is invalid") and "\n" not in message


@pytest.mark.parametrize("prefix", ["", "prod-", "hub_2-", "T1a"])
def test_letters_digits_underscore_and_dash_make_a_queue_prefix(prefix):
    assert queue_prefix_problem(prefix) is None


def test_hub_worker_refuses_and_config_check_reports_a_bad_queue_prefix(tmp_path, redis_url):
    env = dict(
        os.environ,
        HUB_CONFIG_DIR=str(tmp_path),
        HUB_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path}/h.db",
        REDIS_URL=redis_url,
        HUB_QUEUE_PREFIX="acme:",
    )
    env.pop("DATABASE_SCHEMA", None)
    line = "HUB_QUEUE_PREFIX='acme:' is invalid: use only letters, digits, '_' and '-'"
    for command in (["worker", "--burst"], ["sweep"], ["config", "check"]):
        done = subprocess.run(
            [sys.executable, "-m", "hub", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert line in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr
