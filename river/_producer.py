"""The producer of one queue: fetch loop, slot accounting, pause state, its jobs.

A producer fetches with ``limit = free slots`` (never when paused or when no slot is free),
capped by the client's :class:`JobBudget`: the jobs a client holds between fetch and the write of
their outcome are bounded, and producers waiting for room are served first come, first served.
Fetch triggers: start, an insert notification for its
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
import operator
import random
import sys
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import psycopg
from anyio.abc import TaskStatus

from river._config import QueueSettings, RateLimit
from river._driver import AttemptKey
from river._errors import describe
from river._executor import CancelReason, RunningJob
from river._types import JobRow, JobState

if TYPE_CHECKING:
    from river._completer import Completer
    from river._executor import Executor
    from river._supervisor import Supervisor

__all__ = ["JobBudget", "Producer"]

logger = logging.getLogger("river.producer")


class ProducerHost(Protocol):
    """What a producer needs from the runtime that started it (river/_runtime.py)."""

    executor: Executor
    completer: Completer
    budget: JobBudget
    supervisor: Supervisor

    async def fetch(self, queue: str, limit: int) -> list[JobRow]:
        """Lock and return up to ``limit`` due jobs of ``queue``."""
        ...

    async def fetch_limited(
        self, queue: str, limit: int, rate_limit: RateLimit
    ) -> tuple[list[JobRow], float | None]:
        """:meth:`fetch` through the queue's token bucket: the jobs, and the tokens it held
        before (None: unknown)."""
        ...

    def autoscale(self, producer: Producer, on: bool) -> None:
        """``producer``'s concurrency floats (``on``) or is fixed again."""
        ...


if sys.version_info >= (3, 12):

    def _spawn(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """A job's task, started eagerly: it runs at once, up to its first suspension, and a
        job that never suspends (a quick async worker) finishes without being scheduled at all,
        which saves the loop iteration and most of the cost of the task. Each job still has its
        own task: its own context (contextvars set by one job never leak into the next) and
        its own cancellation. A loop with a task factory of its own (an APM integration, say)
        gets its tasks from that factory, started the usual way."""
        if loop.get_task_factory() is not None:
            return loop.create_task(coro)
        return asyncio.Task(coro, loop=loop, eager_start=True)

else:

    def _spawn(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """A job's task (Python 3.11 has no eager tasks: it first runs on the next loop
        iteration)."""
        return loop.create_task(coro)


#: The order a fetched batch starts in (the fetch statement's; its UPDATE returns rows in any
#: order).
_FETCH_ORDER = operator.attrgetter("priority", "scheduled_at", "id")
#: How long after a re-queued job is due its producer fetches it (once its outcome is
#: written): the server's clock, which decides what is due, may be a little behind ours.
_DUE_MARGIN = 0.02

#: Seconds a rate-limited producer waits before fetching again when its bucket's river_queue
#: row was locked by another transaction.
_BUSY_RETRY = 0.05
#: A rate-limited producer that ran out of tokens fetches again once this many seconds' worth
#: have come (at most the bucket's size and its free slots; at least one token).
_RATE_BATCH = 0.1


class _Trigger:
    """A resettable wake-up flag for one waiter (the fetch loop).

    Plain asyncio underneath: an idle producer then holds a handful of objects instead of
    the dozens an anyio Event and cancel scope per wait add up to, which matters to the
    garbage collector with thousands of queues.
    """

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        self._flag = False

    async def wait(self, max_wait: float = math.inf) -> bool:
        """Wait until set or ``max_wait`` seconds elapse; return whether it was set."""
        if self._flag:
            return True
        if max_wait <= 0:
            return False
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if max_wait == math.inf else loop.call_later(max_wait, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return self._flag


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class JobBudget:
    """Room for fetches, shared by a client's producers: outcomes waiting to be written plus
    fetches in progress stay under ``Config.completer_max_backlog``.

    A producer reserves room before each fetch and sizes the fetch to it; the reservation is
    returned when the fetch does (the jobs are then bounded by the queue's ``max_workers``, and
    count again once their outcomes wait in the completer). When there is no room, producers
    queue up and are served in arrival order as the completer writes outcomes, one at a time
    (each wakes the next while room is left). Without this, every queue with free slots would
    fetch its whole ``max_workers`` the moment the backlog fell under the limit: 2,000 queues
    of 100 workers meant 200,000 no-op jobs in memory at once, locked in the database while
    waiting their turn, in a heap so large that Python's garbage collector cost more than the
    jobs themselves.
    """

    def __init__(self, capacity: int, backlog: Callable[[], int]) -> None:
        self.capacity = capacity
        self._backlog = backlog
        #: Room reserved by fetches in progress.
        self.reserved = 0
        self._waiters: dict[Producer, None] = {}

    @property
    def room(self) -> int:
        """How many more jobs may be fetched now."""
        return self.capacity - self.reserved - self._backlog()

    def acquire(self, producer: Producer, want: int) -> int:
        """Reserve room for a fetch of up to ``want`` jobs; 0 when the budget is full or other
        producers are waiting first (``producer`` then keeps or takes its place in line and is
        woken when its turn comes)."""
        room = self.room
        waiters = self._waiters
        if room <= 0 or (waiters and next(iter(waiters)) is not producer):
            waiters.setdefault(producer)
            return 0
        waiters.pop(producer, None)
        n = min(want, room)
        self.reserved += n
        if room > n:
            self.wake_next()
        return n

    def release(self, reserved: int) -> None:
        """Return a reservation once its fetch is over (done, failed or cancelled)."""
        self.reserved -= reserved
        self.wake_next()

    def leave(self, producer: Producer) -> None:
        """``producer`` no longer waits (paused, no free slot, stopping)."""
        if self._waiters and next(iter(self._waiters)) is producer:
            del self._waiters[producer]
            self.wake_next()
        else:
            self._waiters.pop(producer, None)

    def wake_next(self) -> None:
        """Wake the first waiting producer if there is room (after outcomes were written)."""
        if self._waiters and self.room > 0:
            next(iter(self._waiters)).wake()

    @property
    def waiting(self) -> int:
        """Producers waiting for room (statistics; tests)."""
        return len(self._waiters)

    def is_waiting(self, producer: Producer) -> bool:
        """Whether ``producer`` waits in line for room."""
        return producer in self._waiters


class Producer:
    """Fetches and runs the jobs of one queue (see module doc)."""

    def __init__(
        self, runtime: ProducerHost, queue: str, settings: QueueSettings, paused: bool = False
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.paused = paused
        #: The concurrency in force: ``settings.max_workers``, or, for an autoscaled queue,
        #: the autoscaler's current target between ``min_workers`` and ``max_workers``.
        self.target: int = (
            settings.min_workers
            if settings.autoscaled and settings.min_workers is not None
            else settings.max_workers
        )
        # Rate-limited queues: the monotonic time the bucket has a token again after a fetch
        # it limited; the loop holds its fetches until then.
        self._rate_hold_until = -math.inf
        #: Monotonic time of the last fetch that filled every slot it asked for (the
        #: autoscaler's sign that jobs wait).
        self.last_full_fetch = -math.inf
        #: Jobs running here, by (job id, attempt): two attempts of one job can overlap in one
        #: producer when the rescuer gave up on the first while it still ran.
        self.running: dict[AttemptKey, RunningJob] = {}
        self._rt = runtime
        self._trigger = _Trigger()
        self._stopping = False
        # Hard stops reach jobs whose fetch is in flight too: a fetch started before the
        # latest cancel_jobs (its generation is older), or any fetch returning after a cancel
        # of a stopping producer, starts its jobs already cancelled (see _start_jobs).
        self._cancel_gen = 0
        self._cancel_arrivals = False
        self._last_fetch = -math.inf
        self._last_fetch_full = False
        self._notified = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._done = asyncio.Event()
        # Held during a fetch, so a settings change never lands in the middle of one.
        self._fetch_lock = asyncio.Lock()
        # Runs of the fetch loop (more than one after a crash and restart).
        self._fetch_runs = 0
        # Monotonic times at which jobs this producer re-queued (short retries and snoozes go
        # straight to available with a future scheduled_at) become due: a local timer wakes the
        # loop then, instead of waiting for the next poll.
        self._timed_wakes: list[float] = []
        # The fetch cooldown's wait in progress (its future and timer), which a stop or a
        # settings change cuts short.
        self._cooldown: tuple[asyncio.Future[None], asyncio.TimerHandle] | None = None
        #: Times the client's poller checked this queue (statistics; tests wait on it).
        self.polled = 0
        #: Jobs fetched and finished over this producer's life (statistics).
        self.fetched = 0
        self.finished = 0
        #: The completer's sequence number of this producer's latest outcome (0: none yet).
        self.last_outcome = 0

    @property
    def free_slots(self) -> int:
        """Slots available for new jobs (never negative, even after a shrink)."""
        return max(self.target - len(self.running), 0)

    @property
    def backlogged(self) -> bool:
        """Whether jobs likely wait: the last fetch filled every slot it asked for."""
        return self._last_fetch_full

    def set_target(self, target: int) -> None:
        """The autoscaler's new concurrency (clamped to the settings); more slots are used by
        the next fetch, fewer let surplus jobs finish."""
        s = self.settings
        low = s.min_workers if s.autoscaled and s.min_workers is not None else s.max_workers
        target = min(max(target, low), s.max_workers)
        if target != self.target:
            grew = target > self.target
            self.target = target
            if grew:
                self._trigger.set()

    @property
    def wants_poll(self) -> bool:
        """Whether the client's poller should look for due jobs for this queue: not when it
        will fetch anyway (its last fetch was full, so finishing jobs trigger the next one, or
        it waits in line for room in the job budget) or could not (paused, no free slot)."""
        return (
            not self.paused
            and not self._last_fetch_full
            and self.free_slots > 0
            and not self._rt.budget.is_waiting(self)
        )

    def runs_job(self, job_id: int) -> bool:
        """Whether an attempt of job ``job_id`` runs here."""
        return any(key[0] == job_id for key in self.running)

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
            if settings.rate_limit != self.settings.rate_limit:
                # A new limit (or none): the next fetch computes its own hold from the bucket,
                # not from the old rate (which may have meant an hour's wait).
                self._rate_hold_until = -math.inf
            self.settings = settings
            if settings.autoscaled and settings.min_workers is not None:
                self.target = min(max(self.target, settings.min_workers), settings.max_workers)
            else:
                self.target = settings.max_workers
            self._rt.autoscale(self, settings.autoscaled)
        self._end_cooldown()  # the old cooldown no longer holds the loop
        self._trigger.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop_fetching` and every running job has finished.

        Each job runs in an asyncio task owned by this producer (a per-job anyio task-group
        spawn and cancel scope cost more CPU than the rest of a no-op job together); the
        producer never returns, or propagates a cancellation, before all of them are done.
        """
        task_status.started()
        del task_status  # held by this frame for the producer's whole life otherwise
        supervisor = self._rt.supervisor
        try:
            # Supervised: a crash of the fetch loop (a bug) is logged and the loop restarted;
            # the jobs it started run on, in their own tasks.
            await supervisor.run(f"producer:{self.queue}", self._fetch_service)
            await self._wait_jobs()
        except BaseException:
            # Cancelled from outside (the client's root crashed): interrupt the jobs and
            # still wait for them, so their outcomes reach the completer.
            with anyio.CancelScope(shield=True):
                self.cancel_jobs()
                await self._wait_jobs()
            raise
        finally:
            supervisor.forget(f"producer:{self.queue}")
            self._done.set()

    async def _fetch_service(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        if self._fetch_runs:
            self._trigger.set()  # restarted after a crash: look for jobs at once
        self._fetch_runs += 1
        task_status.started()
        await self._fetch_loop()

    async def _wait_jobs(self) -> None:
        while self._tasks:
            # A job's task leaves the set itself as its last step (see _work); one that never
            # ran (cancelled before its first step) is dropped here.
            done, _ = await asyncio.wait(list(self._tasks))
            self._tasks.difference_update(done)

    def stop_fetching(self) -> None:
        """Soft stop: fetch nothing more; running jobs finish."""
        self._stopping = True
        self._end_cooldown()
        self._trigger.set()

    async def _sleep_cooldown(self, seconds: float) -> None:
        """Sleep out the fetch cooldown, unless :meth:`_end_cooldown` ends it first. What
        ``asyncio.sleep`` does (a future and a timer, once per fetch), with both kept where a
        stop can reach them: a plain sleep held a stop, or a queue's removal, for the rest of
        the cooldown, which a cluster-wide setting may make hours long."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._cooldown = (future, loop.call_later(seconds, _expire, future))
        try:
            await future
        finally:
            self._cooldown = None

    def _end_cooldown(self) -> None:
        cooldown = self._cooldown
        if cooldown is not None:
            future, timer = cooldown
            timer.cancel()
            if not future.done():
                future.set_result(None)

    def cancel_jobs(self) -> None:
        """Hard stop: cancel every running job (they are recorded as interrupted), and the
        jobs of a fetch in flight when they arrive (their attempt began in the database
        before this call). Once the producer is stopping, every job still arriving is
        cancelled: nothing new starts after a hard stop."""
        self._cancel_gen += 1
        if self._stopping:
            self._cancel_arrivals = True
        for running in list(self.running.values()):
            running.cancel(CancelReason.STOP)

    async def wait_done(self) -> None:
        """Wait until :meth:`run` has returned."""
        await self._done.wait()

    def _wake_when_due(self, due: float) -> None:
        """:meth:`wake_at` ``due``, or now when that has passed (the completer calls it once
        a re-queued job's outcome is written)."""
        self.wake_at(max(due, time.monotonic()))

    def wake_at(self, when: float) -> None:
        """Fetch at monotonic time ``when`` (e.g. when a re-queued job becomes due)."""
        heapq.heappush(self._timed_wakes, when)
        self._trigger.set()  # re-evaluate the wait's deadline

    async def _wait(self, max_wait: float = math.inf) -> bool:
        """Wait for a trigger, a timed wake or ``max_wait`` s; True when woken for a fetch."""
        while True:
            now = time.monotonic()
            if self._timed_wakes and self._timed_wakes[0] <= now:
                # Every wake due by now: one fetch takes all their jobs (popping one per
                # fetch made a fetch per re-queued job).
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
        # No fetch before the first trigger: the client's poller checks a new queue at once
        # (one query for every queue starting together) and wakes it if it has due jobs.
        await self._wait()
        budget = rt.budget
        try:
            await self._fetch_loop_body(rt, budget)
        finally:
            budget.leave(self)

    async def _fetch_loop_body(self, rt: ProducerHost, budget: JobBudget) -> None:
        trailing = False
        while not self._stopping:
            if self.paused or self.free_slots <= 0:
                budget.leave(self)
                await self._wait()
                self._trigger.clear()
                trailing = False
                continue
            wait = self._last_fetch + self.settings.fetch_cooldown - time.monotonic()
            if wait > 0 and not trailing:
                await self._sleep_cooldown(wait)
                if self._stopping:
                    break
                if self.paused or self.free_slots <= 0:
                    continue
            if self._rate_hold_until > time.monotonic():
                # The queue's rate limit: no token before then. Inserts notified meanwhile
                # would only spend fetches finding none.
                await self._hold_for_tokens()
                continue
            self._trigger.clear()
            notified, self._notified = self._notified, False
            async with self._fetch_lock:
                want = self.free_slots
                if want <= 0 or self.paused:
                    continue
                limit = budget.acquire(self, want)
                if limit > 0 and not trailing:
                    # A trailing fetch does not restart the cooldown: the next notification
                    # (the next insert of a steady trickle) must be fetched at once.
                    self._last_fetch = time.monotonic()
                trailing = False
                rows: list[JobRow] | None = None
                generation = self._cancel_gen
                if limit > 0:
                    try:
                        rate_limit = self.settings.rate_limit
                        if rate_limit is None:
                            rows = await rt.fetch(self.queue, limit)
                        else:
                            rows, tokens = await rt.fetch_limited(self.queue, limit, rate_limit)
                            self._after_limited_fetch(rate_limit, limit, len(rows), tokens)
                    except (psycopg.Error, OSError, TimeoutError) as exc:
                        logger.warning(
                            "queue %s: fetch failed, retrying: %s",
                            self.queue,
                            describe(exc),
                            extra={"queue": self.queue},
                        )
                    finally:
                        budget.release(limit)  # also on failure and cancellation
            if limit <= 0:
                # In line for room, waiting outside the fetch lock (an update must not wait
                # for our turn): the budget wakes this producer when its turn comes.
                self._trigger.clear()
                await self._wait()
                continue
            if rows is None:
                await self._trigger.wait(min(1.0, self.settings.fetch_poll_interval))
                continue
            self._last_fetch_full = len(rows) >= limit
            if self._last_fetch_full:
                self.last_full_fetch = time.monotonic()
            got_rows = bool(rows)
            if rows:
                self._start_jobs(
                    rows, cancelled=self._cancel_arrivals or generation != self._cancel_gen
                )
            # This frame waits below: holding the rows would keep every queue's last batch
            # alive (2,000 idle queues x 100 rows, all for the garbage collector to walk).
            rows = None
            if self._last_fetch_full:
                continue  # slots freed by finishing jobs wake the loop
            if self._rate_hold_until > time.monotonic():
                continue  # the rate limit, not the queue, ran out: fetch on the next token
            if notified and got_rows:
                # Trailing fetch: inserts whose notification the sender's limiter suppressed.
                if not await self._wait(self.settings.fetch_cooldown * 2):
                    trailing = True
                continue
            await self._wait()

    def _after_limited_fetch(
        self, rate_limit: RateLimit, limit: int, fetched: int, tokens: float | None
    ) -> None:
        """After a fetch through the token bucket: when the bucket, not the queue, bounded it
        (fewer tokens than slots, all spent), hold fetches until the next token is due."""
        if tokens is None:
            # The bucket's row was locked by another transaction: try again shortly.
            self._rate_hold_until = time.monotonic() + min(1.0 / rate_limit.rate, _BUSY_RETRY)
            return
        allowed = math.floor(tokens)
        if allowed < limit and fetched >= allowed:
            left = max(tokens - fetched, 0.0)
            # Wait for a small batch of tokens (a tenth of a second's worth, within the
            # bucket and the free slots), not for each one: a fetch per job, by every process,
            # cost more CPU than the jobs. Jittered, so processes do not all wake together.
            need = max(1.0, min(rate_limit.capacity, limit, rate_limit.rate * _RATE_BATCH))
            wait = max(need - left, 0.0) / rate_limit.rate
            self._rate_hold_until = time.monotonic() + wait * random.uniform(1.0, 1.1)
        else:
            self._rate_hold_until = -math.inf

    async def _hold_for_tokens(self) -> None:
        """Wait until ``_rate_hold_until``; leave early to stop or take new settings."""
        while not self._stopping:
            hold = self._rate_hold_until - time.monotonic()
            if hold <= 0:
                return
            self._trigger.clear()
            if await self._trigger.wait(hold) and (
                self._stopping or self.settings.rate_limit is None or self.paused
            ):
                return

    def _start_jobs(self, rows: list[JobRow], *, cancelled: bool = False) -> None:
        """Run the jobs of a fetch; ``cancelled``: a hard stop came while the fetch was in
        flight, so each starts already cancelled: its worker never runs and the attempt ends
        interrupted (back to ``available``, attempt restored), as if it had been cancelled
        running."""
        self.fetched += len(rows)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        tasks = self._tasks
        for row in sorted(rows, key=_FETCH_ORDER):
            running = RunningJob(row, started)
            if cancelled:
                running.cancel(CancelReason.STOP)
            self.running[row.id, row.attempt] = running
            task = _spawn(loop, self._work(running))
            if not task.done():  # an eager task may have finished already (see _spawn)
                running.task = task
                tasks.add(task)

    async def _work(self, running: RunningJob) -> None:
        # The task leaves self._tasks as its last step rather than from a done callback: a
        # callback costs a loop iteration's handle per job.
        rt = self._rt
        try:
            try:
                outcome = await rt.executor.execute(running)
            finally:
                key = (running.row.id, running.row.attempt)
                # Only this attempt's own entry: after a server lost a fetch, the job can come
                # back under the same attempt number while this one still runs.
                if self.running.get(key) is running:
                    del self.running[key]
            self.finished += 1
            self.last_outcome = seq = rt.completer.add(outcome)
            if outcome.state is JobState.AVAILABLE and outcome.scheduled_at is not None:
                delay = (outcome.scheduled_at - rt.executor.now()).total_seconds()
                if delay > 0:
                    # Re-fetch when the job is due, but never before its outcome is written: a
                    # fetch while the row still says running finds nothing, and the next poll
                    # may be far off (a slow write once stranded short retries until then).
                    due = time.monotonic() + delay + _DUE_MARGIN
                    rt.completer.call_when_written(seq, partial(self._wake_when_due, due))
            if self._last_fetch_full:
                self._trigger.set()
        finally:
            if running.task is not None:  # None: an eager task that never suspended
                self._tasks.discard(running.task)
