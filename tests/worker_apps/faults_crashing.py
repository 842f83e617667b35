"""bench/faults.py's crashing-service app: the client's poller raises every time it runs, with
the supervisor's default backoff (unlike worker_apps.broken_poller, which shortens it for a fast
test): the figure is how long a real process takes to give up and exit with status 3.
"""

from __future__ import annotations

from typing import Any

import river
from worker_apps.faults import workers


async def _crash(self: Any) -> None:
    raise RuntimeError("poller bug (bench/faults.py crashing-service)")


try:  # the poller as its own class (river/_poller.py)
    from river._poller import Poller

    Poller._tick = _crash  # type: ignore[method-assign]
except ImportError:  # the poller as a loop of the client
    from river._client import AsyncClient

    AsyncClient._poll_until_stopped = _crash  # type: ignore[attr-defined]


def make_config() -> river.Config:
    return river.Config(workers=workers, queues={"default": river.QueueConfig()})
