"""The supervisor of ``--processes N`` and ``--reload``: N child worker processes.

Each child is ``python -m river.worker APP ...`` with the same flags (``--processes 1``, no
``--reload``), in a session of its own so that a terminal's Ctrl-C reaches the supervisor only
and is forwarded once. The supervisor:

- forwards SIGTERM/SIGINT (a second one too, for a hard stop) and SIGHUP (config reload in
  every child) to the children, and exits 0 when every child stopped cleanly;
- restarts a child that exits on its own, after a backoff (0.5 s doubling to 30 s, reset once a
  child has run for 30 s), logging each exit;
- with ``--reload``, watches the app's sources and restarts every child on a change (the old
  child soft-stops first); a child that cannot start (a syntax error) is not restarted until
  the next change;
- with ``--health-addr HOST:PORT``, serves the combined health of its children there (child i
  serves its own on 127.0.0.1:PORT+1+i): ``/readyz`` is 200 only when every child is ready,
  ``/metrics`` merges the children's metrics with a ``process`` label.

Leadership needs nothing here: each child is an ordinary client and takes part in the election.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import Process

from river.worker._health import fetch, metric_line, relabel_metrics, serve
from river.worker._watch import watch_sources

__all__ = ["Supervisor", "SupervisorOptions"]

logger = logging.getLogger("river.worker")

#: Environment variables a child reads (set by the supervisor only).
ENV_SUPERVISOR_PID = "RIVER_WORKER_SUPERVISOR_PID"
ENV_PROCESS_INDEX = "RIVER_WORKER_PROCESS"

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
#: A child that ran this long before exiting starts the backoff afresh.
_HEALTHY_RUN = 30.0
#: After the shutdown timeout, children still alive get this long before SIGKILL.
_KILL_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class SupervisorOptions:
    """What the supervisor needs; ``child_argv(index, health_port)`` gives a child's flags."""

    processes: int
    child_argv: Callable[[int, int | None], list[str]]
    reload: bool = False
    reload_dirs: Sequence[str] = ()
    watch_interval: float = 0.5
    shutdown_timeout: float = 30.0
    health_addr: tuple[str, int] | None = None
    use_watchfiles: bool = True
    #: A child's command line before its flags (default ``python -m river.worker``);
    #: ``manage.py river_worker`` starts its children as Django commands.
    child_command: Sequence[str] | None = None


@dataclass(slots=True)
class _Child:
    index: int
    process: Process | None = None
    pid: int | None = None
    restarts: int = 0
    failures: int = 0
    restart_requested: bool = False
    last_status: int | None = None


class Supervisor:
    """Runs and watches the children; :meth:`run` returns the exit status."""

    def __init__(self, options: SupervisorOptions) -> None:
        self.options = options
        self.children = [_Child(i) for i in range(options.processes)]
        self._stopping = anyio.Event()
        self._signals_seen = 0
        self._changed = anyio.Event()

    def _health_port(self, index: int) -> int | None:
        if self.options.health_addr is None:
            return None
        return self.options.health_addr[1] + 1 + index

    async def run(self) -> int:
        """Start the children and supervise them until they have all stopped."""
        async with anyio.create_task_group() as tg:
            with anyio.open_signal_receiver(
                signal.SIGTERM, signal.SIGINT, signal.SIGHUP
            ) as signals:
                tg.start_soon(self._signal_loop, signals)
                if self.options.health_addr is not None:
                    host, port = self.options.health_addr
                    await tg.start(serve, host, port, self._routes)
                if self.options.reload:
                    tg.start_soon(self._watch_sources)
                logger.info(
                    "supervisor pid=%d starting %d worker process(es)%s",
                    os.getpid(),
                    self.options.processes,
                    " with --reload" if self.options.reload else "",
                )
                async with anyio.create_task_group() as children:
                    for child in self.children:
                        children.start_soon(self._run_child, child)
                tg.cancel_scope.cancel()
        statuses = [c.last_status for c in self.children]
        # A child that was not running when the stop came (in its restart backoff, or waiting
        # for a source change) has nothing to stop: only the others' statuses count.
        ok = all(s in (0, None) for s in statuses)
        logger.info("supervisor stopped (exit statuses %s)", statuses)
        return 0 if ok else 1

    async def _watch_sources(self) -> None:
        await watch_sources(
            list(self.options.reload_dirs),
            self.options.watch_interval,
            self._sources_changed,
            use_watchfiles=self.options.use_watchfiles,
        )

    # --- children ------------------------------------------------------------------------

    def _command(self, child: _Child) -> list[str]:
        argv = self.options.child_argv(child.index, self._health_port(child.index))
        command = self.options.child_command or (sys.executable, "-m", "river.worker")
        return [*command, *argv]

    def _env(self, child: _Child) -> dict[str, str]:
        env = dict(os.environ)
        env[ENV_SUPERVISOR_PID] = str(os.getpid())
        env[ENV_PROCESS_INDEX] = str(child.index)
        if self.options.reload:
            # A rewrite within the same second with the same size would otherwise be served
            # from a stale .pyc (whose source stamp has a one-second resolution).
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    async def _run_child(self, child: _Child) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            changed = self._changed
            async with await anyio.open_process(
                self._command(child),
                stdin=subprocess.DEVNULL,
                stdout=None,
                stderr=None,
                env=self._env(child),
                start_new_session=True,
            ) as process:
                child.process, child.pid = process, process.pid
                logger.info("worker process %d started (pid %d)", child.index, process.pid)
                status = await process.wait()
            child.process = None
            if self._stopping.is_set() and status in (-signal.SIGTERM, -signal.SIGINT, 130):
                # Killed by the forwarded signal before it had installed its handlers, i.e.
                # before it had started any job: nothing was lost.
                status = 0
            child.last_status = status
            if self._stopping.is_set():
                logger.info(
                    "worker process %d (pid %d) exited with status %d",
                    child.index,
                    child.pid,
                    status,
                )
                return
            if child.restart_requested:
                child.restart_requested = False
                continue
            child.restarts += 1
            if self.options.reload:
                logger.warning(
                    "worker process %d (pid %d) exited with status %d; waiting for a source "
                    "change to start it again",
                    child.index,
                    child.pid,
                    status,
                )
                if changed is self._changed:
                    await self._wait_or_stop(self._changed)
                continue
            if time.monotonic() - started >= _HEALTHY_RUN:
                child.failures = 0
            delay = min(_BACKOFF_FIRST * 2**child.failures, _BACKOFF_MAX)
            child.failures += 1
            logger.warning(
                "worker process %d (pid %d) exited with status %d; restarting in %gs",
                child.index,
                child.pid,
                status,
                delay,
            )
            with anyio.move_on_after(delay):
                await self._stopping.wait()
        child.last_status = None  # stopped while not running

    async def _wait_or_stop(self, event: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:

            async def stop_waiter() -> None:
                await self._stopping.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_waiter)
            await event.wait()
            tg.cancel_scope.cancel()

    def _send(self, signum: int) -> None:
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.Signals(signum))

    def _sources_changed(self, paths: set[str]) -> None:
        if self._stopping.is_set():
            return
        shown = ", ".join(sorted(os.path.relpath(p) for p in paths)[:3])
        more = f" (+{len(paths) - 3} more)" if len(paths) > 3 else ""
        logger.info("change in %s%s: restarting worker processes", shown, more)
        for child in self.children:
            alive = child.process is not None and child.process.returncode is None
            if alive and not child.restart_requested:
                assert child.process is not None
                child.restart_requested = True
                child.process.send_signal(signal.SIGTERM)
        self._changed.set()
        self._changed = anyio.Event()

    # --- signals -------------------------------------------------------------------------

    async def _signal_loop(self, signals: AsyncIterator[int]) -> None:
        async with anyio.create_task_group() as tg:
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    logger.info("%s: reloading the config of every worker process", name)
                    self._send(signum)
                    continue
                self._signals_seen += 1
                if self._signals_seen == 1:
                    logger.info("%s: stopping the worker processes", name)
                    self._stopping.set()
                    tg.start_soon(self._kill_after_grace)
                else:
                    logger.warning("%s again: worker processes stop now", name)
                self._send(signum)

    async def _kill_after_grace(self) -> None:
        await anyio.sleep(self.options.shutdown_timeout + _KILL_GRACE)
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                logger.error(
                    "worker process %d (pid %s) did not stop in time: killing it",
                    child.index,
                    child.pid,
                )
                child.process.kill()

    # --- health --------------------------------------------------------------------------

    async def _child_get(self, child: _Child, path: str) -> tuple[int, str]:
        port = self._health_port(child.index)
        assert port is not None
        try:
            return await fetch("127.0.0.1", port, path)
        except (OSError, TimeoutError) as exc:
            return 503, f"unreachable: {type(exc).__name__}"

    async def _gather(self, path: str) -> list[tuple[int, str]]:
        results: list[tuple[int, str]] = [(503, "")] * len(self.children)

        async def one(i: int) -> None:
            results[i] = await self._child_get(self.children[i], path)

        async with anyio.create_task_group() as tg:
            for i in range(len(self.children)):
                tg.start_soon(one, i)
        return results

    async def _routes(self, path: str) -> tuple[int, str]:
        if path == "/livez":
            return 200, "ok\n"
        if path == "/readyz":
            if self._stopping.is_set():
                return 503, "not ready: stopping\n"
            results = await self._gather("/readyz")
            bad = [
                f"process {i}: {body.strip() or status}"
                for i, (status, body) in enumerate(results)
                if status != 200
            ]
            if bad:
                return 503, "not ready: " + "; ".join(bad) + "\n"
            return 200, "ok\n"
        if path == "/metrics":
            results = await self._gather("/metrics")
            merged = relabel_metrics(
                ({"process": str(i)}, body)
                for i, (status, body) in enumerate(results)
                if status == 200
            )
            lines = [
                "# HELP river_worker_processes Worker processes configured.",
                "# TYPE river_worker_processes gauge",
                metric_line("river_worker_processes", len(self.children)),
                "# HELP river_worker_process_up 1 when the worker process answers.",
                "# TYPE river_worker_process_up gauge",
                *(
                    metric_line("river_worker_process_up", int(status == 200), {"process": str(i)})
                    for i, (status, _) in enumerate(results)
                ),
                "# HELP river_worker_process_restarts_total Unexpected exits of worker processes.",
                "# TYPE river_worker_process_restarts_total counter",
                *(
                    metric_line(
                        "river_worker_process_restarts_total", c.restarts, {"process": str(i)}
                    )
                    for i, c in enumerate(self.children)
                ),
            ]
            return 200, "\n".join([*merged, *lines]) + "\n"
        return 404, "not found (try /livez, /readyz, /metrics)\n"


def backoff_delays(count: int) -> list[float]:
    """The first ``count`` restart delays (documentation and tests)."""
    return [min(_BACKOFF_FIRST * 2**i, _BACKOFF_MAX) for i in range(count)]
