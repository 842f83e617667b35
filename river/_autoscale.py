"""Autoscaled queues: a queue's concurrency floats between ``min_workers`` and ``max_workers``.

One :class:`Autoscaler` per started client ticks every :data:`TICK` seconds over the producers
of autoscaled queues only (a client with thousands of fixed queues pays nothing). For each it
asks :func:`decide` for the next target, a pure function of what the producer shows:

- **grow** (double, at least +1, up to ``max_workers``) when every slot is busy and a fetch
  since the last change filled all the slots it asked for (jobs wait), unless the process is at
  its limit (the **brake**: the event loop lags by more than :data:`LAG_BRAKE`, or every
  thread of the sync workers' pool is busy);
- **shrink** (halve, keeping half again as many slots as jobs running, never below
  ``min_workers``) once at most half the
  slots have been busy for :data:`SHRINK_AFTER` seconds without a pause, and not within
  :data:`SHRINK_AFTER` seconds of growing: growth is fast, shrinking slow (hysteresis), so a
  steady load settles instead of flapping;
- otherwise keep the target.

Bursts reach ``max_workers`` in a few ticks (1 -> 50 in six doublings, 1.5 s); an idle queue
returns from 50 to 5 in four halvings, about 20 s after the backlog is gone
(bench/load_driven.py measured 20.1 s).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

if TYPE_CHECKING:
    from river._producer import Producer

__all__ = ["LAG_BRAKE", "SHRINK_AFTER", "TICK", "Autoscaler", "ScaleState", "decide"]

logger = logging.getLogger("river.client")

#: Seconds between two decisions.
TICK = 0.25
#: Seconds at most half the slots must have been busy, uninterrupted, before a shrink; also
#: the quiet time after a growth before any shrink.
SHRINK_AFTER = 5.0
#: Event-loop lag (seconds a tick comes late) over which no queue grows.
LAG_BRAKE = 0.05


@dataclass(slots=True)
class ScaleState:
    """What :func:`decide` remembers of one queue between ticks."""

    #: Since when at most half the slots are busy (None: more are).
    idle_since: float | None = None
    #: When the target last grew, and last changed either way.
    grew_at: float = -math.inf
    changed_at: float = -math.inf
    #: Direction of the last change (+1, -1; 0: none yet), and how many times it reversed.
    direction: int = 0
    reversals: int = 0


def decide(
    *,
    target: int,
    min_workers: int,
    max_workers: int,
    running: int,
    backlogged: bool,
    brake: bool,
    now: float,
    state: ScaleState,
) -> int:
    """The next target of one autoscaled queue (see module doc); updates ``state``."""
    new = target
    if running >= target and backlogged:
        state.idle_since = None
        if not brake and target < max_workers:
            new = min(max_workers, max(target + 1, target * 2))
            state.grew_at = now
    elif running * 2 <= target and target > min_workers:
        if state.idle_since is None:
            state.idle_since = now
        elif now - state.idle_since >= SHRINK_AFTER and now - state.grew_at >= SHRINK_AFTER:
            # Halve, but keep room above what runs (half again as many slots): shrinking to
            # exactly the jobs running would leave no free slot, the next fetch would look
            # full and the queue would grow back (16 <-> 32 for ever under a steady load).
            new = max(min_workers, math.ceil(target / 2), running + math.ceil(running / 2))
            new = min(new, target)
            state.idle_since = now
    else:
        state.idle_since = None
    if new != target:
        state.changed_at = now
        direction = 1 if new > target else -1
        if state.direction and direction != state.direction:
            state.reversals += 1
        state.direction = direction
    return new


class Autoscaler:
    """The client's autoscaling service (see module doc). ``saturated`` tells whether the sync
    workers' thread pool is fully busy; ``on_change(producer, old, new)`` is called after each
    change of a target."""

    def __init__(
        self,
        *,
        saturated: Callable[[], bool] = lambda: False,
        on_change: Callable[[Producer, int, int], None] = lambda producer, old, new: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producers: dict[Producer, ScaleState] = {}
        self._saturated = saturated
        self._on_change = on_change
        self._clock = clock
        self._wake = anyio.Event()
        #: The event loop's lag as last measured (seconds a tick came late).
        self.lag = 0.0

    def track(self, producer: Producer, on: bool) -> None:
        """Start (``on``) or stop deciding for ``producer``."""
        if on:
            self._producers.setdefault(producer, ScaleState())
            self._wake.set()
        else:
            self._producers.pop(producer, None)

    def tick(self) -> None:
        """One decision for every autoscaled producer."""
        now = self._clock()
        brake = self.lag > LAG_BRAKE or self._saturated()
        for producer, state in list(self._producers.items()):
            settings = producer.settings
            if not settings.autoscaled or settings.min_workers is None:
                continue
            old = producer.target
            # Only a fetch made since the last change tells that jobs still wait: the flag of
            # an older one would grow the queue again before the new slots were even used.
            fresh = producer.last_full_fetch > state.changed_at
            new = decide(
                target=old,
                min_workers=settings.min_workers,
                max_workers=settings.max_workers,
                running=len(producer.running),
                backlogged=producer.backlogged and fresh and not producer.paused,
                brake=brake,
                now=now,
                state=state,
            )
            if new != old:
                producer.set_target(new)
                self._on_change(producer, old, producer.target)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tick every :data:`TICK` seconds while some queue is autoscaled (else sleep until
        one is); measures the event loop's lag on the way."""
        task_status.started()
        while True:
            if not self._producers:
                self._wake = anyio.Event()
                await self._wake.wait()
                self.lag = 0.0
            before = time.monotonic()
            await anyio.sleep(TICK)
            # A smoothed lag: one slow tick (a GC pause) does not hold growth back for long.
            late = max(time.monotonic() - before - TICK, 0.0)
            self.lag = max(late, self.lag * 0.5)
            self.tick()
