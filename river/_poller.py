"""The poller: one query per tick for all of a client's queues (design rule 3).

Notifications are hints; polling always backs them. Each tick asks, in one statement for every
queue due, which queues are paused in ``river_queue`` and, for producers that want it, whether
due jobs wait; it wakes only producers with due jobs and applies pause states changed by other
clients. Queues share one tick per distinct poll interval, so a client with thousands of queues
still sends one query per tick. It owns its schedule (next poll of each queue, the shared
ticks) and the times of local pause changes, which a poll started before them must not revert.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
from anyio.abc import TaskStatus

from river._driver import Queries, decode_queue_json
from river._errors import describe
from river._sansio import Op, Query
from river._testsignal import TestSignal

if TYPE_CHECKING:
    from river._producer import Producer

__all__ = ["POLL_ONLY_REFRESH", "Poller"]

logger = logging.getLogger("river.poller")

#: Wake-ups arriving within this window after an early wake (queues starting, a pause hint)
#: share one query.
_COALESCE = 0.01
#: A failed poll of a queue is retried after this many seconds, not in a tight loop.
_RETRY_AFTER = 1.0
#: How often a poll-only client re-reads every queue's pause state and cluster-wide override
#: at least (River (Go) re-reads queue settings every 2 s in that mode).
POLL_ONLY_REFRESH = 2.0


def poll_queues_op(q: Queries, names: list[str], probe: list[bool]) -> Op[list[Any]]:
    """``(name, paused, stored override settings as JSON text, has due jobs)`` for each of
    ``names`` (``queue_poll_due``)."""
    rows: list[Any] = yield Query(q.queue_poll_due, {"names": names, "probe": probe}, prepare=True)
    return rows


class Poller:
    """See module doc. ``producers`` is the client's live ``{queue name: producer}`` map (read
    only); ``run_op`` runs a sans-IO operation on a pool connection; ``on_paused`` is called
    with ``(queue, paused)`` when a poll finds that another client paused or resumed a queue
    (after the producer was told); ``on_override`` with ``(queue, stored settings)`` when the
    queue's cluster-wide override (``river_queue.metadata #> '{river_py,settings}'``, untrusted)
    differs from the one last seen."""

    def __init__(
        self,
        queries: Queries,
        producers: Mapping[str, Producer],
        run_op: Callable[[Op[Any]], Awaitable[Any]],
        on_paused: Callable[[str, bool], None],
        on_override: Callable[[str, Any], None] = lambda name, stored: None,
        polled: TestSignal[list[str]] | None = None,
        refresh_interval: float | None = None,
    ) -> None:
        self._q = queries
        self._producers = producers
        self._run_op = run_op
        self._on_paused = on_paused
        self._on_override = on_override
        self._polled = polled if polled is not None else TestSignal[list[str]]("polled")
        #: The stored override of each queue as last seen (None: none), decoded.
        self._overrides: dict[str, Any] = {}
        #: Its text as last read (decoded again only when it changes).
        self._override_texts: dict[str, str | None] = {}
        #: Poll-only clients re-read every queue's pause state and override at least this
        #: often (seconds), whatever the queues' poll intervals: no notification tells them.
        self._refresh_interval = refresh_interval
        self._next_refresh = 0.0
        self._wake = anyio.Event()
        self._exit = False
        self._done = anyio.Event()
        #: Monotonic time each queue's next poll is due.
        self._next: dict[str, float] = {}
        # The next shared tick of each distinct poll interval (see schedule()).
        self._ticks: dict[float, float] = {}
        # Monotonic time of the last local change of each queue's paused state.
        self._paused_changed: dict[str, float] = {}
        # Monotonic time of the last pause/resume/override hint of each queue: a poll started
        # before it may have read the row before the change it announces, so the queue stays
        # due after that poll instead of waiting a whole interval.
        self._hinted: dict[str, float] = {}

    # --- what the client and the queue manager tell it ------------------------------------

    def add(self, name: str, override: Any = None) -> None:
        """A producer started, with the stored override ``override`` applied: poll it at once
        (the next query serves every queue started meanwhile, instead of one fetch per new
        producer)."""
        self._paused_changed[name] = time.monotonic()
        self._overrides[name] = override
        self._override_texts.pop(name, None)
        self._next[name] = time.monotonic()
        self._wake.set()

    def forget(self, name: str) -> None:
        """A queue was removed."""
        self._next.pop(name, None)
        self._paused_changed.pop(name, None)
        self._overrides.pop(name, None)
        self._override_texts.pop(name, None)
        self._hinted.pop(name, None)

    def paused_locally(self, name: str) -> None:
        """This client paused or resumed ``name`` itself: a poll that started before must not
        revert it."""
        self._paused_changed[name] = time.monotonic()

    def reschedule(self, name: str, interval: float) -> None:
        """A queue's poll interval changed: follow the new one from now."""
        self.schedule(name, interval, time.monotonic())
        self._wake.set()

    def hint(self, queue: str) -> None:
        """A pause/resume notification for ``queue`` (``"*"``: all): re-read river_queue now
        for those queues rather than trusting the notification."""
        targets = list(self._producers) if queue == "*" else [queue]
        now = time.monotonic()
        for name in targets:
            if name in self._next:
                self._next[name] = 0.0
                # A poll in flight must not push it back a whole interval (see _poll).
                self._hinted[name] = now
        self._wake.set()

    def schedule(self, name: str, interval: float, now: float) -> None:
        """Schedule the next poll of ``name`` on the shared tick of its poll interval: one tick
        per distinct interval (with 0-10 % jitter, drawn per tick), so queues never drift
        apart and the poll stays one query per tick however many queues there are."""
        tick = self._ticks.get(interval)
        if tick is None or not now < tick <= now + interval * 1.1:
            tick = now + interval * (1 + random.uniform(0, 0.1))
            self._ticks[interval] = tick
        self._next[name] = tick

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to leave after a query in flight (cancelling a query mid-way costs its
        pool connection) and wait for it, at most ``timeout`` seconds."""
        self._exit = True
        self._wake.set()
        with anyio.move_on_after(timeout):
            await self._done.wait()

    # --- the loop -----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll until :meth:`stop` (or cancellation)."""
        self._done = anyio.Event()
        task_status.started()
        try:
            while not self._exit:
                await self._tick()
        finally:
            self._done.set()

    async def _tick(self) -> None:
        producers = self._producers
        now = time.monotonic()
        due = [n for n, t in self._next.items() if t <= now and n in producers]
        refresh: list[str] = []
        if self._refresh_interval is not None and now >= self._next_refresh:
            self._next_refresh = now + self._refresh_interval
            taken = set(due)
            refresh = [n for n in producers if n not in taken]
        if due or refresh:
            await self._poll(due, now, refresh)
        upcoming = [t for n, t in self._next.items() if n in producers]
        if self._refresh_interval is not None:
            upcoming.append(self._next_refresh)
        sleep_for = max(0.0, min(upcoming) - time.monotonic()) if upcoming else 1.0
        with anyio.move_on_after(sleep_for):
            await self._wake.wait()
        if self._wake.is_set() and not self._exit:
            # Woken early (queues started, a pause/resume hint): let wake-ups arriving
            # together (e.g. 2,000 queues starting) share one query.
            await anyio.sleep(_COALESCE)
        self._wake = anyio.Event()

    async def _poll(self, due: list[str], started: float, refresh: Sequence[str] = ()) -> None:
        """One query for ``due`` (whose poll is due: look for jobs if they want, reschedule)
        and ``refresh`` (only their pause state and override are read)."""
        producers = self._producers
        # Looking for due jobs is skipped for producers that will fetch anyway (see
        # Producer.wants_poll): under load the index ranges of busy queues are full of entries
        # of rows just fetched or completed, and probing 2,000 of them took seconds of server
        # time per tick, holding back the xmin horizon, which kept those entries alive.
        probe = [producers[n].wants_poll for n in due] + [False] * len(refresh)
        try:
            rows: list[tuple[str, bool, Any, bool]] = await self._run_op(
                poll_queues_op(self._q, [*due, *refresh], probe)
            )
        except (psycopg.Error, OSError, TimeoutError) as exc:
            logger.warning("poll failed: %s", describe(exc))
            retry_at = time.monotonic() + _RETRY_AFTER
            for n in due:
                self._next[n] = max(self._next.get(n, 0.0), retry_at)
            return
        if due:
            self._polled.emit(due)
        now = time.monotonic()
        only_refresh = set(refresh)
        for row in rows:
            try:
                self._apply_row(row, started, now, only_refresh)
            except Exception:  # a bug: one queue's row must not cost the others their poll
                logger.exception("queue %s: applying its poll failed", row[0])
                if row[0] in self._next and row[0] not in only_refresh:
                    self._next[row[0]] = max(self._next[row[0]], now + _RETRY_AFTER)

    def _apply_row(
        self, row: tuple[str, bool, Any, bool], started: float, now: float, only_refresh: set[str]
    ) -> None:
        name, paused, text, has_jobs = row
        producer = self._producers.get(name)
        if producer is None:
            return
        if name not in self._override_texts or text != self._override_texts[name]:
            # Decoded only when the text changed; the decoded value is compared, so an
            # override written again unchanged (or as read at start) is not reported again.
            self._override_texts[name] = text
            override = decode_queue_json(text, name, "cluster-wide settings")
            if override != self._overrides.get(name):
                self._overrides[name] = override
                try:
                    self._on_override(name, override)
                except Exception:  # a bug: must not cost the other queues their poll
                    logger.exception("queue %s: applying its override failed", name)
        if name not in only_refresh:
            producer.polled += 1
            if self._hinted.get(name, -math.inf) >= started:
                # A hint came while this poll was in flight: its snapshot may predate the
                # change announced, so poll the queue again at once.
                self._next[name] = 0.0
            else:
                self.schedule(name, producer.settings.fetch_poll_interval, now)
        stale = self._paused_changed.get(name, -math.inf) >= started
        if paused != producer.paused and not stale:
            producer.set_paused(paused)
            self._on_paused(name, paused)
        if has_jobs and not producer.paused:
            producer.wake()
