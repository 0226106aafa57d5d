"""Fixtures of the process-level fault suite (tests/faults/test_process_*.py); the servers and
process tools behind them live in ``process_helpers``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from process_helpers import LiveHub, RedisProcess, SilentServer

from hub.testing import HubHarness


@pytest.fixture
def live_hub() -> Iterator[Callable[..., LiveHub]]:
    """``live_hub(harness, workers=2, threads=4)``: the harness's hub served by gunicorn."""
    served: list[LiveHub] = []

    def serve(harness: HubHarness, workers: int = 2, threads: int = 4) -> LiveHub:
        live = LiveHub(harness, workers, threads)
        served.append(live)
        return live

    yield serve
    for live in served:
        live.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "own-redis").start()
    yield server
    server.stop()


@pytest.fixture
def hub_on_own_redis(
    tmp_path: Path, database: tuple[str, str | None], own_redis: RedisProcess
) -> Iterator[Callable[..., HubHarness]]:
    """Like ``hub_factory``, but on ``own_redis`` (which the test may kill); the harness and
    its workers stop before that Redis does."""
    harnesses: list[HubHarness] = []

    def make(tenants: dict[str, str], settings: dict | None = None) -> HubHarness:
        harness = HubHarness(
            tmp_path / f"hub{len(harnesses)}",
            own_redis.url,
            database[0],
            database[1],
            tenants,
            settings,
        )
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()
