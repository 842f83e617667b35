"""The queue manager: a client's ``{queue name: producer}`` map behind one lock (design rule 4).

:class:`QueueManager` is ``client.queues``. It owns the queues' configurations, the map of
running producers and the lock that every change takes, and that the client's start and stop
take too: changes never interleave with each other or with a start/stop, and a client is always
fully started or fully stopped. A change touches only the producer concerned, through the
stop-modify-restart cycle that lives here and only here; other queues never pause. The running
machinery (river/_runtime.py) is reached through the narrow callbacks it is handed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import anyio

from river import _admin
from river._config import Config, QueueConfig, QueueSettings
from river._driver import Queries, QueueRow, upsert_queues_op
from river._errors import InvalidConfigError, QueueAlreadyAddedError, QueueNotFoundError, RiverError
from river._events import EventKind
from river._insert import validate_queue_name
from river._queue_override import FIELDS, METADATA_KEY, QueueOverride, from_settings
from river._ratelimit import RateLimit
from river._sansio import Op

if TYPE_CHECKING:
    from river._producer import Producer
    from river._runtime import Runtime

__all__ = ["QueueInfo", "QueueManager"]

logger = logging.getLogger("river.client")

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue of this client: its config as given, the effective settings, and live state."""

    name: str
    config: QueueConfig
    settings: QueueSettings
    paused: bool
    running_jobs: int
    #: Whether its producer runs (the client is started).
    active: bool
    #: The cluster-wide override last read from ``river_queue`` (``queue_update``); its
    #: fields win over ``config`` in ``settings``. Falsy when there is none.
    override: QueueOverride = field(default_factory=QueueOverride)
    #: The concurrency in force: ``settings.max_workers``, or an autoscaled queue's current
    #: target between ``settings.min_workers`` and ``settings.max_workers``.
    target_workers: int = 0


class QueueManager:
    """The client's queues, changeable while it runs: ``client.queues`` (docs/queues.md).

    Every change takes the lock that :meth:`AsyncClient.start` and :meth:`AsyncClient.stop`
    also take (:attr:`lock`): changes never interleave with each other or with a start/stop,
    and the client is always fully started or fully stopped. A change touches only the
    producer concerned; other queues never pause. Each change is logged at INFO (one line)
    and published as an event (queue_added, queue_removed, queue_updated, queue_paused,
    queue_resumed).
    """

    def __init__(
        self,
        config: Config,
        queries: Queries,
        *,
        runtime: Callable[[], Runtime | None],
        run_op: Callable[[Op[Any]], Awaitable[Any]],
        publish: Callable[..., None],
    ) -> None:
        self._config = config
        self._q = queries
        self._runtime = runtime
        self._run_op = run_op
        self._publish = publish
        #: Taken by every change, and by the client's start and stop.
        self.lock = anyio.Lock()
        #: Each queue's configuration as given, by name (also while the client is stopped).
        self.configs: dict[str, QueueConfig] = dict(config.queues)
        #: The running producers, by queue name (empty while the client is stopped). Changed
        #: only under :attr:`lock`.
        self.producers: dict[str, Producer] = {}
        #: Each queue's cluster-wide override as last read (river/_queue_override.py).
        self.overrides: dict[str, QueueOverride] = {}

    def _info(self, name: str) -> QueueInfo:
        config = self.configs[name]
        producer = self.producers.get(name)
        settings = producer.settings if producer else self.effective(name)
        return QueueInfo(
            name=name,
            config=config,
            settings=settings,
            paused=producer.paused if producer else False,
            running_jobs=len(producer.running) if producer else 0,
            active=producer is not None,
            override=self.overrides.get(name, QueueOverride()),
            target_workers=producer.target if producer else _initial_target(settings),
        )

    def effective(self, name: str) -> QueueSettings:
        """The settings ``name`` runs with: its config resolved against the client's defaults,
        with the cluster-wide override's fields on top."""
        settings = self._config.resolve(self.configs[name], name)
        override = self.overrides.get(name)
        return apply_override(settings, override) if override else settings

    def list(self) -> dict[str, QueueInfo]:
        """Every queue of this client, by name."""
        return {name: self._info(name) for name in sorted(self.configs)}

    def get(self, name: str) -> QueueInfo:
        """One queue (QueueNotFoundError when the client has no such queue)."""
        if name not in self.configs:
            raise QueueNotFoundError(name)
        return self._info(name)

    def cancel_running(self) -> int:
        """Cancel every running job of every queue now, without waiting for the lock (so it
        escalates a soft stop or a queue drain in progress); they return to ``available``
        with their attempt restored. Returns how many were running. Fetching goes on unless
        the client is stopping."""
        count = 0
        for producer in list(self.producers.values()):
            count += len(producer.running)
            producer.cancel_jobs()
        return count

    # --- the cycle the client's start and stop use (under the lock) ---------------------------

    async def start_all(self, runtime: Runtime) -> None:
        """Start a producer for every queue (the client is starting; the lock is held)."""
        rows = await self._run_op(upsert_queues_op(self._q, list(self.configs)))
        for name in self.configs:
            await self._start_producer(runtime, name, rows.get(name))

    async def _start_producer(self, runtime: Runtime, name: str, row: QueueRow | None) -> None:
        """Start the producer of ``name`` (the lock is held) with the pause state and the
        cluster-wide override of its ``river_queue`` row, as just upserted."""
        stored = _stored_settings(row.metadata if row else None)
        self.override_seen(name, stored)
        paused = row is not None and row.paused
        self.producers[name] = await runtime.start_producer(
            name, self.effective(name), paused, stored
        )

    # --- changes --------------------------------------------------------------------------

    async def add(self, name: str, config: QueueConfig | None = None) -> QueueInfo:
        """Add a queue. Validated first (nothing changes on an error); its producer starts now
        when the client runs, else with the client. Raises QueueAlreadyAddedError."""
        validate_queue_name(name)
        config = config if config is not None else QueueConfig()
        if not isinstance(config, QueueConfig):
            raise InvalidConfigError("config", "must be a river.QueueConfig")
        settings = self._config.resolve(config, name)
        async with self.lock:
            if name in self.configs:
                raise QueueAlreadyAddedError(name)
            runtime = self._runtime()
            if runtime is not None:
                rows = await self._run_op(upsert_queues_op(self._q, [name]))
                self.configs[name] = config
                await self._start_producer(runtime, name, rows.get(name))
                settings = self.effective(name)
            else:
                self.configs[name] = config
        logger.info(
            "queue %s added (max_workers=%d, fetch_cooldown=%gs, fetch_poll_interval=%gs)",
            name,
            settings.max_workers,
            settings.fetch_cooldown,
            settings.fetch_poll_interval,
            extra={"queue": name},
        )
        self._publish(EventKind.QUEUE_ADDED, name)
        return (
            self._info(name)
            if name in self.configs
            else QueueInfo(
                name, config, settings, False, 0, False, target_workers=_initial_target(settings)
            )
        )

    async def remove(
        self,
        name: str,
        *,
        mode: Literal["drain", "cancel"] = "drain",
        timeout: float | None = None,
    ) -> None:
        """Remove a queue. Its producer stops fetching at once; ``mode="drain"`` waits for its
        running jobs (up to ``timeout`` seconds, None: no limit, after which they are
        cancelled), ``mode="cancel"`` cancels them now. Cancelled jobs go back to
        ``available`` with their attempt restored; every outcome is written before it
        returns. Jobs still queued in the database stay there. Raises QueueNotFoundError."""
        if mode not in ("drain", "cancel"):
            raise RiverError(f"mode must be 'drain' or 'cancel', not {mode!r}")
        async with self.lock:
            if name not in self.configs:
                raise QueueNotFoundError(name)
            producer = self.producers.get(name)
            runtime = self._runtime()
            if producer is None or runtime is None:
                self._forget(name, mode)
                return
            producer.stop_fetching()
            if mode == "cancel":
                producer.cancel_jobs()
            try:
                with anyio.move_on_after(math.inf if timeout is None else timeout):
                    await producer.wait_done()
            finally:
                # Also when the caller gives up (cancelled, e.g. by a timeout of its own): a
                # queue whose producer stopped fetching must never stay registered as if it
                # ran. Like a cancelled stop, what still runs is interrupted and the removal
                # completes before the cancellation goes on.
                with anyio.CancelScope(shield=True):
                    producer.cancel_jobs()
                    await producer.wait_done()
                    if self.producers.get(name) is producer:
                        del self.producers[name]
                    # Like stop: the outcomes of its jobs are written before remove returns
                    # (only those: other queues' outcomes written later do not hold it up).
                    await runtime.retire_producer(producer)
                    self._forget(name, mode)

    def _forget(self, name: str, mode: str) -> None:
        """The last step of a removal (the lock is held): drop the queue, log, publish."""
        self.configs.pop(name, None)
        self.overrides.pop(name, None)
        logger.info("queue %s removed (%s)", name, mode, extra={"queue": name})
        self._publish(EventKind.QUEUE_REMOVED, name, mode=mode)

    async def update(
        self,
        name: str,
        *,
        max_workers: int | None = _UNSET,
        fetch_cooldown: float | timedelta | None = _UNSET,
        fetch_poll_interval: float | timedelta | None = _UNSET,
        min_workers: int | None = _UNSET,
        rate_limit: RateLimit | None = _UNSET,
    ) -> QueueInfo:
        """Change a queue's settings live. Only the fields given change; ``None`` resets a field
        to the client's default (inheritance is resolved again). The queue's fetch loop is
        stopped between two fetches, modified and restarted; running jobs are never
        interrupted: growing adds slots at once, shrinking lets surplus jobs finish and fetches
        nothing until below the new limit. ``min_workers`` below the effective ``max_workers``
        makes the queue autoscaled (None: fixed again); ``rate_limit`` sets or (None) removes
        its rate limit. Other queues are not touched. Raises QueueNotFoundError, or
        InvalidConfigError (nothing changes)."""
        async with self.lock:
            if name not in self.configs:
                raise QueueNotFoundError(name)
            given: dict[str, Any] = {
                field: value
                for field, value in (
                    ("max_workers", max_workers),
                    ("min_workers", min_workers),
                    ("fetch_cooldown", fetch_cooldown),
                    ("fetch_poll_interval", fetch_poll_interval),
                    ("rate_limit", rate_limit),
                )
                if value is not _UNSET
            }
            new = replace(self.configs[name], **given)  # validated by QueueConfig
            self._config.resolve(new, name)  # InvalidConfigError before anything changes
            self.configs[name] = new
            settings = self.effective(name)
            overridden = [
                f for f in self.overrides.get(name, QueueOverride()).as_dict() if f in given
            ]
            if overridden:
                logger.info(
                    "queue %s: %s stay as the cluster-wide override sets them until it is "
                    "cleared (river queue update %s --clear)",
                    name,
                    ", ".join(overridden),
                    name,
                    extra={"queue": name},
                )
            # Shielded once the config is changed: a caller cancelled while the producer waits
            # for a fetch in flight left the new config recorded and the producer on the old
            # settings, with nothing to reconcile them.
            with anyio.CancelScope(shield=True):
                settings = await self._apply(name, settings) or settings
        self._announce_update(name, settings, cluster=False)
        return self._info(name)

    # --- the cluster-wide override -----------------------------------------------------------

    def override_seen(self, name: str, stored: Any) -> None:
        """The stored override of ``name`` as a producer's start or a poll read it: ``metadata
        #> '{river_py,settings}'``, untrusted. The poller calls it only when the stored value
        changed since the last one it saw (the start's included), so invalid fields are logged
        once. A change is applied to the running producer (in a task of the runtime, not in
        the caller's: the poller serves every queue)."""
        if name not in self.configs:
            return
        override, problems = from_settings(stored)
        for problem in problems:
            logger.warning(
                "queue %s: ignoring an invalid cluster-wide setting: %s",
                name,
                problem,
                extra={"queue": name},
            )
        if override == self.overrides.get(name, QueueOverride()):
            return
        if override:
            self.overrides[name] = override
        else:
            self.overrides.pop(name, None)
        logger.info(
            "queue %s: cluster-wide override %s",
            name,
            override.describe(),
            extra={"queue": name},
        )
        runtime = self._runtime()
        producer = self.producers.get(name)
        if runtime is not None and producer is not None:
            runtime.spawn(self._apply_override, name)

    async def _apply_override(self, name: str) -> None:
        # Under the lock, like every change: never interleaved with an update, a remove or a
        # stop, so the last event published tells the settings the producer runs with.
        async with self.lock:
            producer = self.producers.get(name)
            if producer is None or name not in self.configs:
                return
            wanted = self.effective(name)
            if wanted == producer.settings:
                return
            settings = await self._apply(name, wanted)
            if settings is None:
                return
        self._announce_update(name, settings, cluster=True)

    def _announce_update(self, name: str, settings: QueueSettings, *, cluster: bool) -> None:
        """One INFO line and one ``queue_updated`` event (``source="cluster"`` for an
        override) with the settings the producer runs with."""
        extras = ""
        if settings.autoscaled:
            extras += f", autoscaled from min_workers={settings.min_workers}"
        if settings.rate_limit is not None:
            extras += f", rate_limit={settings.rate_limit}"
        logger.info(
            "queue %s updated%s (max_workers=%d, fetch_cooldown=%gs, fetch_poll_interval=%gs%s)",
            name,
            " by its cluster-wide override" if cluster else "",
            settings.max_workers,
            settings.fetch_cooldown,
            settings.fetch_poll_interval,
            extras,
            extra={"queue": name},
        )
        details: dict[str, Any] = {
            "max_workers": settings.max_workers,
            "fetch_cooldown": settings.fetch_cooldown,
            "fetch_poll_interval": settings.fetch_poll_interval,
        }
        if cluster:
            details["source"] = "cluster"
        self._publish(EventKind.QUEUE_UPDATED, name, **details)

    async def _apply(self, name: str, settings: QueueSettings) -> QueueSettings | None:
        """Give the running producer of ``name`` (if any) ``settings`` (the caller holds the
        lock): its fetch loop stops between two fetches, takes them and restarts. An override
        read by the poller meanwhile is applied too before this returns. Returns the settings
        the producer runs with, or None when no producer runs."""
        producer = self.producers.get(name)
        runtime = self._runtime()
        if producer is None or runtime is None:
            return None
        while True:
            await producer.update_settings(settings)
            if self.producers.get(name) is not producer or name not in self.configs:
                return None
            runtime.signals.settings_applied.emit((name, settings))
            # The restarted producer fetches at once; the next poll follows the new interval.
            runtime.poller.reschedule(name, settings.fetch_poll_interval)
            latest = self.effective(name)
            if latest == settings:
                return settings
            settings = latest

    async def pause(self, name: str) -> None:
        """Pause a queue of this client for every client on the database: persisted in
        river_queue and broadcast on river_control (River (Go) clients obey too). This
        client's producer stops fetching at once; running jobs go on."""
        await self._set_paused(name, True)

    async def resume(self, name: str) -> None:
        """Resume a paused queue everywhere; this client's producer fetches at once."""
        await self._set_paused(name, False)

    async def _set_paused(self, name: str, paused: bool) -> None:
        async with self.lock:
            if name not in self.configs:
                raise QueueNotFoundError(name)
            await self._run_op(upsert_queues_op(self._q, [name]))
            await self._run_op(_admin.queue_pause_op(self._q, name, pause=paused))
            producer = self.producers.get(name)
            changed = producer is not None and producer.paused != paused
            runtime = self._runtime()
            if producer is not None:
                producer.set_paused(paused)
                if runtime is not None:
                    runtime.poller.paused_locally(name)
        if changed or producer is None:
            logger.info(
                "queue %s %s", name, "paused" if paused else "resumed", extra={"queue": name}
            )
            self._publish(EventKind.QUEUE_PAUSED if paused else EventKind.QUEUE_RESUMED, name)


def _stored_settings(metadata: Any) -> Any:
    """``metadata #> '{river_py,settings}'`` of a decoded row (what the poller reads)."""
    ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return ours.get("settings") if isinstance(ours, dict) else None


def apply_override(settings: QueueSettings, override: QueueOverride) -> QueueSettings:
    """The effective settings: ``settings`` (the client's own) with the override's fields on
    top. The poll interval is raised to the cooldown when the two would cross, and a
    ``min_workers`` above the ``max_workers`` lowered to it (the queue is then not
    autoscaled)."""
    if not override:
        return settings
    merged = replace(
        settings,
        **{f: v for f in FIELDS if (v := getattr(override, f)) is not None},
    )
    if merged.fetch_poll_interval < merged.fetch_cooldown:
        merged = replace(merged, fetch_poll_interval=merged.fetch_cooldown)
    if merged.min_workers is not None and merged.min_workers > merged.max_workers:
        merged = replace(merged, min_workers=merged.max_workers)  # fixed at max_workers
    return merged


def _initial_target(settings: QueueSettings) -> int:
    """The concurrency a producer starts with: ``min_workers`` when autoscaled."""
    if settings.autoscaled and settings.min_workers is not None:
        return settings.min_workers
    return settings.max_workers
