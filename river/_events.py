"""In-process events: job outcomes and queue changes, delivered to subscribers.

``client.subscribe(...)`` returns a :class:`Subscription`, an async iterator of :class:`Event`
with a bounded buffer (default 1,000). Publishing never waits: when a subscriber's buffer is
full the event is dropped for that subscriber, counted in ``Subscription.dropped``, and a
warning is logged (at most once per second per subscription), so a slow subscriber never slows
the runtime. ``Config(on_event=callable)`` receives every event synchronously instead (keep it
fast; exceptions are logged and ignored).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from river._errors import RiverError
from river._logfmt import job_fields, queue_fields
from river._types import JobRow

__all__ = ["Event", "EventKind", "JobStatistics", "Subscription"]

logger = logging.getLogger("river.events")


class EventKind:
    """Event kind names (River (Go)'s, plus this library's queue_added/removed/updated)."""

    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    JOB_SNOOZED = "job_snoozed"
    JOB_INTERRUPTED = "job_interrupted"
    QUEUE_PAUSED = "queue_paused"
    QUEUE_RESUMED = "queue_resumed"
    QUEUE_ADDED = "queue_added"
    QUEUE_REMOVED = "queue_removed"
    QUEUE_UPDATED = "queue_updated"

    JOB_KINDS = frozenset({JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED, JOB_SNOOZED, JOB_INTERRUPTED})
    ALL = JOB_KINDS | {QUEUE_PAUSED, QUEUE_RESUMED, QUEUE_ADDED, QUEUE_REMOVED, QUEUE_UPDATED}


_STATE_EVENTS = {
    "completed": EventKind.JOB_COMPLETED,
    "cancelled": EventKind.JOB_CANCELLED,
    "discarded": EventKind.JOB_FAILED,
    "retryable": EventKind.JOB_FAILED,
}


def job_event_kind(requested: str, persisted_state: str | None) -> str:
    """The event kind from the persisted outcome (River (Go) >= 0.44): e.g. a failure of a job
    that was cancelled remotely meanwhile is reported as job_cancelled, and a failure, snooze or
    interruption of a job its worker had already completed (``job_complete_tx`` in its own
    transaction, then an exception) as job_completed: the row is completed, no retry follows."""
    if persisted_state == "cancelled" and requested != EventKind.JOB_CANCELLED:
        return EventKind.JOB_CANCELLED
    if persisted_state == "completed" and requested != EventKind.JOB_COMPLETED:
        return EventKind.JOB_COMPLETED
    return requested


@dataclass(frozen=True, slots=True)
class JobStatistics:
    """Timings of one attempt, in seconds."""

    #: From ``scheduled_at`` to the start of the attempt.
    queue_wait: float
    #: The attempt itself.
    run_duration: float
    #: From the end of the attempt until its outcome was written.
    complete_duration: float


@dataclass(frozen=True, slots=True)
class Event:
    """One event. Job events carry the row as persisted and statistics; queue events the
    queue name (and ``details``: e.g. the new settings of queue_updated)."""

    kind: str
    queue: str
    job: JobRow | None = None
    stats: JobStatistics | None = None
    details: dict[str, Any] | None = None


class Subscription:
    """A bounded stream of events (see module doc). Use as an async iterator, ideally within
    ``async with``/``with`` so it is closed; :meth:`close` ends the iteration."""

    def __init__(self, bus: EventBus, kinds: frozenset[str], buffer: int) -> None:
        self._bus = bus
        self.kinds = kinds
        send, receive = anyio.create_memory_object_stream[Event](max_buffer_size=buffer)
        self._send: MemoryObjectSendStream[Event] = send
        self._receive: MemoryObjectReceiveStream[Event] = receive
        #: Events dropped because the buffer was full.
        self.dropped = 0
        self._last_warning = -math.inf

    def _offer(self, event: Event) -> None:
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_warning >= 1.0:
                self._last_warning = now
                logger.warning(
                    "event subscriber is too slow: %d events dropped so far", self.dropped
                )
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def get(self, timeout: float = 10.0) -> Event:
        """The next event, or TimeoutError after ``timeout`` seconds (handy in tests).

        Events already buffered are returned first; then, once the subscription has ended
        (:meth:`close`, or its client closed), RiverError says so instead of waiting.
        """
        with anyio.fail_after(timeout):
            try:
                return await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                raise RiverError(
                    "this event subscription has ended (it was closed, or its client was)"
                ) from None

    def close(self) -> None:
        """Stop receiving: events still buffered are discarded and iteration ends."""
        self._bus._unsubscribe(self)
        self._send.close()
        self._receive.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._receive.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fans events out to subscriptions and an optional callback."""

    def __init__(self, callback: Callable[[Event], None] | None = None) -> None:
        self._subs: list[Subscription] = []
        self._callback = callback

    @property
    def wants_job_rows(self) -> bool:
        """Whether anyone listens to job events (the completer then returns full rows)."""
        return self._callback is not None or any(s.kinds & EventKind.JOB_KINDS for s in self._subs)

    def subscribe(self, kinds: Iterable[str] | None, buffer: int) -> Subscription:
        wanted = frozenset(kinds) if kinds else EventKind.ALL
        unknown = wanted - EventKind.ALL
        if unknown:
            raise ValueError(f"unknown event kinds: {sorted(unknown)}")
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        sub = Subscription(self, wanted, buffer)
        self._subs.append(sub)
        return sub

    def end_all(self) -> None:
        """End every subscription's stream (the client is closed): events still buffered are
        delivered, then iteration ends instead of waiting for events that will never come."""
        for sub in list(self._subs):
            sub._send.close()
        self._subs.clear()

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        if self._callback is not None:
            try:
                self._callback(event)
            except Exception:
                fields = (
                    job_fields(event.job) if event.job is not None else queue_fields(event.queue)
                )
                logger.exception("on_event callback failed for %s", event.kind, extra=fields)
        for sub in self._subs:
            if event.kind in sub.kinds:
                sub._offer(event)
