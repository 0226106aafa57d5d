"""gunicorn settings for the hub: ``gunicorn -c python:hub.gunicorn_config wsgi:app``.

Command-line flags (``--workers``, ``--bind``, ``--access-logfile``) still apply on top.

* Metrics: gunicorn's workers are separate processes, so ``/metrics`` must sum the values of
  all of them. This module turns on prometheus-client's multiprocess mode before the app is
  imported (the mode is fixed when prometheus-client is first imported): it sets
  ``PROMETHEUS_MULTIPROC_DIR`` to ``<HUB_VAR_DIR>/metrics`` unless it is set already. At
  start, and whenever a worker exits, the files of dead processes are folded into one archive
  per metric type, so counters survive worker restarts and the directory does not grow.
* Logs: gunicorn's error and access logs get the hub's format (``HUB_LOG_FORMAT=json``: one
  JSON object per line) and its masking filter, like the app's own log lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

load_dotenv(override=False)  # HUB_VAR_DIR may come from .env, as create_app() reads it
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _var = Path(os.environ.get("HUB_VAR_DIR") or "var").resolve()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_var / "metrics")
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from gunicorn.glogging import Logger  # noqa: E402

from hub import metrics  # noqa: E402 - only now: prometheus-client reads the variable on import
from hub.logs import add_masking, formatter_for  # noqa: E402


class HubGunicornLogger(Logger):
    """gunicorn's own logger, with the hub's formatter and masking filter on its handlers."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        log_format = (os.environ.get("HUB_LOG_FORMAT") or "human").lower()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if log_format == "json":
                    handler.setFormatter(formatter_for("json"))
                add_masking(handler)


logger_class = HubGunicornLogger


def on_starting(server: Any) -> None:
    """Before any worker exists: fold what dead processes of earlier runs left behind."""
    path = metrics.multiproc_dir()
    if path is not None:
        metrics.compact(path)


def child_exit(server: Any, worker: Any) -> None:
    """A worker died or was recycled: keep its counts, drop its live gauges."""
    metrics.mark_dead(worker.pid)
