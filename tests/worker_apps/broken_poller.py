"""A worker app whose client has a bug: its poller crashes every time it runs.

For the supervision tests: the client's supervisor restarts the poller (logging each crash),
marks it failed after five crashes in a row, and ``river worker`` then exits with status 3.
The backoff is shortened so that the test takes a second, not eight.
"""

from __future__ import annotations

from typing import Any

import river
from river._client import AsyncClient
from worker_apps.basic import workers


async def _crash(self: AsyncClient) -> None:
    raise RuntimeError("poller bug")


_init = AsyncClient.__init__


def _init_fast_backoff(self: AsyncClient, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    self._supervisor.backoff_initial = self._supervisor.backoff_max = 0.05


AsyncClient._poll_until_stopped = _crash  # type: ignore[method-assign]
AsyncClient.__init__ = _init_fast_backoff  # type: ignore[method-assign]


def make_config() -> river.Config:
    return river.Config(workers=workers, queues={"default": river.QueueConfig()})
