"""Named test signals: points in the runtime a test can wait on, no-ops unless enabled.

A test that must know "the producer fetched", "this client became leader" or "the completer
wrote a batch" would otherwise poll private attributes or sleep. Each service emits at those
points; an emit costs one attribute check while disabled (the default, and always in
production). Tests enable them through :func:`river.testing.signals`::

    signals = river.testing.signals(client)      # before or after start
    await client.start()
    assert await signals.leadership.wait() is True
    queue, count = await signals.fetched.wait()

Values are buffered from the moment a signal is enabled, so a test never misses one emitted
between its action and its ``wait``. Everything runs on the client's event loop.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["TestSignal", "TestSignals"]

T = TypeVar("T")


class TestSignal(Generic[T]):
    """One named point. :meth:`emit` records a value when enabled; :meth:`wait` takes the
    oldest recorded value, waiting for one up to a deadline."""

    __test__ = False  # not a pytest test class, despite the name
    __slots__ = ("_event", "_values", "_waiters", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._values: deque[T] | None = None
        self._event: anyio.Event | None = None
        self._waiters = 0

    @property
    def enabled(self) -> bool:
        """Whether values are recorded."""
        return self._values is not None

    def enable(self) -> None:
        """Start recording (idempotent; values recorded so far are kept)."""
        if self._values is None:
            self._values = deque()

    def emit(self, value: T) -> None:
        """Record ``value`` if enabled (else nothing; the production path)."""
        values = self._values
        if values is None:
            return
        values.append(value)
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float = 10.0) -> T:
        """The oldest recorded value not yet taken, waiting up to ``timeout`` seconds for one.
        Raises TimeoutError naming the signal; RuntimeError when it was never enabled."""
        values = self._values
        if values is None:
            raise RuntimeError(f"test signal {self.name!r} is not enabled")
        self._waiters += 1
        try:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                while not values:
                    if self._event is None:
                        self._event = anyio.Event()
                    await self._event.wait()
                return values.popleft()
        finally:
            # Never left bound to this event loop once nobody waits; but not while another
            # waiter still waits on it (one timing out left the other unwoken by the next
            # emit).
            self._waiters -= 1
            if not self._waiters:
                self._event = None
        raise TimeoutError(f"test signal {self.name!r}: nothing emitted within {timeout}s")

    async def wait_for(self, expected: T | Callable[[T], bool], timeout: float = 10.0) -> T:
        """Take values until one equals ``expected`` (or satisfies it, when it is a predicate);
        returns that value. The values before it are dropped. TimeoutError after ``timeout``
        seconds in all."""
        match = expected if callable(expected) else (lambda value: value == expected)
        with anyio.move_on_after(timeout):
            while True:
                value = await self.wait(timeout=math.inf)
                if match(value):
                    return value
        raise TimeoutError(f"test signal {self.name!r}: no matching value within {timeout}s")

    def drain(self) -> list[T]:
        """Every recorded value not yet taken (and forget them)."""
        if self._values is None:
            return []
        taken = list(self._values)
        self._values.clear()
        return taken


@dataclass(frozen=True, slots=True)
class TestSignals:
    """The signals of one client (kept across its starts). Each emits:

    - ``fetched``: ``(queue, jobs fetched)`` after each fetch of a producer, empty ones
      included;
    - ``polled``: the queue names of each poll query the poller ran;
    - ``leadership``: ``True`` when this client becomes leader, ``False`` when it stops being
      leader;
    - ``maintenance``: ``True`` when a maintenance term starts running on this client,
      ``False`` when it has fully ended;
    - ``flushed``: ``(outcomes written, outcomes given up)`` after each batch the completer
      finished with;
    - ``settings_applied``: ``(queue, settings)`` when a producer took new settings (a local
      update or a cluster-wide override);
    - ``scaled``: ``(queue, old target, new target)`` when the autoscaler changed an
      autoscaled queue's concurrency.
    """

    __test__ = False

    fetched: TestSignal[tuple[str, int]] = field(default_factory=lambda: TestSignal("fetched"))
    polled: TestSignal[list[str]] = field(default_factory=lambda: TestSignal("polled"))
    leadership: TestSignal[bool] = field(default_factory=lambda: TestSignal("leadership"))
    maintenance: TestSignal[bool] = field(default_factory=lambda: TestSignal("maintenance"))
    flushed: TestSignal[tuple[int, int]] = field(default_factory=lambda: TestSignal("flushed"))
    settings_applied: TestSignal[tuple[str, object]] = field(
        default_factory=lambda: TestSignal("settings_applied")
    )
    scaled: TestSignal[tuple[str, int, int]] = field(default_factory=lambda: TestSignal("scaled"))

    def enable(self) -> TestSignals:
        """Enable every signal; returns self."""
        for signal in self.all():
            signal.enable()
        return self

    def all(self) -> tuple[TestSignal[Any], ...]:
        """Every signal."""
        return (
            self.fetched,
            self.polled,
            self.leadership,
            self.maintenance,
            self.flushed,
            self.settings_applied,
            self.scaled,
        )
