"""The batch completer: writes finished jobs' outcomes in few statements, never drops one.

Executors hand outcomes to :meth:`Completer.add` (no I/O, no waiting). A single flusher writes
them with ``job_set_state_many``: at once when ``batch_size`` outcomes are waiting, else on its
next tick (every ``flush_interval``, one write per tick). A failed write (database down,
connection lost) is retried with capped exponential backoff until it succeeds: a finished
job's outcome is never discarded because of the connection. Each try is bounded by
``write_timeout`` (a dead link must not hold the write). A batch the database itself keeps
refusing is split down to the outcome at fault, which alone is given up (its job stays
``running`` for the rescuer). Once the client stops, failed writes are retried only up to
``stop_timeout`` (``Config.completer_stop_timeout``), then given up the same way, so that a stop
returns while the database is away.
The outcomes waiting here count against the client's job budget (river/_producer.py
JobBudget, ``max_backlog`` jobs): producers fetch only into the room left, so a slow or
unreachable database cannot make memory grow without bound.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable
from typing import Any

import anyio
import psycopg
from anyio.abc import TaskStatus
from psycopg_pool import AsyncConnectionPool

from river._driver import AttemptKey, CompletionBatch, Queries, set_state_many_op
from river._errors import describe
from river._logfmt import job_fields
from river._outcome import Outcome
from river._retry import backoff
from river._sansio import run_pooled
from river._telemetry import TELEMETRY
from river._types import JobRow
from river._validate import jsonb_dumps

__all__ = ["Completer", "Outcome"]

logger = logging.getLogger("river.completer")

#: Seconds :meth:`Completer.give_up_now` leaves the writes.
_GIVE_UP_GRACE = 1.0
#: Seconds of the one try a batch gets when the bound passed before it was tried.
_LAST_TRY = 1.0
#: Jobs a give-up at stop logs one line each for; the others, ``_IDS_PER_LINE`` to a line.
_LOGGED_PER_GIVE_UP = 100
_IDS_PER_LINE = 100


class Completer:
    """Batches outcomes into ``job_set_state_many`` statements (see module doc)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        *,
        batch_size: int = 2000,
        flush_interval: float = 0.05,
        max_backlog: int = 5_000,
        retry_backoff_max: float = 5.0,
        write_timeout: float,
        on_persisted: Callable[[list[Outcome], dict[AttemptKey, JobRow | str]], None] | None = None,
        want_rows: Callable[[], bool] = lambda: False,
    ) -> None:
        self._pool = pool
        self._q = queries
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backlog = max_backlog
        self.retry_backoff_max = retry_backoff_max
        self.write_timeout = write_timeout
        self._on_persisted = on_persisted
        self._want_rows = want_rows
        self._pending: list[Outcome] = []
        self._in_flight = 0
        self._wake = anyio.Event()
        # Outcomes accepted and written so far; the single flusher writes them in acceptance
        # order, so ``written >= n`` means the first n accepted are persisted (see flushed()).
        self._accepted = 0
        self._written = 0
        self._progress = anyio.Event()
        self._stopping = False
        #: When a stopping completer gives up the writes that keep failing (anyio's clock).
        self._give_up_at = math.inf
        #: Set by :meth:`give_up_now`: wakes a retry's backoff sleep at once.
        self._giving_up = anyio.Event()
        #: The write being tried (its deadline is moved up to a new bound).
        self._try_scope: anyio.CancelScope | None = None
        #: Outcomes of the batch being written that were given up (not stale: not written).
        self._abandoned: set[AttemptKey] = set()
        #: Outcomes the database refused for good (see :meth:`_write`; statistics, tests).
        self.given_up = 0
        #: Outcomes given up because the client stopped while they could not be written (see
        #: :meth:`stop`; also counted in ``given_up``).
        self.given_up_at_stop = 0
        #: Outcomes written but not applied: their job was deleted meanwhile, or a newer
        #: attempt of it owns the row (the attempt fence; statistics, metrics, tests).
        self.stale = 0
        #: Called with no argument after each write (the backlog shrank).
        self.on_written: Callable[[], None] | None = None
        #: :meth:`call_when_written`'s callbacks: (sequence number, tie-break, callback).
        self._when_written: list[tuple[int, int, Callable[[], None]]] = []
        self._tie = itertools.count()

    @property
    def backlog(self) -> int:
        """Outcomes accepted but not yet written."""
        return len(self._pending) + self._in_flight

    def add(self, outcome: Outcome) -> int:
        """Accept an outcome for writing. Never blocks. Returns its sequence number, for
        :meth:`flushed`."""
        self._pending.append(outcome)
        self._accepted += 1
        if len(self._pending) >= self.batch_size:
            self._wake.set()
        return self._accepted

    def call_when_written(self, seq: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no argument) once the outcomes up to sequence number ``seq`` (as
        returned by :meth:`add`) are written, or given up: at once when they already are, else
        on the flusher's task right after that write. Unlike :meth:`flushed`, it never makes a
        write come sooner. A callback that raises is logged and does not stop the flusher."""
        if self._written >= seq:
            self._call(callback)
            return
        heapq.heappush(self._when_written, (seq, next(self._tie), callback))

    def _call_written(self) -> None:
        while self._when_written and self._when_written[0][0] <= self._written:
            self._call(heapq.heappop(self._when_written)[2])

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            logger.exception("a callback after writing job outcomes failed")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Flush loop; returns after :meth:`stop` once everything has been written."""
        task_status.started()
        tick = anyio.current_time()
        while True:
            # Ticks at a fixed rate: an outcome waits at most flush_interval (plus the writes
            # ahead of it) for its write. Each tick writes what is pending once; only full
            # batches go out back to back. Flushing again whenever outcomes arrived during a
            # write (as this loop once did) chained small writes: at 10 slots, twice the
            # writes for half the outcomes each.
            tick += self.flush_interval
            with anyio.move_on_after(tick - anyio.current_time()):
                await self._wake.wait()
            woken = self._wake.is_set()
            self._wake = anyio.Event()
            if woken or tick < anyio.current_time() - self.flush_interval:
                tick = anyio.current_time()  # flushed early, or late: count from now
            if self._pending:
                await self._flush_once()
            while len(self._pending) >= self.batch_size or (self._stopping and self._pending):
                # This write answers any wake-up asked for meanwhile (a full batch, flushed()
                # callers re-ask after each write): left set, it would send the remainder
                # straight after, not on the tick.
                self._wake = anyio.Event()
                await self._flush_once()
            if self._stopping and not self._pending and not self._in_flight:
                return

    def stop(self, stop_timeout: float | None = None) -> None:
        """Ask the flush loop to write everything pending and return. Writes that keep failing
        are given up ``stop_timeout`` seconds from now (None: retried for ever; see
        :meth:`bound`)."""
        self._stopping = True
        self.bound(stop_timeout)
        self._wake.set()

    def bound(self, seconds: float | None) -> None:
        """Give up the writes that keep failing from ``seconds`` from now on (never later than
        an earlier bound; None: no bound). A try in progress is cut short at the bound. Past
        it, each batch still gets one short try (``_LAST_TRY`` seconds: a database that
        answers still gets its outcomes), then what was not written is given up, each job
        logged. It does not end the flush loop (:meth:`stop` does)."""
        if seconds is None:
            return
        self._give_up_at = min(self._give_up_at, anyio.current_time() + seconds)
        if self._try_scope is not None:
            self._try_scope.deadline = min(self._try_scope.deadline, self._give_up_at)

    def give_up_now(self) -> None:
        """:meth:`bound` of about a second, waking a retry that waits for its next try:
        ``river worker``'s third signal, for a stop that cannot reach the database."""
        self.bound(_GIVE_UP_GRACE)
        self._giving_up.set()

    async def flushed(self, upto: int | None = None) -> None:
        """Wait until every outcome accepted before this call (or up to sequence number
        ``upto``, as returned by :meth:`add`) has been written; unlike waiting for an empty
        backlog, later outcomes never make it wait longer. Flushes at once."""
        target = self._accepted if upto is None else upto
        while self._written < target:
            self._wake.set()
            await self._progress.wait()

    async def _flush_once(self) -> None:
        outcomes = self._pending[: self.batch_size]
        del self._pending[: len(outcomes)]
        self._in_flight += len(outcomes)
        full_rows = self._want_rows()
        persisted: dict[AttemptKey, JobRow | str] = {}
        self._abandoned.clear()
        failed = False
        try:
            # Shielded: stop/cancellation must never lose a finished job's outcome.
            with anyio.CancelScope(shield=True):
                await self._write(outcomes, full_rows, persisted)
        except Exception:
            # Not the database (that is retried in _write): a bug. The flusher must go on,
            # and flushed() waiters must not wait for these outcomes for ever.
            failed = True
            self.given_up += len(outcomes) - len(persisted)
            logger.exception(
                "writing %d job outcomes failed unexpectedly; those not written stay running "
                "until the rescuer retries them",
                len(outcomes),
            )
        finally:
            self._in_flight -= len(outcomes)
            self._written += len(outcomes)
        if len(persisted) < len(outcomes) and not failed:
            self._count_stale(outcomes, persisted)
        self._progress.set()
        self._progress = anyio.Event()
        try:
            if self._on_persisted is not None:
                self._on_persisted(outcomes, persisted)
            if self.on_written is not None:
                self.on_written()
        finally:
            self._call_written()

    def _count_stale(
        self, outcomes: list[Outcome], persisted: dict[AttemptKey, JobRow | str]
    ) -> None:
        for o in outcomes:
            key = (o.job.id, o.job.attempt)
            if key not in persisted and key not in self._abandoned:
                self.stale += 1
                TELEMETRY.record_stale_outcome(o.job.queue)
                logger.debug(
                    "outcome %s of job %d (kind %s, queue %s) attempt %d not applied: the job "
                    "was deleted, or a newer attempt owns it",
                    o.state.value,
                    o.job.id,
                    o.job.kind,
                    o.job.queue,
                    o.job.attempt,
                    extra=job_fields(o.job),
                )

    async def _write(
        self, outcomes: list[Outcome], full_rows: bool, persisted: dict[AttemptKey, JobRow | str]
    ) -> None:
        """Write ``outcomes``, retrying with capped backoff until it works (a lost connection,
        a database restarting: the outcomes wait, however long), or, once the client stops,
        until the stop bound (:meth:`stop`), when what is still unwritten is given up.

        A batch the database itself keeps refusing (``_MAX_REFUSALS`` tries in a row ending in
        an error about the statement, not the connection: a trigger raising for one row, a
        constraint added by hand) would otherwise hold back every outcome batched with it and
        block stop() forever. It is split in halves, written separately, down to the one
        outcome at fault, which is given up with an error log: that job stays ``running`` in
        the database, and the rescuer retries it after ``rescue_stuck_jobs_after`` as it would
        a job whose client died, so no job is lost."""
        batch = _to_batch(outcomes)
        attempt = refused = 0
        reason = "no answer from the database before the stop bound"
        while True:
            left = self._give_up_at - anyio.current_time()
            if left <= 0:
                if attempt:
                    self._give_up(outcomes, persisted, reason)
                    return
                left = _LAST_TRY  # past the bound, but never tried: one short try
            try:
                # A deadline: a connection whose link died silently (half-open TCP, a frozen
                # network path) would otherwise hold the write, and with it every outcome,
                # for as long as the kernel keeps the socket (many minutes). On expiry psycopg
                # closes that connection and the next try takes a fresh one.
                with anyio.CancelScope() as self._try_scope:
                    with anyio.fail_after(min(self.write_timeout, left)):
                        persisted.update(
                            await run_pooled(
                                self._pool, set_state_many_op(self._q, batch, full_rows=full_rows)
                            )
                        )
                    return
                # Cut short by the bound (bound(), give_up_now()): given up at the top.
                attempt += 1
                continue
            except (psycopg.Error, OSError, TimeoutError) as exc:
                timed_out = isinstance(exc, TimeoutError)
                reason = "no answer from the database" if timed_out else describe(exc)
                attempt += 1
                refused = refused + 1 if _refused(exc) else 0
                if refused >= _MAX_REFUSALS:
                    if len(outcomes) > 1:
                        half = len(outcomes) // 2
                        logger.warning(
                            "the database refused a batch of %d job outcomes %d times (%s); "
                            "writing it in halves to isolate the outcome at fault",
                            len(outcomes),
                            refused,
                            describe(exc),
                        )
                        await self._write(outcomes[:half], full_rows, persisted)
                        await self._write(outcomes[half:], full_rows, persisted)
                        return
                    job = outcomes[0].job
                    self.given_up += 1
                    self._abandoned.add((job.id, job.attempt))
                    logger.error(
                        "the database refused the outcome of job %d (kind %s, queue %s, state "
                        "%s) %d times: %s. Giving up on writing it: the job stays running "
                        "until the rescuer retries it.",
                        job.id,
                        job.kind,
                        job.queue,
                        outcomes[0].state.value,
                        refused,
                        describe(exc),
                        extra=job_fields(job),
                    )
                    return
                delay = backoff(attempt, 0.05, self.retry_backoff_max, jitter=0)
                if self._give_up_at - anyio.current_time() <= delay:
                    # The stop bound comes before the next try: no point waiting for it.
                    self._give_up(outcomes, persisted, reason)
                    return
                logger.warning(
                    "writing %d job outcomes failed (try %d), retrying in %.2fs: %s",
                    len(outcomes),
                    attempt,
                    delay,
                    describe(exc),
                )
                with anyio.move_on_after(delay):
                    if self._giving_up.is_set():
                        await anyio.sleep(delay)
                    else:
                        await self._giving_up.wait()  # give_up_now() cuts the wait short
            finally:
                self._try_scope = None

    def _give_up(
        self, outcomes: list[Outcome], persisted: dict[AttemptKey, JobRow | str], reason: str
    ) -> None:
        """A stopping client's last word on outcomes it could not write (see :meth:`stop`):
        each job logged once, with its id, kind and queue; it stays ``running`` in the
        database, and a rescuer returns it after ``rescue_stuck_jobs_after``."""
        lost = [o for o in outcomes if (o.job.id, o.job.attempt) not in persisted]
        self.given_up += len(lost)
        self.given_up_at_stop += len(lost)
        self._abandoned.update((o.job.id, o.job.attempt) for o in lost)
        for o in lost[:_LOGGED_PER_GIVE_UP]:
            logger.error(
                "stopping: gave up writing the outcome of job %d (kind %s, queue %s, %s): %s. "
                "The job stays running until a rescuer returns it.",
                o.job.id,
                o.job.kind,
                o.job.queue,
                o.state.value,
                reason,
                extra=job_fields(o.job),
            )
        rest = lost[_LOGGED_PER_GIVE_UP:]
        for start in range(0, len(rest), _IDS_PER_LINE):
            chunk = rest[start : start + _IDS_PER_LINE]
            logger.error(
                "stopping: gave up writing the outcomes of %d more jobs (%s): %s. They stay "
                "running until a rescuer returns them.",
                len(chunk),
                ", ".join(f"{o.job.id} {o.job.kind}/{o.job.queue}" for o in chunk),
                reason,
            )


#: Tries in a row the database refuses a batch before it is split (see Completer._write).
_MAX_REFUSALS = 3


def _refused(exc: BaseException) -> bool:
    """Whether the database answered with an error about the statement (which retrying the
    same batch may never fix), as opposed to a lost connection or a server going away."""
    if not isinstance(exc, psycopg.Error) or isinstance(exc, psycopg.InterfaceError):
        return False
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return True  # statement_timeout: a smaller batch may pass
    return not isinstance(exc, psycopg.OperationalError)


def _to_batch(outcomes: list[Outcome]) -> CompletionBatch:
    # Sorted by id: the statement locks rows in id order too, and a stable order makes the
    # statement's work predictable.
    outcomes = sorted(outcomes, key=lambda o: o.job.id)
    batch = CompletionBatch()
    for o in outcomes:
        batch.id.append(o.job.id)
        batch.seen_attempt.append(o.job.attempt)
        batch.seen_attempted_at.append(o.job.attempted_at)
        batch.state.append(o.state.value)
        batch.finalized_at.append(o.finalized_at)
        batch.scheduled_at.append(o.scheduled_at)
        batch.attempt.append(o.attempt)
        batch.error.append(jsonb_dumps(o.error.to_json()) if o.error is not None else None)
        batch.metadata.append(_staged_metadata(o) if o.metadata else None)
    return batch


def _staged_metadata(o: Outcome) -> str | None:
    # Staged metadata (record_output, set_metadata) is refused at the call (river._validate),
    # so the worker gets the ValidationError; this is the last line of defence against a
    # staged value the job changed after the call: sanitised, or, when it cannot be encoded
    # at all, left out (the outcome itself is still written).
    try:
        return jsonb_dumps(o.metadata)
    except (TypeError, ValueError) as exc:
        logger.error(
            "the metadata staged by job %d (kind %s, queue %s) cannot be encoded (%s); its "
            "outcome is written without it",
            o.job.id,
            o.job.kind,
            o.job.queue,
            exc,
            extra=job_fields(o.job),
        )
        return None
