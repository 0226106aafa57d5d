"""What every part of the engine works with: the hub, its store, the clock, the random source.

The engine's parts are small classes built per job; each takes this one object instead of
five arguments, so a test's clock or random source reaches every part the same way.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# RQ stores due times in whole seconds and may start a job ~1 s early
EARLY_SLACK = timedelta(seconds=1.5)


@dataclass(frozen=True)
class Runtime:
    """The hub (read at call time: tests and ``hub flow simulate`` swap its queues and sinks),
    a clock and a random source (both replaceable in tests)."""

    hub: Any
    clock: Callable[[], datetime]
    rng: random.Random

    @property
    def store(self) -> Any:
        return self.hub.store

    @property
    def metrics(self) -> Any:
        """``hub.metrics`` on a real hub; ``hub flow simulate``'s stand-in hub has none."""
        return getattr(self.hub, "metrics", None)


def one_connection(method: Callable) -> Callable:
    """Run a job's transactions on one pooled connection (see ``Store.one_connection``)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.store.one_connection():
            return method(self, *args, **kwargs)

    return wrapper
