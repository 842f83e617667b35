"""The supervisor of ``--processes N`` and ``--reload``: N child worker processes.

Each child is ``python -m river.worker APP ...`` with the same flags (``--processes 1``, no
``--reload``), in a session of its own so that a terminal's Ctrl-C reaches the supervisor only
and is forwarded once. The supervisor:

- forwards SIGTERM/SIGINT (a second one too, for a hard stop) and SIGHUP (config reload in
  every child; a child still starting gets it once it can take it) to the children, and exits
  0 when every child stopped cleanly (3 when one exited 3, 1 for any other failure);
- restarts a child that exits on its own, after a backoff (0.5 s doubling to 30 s, reset once a
  child has run for 30 s), logging each exit; gives up (stops the others, exits 1) when a child
  failed to start :data:`START_FAILURES_MAX` times in a row;
- kills the children still running ``shutdown timeout + 10 s`` after a stop signal, with the
  shutdown timeout each child reported (it changes on reload);
- with ``--reload``, watches the app's sources and restarts every child on a change (the old
  child soft-stops first); a child that cannot start (a syntax error) is not restarted until
  the next change;
- with ``--health-addr HOST:PORT``, serves the combined health of its children there (child i
  serves its own on 127.0.0.1:PORT+1+i): ``/readyz`` is 200 only when every child is ready,
  ``/metrics`` merges the children's metrics with a ``process`` label.

Each child reports to the supervisor through a pipe (its write end's number in
``RIVER_WORKER_STATUS_FD``), one line per event: ``started`` once a SIGHUP can no longer kill it,
``shutdown_timeout SECONDS`` whenever that changes, ``outcome_timeout SECONDS`` (its
``completer_stop_timeout``; ``None``: no bound) at start, ``ready`` once its client has started,
``draining`` once a stop's jobs have all ended and their last outcomes are being written. A
stopping child is killed 10 s after its shutdown timeout, or, once draining, 10 s after its
outcome timeout from then, whichever is later.

Leadership needs nothing here: each child is an ordinary client and takes part in the election.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import Process, TaskGroup

from river._retry import backoff
from river.worker._health import fetch, listen, metric_line, relabel_metrics, serve_on
from river.worker._signals import signal_receiver
from river.worker._watch import watch_sources

__all__ = ["ChildStatus", "Supervisor", "SupervisorOptions"]

logger = logging.getLogger("river.worker")

#: Environment variables a child reads (set by the supervisor only).
ENV_SUPERVISOR_PID = "RIVER_WORKER_SUPERVISOR_PID"
ENV_PROCESS_INDEX = "RIVER_WORKER_PROCESS"
#: The child's end of its status pipe (see ChildStatus).
ENV_STATUS_FD = "RIVER_WORKER_STATUS_FD"
#: The --database-url given to the supervisor, for its children: an environment variable (only
#: the user and root can read a process's environment) rather than an argument every ``ps``
#: shows.
ENV_DATABASE_URL = "RIVER_WORKER_DATABASE_URL"

#: Exit status of a worker process that stopped unhealthy or gave up writing outcomes (the
#: supervisor exits with it when a child's last exit had it).
EXIT_UNHEALTHY = 3
#: A child that exits with an error this many times in a row without ever becoming ready
#: (cannot import the app, cannot listen, cannot reach the database) makes the supervisor give
#: up (not with --reload, which waits for the next source change instead).
START_FAILURES_MAX = 5

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
#: A child that ran this long before exiting starts the backoff afresh.
_HEALTHY_RUN = 30.0
#: After the shutdown and outcome timeouts, children still alive get this long before SIGKILL.
_KILL_GRACE = 10.0
#: A child's outcome timeout until it reports its own: Config.completer_stop_timeout's default.
_DEFAULT_OUTCOME_TIMEOUT = 60.0


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
    #: Where health_addr came from, for errors (``--health-addr``, ``worker.health_addr``).
    health_setting: str = "--health-addr"
    #: The --database-url flag, passed to the children in ENV_DATABASE_URL.
    database_url: str | None = None


class ChildStatus:
    """A child's end of its status pipe (a no-op in a process that has none). The supervisor
    reads it: see the module's docstring."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def from_env(cls) -> ChildStatus:
        """The pipe named by ENV_STATUS_FD (removed from the environment, and not inherited
        by the processes this one starts)."""
        text = os.environ.pop(ENV_STATUS_FD, "")
        if not text.isdigit() or os.environ.get(ENV_SUPERVISOR_PID) is None:
            return cls(None)
        fd = int(text)
        try:
            os.set_inheritable(fd, False)
        except OSError:
            return cls(None)
        return cls(fd)

    def send(self, line: str) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, (line + "\n").encode())
        except OSError:
            self._fd = None  # the supervisor is gone (the parent check notices it)


@dataclass(slots=True)
class _Child:
    index: int
    process: Process | None = None
    pid: int | None = None
    restarts: int = 0
    failures: int = 0
    restart_requested: bool = False
    last_status: int | None = None
    #: This run reported ``started``: a SIGHUP no longer kills it.
    hup_safe: bool = False
    #: A SIGHUP came while it could not take one yet: sent once it reports ``started``.
    hup_pending: bool = False
    #: This run reported ``ready`` (its client started).
    ready: bool = False
    #: The shutdown timeout this run reported (None: not yet).
    shutdown_timeout: float | None = None
    #: How long this run's stop may go on writing outcomes, as reported (math.inf: no bound;
    #: the client's default until reported).
    outcome_timeout: float = _DEFAULT_OUTCOME_TIMEOUT
    #: When this run reported that its stop's jobs had all ended (None: not yet).
    draining_at: float | None = None
    #: Consecutive runs that failed without becoming ready.
    start_failures: int = 0
    #: The exit status of the last of those (None: the last run became ready, or none failed).
    failed_start_status: int | None = None


class Supervisor:
    """Runs and watches the children; :meth:`run` returns the exit status."""

    def __init__(self, options: SupervisorOptions) -> None:
        self.options = options
        self.children = [_Child(i) for i in range(options.processes)]
        self._stopping = anyio.Event()
        self._signals_seen = 0
        self._changed = anyio.Event()
        self._gave_up = False
        self._tg: TaskGroup | None = None

    def _health_port(self, index: int) -> int | None:
        if self.options.health_addr is None:
            return None
        return self.options.health_addr[1] + 1 + index

    async def run(self) -> int:
        """Start the children and supervise them until they have all stopped.

        Raises :class:`~river.worker._health.ListenError` when the health address is taken."""
        listener = None
        if self.options.health_addr is not None:
            # Before anything starts: a port in use is a one-line start-up error.
            host, port = self.options.health_addr
            listener = await listen(host, port, self.options.health_setting)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            with signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                tg.start_soon(self._signal_loop, signals)
                if listener is not None:
                    tg.start_soon(serve_on, listener, self._routes)
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
        # A child that was not running when the stop came (in its restart backoff after a
        # crash, or waiting for a source change) has nothing to stop: its status is None. One
        # whose last run failed to start keeps that run's status, also when the stop ended
        # its next try.
        logger.info("supervisor stopped (exit statuses %s)", statuses)
        if EXIT_UNHEALTHY in statuses:
            return EXIT_UNHEALTHY
        if self._gave_up or any(s not in (0, None) for s in statuses):
            return 1
        if any(c.start_failures >= START_FAILURES_MAX for c in self.children):
            # Kept being retried beside working siblings, it never started: the stop that
            # ended its last try (status 0) does not make the run a success.
            return 1
        return 0

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

    def _env(self, child: _Child, status_fd: int) -> dict[str, str]:
        env = dict(os.environ)
        env[ENV_SUPERVISOR_PID] = str(os.getpid())
        env[ENV_PROCESS_INDEX] = str(child.index)
        env[ENV_STATUS_FD] = str(status_fd)
        env.pop(ENV_DATABASE_URL, None)
        if self.options.database_url is not None:
            env[ENV_DATABASE_URL] = self.options.database_url
        if self.options.reload:
            # A rewrite within the same second with the same size would otherwise be served
            # from a stale .pyc (whose source stamp has a one-second resolution).
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    async def _spawn(self, child: _Child, status_fd: int) -> Process:
        return await anyio.open_process(
            self._command(child),
            stdin=subprocess.DEVNULL,
            stdout=None,
            stderr=None,
            env=self._env(child, status_fd),
            start_new_session=True,
            pass_fds=(status_fd,),
        )

    async def _run_once(self, child: _Child) -> int:
        """Start the child, wait for its exit; return its exit status."""
        child.hup_safe = child.hup_pending = child.ready = False
        child.shutdown_timeout = None
        child.outcome_timeout = _DEFAULT_OUTCOME_TIMEOUT
        child.draining_at = None
        read_fd, write_fd = os.pipe()
        try:
            os.set_blocking(read_fd, False)
            try:
                process = await self._spawn(child, write_fd)
            finally:
                os.close(write_fd)
            async with process:
                child.process, child.pid = process, process.pid
                logger.info("worker process %d started (pid %d)", child.index, process.pid)
                if self._stopping.is_set():
                    # The stop came while it was being spawned: _send did not see it.
                    self._signal_child(child, signal.SIGTERM)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._read_status, child, read_fd)
                    status = await process.wait()
                    tg.cancel_scope.cancel()
                self._drain_status(child, read_fd)
            return status
        finally:
            child.process = None
            os.close(read_fd)

    async def _run_child(self, child: _Child) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            changed = self._changed
            status = await self._run_once(child)
            if self._stopping.is_set() and status in (-signal.SIGTERM, -signal.SIGINT, 130):
                # Killed by the forwarded signal before it had installed its handlers, i.e.
                # before it had started any job: nothing was lost. A retry of a child that
                # was failing to start keeps that failure as its status, as it would have in
                # its restart backoff (when the stop caught it there, it exited 1 or 0 by
                # chance).
                if not child.ready and child.failed_start_status is not None:
                    child.last_status = child.failed_start_status
                    logger.info(
                        "worker process %d (pid %d) stopped before it was ready (its last "
                        "start had failed with status %d)",
                        child.index,
                        child.pid,
                        child.failed_start_status,
                    )
                    return
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
                # Restarted on purpose (a reload): an earlier failed start says nothing of
                # the code it runs now.
                child.restart_requested = False
                child.failed_start_status = None
                continue
            child.restarts += 1
            failed_start = status != 0 and not child.ready
            child.start_failures = child.start_failures + 1 if failed_start else 0
            child.failed_start_status = status if failed_start else None
            if not failed_start:
                # A run that became ready: stopping while it waits for its restart leaves
                # nothing to report (see run()).
                child.last_status = None
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
            if child.start_failures >= START_FAILURES_MAX:
                if not any(c.ready for c in self.children if c is not child):
                    logger.error(
                        "worker process %d failed to start %d times in a row (last exit "
                        "status %d): giving up, stopping the other worker processes",
                        child.index,
                        child.start_failures,
                        status,
                    )
                    self._gave_up = True
                    self._signals_seen += 1  # a signal from now on stops at once
                    self._begin_stop(signal.SIGTERM)
                    return
                # Others work: stopping them would turn one process that cannot start (a
                # config file broken since they started, a database blip at its start) into
                # an outage. It keeps being tried, and /readyz says it is not ready.
                if child.start_failures == START_FAILURES_MAX:
                    logger.error(
                        "worker process %d failed to start %d times in a row (last exit "
                        "status %d): the other worker processes go on; it is tried again, "
                        "at most %gs apart",
                        child.index,
                        child.start_failures,
                        status,
                        _BACKOFF_MAX,
                    )
            if time.monotonic() - started >= _HEALTHY_RUN:
                child.failures = 0
            # Bounded exponent: a child retried for hours beside working siblings overflowed.
            delay = backoff(child.failures, _BACKOFF_FIRST, _BACKOFF_MAX, jitter=0)
            child.failures += 1
            logger.warning(
                "worker process %d (pid %d) exited with status %d%s; restarting in %gs",
                child.index,
                child.pid,
                status,
                " before it was ready" if failed_start else "",
                delay,
            )
            with anyio.move_on_after(delay):
                await self._stopping.wait()

    # --- status pipe ---------------------------------------------------------------------

    async def _read_status(self, child: _Child, fd: int) -> None:
        buffer = b""
        while True:
            await anyio.wait_readable(fd)
            data = self._read_available(fd)
            if data is None:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._on_status(child, line.decode(errors="replace"))

    def _drain_status(self, child: _Child, fd: int) -> None:
        # What the child wrote just before it exited (the reader was cancelled at the exit).
        data = self._read_available(fd) or b""
        for line in data.split(b"\n"):
            if line:
                self._on_status(child, line.decode(errors="replace"))

    @staticmethod
    def _read_available(fd: int) -> bytes | None:
        """What can be read now; None at end of file."""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                break
            if not chunk:
                return b"".join(chunks) or None
            chunks.append(chunk)
        return b"".join(chunks)

    def _on_status(self, child: _Child, line: str) -> None:
        word, _, value = line.partition(" ")
        if word == "started":
            child.hup_safe = True
            if child.hup_pending:
                child.hup_pending = False
                self._signal_child(child, signal.SIGHUP)
        elif word == "ready":
            child.ready = True
            child.start_failures = 0
            child.failed_start_status = None
        elif word == "shutdown_timeout":
            with contextlib.suppress(ValueError):
                child.shutdown_timeout = float(value)
        elif word == "draining":
            child.draining_at = time.monotonic()
        elif word == "outcome_timeout":
            with contextlib.suppress(ValueError):
                child.outcome_timeout = math.inf if value == "None" else float(value)

    async def _wait_or_stop(self, event: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:

            async def stop_waiter() -> None:
                await self._stopping.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_waiter)
            await event.wait()
            tg.cancel_scope.cancel()

    @staticmethod
    def _signal_child(child: _Child, signum: int) -> None:
        if child.process is not None and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.Signals(signum))

    def _send(self, signum: int) -> None:
        for child in self.children:
            if signum == signal.SIGHUP and not child.hup_safe:
                # Still starting: a SIGHUP would kill it. It reads the file after it reports
                # ``started``; the signal follows then, in case it had read it already.
                if child.process is not None:
                    child.hup_pending = True
                continue
            self._signal_child(child, signum)

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
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if self._stopping.is_set():
                    # The children are stopping too: a reload would only race their exit.
                    logger.info("%s: stopping, reload ignored", name)
                    continue
                logger.info("%s: reloading the config of every worker process", name)
                self._send(signum)
                continue
            self._signals_seen += 1
            if self._signals_seen == 1:
                logger.info("%s: stopping the worker processes", name)
            else:
                logger.warning("%s again: worker processes stop now", name)
            self._begin_stop(signum)

    def _begin_stop(self, signum: int) -> None:
        """Stop every child (soft; a second call: hard) and start the kill timer."""
        if not self._stopping.is_set():
            self._stopping.set()
            if self._tg is not None:
                self._tg.start_soon(self._kill_after_grace, time.monotonic())
        self._send(signum)

    def _kill_deadline(self, child: _Child, stopped_at: float) -> float:
        # The shutdown timeout the child reported (a reload may have changed it), else the
        # supervisor's own (a child that has not reported it yet has not started any job).
        timeout = child.shutdown_timeout
        if timeout is None:
            timeout = self.options.shutdown_timeout
        deadline = stopped_at + timeout + _KILL_GRACE
        if child.draining_at is not None:
            # Its jobs have ended: it may still retry writing their outcomes (the database
            # away) for its outcome timeout. Killed sooner, completed jobs would run again after
            # a rescue, and cancelled ones would stay running until then. A child still stuck
            # in a job (a sync worker's thread) gets no such extension.
            deadline = max(deadline, child.draining_at + child.outcome_timeout + _KILL_GRACE)
        return deadline

    async def _kill_after_grace(self, stopped_at: float) -> None:
        killed: set[int] = set()
        while True:
            now = time.monotonic()
            waits = [1.0]  # re-checked every second: a reported timeout can still change
            for child in self.children:
                process = child.process
                if process is None or process.returncode is not None or process.pid in killed:
                    continue
                left = self._kill_deadline(child, stopped_at) - now
                if left > 0:
                    waits.append(left)
                    continue
                logger.error(
                    "worker process %d (pid %s) did not stop in time: killing it",
                    child.index,
                    child.pid,
                )
                killed.add(process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await anyio.sleep(min(waits))

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
    return [backoff(i, _BACKOFF_FIRST, _BACKOFF_MAX, jitter=0) for i in range(count)]
