"""One worker process: a started :class:`river.AsyncClient` driven by signals, reloads and a
health server.

Lifecycle::

    starting --(client started)--> running --(SIGTERM/SIGINT)--> stopping --> exit 0
                                     |  ^
                          SIGHUP /   |  |  reconcile queues and periodic jobs (no restart)
                   --watch-config    v  |

Stopping is the client's two-level shutdown: a soft stop (fetch nothing more, let running jobs
finish) bounded by the shutdown timeout, then a hard stop (running jobs are cancelled and return
to ``available`` with their attempt restored). A second SIGTERM/SIGINT skips the rest of the
soft stop. Outcomes of finished jobs are written before the process exits; while the database
cannot be reached, for up to ``Config.completer_stop_timeout`` (60 s), or until a third signal,
after which the jobs not written are logged and stay ``running`` until a rescuer returns them.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import psycopg

from river._client import AsyncClient
from river._config import Config
from river._errors import RiverError
from river._events import EventKind, Subscription
from river._supervisor import ClientHealth, Supervisor, started_at_once
from river.worker._config import (
    PeriodicSpec,
    Plan,
    QueueSpec,
    WorkerConfigError,
    build_plan,
    load_file,
)
from river.worker._health import metric_line, serve
from river.worker._metrics import JobMetrics, queue_depth_lines
from river.worker._reconcile import (
    apply_periodic,
    apply_queues,
    finish_pauses,
    prepare_pauses,
    restart_required,
)
from river.worker._signals import signal_receiver
from river.worker._watch import Signature, watch_file

__all__ = ["RunnerOptions", "WorkerRunner"]

logger = logging.getLogger("river.worker")

#: How often a child of ``--processes``/``--reload`` checks that its supervisor still lives.
_PARENT_CHECK_INTERVAL = 1.0
#: Readiness gives the database this long to answer.
_READY_QUERY_TIMEOUT = 2.0
#: How often the process checks its client's health (see _watch_health).
_HEALTH_CHECK_INTERVAL = 0.5
#: Exit status of a process that stopped because a service of its client kept failing, or
#: that had to give up writing job outcomes as it stopped (the database could not be reached).
EXIT_UNHEALTHY = 3


def _no_report(line: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """How the process was started (what a reload needs to read the configuration again)."""

    config_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    watch_config: bool = False
    watch_interval: float = 1.0
    #: The supervisor's pid when this process is one of its children.
    supervisor_pid: int | None = None
    #: The config file's signature before it was first read (see watch_file).
    config_signature: Signature = None
    #: Where health_addr came from, for errors (``--health-addr``, ``worker.health_addr``).
    health_setting: str = "--health-addr"
    #: Tells the supervisor of --processes/--reload about this process (ChildStatus.send):
    #: ``shutdown_timeout SECONDS`` (at start, on a change, as a stop begins) and ``ready``.
    report: Callable[[str], None] = _no_report


def _describe(exc: BaseException, path: str) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{path}: {name}: {text}" if text else f"{path}: {name}"


class WorkerRunner:
    """Runs one worker process until stopped; :meth:`run` returns its exit status."""

    def __init__(self, base: Config, plan: Plan, options: RunnerOptions) -> None:
        self.base = base
        self.plan = plan
        self.options = options
        self.client = AsyncClient(plan.database_url, plan.config)
        self.state: Literal["starting", "running", "stopping", "stopped"] = "starting"
        #: 1 for the configuration the process started with, +1 per applied reload.
        self.generation = 1
        self.reload_failures = 0
        self.shutdown_timeout = plan.shutdown_timeout
        self.queues: dict[str, QueueSpec] = dict(plan.queues)
        self.periodic: dict[str, PeriodicSpec] = dict(plan.periodic)
        #: Settings only a restart changes, as this process runs them.
        self.static = dict(plan.restart_only)
        #: Outcomes and durations of the jobs this process finished (from job events).
        self.jobs = JobMetrics()
        self._subscription: Subscription | None = None
        self._stop = anyio.Event()
        self._hard = anyio.Event()
        self._give_up = False
        self._reload = anyio.Event()
        self._reload_reasons: list[str] = []
        #: The exit status run() returns (EXIT_UNHEALTHY after a failed service).
        self.exit_status = 0
        #: Supervises the process's own services (health server, reload, config watcher).
        self._supervisor = Supervisor()
        #: Cancelled by a stop requested before the client has started (nothing runs yet).
        self._start_scope: anyio.CancelScope | None = None

    # --- requests (from signals, watchers, tests) ----------------------------------------

    def request_stop(self, reason: str) -> None:
        """First call: soft stop (during start-up: abandon the start at once). Second: hard
        stop now. Third: give up the outcome writes still failing (the database is away).
        Later calls are ignored."""
        if not self._stop.is_set() and self.state == "starting":
            logger.info("%s during start-up: stopping before the worker started", reason)
            self._stop.set()
            if self._start_scope is not None:
                self._start_scope.cancel()
        elif not self._stop.is_set():
            logger.info(
                "%s: stopping (running jobs get up to %gs; send it again to stop now)",
                reason,
                self.shutdown_timeout,
            )
            self._stop.set()
        elif not self._hard.is_set():
            logger.warning(
                "%s again: stopping now, running jobs return to the queue (a third time: "
                "without waiting for the database)",
                reason,
            )
            self._hard.set()
        elif not self._give_up:
            self._give_up = True
            logger.warning(
                "%s a third time: outcome writes that do not go through within a second are "
                "given up, their jobs stay running until a rescuer returns them",
                reason,
            )
            self.client._give_up_writes()

    def request_reload(self, reason: str) -> None:
        """Reload the configuration file soon (requests made meanwhile coalesce)."""
        if self._stop.is_set():
            logger.info("%s: stopping, reload ignored", reason)
            return
        self._reload_reasons.append(reason)
        self._reload.set()

    # --- main ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until a stop is requested, stop; return the exit status (0: clean).

        Raises what prevented the start (database unreachable, port taken, ...)."""
        error: BaseException | None = None
        subscription = None
        self.options.report(f"shutdown_timeout {self.shutdown_timeout!r}")
        # How long the stop goes on writing outcomes once the jobs have ended (the database
        # away): the supervisor of --processes waits for that too before it kills.
        self.options.report(
            f"outcome_timeout {self.client.config.completer_stop_timeout_seconds!r}"
        )
        if self.plan.health_addr is not None:
            # Only for /metrics: a job-event subscription makes the completer return rows.
            subscription = self.client.subscribe(*sorted(EventKind.JOB_KINDS), buffer=10_000)
            self._subscription = subscription
        try:
            async with anyio.create_task_group() as tg:
                with signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                    tg.start_soon(self._signal_loop, signals)
                    if subscription is not None:
                        tg.start_soon(self._count_events, subscription)
                    try:
                        supervise = self._supervisor.run
                        if self.plan.health_addr is not None:
                            host, port = self.plan.health_addr
                            await tg.start(
                                supervise,
                                "worker:health-server",
                                functools.partial(
                                    serve,
                                    host,
                                    port,
                                    self._routes,
                                    setting=self.options.health_setting,
                                ),
                            )
                        # A stop requested meanwhile cancels the start (e.g. while the
                        # database does not answer): the stop below then finds nothing to do.
                        with anyio.CancelScope() as self._start_scope:
                            if self._stop.is_set():  # requested while the health server started
                                self._start_scope.cancel()
                            await self._start()
                    except (RiverError, psycopg.Error, OSError) as exc:
                        error = exc
                    else:
                        await tg.start(
                            supervise, "worker:reload", started_at_once(self._reload_loop)
                        )
                        if self.options.watch_config and self.options.config_path is not None:
                            watcher = started_at_once(
                                watch_file,
                                self.options.config_path,
                                self.options.watch_interval,
                                lambda: self.request_reload("config file changed"),
                                self.options.config_signature,
                            )
                            await tg.start(supervise, "worker:config-watcher", watcher)
                        if self.options.supervisor_pid is not None:
                            tg.start_soon(self._watch_parent, self.options.supervisor_pid)
                        tg.start_soon(self._watch_health)
                        await self._stop.wait()
                        await self._shutdown()
                    tg.cancel_scope.cancel()
        finally:
            if subscription is not None:
                subscription.close()
            with anyio.CancelScope(shield=True):
                await self.client.close()
            self.state = "stopped"
        if error is not None:
            raise error
        return self.exit_status

    async def _start(self) -> None:
        missing = await prepare_pauses(self.client, self.queues)
        await self.client.start()
        await finish_pauses(self.client, self.queues, missing)
        self.state = "running"
        self.options.report("ready")
        kinds = self.base.workers.kinds() if self.base.workers is not None else []
        logger.info(
            "worker started pid=%d generation=%d queues=[%s] kinds=[%s]",
            os.getpid(),
            self.generation,
            ",".join(self.queues),
            ",".join(kinds),
        )

    async def _shutdown(self) -> None:
        self.state = "stopping"
        timeout = self.shutdown_timeout
        # The supervisor of --processes kills this process timeout + 10 s after the stop, or,
        # once it says its jobs have ended, the outcome timeout (reported at start) + 10 s
        # after that.
        self.options.report(f"shutdown_timeout {timeout!r}")
        runtime = self.client._runtime
        if runtime is not None:
            runtime.on_draining = lambda: self.options.report("draining")
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._hard_stop_watchdog, timeout)
            await self.client.stop(timeout=timeout)
            tg.cancel_scope.cancel()
        unwritten = self.client._unwritten_at_stop
        if unwritten:
            # Each job was logged by the completer; the process did not stop cleanly.
            logger.error(
                "%d job outcomes could not be written before the exit (the database could not "
                "be reached): those jobs stay running until a rescuer returns them; exit "
                "status %d",
                unwritten,
                EXIT_UNHEALTHY,
            )
            self.exit_status = EXIT_UNHEALTHY
        logger.info("worker stopped pid=%d", os.getpid())

    async def _hard_stop_watchdog(self, timeout: float) -> None:
        # The client's stop(timeout) bounds the soft stop once it holds the client's lock; this
        # bounds the whole shutdown (a reload's queue drain may hold the lock first) and acts on
        # a second signal at once.
        with anyio.move_on_after(timeout):
            await self._hard.wait()
        first = True
        while True:
            cancelled = self.client.queues.cancel_running()
            if first and cancelled:
                logger.warning("cancelled %d running jobs (they return to the queue)", cancelled)
            first = False
            await anyio.sleep(0.1)

    async def _signal_loop(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                self.request_reload(name)
            else:
                self.request_stop(name)

    async def _count_events(self, subscription: Subscription) -> None:
        async for event in subscription:
            self.jobs.observe(event)

    async def _watch_parent(self, pid: int) -> None:
        # No event tells a process that its parent died (prctl(PR_SET_PDEATHSIG) is Linux-only
        # and not in the stdlib), so poll.
        while os.getppid() == pid:  # noqa: ASYNC110
            await anyio.sleep(_PARENT_CHECK_INTERVAL)
        logger.error("the supervisor (pid %d) is gone", pid)
        self.request_stop("supervisor gone")

    def health(self) -> ClientHealth:
        """The client's services and this process's own, together."""
        return ClientHealth.of({**self.client.health().services, **self._supervisor.health()})

    async def _watch_health(self) -> None:
        # A process that can no longer work must say so by exiting: a service of the client
        # that keeps crashing (restarted with backoff by the client's supervisor, failed after
        # five crashes in a row) stops the process with EXIT_UNHEALTHY, so that systemd,
        # Kubernetes or the --processes parent starts a fresh one.
        while True:
            await anyio.sleep(_HEALTH_CHECK_INTERVAL)
            health = self.health()
            if not health.healthy and self.state == "running":
                details = "; ".join(
                    f"{name}: {health.services[name].last_error}" for name in health.failed
                )
                logger.error(
                    "services failed (%s): stopping, exit status %d", details, EXIT_UNHEALTHY
                )
                self.exit_status = EXIT_UNHEALTHY
                self.request_stop("unhealthy")
                return

    # --- reload --------------------------------------------------------------------------

    async def _reload_loop(self) -> None:
        while True:
            await self._reload.wait()
            self._reload = anyio.Event()
            reasons, self._reload_reasons = self._reload_reasons, []
            if self.state == "running":
                await self.reload(", ".join(dict.fromkeys(reasons)) or "reload")

    async def reload(self, reason: str) -> bool:
        """Read and validate the whole file; if valid, reconcile the client with it.

        Returns whether a new generation was applied. An invalid file changes nothing."""
        path = self.options.config_path
        if path is None:
            logger.info("%s: no --config file, nothing to reload", reason)
            return False
        try:
            file = load_file(path, self.options.overrides)
            plan = build_plan(file, self.base, path=path)
        except Exception as exc:
            # Whatever prevents loading the file (an invalid file, and anything unforeseen: a
            # reload must never end the process) rejects this reload and changes nothing.
            self.reload_failures += 1
            text = str(exc) if isinstance(exc, WorkerConfigError) else _describe(exc, path)
            logger.error(
                "reload rejected (%s): %s; still running generation %d",
                reason,
                text,
                self.generation,
                exc_info=not isinstance(exc, WorkerConfigError),
            )
            return False
        restart = restart_required(self.static, plan.restart_only)
        if restart:
            logger.warning(
                "reload: %s changed but only take effect on a restart; running with the old "
                "values until then",
                ", ".join(restart),
            )
        try:
            changes = await apply_queues(
                self.client, self.queues, plan.queues, drain_timeout=plan.shutdown_timeout
            )
            added, changed, removed = apply_periodic(self.client, self.periodic, plan.periodic)
        except (RiverError, psycopg.Error, OSError) as exc:
            self.reload_failures += 1
            logger.error(
                "reload failed while applying (%s): %s; queues now [%s], still generation %d",
                reason,
                exc,
                ",".join(sorted(self.queues)),
                self.generation,
            )
            return False
        self.generation += 1
        self.plan = plan
        if plan.shutdown_timeout != self.shutdown_timeout and self.state == "running":
            # (A stop under way keeps the timeout it started with, and reported.)
            self.options.report(f"shutdown_timeout {plan.shutdown_timeout!r}")
        self.shutdown_timeout = plan.shutdown_timeout
        if added or changed or removed:
            logger.info(
                "reload periodic jobs added=[%s] replaced=[%s] removed=[%s]",
                ",".join(added),
                ",".join(changed),
                ",".join(removed),
            )
        logger.info("%s (%s)", changes.summary(self.generation), reason)
        return True

    # --- health --------------------------------------------------------------------------

    async def _routes(self, path: str) -> tuple[int, str]:
        if path == "/livez":
            return 200, "ok\n"
        if path == "/readyz":
            problems = await self._readiness_problems()
            if problems:
                return 503, "not ready: " + "; ".join(problems) + "\n"
            return 200, f"ok generation={self.generation}\n"
        if path == "/metrics":
            return 200, self.metrics_text()
        return 404, "not found (try /livez, /readyz, /metrics)\n"

    async def _readiness_problems(self) -> list[str]:
        if self.state != "running":
            return [self.state]
        if not self.client.running:
            return ["client not running"]
        problems = []
        health = self.health()
        if not health.healthy:
            problems.append("services failed: " + ",".join(health.failed))
        inactive = [name for name, q in self.client.queues.list().items() if not q.active]
        if inactive:
            problems.append("queues not running: " + ",".join(inactive))
        try:
            with anyio.fail_after(_READY_QUERY_TIMEOUT):
                await self.client.queue_list(limit=1)
        except (TimeoutError, psycopg.Error, OSError, RiverError) as exc:
            problems.append(f"database: {' '.join(str(exc).split()) or type(exc).__name__}")
        return problems

    def metrics_text(self) -> str:
        """This process's metrics in the Prometheus text format."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        lines.extend(self.jobs.lines())
        # The leader's sample only: every other process reports no depth (no double counting).
        lines.extend(queue_depth_lines(self.client.queue_depth()))
        queues = self.client.queues.list() if self.state != "stopped" else {}
        family("river_jobs_running", "gauge", "Jobs running now, by queue.")
        for name, info in queues.items():
            lines.append(metric_line("river_jobs_running", info.running_jobs, {"queue": name}))
        family("river_queue_max_workers", "gauge", "Configured concurrency of each queue.")
        for name, info in queues.items():
            lines.append(
                metric_line("river_queue_max_workers", info.settings.max_workers, {"queue": name})
            )
        family(
            "river_queue_target_workers",
            "gauge",
            "Concurrency in force of each queue (an autoscaled queue's current target).",
        )
        for name, info in queues.items():
            lines.append(
                metric_line("river_queue_target_workers", info.target_workers, {"queue": name})
            )
        family("river_queue_paused", "gauge", "1 when the queue is paused.")
        for name, info in queues.items():
            lines.append(metric_line("river_queue_paused", int(info.paused), {"queue": name}))
        services = self.health().services
        family(
            "river_service_restarts_total",
            "counter",
            "Restarts of the client's background services after a crash.",
        )
        for name, service in sorted(services.items()):
            lines.append(
                metric_line("river_service_restarts_total", service.restarts, {"service": name})
            )
        family("river_service_up", "gauge", "0 while a background service is failed.")
        for name, service in sorted(services.items()):
            lines.append(metric_line("river_service_up", int(service.healthy), {"service": name}))
        family("river_worker_config_generation", "gauge", "Configuration generation in use.")
        lines.append(metric_line("river_worker_config_generation", self.generation))
        family("river_worker_reload_failures_total", "counter", "Reloads rejected or failed.")
        lines.append(metric_line("river_worker_reload_failures_total", self.reload_failures))
        family("river_leader", "gauge", "1 when this process holds River leadership.")
        lines.append(metric_line("river_leader", int(self.client.is_leader)))
        family("river_worker_stopping", "gauge", "1 while the process is stopping.")
        lines.append(metric_line("river_worker_stopping", int(self.state == "stopping")))
        dropped = self._subscription.dropped if self._subscription is not None else 0
        family("river_worker_events_dropped_total", "counter", "Job events missed by metrics.")
        lines.append(metric_line("river_worker_events_dropped_total", dropped))
        return "\n".join(lines) + "\n"
