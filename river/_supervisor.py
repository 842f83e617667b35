"""Supervision of a client's background services: a crash is logged, restarted, counted.

Every long-running loop of a client (notifier, poller, keep-alive, elector, each maintenance
service, the completer, each producer's fetch loop) runs through :meth:`Supervisor.run`. An
unexpected exception is logged once at ERROR with its traceback and the service is started
again after a capped exponential backoff, so a bug or a hostile input can never silently stop
a worker while its process lives on. A service that fails ``max_failures`` times in a row, each
run shorter than ``stable_after`` seconds, is reported *failed*: it keeps being restarted at
the longest backoff, but the client's health (:meth:`Supervisor.health`) says it is not well,
``river worker`` exits non-zero, and ``/readyz`` answers 503 naming it.

Exceptions while a service starts (before it reports ``started``) are not caught: they fail
the client's ``start()``, where the caller sees them. Cancellation is never caught.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
from anyio.abc import TaskStatus

from river._errors import describe
from river._retry import backoff

__all__ = ["ClientHealth", "ServiceHealth", "Supervisor", "started_at_once"]

logger = logging.getLogger("river.supervisor")

ServiceState = Literal["running", "restarting", "failed", "stopped"]


@dataclass(slots=True)
class ServiceHealth:
    """The health of one supervised service (a snapshot; see ``AsyncClient.health()``).

    ``state``: ``running``; ``restarting`` (it crashed and waits for its next start);
    ``failed`` (it crashed ``max_failures`` times in a row without a stable run: the client is
    unhealthy, though the service is still retried); ``stopped`` (it ended normally).
    ``restarts`` counts every restart since the client started; ``last_error`` describes the
    latest crash (None if it never crashed).
    """

    name: str
    state: ServiceState = "running"
    restarts: int = 0
    last_error: str | None = None
    #: Crashes since the last run that lasted ``stable_after`` seconds.
    failures_in_row: int = 0
    #: Monotonic time the current run started.
    since: float = 0.0

    @property
    def healthy(self) -> bool:
        """False only while the service is ``failed``."""
        return self.state != "failed"


@dataclass(frozen=True, slots=True)
class ClientHealth:
    """A client's health (``AsyncClient.health()``): ``healthy`` unless a service is failed;
    ``failed`` names those services; ``services`` has each one's :class:`ServiceHealth`."""

    healthy: bool
    failed: list[str]
    services: dict[str, ServiceHealth]

    @classmethod
    def of(cls, services: dict[str, ServiceHealth]) -> ClientHealth:
        """The health of a client whose services are ``services``."""
        failed = sorted(name for name, h in services.items() if not h.healthy)
        return cls(not failed, failed, services)


class _Startable(Protocol):
    def __call__(self, *, task_status: TaskStatus[Any] = ...) -> Awaitable[None]: ...


def started_at_once(fn: Callable[..., Awaitable[None]], *args: Any) -> _Startable:
    """``fn(*args)`` as a service that reports ``started`` as soon as it runs (for loops that
    need no start-up, such as watchers)."""

    async def service(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await fn(*args)

    return service


class _Started:
    """Forwards the first ``started()`` of the first run to the caller's task status."""

    def __init__(self, outer: TaskStatus[Any]) -> None:
        self._outer: TaskStatus[Any] | None = outer
        self.done = False

    def started(self, value: Any = None) -> None:
        if not self.done:
            self.done = True
            outer, self._outer = self._outer, None
            if outer is not None:
                outer.started(value)


class Supervisor:
    """Runs services, restarts them on crashes, keeps their health (see module doc).

    ``backoff_initial`` (0.5 s) doubles after each crash in a row up to ``backoff_max``
    (10 s). With the defaults a service that crashes at once every time is reported failed
    after five crashes, within about 8 s of the first. ``on_change`` is called (no arguments)
    whenever a service's health changes, e.g. to let ``river worker`` react at once.
    """

    def __init__(
        self,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        max_failures: int = 5,
        stable_after: float = 60.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_failures = max_failures
        self.stable_after = stable_after
        self.on_change = on_change
        self._services: dict[str, ServiceHealth] = {}

    def health(self) -> dict[str, ServiceHealth]:
        """A copy of every supervised service's health, by name."""
        self._recover()
        return {
            name: ServiceHealth(
                h.name, h.state, h.restarts, h.last_error, h.failures_in_row, h.since
            )
            for name, h in self._services.items()
        }

    def failed(self) -> list[str]:
        """Names of the services that are failed now."""
        self._recover()
        return [name for name, h in self._services.items() if h.state == "failed"]

    def _recover(self) -> None:
        # A failed service that has run for stable_after seconds since its last restart is
        # well again.
        now = time.monotonic()
        for h in self._services.values():
            if h.state == "failed" and h.since and now - h.since >= self.stable_after:
                h.state = "running"
                h.failures_in_row = 0
                logger.info("service %s recovered", h.name)

    def reset(self) -> None:
        """Forget every service (a client starting again counts its restarts anew)."""
        self._services.clear()

    def forget(self, name: str) -> None:
        """Drop a service that ended for good (e.g. a removed queue's producer)."""
        self._services.pop(name, None)

    async def run(
        self,
        name: str,
        service: _Startable | Callable[..., Awaitable[None]],
        *,
        task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``service`` (a coroutine function taking ``task_status``) until it returns,
        restarting it whenever it raises after having started. Startable with
        ``TaskGroup.start``: ``started`` is reported when the first run reports it."""
        health = self._services[name] = ServiceHealth(name)
        status = _Started(task_status)
        try:
            while True:
                health.since = time.monotonic()
                try:
                    await service(task_status=status)
                except Exception as exc:
                    if not status.done:
                        raise  # failed to start: the caller's start() fails with it
                    await self._crashed(health, exc, time.monotonic() - health.since)
                else:
                    status.started()
                    return
        finally:
            # Returned, cancelled (stop, leadership lost) or failed to start: not running.
            was_failed = health.state == "failed"
            health.state = "stopped"
            if was_failed:
                self._changed()

    async def _crashed(self, health: ServiceHealth, exc: Exception, ran: float) -> None:
        if ran >= self.stable_after:
            health.failures_in_row = 0
        health.failures_in_row += 1
        health.restarts += 1
        text = describe(exc)
        name = type(exc).__name__
        health.last_error = text if text == name else f"{name}: {text}"
        delay = backoff(
            health.failures_in_row - 1, self.backoff_initial, self.backoff_max, jitter=0
        )
        failed = health.failures_in_row >= self.max_failures
        logger.error(
            "service %s crashed (%d in a row, %d restarts in all), restarting in %.1fs%s",
            health.name,
            health.failures_in_row,
            health.restarts,
            delay,
            ": the client is now unhealthy" if failed and health.state != "failed" else "",
            exc_info=exc,
            extra={"service": health.name, "restarts": health.restarts},
        )
        health.state = "failed" if failed else "restarting"
        health.since = 0.0
        self._changed()
        await anyio.sleep(delay)
        if health.state == "restarting":
            health.state = "running"
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                logger.exception("supervisor: health change callback failed")
