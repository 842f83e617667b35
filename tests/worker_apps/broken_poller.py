"""A worker app whose client has a bug: its poller crashes every time it runs.

For the supervision tests: the client's supervisor restarts the poller (logging each crash),
marks it failed after five crashes in a row, and ``river worker`` then exits with status 3.
The backoff is shortened so that the test takes a second, not eight.
"""

from __future__ import annotations

from typing import Any

import river
from river import _runtime
from river._poller import Poller
from river._supervisor import Supervisor
from worker_apps.basic import workers


async def _crash(self: Poller) -> None:
    raise RuntimeError("poller bug")


class _FastSupervisor(Supervisor):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backoff_initial = self.backoff_max = 0.05


Poller._tick = _crash  # type: ignore[method-assign]
_runtime.Supervisor = _FastSupervisor  # type: ignore[misc]


def make_config() -> river.Config:
    return river.Config(workers=workers, queues={"default": river.QueueConfig()})
