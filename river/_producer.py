"""The producer of one queue: fetch loop, slot accounting, pause state, its jobs.

A producer fetches with ``limit = free slots`` (never when paused, when no slot is free, or
while the completer is saturated). Fetch triggers: start, an insert notification for its
queue, the client's poller finding due jobs, resume, and a finished job when the previous fetch
was full. Triggers within ``fetch_cooldown`` of the last fetch collapse into one trailing fetch.
After a fetch woken by a notification it fetches once more one cooldown later, catching inserts
whose notifications the sender's limiter suppressed (PROTOCOL.md 7.3).

Stopping: :meth:`stop_fetching` (soft) ends the fetch loop and lets running jobs finish;
:meth:`cancel_jobs` (hard) cancels them, and they return to ``available`` (interrupted).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import psycopg
from anyio.abc import TaskStatus

from river._executor import CancelReason, RunningJob
from river._types import JobState

if TYPE_CHECKING:
    from river._client import _Runtime

__all__ = ["Producer", "QueueSettings"]

logger = logging.getLogger("river.producer")


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's effective settings (its QueueConfig merged with the client's defaults)."""

    max_workers: int
    fetch_cooldown: float
    fetch_poll_interval: float


class _Trigger:
    """A resettable wake-up flag."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    async def wait(self, max_wait: float = math.inf) -> bool:
        """Wait until set or ``max_wait`` seconds elapse; return whether it was set."""
        with anyio.move_on_after(max_wait):
            await self._event.wait()
        return self._event.is_set()


class Producer:
    """Fetches and runs the jobs of one queue (see module doc)."""

    def __init__(
        self, runtime: _Runtime, queue: str, settings: QueueSettings, paused: bool = False
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.paused = paused
        self.running: dict[int, RunningJob] = {}
        self._rt = runtime
        self._trigger = _Trigger()
        self._stopping = False
        self._last_fetch = -math.inf
        self._last_fetch_full = False
        self._notified = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._done = anyio.Event()
        # Held during a fetch, so a settings change never lands in the middle of one.
        self._fetch_lock = anyio.Lock()
        # Monotonic times at which jobs this producer re-queued (short retries and snoozes go
        # straight to available with a future scheduled_at) become due: a local timer wakes the
        # loop then, instead of waiting for the next poll.
        self._timed_wakes: list[float] = []
        #: Times the client's poller checked this queue (statistics; tests wait on it).
        self.polled = 0
        #: Jobs fetched and finished over this producer's life (statistics).
        self.fetched = 0
        self.finished = 0

    @property
    def free_slots(self) -> int:
        """Slots available for new jobs (never negative, even after a shrink)."""
        return max(self.settings.max_workers - len(self.running), 0)

    def wake(self, *, notified: bool = False) -> None:
        """Ask for a fetch (coalesced with the cooldown)."""
        if notified:
            self._notified = True
        self._trigger.set()

    def set_paused(self, paused: bool) -> None:
        """Pause (fetch nothing; running jobs go on) or resume (and fetch at once)."""
        self.paused = paused
        if not paused:
            self._trigger.set()

    async def update_settings(self, settings: QueueSettings) -> None:
        """Stop the fetch loop between two fetches, swap the settings, restart it. Growing adds
        slots at once; shrinking interrupts nothing: surplus jobs finish and nothing is fetched
        until below the new limit."""
        async with self._fetch_lock:
            self.settings = settings
        self._trigger.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop_fetching` and every running job has finished.

        Each job runs in an asyncio task owned by this producer (a per-job anyio task-group
        spawn and cancel scope cost more CPU than the rest of a no-op job together); the
        producer never returns, or propagates a cancellation, before all of them are done.
        """
        task_status.started()
        try:
            await self._fetch_loop()
            await self._wait_jobs()
        except BaseException:
            # Cancelled from outside (the client's root crashed): interrupt the jobs and
            # still wait for them, so their outcomes reach the completer.
            with anyio.CancelScope(shield=True):
                self.cancel_jobs()
                await self._wait_jobs()
            raise
        finally:
            self._done.set()

    async def _wait_jobs(self) -> None:
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def stop_fetching(self) -> None:
        """Soft stop: fetch nothing more; running jobs finish."""
        self._stopping = True
        self._trigger.set()

    def cancel_jobs(self) -> None:
        """Hard stop: cancel every running job (they are recorded as interrupted)."""
        for running in list(self.running.values()):
            running.cancel(CancelReason.STOP)

    async def wait_done(self) -> None:
        """Wait until :meth:`run` has returned."""
        await self._done.wait()

    def wake_at(self, when: float) -> None:
        """Fetch at monotonic time ``when`` (e.g. when a re-queued job becomes due)."""
        heapq.heappush(self._timed_wakes, when)
        self._trigger.set()  # re-evaluate the wait's deadline

    async def _wait(self, max_wait: float = math.inf) -> bool:
        """Wait for a trigger, a timed wake or ``max_wait`` s; True when woken for a fetch."""
        while True:
            now = time.monotonic()
            while self._timed_wakes and self._timed_wakes[0] <= now:
                heapq.heappop(self._timed_wakes)
                return True
            until = self._timed_wakes[0] - now if self._timed_wakes else math.inf
            if await self._trigger.wait(min(max_wait, until)):
                return True
            if max_wait <= until:
                return False

    async def _fetch_loop(self) -> None:
        rt = self._rt
        trailing = False
        # No fetch before the first trigger: the client's poller checks a new queue at once
        # (one query for every queue starting together) and wakes it if it has due jobs.
        await self._wait()
        while not self._stopping:
            if self.paused or self.free_slots <= 0 or rt.completer.saturated:
                await self._wait()
                self._trigger.clear()
                trailing = False
                continue
            wait = self._last_fetch + self.settings.fetch_cooldown - time.monotonic()
            if wait > 0 and not trailing:
                await anyio.sleep(wait)
                if self._stopping:
                    break
                if self.paused or self.free_slots <= 0:
                    continue
            self._trigger.clear()
            notified, self._notified = self._notified, False
            async with self._fetch_lock:
                limit = self.free_slots
                if limit <= 0 or self.paused:
                    continue
                if not trailing:
                    # A trailing fetch does not restart the cooldown: the next notification
                    # (the next insert of a steady trickle) must be fetched at once.
                    self._last_fetch = time.monotonic()
                trailing = False
                try:
                    rows = await rt.fetch(self.queue, limit)
                except (psycopg.Error, OSError) as exc:
                    logger.warning("queue %s: fetch failed, retrying: %s", self.queue, exc)
                    rows = None
            if rows is None:
                await self._trigger.wait(min(1.0, self.settings.fetch_poll_interval))
                continue
            self._last_fetch_full = len(rows) >= limit
            if rows:
                self.fetched += len(rows)
                started = time.monotonic()
                loop = asyncio.get_running_loop()
                tasks = self._tasks
                for row in sorted(rows, key=lambda r: (r.priority, r.scheduled_at, r.id)):
                    running = RunningJob(row, started)
                    self.running[row.id] = running
                    task = loop.create_task(self._work(running))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if self._last_fetch_full:
                continue  # slots freed by finishing jobs wake the loop
            if notified and rows:
                # Trailing fetch: inserts whose notification the sender's limiter suppressed.
                if not await self._wait(self.settings.fetch_cooldown * 2):
                    trailing = True
                continue
            await self._wait()

    async def _work(self, running: RunningJob) -> None:
        rt = self._rt
        try:
            outcome = await rt.executor.execute(running)
        finally:
            del self.running[running.row.id]
        self.finished += 1
        rt.completer.add(outcome)
        if outcome.state is JobState.AVAILABLE and outcome.scheduled_at is not None:
            delay = (outcome.scheduled_at - rt.executor.now()).total_seconds()
            if delay > 0:
                # Slightly late, so the completer has written the outcome by then.
                self.wake_at(time.monotonic() + delay + rt.completer.flush_interval)
        if self._last_fetch_full:
            self._trigger.set()
