"""Fault injection: what happens, and what a user sees, when a worker, Postgres or the network
fails. ``.venv/bin/python bench/faults.py [--only A,B] [--smoke] [--write-docs]``.

Every scenario uses real processes against a real Postgres: ``river worker`` subprocesses (the
``river`` console script next to this Python, app ``tests/worker_apps/faults.py``) and a
**private** Postgres cluster started with ``river.dev.start`` in a temporary directory (never the
shared ``.river`` one, and never ``$DATABASE_URL``: scenarios restart and kill the server). Each
scenario gets a fresh database on it; all traffic stays on 127.0.0.1. Each prints progress and
one line of figures; a markdown table (scenario, what happened, figures, command) comes last.

Scenarios (full scale; ``--smoke`` shrinks every one to seconds):

- ``kill9-worker``: two workers on a stream of 20 jobs/s of 0.2 s jobs; ``kill -9`` the one that
  is not the leader. Lost jobs, jobs run twice, and the time until the killed process's
  in-flight jobs were completed by the survivor (job_timeout 2 s, rescue_stuck_jobs_after 3 s,
  rescuer_interval 1 s, scheduler_interval 1 s).
- ``pg-restart-fast``, ``pg-restart-immediate``: one worker on the stream; ``pg_ctl restart -m
  fast`` / ``-m immediate``. Downtime, recovery (Postgres accepting connections -> first job
  fetched after it completed), lost, run twice, the inserting app's errors.
- ``network-freeze-30s``: the worker talks to Postgres through tests/netproxy.py's
  CuttableProxy (run here, see LinkProxy); every open connection freezes for good (half-open:
  no byte flows, no FIN/RST) and for 30 s new connections get no answer, like a pulled cable;
  then the connections attempted meanwhile go through and new ones work. When the worker
  noticed (its log, /readyz), recovery, lost.
- ``leader-kill9``, ``leader-sigterm``: two idle workers with the default leader settings
  (elect interval 5 s, TTL 15 s; smoke: 0.5 s and 2 s); kill -9 / SIGTERM the leader: time until
  ``river_leader`` names the other.
- ``hostile-notify``: a worker (``--health-addr``) on a stream of 20 jobs/s of 10 ms jobs; 10 s
  quiet, then another connection sends hostile ``pg_notify`` payloads on
  ``<schema>.river_insert``, ``river_control`` and ``river_leadership`` as fast as it can for
  10 s. Notifications sent, insert->complete latency quiet vs flood, /readyz, the log.
- ``crashing-service``: a worker whose poller always crashes (``worker_apps.faults_crashing``,
  the supervisor's default backoff; smoke: ``worker_apps.broken_poller``'s short one): time to
  exit with status 3, crash lines logged.
- ``bad-input``: args with a NUL, NaN, a lone surrogate, 2**64 and a 16 MiB string through
  insert / insert_many / insert_many_fast of AsyncClient and Client: each must raise
  river.ValidationError before any SQL (rows written: 0; a client pointed at a closed port
  raises the same error, so no connection was needed).

Options::

    --only A,B      only these scenarios (names above)
    --smoke         tiny scale (seconds); figures are not representative
    --write-docs    replace the block between <!-- faults:begin --> and <!-- faults:end --> in
                    docs/reliability.md with the table (created with a title and the markers when
                    missing). Full-scale results are also merged into bench/results/faults.json,
                    so scenarios run one at a time all end up in the table.
    --verbose       echo the workers' output
    --keep          keep the private cluster's directory (its path is printed)

Exit status 0 when every scenario ran and met its invariants (nothing lost, the expected
exit status, ...), 1 otherwise (the table says what failed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import pwd
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TESTS = ROOT / "tests"
DOCS_FILE = ROOT / "docs" / "reliability.md"
RESULTS_FILE = BENCH / "results" / "faults.json"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
TABLE_HEADER = "| scenario | what happened | figures | command |"

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TESTS))

from common import percentile  # noqa: E402  (bench/common.py, beside this script)
from netproxy import CuttableProxy  # noqa: E402
from worker_apps.faults import FaultSleep  # noqa: E402

import river  # noqa: E402
from river import dev  # noqa: E402
from river._errors import describe  # noqa: E402
from river.migrate import Migrator  # noqa: E402

RIVER_BIN = Path(sys.executable).parent / "river"
VERBOSE = False


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fmt_s(seconds: float | None, digits: int = 1) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds:.{digits}f} s"


# --------------------------------------------------------------------------------------------
# The private cluster
# --------------------------------------------------------------------------------------------


class Cluster:
    """A private Postgres (river.dev) in a temporary directory; restarted and killed at will."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="river-faults-"))
        # The server runs as an unprivileged user when we are root: let it reach the data dir
        # under root (else river.dev would put it under /var/tmp).
        self.root.chmod(0o755)
        self.server: dev.DevServer | None = None

    def start(self) -> dev.DevServer:
        self.server = dev.start(self.root)
        return self.server

    def stop(self, keep: bool = False) -> None:
        with contextlib.suppress(Exception):
            dev.stop(self.root)
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        assert self.server is not None
        return f"postgresql://postgres@127.0.0.1:{self.server.port}/{database}"

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def _pg_ctl_sync(self, *args: str) -> subprocess.CompletedProcess[str]:
        """pg_ctl ARGS -D <data dir>, as the user that owns the cluster (see river.dev)."""
        assert self.server is not None
        data_dir = self.server.data_dir
        kwargs: dict[str, Any] = {}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if os.geteuid() == 0:
            state = json.loads((self.root / "dev.json").read_text())
            entry = pwd.getpwnam(state["user"])
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            env.update(HOME=str(data_dir), USER=entry.pw_name, LOGNAME=entry.pw_name)
        return subprocess.run(
            [str(self.server.bindir / "pg_ctl"), *args, "-D", str(data_dir)],
            cwd=data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **kwargs,
        )

    async def restart(self, mode: str) -> subprocess.CompletedProcess[str]:
        assert self.server is not None
        # -l: the server's output goes to its log, not to our pipe (pg_ctl would never return).
        log_file = str(self.server.data_dir / "server.log")
        return await asyncio.to_thread(
            self._pg_ctl_sync, "restart", "-m", mode, "-w", "-t", "60", "-l", log_file
        )

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = self.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            Migrator(conn).migrate_up()
        return url


def machine_info(cluster: Cluster) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "river": river.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        info["postgres"] = str(row[0]).split()[0] if row else "?"
    return info


# --------------------------------------------------------------------------------------------
# Worker subprocesses
# --------------------------------------------------------------------------------------------

ALL_WORKERS: list[Worker] = []


class Worker:
    """``river worker APP`` in a subprocess (own session), its output lines timestamped as they
    arrive (time.time())."""

    def __init__(
        self,
        name: str,
        db_url: str,
        *,
        app: str = "worker_apps.faults:make_config",
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.name = name
        argv = [str(RIVER_BIN), "worker", app, "--app-dir", str(TESTS), *(args or [])]
        full_env = {**os.environ, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1", **(env or {})}
        for key in ("RIVER_WORKER_SUPERVISOR_PID", "RIVER_WORKER_PROCESS"):
            full_env.pop(key, None)
        self.started = time.time()
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=full_env,
            cwd=str(TESTS),
            start_new_session=True,
        )
        self.exited: float | None = None
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        ALL_WORKERS.append(self)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.time()
            text = line.rstrip("\n")
            with self._lock:
                self.lines.append((now, text))
            if VERBOSE:
                print(f"    {self.name}| {text}", flush=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def since(self, t: float) -> list[tuple[float, str]]:
        with self._lock:
            return [(at, text) for at, text in self.lines if at >= t]

    def matching(self, pattern: str) -> list[tuple[float, str]]:
        regex = re.compile(pattern)
        with self._lock:
            return [(at, text) for at, text in self.lines if regex.search(text)]

    def tail(self, n: int = 15) -> str:
        with self._lock:
            return "\n".join(text for _, text in self.lines[-n:])

    async def wait_line(self, pattern: str, timeout: float = 30.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(pattern)
            if found:
                return found[0]
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker {self.name}: no line matching {pattern!r} within {timeout:g}s "
                    f"(exit status {self.proc.poll()}); last output:\n{self.tail()}"
                )
            await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    async def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.01)
        if self.exited is None:
            self.exited = time.time()
        await asyncio.to_thread(self._thread.join, 5)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._thread.join(5)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()


async def stop_gracefully(worker: Worker, timeout: float = 40.0) -> int | None:
    """SIGTERM, wait; SIGKILL if still running. Returns the exit status (None: killed)."""
    if not worker.alive():
        return worker.proc.returncode
    worker.signal(signal.SIGTERM)
    status = await worker.wait_exit(timeout)
    if status is None:
        worker.close()
    return status


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), nan when unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(port: int, path: str, timeout: float = 3.0) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except OSError:
        return 0


# --------------------------------------------------------------------------------------------
# Database helpers (async: the harness also runs the proxy and the inserting app)
# --------------------------------------------------------------------------------------------


async def query(url: str, text: str, params: Any = None, timeout: float = 5.0) -> list[Any]:
    async def run() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=2
        ) as conn:
            cur = await conn.execute(text, params)
            return await cur.fetchall() if cur.description else []

    return await asyncio.wait_for(run(), timeout)


async def try_query(
    url: str, text: str, params: Any = None, timeout: float = 5.0
) -> list[Any] | None:
    try:
        return await query(url, text, params, timeout)
    except (psycopg.Error, OSError, TimeoutError):
        return None


async def leader(url: str) -> str | None:
    rows = await try_query(url, "SELECT leader_id FROM river_leader")
    return str(rows[0][0]) if rows else None


async def wait_leader(url: str, leader_id: str, timeout: float) -> float:
    """Wait until river_leader names ``leader_id``; return the time.time() it was seen."""
    deadline = time.monotonic() + timeout
    while True:
        if await leader(url) == leader_id:
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{leader_id} did not become leader within {timeout:g}s")
        await asyncio.sleep(0.05)


async def first_completed_after(url: str, t: float, timeout: float) -> float | None:
    """Seconds from ``t`` (time.time()) until a job *fetched* at or after ``t`` is seen
    completed (polled every 20 ms); None when none within ``timeout``."""
    since = datetime.fromtimestamp(t, UTC)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await try_query(
            url,
            "SELECT 1 FROM river_job WHERE state = 'completed' AND attempted_at >= %s LIMIT 1",
            (since,),
            timeout=2.0,
        )
        if rows:
            return time.time() - t
        await asyncio.sleep(0.02)
    return None


# --------------------------------------------------------------------------------------------
# The inserting app: a steady stream of jobs
# --------------------------------------------------------------------------------------------


class Stream:
    """Inserts one FaultSleep job every 1/rate s with an insert-only AsyncClient (each insert a
    task of its own, so a slow one does not hold back the rate; each bounded by 10 s).
    ``acked``: job id -> time.time() before its insert; ``errors``: what the app saw fail."""

    def __init__(self, url: str, rate: float, job_seconds: float) -> None:
        self.client = river.AsyncClient(url, river.Config(connect_timeout=5))
        self.rate = rate
        self.job_seconds = job_seconds
        self.acked: dict[int, float] = {}
        self.errors: list[tuple[float, str]] = []
        self.attempted = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            task = asyncio.create_task(self._one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - time.monotonic()))

    async def _one(self) -> None:
        self.attempted += 1
        at = time.time()
        try:
            result = await asyncio.wait_for(
                self.client.insert(FaultSleep(seconds=self.job_seconds)), 10.0
            )
        except Exception as exc:
            text = "timed out after 10 s" if isinstance(exc, TimeoutError) else describe(exc)
            self.errors.append((at, f"{type(exc).__name__}: {text}"))
        else:
            self.acked[result.job.id] = at

    async def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 10)

    def error_summary(self) -> str:
        if not self.errors:
            return "none"
        kinds = Counter(text.split(":", 1)[0] for _, text in self.errors)
        counts = ", ".join(f"{k} x{n}" for k, n in kinds.items())
        return f"{len(self.errors)} ({counts}; first: `{short(self.errors[0][1], 110)}`)"


async def settle(url: str, timeout: float) -> tuple[bool, dict[str, int]]:
    """Wait until every river_job row is completed; return (all completed, counts by state)."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while True:
        rows = await try_query(url, "SELECT state::text, count(*) FROM river_job GROUP BY 1")
        if rows is not None:
            counts = {str(s): int(n) for s, n in rows}
            if set(counts) <= {"completed"}:
                return True, counts
        if time.monotonic() > deadline:
            return False, counts
        await asyncio.sleep(0.25)


def read_exec_log(path: Path) -> list[tuple[str, int, int, int, float]]:
    """(event, job id, attempt, pid, time) lines of worker_apps.faults' execution log."""
    out: list[tuple[str, int, int, int, float]] = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                out.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3]), float(parts[4])))
    return out


@dataclass
class Accounting:
    inserted: int  # acknowledged inserts
    rows: int
    completed: int
    lost: int  # acknowledged but missing, or not completed at the end
    not_completed: dict[str, int]
    missing: int  # acknowledged ids without a row (durability)
    unacked_rows: int  # rows whose insert the app saw fail (committed anyway)
    attempted_twice: int  # attempt > 1
    executed_twice: int  # work() ran to its end more than once

    def text(self) -> str:
        parts = [f"lost {self.lost} of {self.inserted}"]
        if self.not_completed:
            states = ", ".join(f"{n} {s}" for s, n in sorted(self.not_completed.items()))
            parts.append(f"not completed: {states}")
        if self.missing:
            parts.append(f"{self.missing} acknowledged inserts missing")
        parts.append(
            f"run twice {self.attempted_twice} (work finished twice: {self.executed_twice})"
        )
        if self.unacked_rows:
            parts.append(
                f"{self.unacked_rows} jobs whose insert raised in the app were committed anyway "
                "(and completed)"
            )
        return "; ".join(parts)


async def account(url: str, stream: Stream, exec_log: Path) -> Accounting:
    rows = await query(
        url, "SELECT id, state::text, attempt FROM river_job WHERE kind = 'fault_sleep'"
    )
    states = {int(r[0]): str(r[1]) for r in rows}
    attempts = {int(r[0]): int(r[2]) for r in rows}
    missing = [i for i in stream.acked if i not in states]
    not_completed = Counter(s for s in states.values() if s != "completed")
    done = Counter(job for event, job, *_ in read_exec_log(exec_log) if event == "done")
    return Accounting(
        inserted=len(stream.acked),
        rows=len(states),
        completed=sum(1 for s in states.values() if s == "completed"),
        lost=len(missing) + sum(not_completed.values()),
        not_completed=dict(not_completed),
        missing=len(missing),
        unacked_rows=sum(1 for i in states if i not in stream.acked),
        attempted_twice=sum(1 for a in attempts.values() if a > 1),
        executed_twice=sum(1 for n in done.values() if n > 1),
    )


#: A worker log line at WARNING or above, in the text format (``<UTC time> LEVEL name: ...``).
_WARNING_LINE = re.compile(r"(?:\S+Z )?(WARNING|ERROR|CRITICAL)\b")


def warnings_after(worker: Worker, t: float) -> list[tuple[float, str]]:
    return [
        (at, text)
        for at, text in worker.since(t)
        if _WARNING_LINE.match(text) or "Traceback" in text
    ]


def short(text: str, limit: int = 140) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    cluster: Cluster
    url: str
    db: str
    smoke: bool
    workdir: Path

    def exec_log(self) -> Path:
        return self.workdir / "exec.log"

    def env(self, **extra: str) -> dict[str, str]:
        return {"FAULTS_EXEC_LOG": str(self.exec_log()), **extra}


@dataclass
class Outcome:
    name: str
    happened: str
    figures: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    smoke: bool = False
    date: str = ""
    command: str = ""


async def running_by(url: str, client_id: str) -> int:
    rows = await try_query(
        url,
        "SELECT count(*) FROM river_job WHERE state = 'running'"
        " AND attempted_by[cardinality(attempted_by)] = %s",
        (client_id,),
    )
    return int(rows[0][0]) if rows else -1


RESCUE_SETTINGS = {
    "FAULTS_JOB_TIMEOUT": "2",
    "FAULTS_RESCUE_AFTER": "3",
    "FAULTS_RESCUER_INTERVAL": "1",
    "FAULTS_SCHEDULER_INTERVAL": "1",
}


async def scenario_kill9_worker(ctx: Ctx) -> Outcome:
    rate, job_s = 20.0, 0.2
    warm, after = (2.0, 2.0) if ctx.smoke else (5.0, 5.0)
    # max_workers 3 each (about 4 jobs run at once): the first worker to hear of an insert
    # fetches it, so with room to spare one of them would take nearly every job.
    settings = {**RESCUE_SETTINGS, "FAULTS_MAX_WORKERS": "3"}
    a = Worker("a", ctx.url, env=ctx.env(FAULTS_CLIENT_ID="faults-a", **settings))
    await a.wait_line("worker started")
    await wait_leader(ctx.url, "faults-a", 30)
    b = Worker("b", ctx.url, env=ctx.env(FAULTS_CLIENT_ID="faults-b", **settings))
    await b.wait_line("worker started")
    log(f"  two workers up (a leads); streaming {rate:g} jobs/s of {job_s:g} s for {warm:g} s")
    stream = Stream(ctx.url, rate, job_s)
    stream.start()
    await asyncio.sleep(warm)
    # Kill b while it has jobs in flight (at most 10 s more).
    wait_until = time.monotonic() + 10
    while time.monotonic() < wait_until:
        if await running_by(ctx.url, "faults-b") >= 2:
            break
        await asyncio.sleep(0.02)
    share = await query(
        ctx.url,
        "SELECT count(*) FILTER (WHERE 'faults-b' = ANY(attempted_by)), count(*)"
        " FROM river_job WHERE state <> 'available'",
    )
    b_share, total = int(share[0][0]), int(share[0][1])
    b.signal(signal.SIGKILL)
    t_kill = time.time()
    await b.wait_exit(10)
    inflight = [
        int(r[0])
        for r in await query(
            ctx.url,
            "SELECT id FROM river_job WHERE state = 'running'"
            " AND attempted_by[cardinality(attempted_by)] = 'faults-b'",
        )
    ]
    finished_unwritten = {
        job for ev, job, _, pid, _ in read_exec_log(ctx.exec_log()) if ev == "done" and pid == b.pid
    } & set(inflight)
    log(
        f"  kill -9 b (pid {b.pid}): {len(inflight)} of its jobs left running "
        f"({len(finished_unwritten)} had finished, outcome not yet written)"
    )
    stop_at = time.monotonic() + after
    t_recovered: float | None = None
    deadline = time.monotonic() + (20 if ctx.smoke else 30)
    while time.monotonic() < deadline:
        if stream._runner is not None and time.monotonic() >= stop_at and not stream._stop.is_set():
            stream._stop.set()
        rows = await try_query(
            ctx.url,
            "SELECT count(*) FROM river_job WHERE id = ANY(%s) AND state = 'completed'",
            (inflight,),
        )
        if t_recovered is None and rows is not None and int(rows[0][0]) == len(inflight):
            t_recovered = time.time() - t_kill
        if t_recovered is not None and time.monotonic() >= stop_at:
            break
        await asyncio.sleep(0.1)
    await stream.stop()
    await settle(ctx.url, 30)
    acc = await account(ctx.url, stream, ctx.exec_log())
    a_status = await stop_gracefully(a)
    problems = []
    if acc.lost:
        problems.append(f"{acc.lost} jobs lost")
    if not inflight:
        problems.append("the killed worker had no job in flight (nothing measured)")
    if t_recovered is None:
        problems.append("the killed worker's jobs were not all completed within the deadline")
    if a_status != 0:
        problems.append(f"the surviving worker exited with status {a_status}")
    figures = (
        f"{len(inflight)} jobs in flight in the killed process ({len(finished_unwritten)} already "
        f"finished, outcome unwritten; it had taken {b_share} of the {total} jobs fetched so "
        f"far); all completed by the survivor {fmt_s(t_recovered)} after the kill; {acc.text()}"
    )
    return Outcome(
        "kill9-worker",
        f"2 workers, {rate:g} jobs/s of {job_s:g} s jobs; `kill -9` of the non-leader. "
        "Settings: job_timeout 2 s, rescue_stuck_jobs_after 3 s, rescuer_interval 1 s, "
        "scheduler_interval 1 s (defaults: 60 s, 1 h, 30 s, 5 s).",
        figures,
        ok=not problems,
        problems=problems,
        data={"inflight": len(inflight), "recovered_s": t_recovered, **acc.__dict__},
    )


async def probe_up(url: str, t0: float, timeout: float) -> tuple[float | None, float | None]:
    """From t0, poll a fresh connection every 10 ms: (first failure, first success after a
    failure), as time.time()."""
    down: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = await try_query(url, "SELECT 1", timeout=1.0) is not None
        now = time.time()
        if not ok and down is None:
            down = now
        if ok and down is not None:
            return down, now
        await asyncio.sleep(0.01)
    return down, None


async def scenario_pg_restart(ctx: Ctx, mode: str) -> Outcome:
    name = f"pg-restart-{mode}"
    rate, job_s = 20.0, 0.2
    warm, after = (2.0, 2.0) if ctx.smoke else (5.0, 5.0)
    w = Worker("w", ctx.url, env=ctx.env(FAULTS_CLIENT_ID="faults-w"))
    await w.wait_line("worker started")
    stream = Stream(ctx.url, rate, job_s)
    stream.start()
    log(f"  worker up; streaming {rate:g} jobs/s of {job_s:g} s for {warm:g} s")
    await asyncio.sleep(warm)
    t0 = time.time()
    probe = asyncio.create_task(probe_up(ctx.cluster.url("postgres"), t0, 90))
    result = await ctx.cluster.restart(mode)
    t_ctl = time.time()
    _down, up = await probe
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctl restart failed: {result.stderr or result.stdout}")
    if up is None:
        up = t_ctl
    downtime = up - t0
    log(f"  pg_ctl restart -m {mode}: accepting connections again after {downtime:.2f} s")
    recovery = await first_completed_after(ctx.url, up, 60)
    log(f"  first job fetched after the restart completed {fmt_s(recovery, 2)} later")
    await asyncio.sleep(after)
    await stream.stop()
    await settle(ctx.url, 15 if ctx.smoke else 45)
    acc = await account(ctx.url, stream, ctx.exec_log())
    warns = warnings_after(w, t0)
    alive = w.alive()
    status = await stop_gracefully(w)
    problems = []
    if acc.lost:
        problems.append(f"{acc.lost} jobs lost ({acc.text()})")
    if recovery is None:
        problems.append("no job completed within 60 s of the restart")
    if not alive:
        problems.append(f"the worker exited during the scenario (status {w.proc.returncode})")
    elif status != 0:
        problems.append(f"the worker's SIGTERM stop exited with status {status}")
    first_warn = short(warns[0][1]) if warns else "none"
    figures = (
        f"downtime {downtime:.2f} s (pg_ctl to accepting connections); recovery "
        f"{fmt_s(recovery, 2)} (accepting -> first job fetched after it completed); "
        f"{acc.text()}; insert errors in the app: {stream.error_summary()}; worker log: "
        f"{len(warns)} WARNING/ERROR lines, first: `{first_warn}`"
    )
    return Outcome(
        name,
        f"1 worker, {rate:g} jobs/s of {job_s:g} s jobs; `pg_ctl restart -m {mode}` of the "
        "server (default client settings).",
        figures,
        ok=not problems,
        problems=problems,
        data={
            "downtime_s": downtime,
            "recovery_s": recovery,
            "insert_errors": len(stream.errors),
            "warnings": len(warns),
            **acc.__dict__,
        },
    )


class LinkProxy(CuttableProxy):
    """CuttableProxy plus a pulled cable. :meth:`pull`: every open connection freezes (no byte
    flows either way, nothing is closed) and new connections are accepted but get no answer.
    :meth:`plug`: the connections attempted meanwhile go through (as a TCP connect does when a
    SYN retransmission finally gets an answer) and new ones work; the frozen ones stay frozen
    for good (the NAT or load balancer in between forgot them). The kernel ACKs the bytes sent
    to the proxy, so only the client's own timeouts can notice a frozen connection (on a real
    network the client's kernel gives up on unacknowledged data after tcp_retries2, ~15 min)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.dead = False
        self._held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __aenter__(self) -> LinkProxy:
        await super().__aenter__()
        return self

    def pull(self) -> None:
        self.freeze()
        self.dead = True

    def plug(self) -> None:
        self.dead = False
        held, self._held = self._held, []
        for reader, writer in held:
            task = asyncio.ensure_future(super()._handle(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dead:
            self._writers.add(writer)  # closed with the proxy
            self._held.append((reader, writer))
            return
        await super()._handle(reader, writer)


async def watch_readyz(port: int, t0: float, until: Callable[[], bool]) -> list[tuple[float, int]]:
    """GET /readyz every 0.5 s until ``until()``: (seconds since t0, status) pairs."""
    out: list[tuple[float, int]] = []
    while not until():
        code = await asyncio.to_thread(http_status, port, "/readyz", 2.0)
        out.append((time.time() - t0, code))
        await asyncio.sleep(0.5)
    return out


async def scenario_network_freeze(ctx: Ctx) -> Outcome:
    freeze_s = 3.0 if ctx.smoke else 30.0
    rate, job_s = 20.0, 0.2
    warm, after = (2.0, 2.0) if ctx.smoke else (5.0, 10.0)
    recovery_limit = 10.0 if ctx.smoke else 90.0
    async with LinkProxy("127.0.0.1", ctx.cluster.port) as proxy:
        worker_url = (
            f"postgresql://postgres@127.0.0.1:{proxy.port}/{ctx.db}"
            "?application_name=faults-worker&sslmode=disable"
        )
        health = free_port()
        w = Worker(
            "w",
            worker_url,
            env=ctx.env(FAULTS_CLIENT_ID="faults-w"),
            args=["--health-addr", f"127.0.0.1:{health}"],
        )
        await w.wait_line("worker started")
        stream = Stream(ctx.url, rate, job_s)  # the app inserts directly, not via the link
        stream.start()
        log(f"  worker up behind the proxy; streaming {rate:g} jobs/s for {warm:g} s")
        await asyncio.sleep(warm)
        proxy.pull()
        t_freeze = time.time()
        log(f"  link pulled: every connection frozen, new ones unanswered, for {freeze_s:g} s")
        end = time.monotonic() + freeze_s
        readyz = await watch_readyz(health, t_freeze, lambda: time.monotonic() >= end)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        proxy.plug()
        t_mend = time.time()
        log("  link back: new connections work, the frozen ones stay frozen")
        done = asyncio.Event()
        readyz_task = asyncio.create_task(watch_readyz(health, t_mend, done.is_set))
        recovery = await first_completed_after(ctx.url, t_mend, recovery_limit)
        log(f"  first job fetched after the link came back completed: {fmt_s(recovery, 2)} later")
        if recovery is not None:
            await asyncio.sleep(after)
        done.set()
        readyz_after = await readyz_task
        await stream.stop()
        held = await running_by(ctx.url, "faults-w")
        if recovery is not None:
            await settle(ctx.url, 10 if ctx.smoke else 60)
        acc = await account(ctx.url, stream, ctx.exec_log())
        lines = w.since(t_freeze)
        noticed = lines[0] if lines else None
        first_503 = next((dt for dt, code in readyz if code != 200), None)
        ready_again = next((dt for dt, code in readyz_after if code == 200), None)
        alive = w.alive()
        warns = warnings_after(w, t_freeze)
        t_term = time.time()
        status = await stop_gracefully(w, 40.0)
        stop_text = (
            f"SIGTERM stopped it in {time.time() - t_term:.1f} s (status {status})"
            if status is not None
            else "SIGTERM did not stop it within 40 s (shutdown timeout 30 s): SIGKILLed"
        )
    log(f"  {stop_text}")
    rescued_text = ""
    if acc.lost:
        # What a restart brings back: a fresh worker whose rescuer is quick (the default would
        # wait rescue_stuck_jobs_after = 1 h).
        log(f"  {acc.lost} jobs not completed; starting a fresh worker with a quick rescuer")
        fresh = Worker(
            "fresh", ctx.url, env=ctx.env(FAULTS_CLIENT_ID="faults-fresh", **RESCUE_SETTINGS)
        )
        await fresh.wait_line("worker started")
        t_fresh = time.time()
        await settle(ctx.url, 20 if ctx.smoke else 60)
        after_restart = await account(ctx.url, stream, ctx.exec_log())
        await stop_gracefully(fresh)
        rescued_text = (
            f"; after a SIGKILL and a fresh worker with the quick rescuer of kill9-worker: "
            f"{after_restart.text()} ({time.time() - t_fresh:.1f} s)"
        )
    problems = []
    if acc.lost:
        problems.append(f"{acc.lost} jobs not completed (stuck running)")
    if recovery is None:
        problems.append(
            f"no job fetched after the link came back completed within {recovery_limit:g} s"
        )
    if not alive:
        problems.append(f"the worker exited during the scenario (status {w.proc.returncode})")
    elif status != 0:
        problems.append(f"SIGTERM did not stop the worker cleanly ({stop_text})")
    if noticed is None:
        problems.append("the worker logged nothing about the frozen link")
    notice_text = f"{noticed[0] - t_freeze:.1f} s: `{short(noticed[1])}`" if noticed else "never"
    figures = (
        f"first worker log line after the freeze at {notice_text}; /readyz 503 after "
        f"{fmt_s(first_503)} ({sum(1 for _, c in readyz if c != 200)}/{len(readyz)} probes during "
        f"the freeze not 200), 200 again {fmt_s(ready_again)} after the link came back; recovery "
        f"{fmt_s(recovery, 2)} (link back -> first job fetched after it completed; waited "
        f"{recovery_limit:g} s); jobs left running by the worker: {held}; {acc.text()}; "
        f"{len(warns)} WARNING/ERROR lines; {stop_text}{rescued_text}"
    )
    return Outcome(
        "network-freeze-30s",
        f"1 worker connected through a TCP proxy, {rate:g} jobs/s of {job_s:g} s jobs inserted "
        f"directly; every open connection frozen for good (no FIN/RST), new connections "
        f"unanswered for {freeze_s:g} s, then working (default client settings).",
        figures,
        ok=not problems,
        problems=problems,
        data={
            "noticed_s": noticed[0] - t_freeze if noticed else None,
            "first_503_s": first_503,
            "ready_again_s": ready_again,
            "recovery_s": recovery,
            "held_running": held,
            "warnings": [text for _, text in warns[:40]],
            **acc.__dict__,
        },
    )


async def scenario_leader(ctx: Ctx, how: str) -> Outcome:
    name = f"leader-{how}"
    env: dict[str, str] = {}
    if ctx.smoke:
        env = {"FAULTS_LEADER_TTL": "2", "FAULTS_LEADER_INTERVAL": "0.5"}
    ttl = float(env.get("FAULTS_LEADER_TTL", 15))
    interval = float(env.get("FAULTS_LEADER_INTERVAL", 5))
    a = Worker("a", ctx.url, env=ctx.env(FAULTS_CLIENT_ID="faults-a", **env))
    await a.wait_line("worker started")
    await wait_leader(ctx.url, "faults-a", 30)
    b = Worker("b", ctx.url, env=ctx.env(FAULTS_CLIENT_ID="faults-b", **env))
    await b.wait_line("worker started")
    await asyncio.sleep(0.5 if ctx.smoke else 2.0)
    rows = await query(
        ctx.url, "SELECT extract(epoch FROM expires_at - now())::float FROM river_leader"
    )
    lease_left = float(rows[0][0]) if rows else float("nan")
    sig = signal.SIGKILL if how == "kill9" else signal.SIGTERM
    a.signal(sig)
    t0 = time.time()
    what = "kill -9" if how == "kill9" else "SIGTERM"
    log(f"  {what} the leader a; its lease had {lease_left:.1f} s left")
    took: float | None
    try:
        took = await wait_leader(ctx.url, "faults-b", ttl + 2 * interval + 15) - t0
    except RuntimeError:
        took = None
    a_status = await a.wait_exit(40)
    a_exit = (a.exited - t0) if a.exited else None
    gained = b.matching("gained leadership")
    log_seen = gained[0][0] - t0 if gained else None
    b_status = await stop_gracefully(b)
    problems = []
    if took is None:
        problems.append("b did not become leader")
    expected_status = -signal.SIGKILL if how == "kill9" else 0
    if a_status != expected_status:
        problems.append(f"a exited with status {a_status}")
    if b_status != 0:
        problems.append(f"b's SIGTERM stop exited with status {b_status}")
    if how == "kill9":
        happened = (
            f"2 idle workers (elect interval {interval:g} s, TTL {ttl:g} s); `kill -9` of the "
            "leader: its row stays until the lease expires."
        )
        figures = (
            f"b leads {fmt_s(took)} after the kill (lease left at the kill {lease_left:.1f} s; "
            f"worst case TTL + interval + jitter = {ttl + interval + min(1.0, interval / 5):g} s); "
            f"`gained leadership` logged at {fmt_s(log_seen)}"
        )
    else:
        happened = (
            f"2 idle workers (elect interval {interval:g} s, TTL {ttl:g} s); SIGTERM to the "
            "leader: it resigns (deletes its row, notifies) as it stops."
        )
        figures = (
            f"b leads {fmt_s(took, 2)} after the signal; the old leader exited (status "
            f"{a_status}) after {fmt_s(a_exit, 2)}; `gained leadership` logged at "
            f"{fmt_s(log_seen, 2)}"
        )
    return Outcome(
        name,
        happened,
        figures,
        ok=not problems,
        problems=problems,
        data={"took_s": took, "lease_left_s": lease_left, "a_exit_s": a_exit},
    )


def hostile_statement() -> str:
    """One statement sending, for each g in [%(lo)s, %(hi)s], 20 hostile notifications (each
    unique, since Postgres folds identical ones within a transaction)."""
    deep = "repeat('[', 3000) || g || repeat(']', 3000)"
    payloads = {
        "river_insert": [
            "'{\"queue\":' || " + deep + " || '}'",
            "repeat('{\"a\":', 1000) || g || repeat('}', 1000)",
            "'not json ' || g",
            "rpad('{\"queue\":\"' || g, 7997, 'x') || '\"}'",  # 7999 bytes, valid JSON
            "rpad('x' || g, 7999, 'y')",  # 7999 bytes of garbage
            "'{\"queue\":' || g || '}'",
            "'{\"queue\":\"\\ud800' || g || '\"}'",
            "'[' || g || ']'",
        ],
        "river_control": [
            '\'{"action":"pause","queue":\' || ' + deep + " || '}'",
            '\'{"action":"cancel","job_id":\' || (9223372036854775807::numeric + g) || \'}\'',
            '\'{"action":"cancel","job_id":-\' || g || \'}\'',
            '\'{"action":"cancel","job_id":"\' || g || \'"}\'',
            '\'{"action":"cancel","job_id":\' || g || \'.5}\'',
            # forged valid ids: recent jobs (each one costs a job_get if it runs here)
            '\'{"action":"cancel","job_id":\' || (mx - g % 8) || \'}\'',
            "rpad('{\"action\":\"pause\"' || g, 7999, ' ')",
        ],
        "river_leadership": [
            '\'{"action":"resigned","leader_id":\' || ' + deep + " || '}'",
            '\'{"action":"resigned","leader_id":\' || g || \'}\'',
            '\'{"action":"abdicate","n":\' || g || \'}\'',
            "rpad('leader ' || g, 7999, '!')",
            '\'{"action":"resigned","leader_id":"forged-\' || g || \'"}\'',
        ],
    }
    values = ", ".join(
        f"('{topic}', {expr})" for topic, exprs in payloads.items() for expr in exprs
    )
    # A plain string: the payloads' braces would be placeholders for sql.SQL.format.
    return (
        "SELECT count(pg_notify(%(schema)s || '.' || t.topic, t.payload))"
        " FROM (SELECT coalesce(max(id), 0) AS mx FROM river_job) AS m,"
        " generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g,"
        " LATERAL (VALUES " + values.replace("%", "%%") + ") AS t(topic, payload)"
    )


def flood(url: str, seconds: float) -> tuple[int, int, float]:
    """Send hostile notifications for ``seconds``; return (sent, statements, max queue usage)."""
    sent = statements = 0
    usage = 0.0
    batch = 10
    g = 1
    with psycopg.connect(url, autocommit=True) as conn:
        stmt = hostile_statement()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            params = {"schema": "public", "lo": g, "hi": g + batch - 1}
            row = conn.execute(stmt, params).fetchone()
            sent += int(row[0]) if row else 0
            statements += 1
            g += batch
            if statements % 20 == 0:
                u = conn.execute("SELECT pg_notification_queue_usage()").fetchone()
                usage = max(usage, float(u[0]) if u else 0.0)
    return sent, statements, usage


async def latencies(url: str, t0: float, t1: float) -> list[float]:
    rows = await query(
        url,
        "SELECT extract(epoch FROM finalized_at - created_at)::float FROM river_job"
        " WHERE state = 'completed' AND created_at >= %s AND created_at < %s",
        (datetime.fromtimestamp(t0, UTC), datetime.fromtimestamp(t1, UTC)),
    )
    return [float(r[0]) * 1000 for r in rows]


async def scenario_hostile_notify(ctx: Ctx) -> Outcome:
    rate, job_s = 20.0, 0.01
    quiet_s, flood_s, after_s = (1.5, 1.5, 1.0) if ctx.smoke else (10.0, 10.0, 3.0)
    health = free_port()
    w = Worker(
        "w",
        ctx.url,
        env=ctx.env(FAULTS_CLIENT_ID="faults-w"),
        args=["--health-addr", f"127.0.0.1:{health}"],
    )
    await w.wait_line("worker started")
    stream = Stream(ctx.url, rate, job_s)
    stream.start()
    await asyncio.sleep(1.0)  # warm up
    t_q0 = time.time()
    cpu_q0 = cpu_seconds(w.pid)
    log(f"  quiet baseline: {rate:g} jobs/s of {job_s * 1000:g} ms for {quiet_s:g} s")
    await asyncio.sleep(quiet_s)
    t_f0 = time.time()
    cpu_f0 = cpu_seconds(w.pid)
    log(f"  flood: hostile pg_notify on the 3 channels for {flood_s:g} s")
    flooding = asyncio.create_task(asyncio.to_thread(flood, ctx.url, flood_s))
    readyz: list[int] = []
    while not flooding.done():
        readyz.append(await asyncio.to_thread(http_status, health, "/readyz", 3.0))
        await asyncio.wait([flooding], timeout=0.5)
    sent, statements, usage = await flooding
    t_f1 = time.time()
    cpu_f1 = cpu_seconds(w.pid)
    cpu_quiet = (cpu_f0 - cpu_q0) / (t_f0 - t_q0)
    cpu_flood = (cpu_f1 - cpu_f0) / (t_f1 - t_f0)
    drained: float | None = None
    while time.time() - t_f1 < after_s + 10:
        rows = await try_query(ctx.url, "SELECT pg_notification_queue_usage()")
        if rows is not None and float(rows[0][0]) == 0.0:
            drained = time.time() - t_f1
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, t_f1 + after_s - time.time()))
    t_a1 = time.time()
    readyz_after = await asyncio.to_thread(http_status, health, "/readyz", 3.0)
    await stream.stop()
    await settle(ctx.url, 30)
    acc = await account(ctx.url, stream, ctx.exec_log())
    quiet = await latencies(ctx.url, t_q0, t_f0)
    during = await latencies(ctx.url, t_f0, t_f1)
    after = await latencies(ctx.url, t_f1, t_a1)
    logged = w.since(t_f0)
    about = [text for _, text in logged if re.search(r"notif|payload|leader|listen", text, re.I)]
    alive = w.alive()
    status = await stop_gracefully(w)
    problems = []
    if not alive:
        problems.append(f"the worker died during the flood (status {w.proc.returncode})")
    elif status != 0:
        problems.append(f"the worker's SIGTERM stop exited with status {status}")
    if any(s != 200 for s in [*readyz, readyz_after]):
        problems.append(f"/readyz not 200 during the flood: {Counter(readyz)}")
    if acc.lost:
        problems.append(f"{acc.lost} jobs lost")
    if logged:
        problems.append(
            f"{len(logged)} lines logged during/after the flood, e.g. `{short(logged[0][1])}`"
        )

    def lat(values: list[float]) -> str:
        return (
            f"{len(values)} jobs, p50 {percentile(values, 50):.0f} ms, "
            f"p99 {percentile(values, 99):.0f} ms"
        )

    figures = (
        f"{sent:,} notifications sent in {flood_s:g} s ({sent / flood_s:,.0f}/s, "
        f"{statements} statements; Postgres notify queue peak {usage:.2%}, empty again "
        f"{fmt_s(drained, 2)} after the flood); worker CPU {cpu_quiet:.0%} of a core quiet, "
        f"{cpu_flood:.0%} during the flood; insert->complete: "
        f"quiet {lat(quiet)}; flood {lat(during)}; {after_s:g} s after {lat(after)}; worker alive: "
        f"{'yes' if alive else 'NO'}; /readyz during the flood: "
        f"{', '.join(f'{k} x{n}' for k, n in Counter(readyz).items())}; worker log lines from the "
        f"flood on (default levels): {len(logged)}"
        + (f" ({len(about)} about notifications/leadership)" if logged else "")
        + f"; {acc.text()}"
    )
    return Outcome(
        "hostile-notify",
        f"1 worker (`--health-addr`), {rate:g} jobs/s of {job_s * 1000:g} ms jobs; after "
        f"{quiet_s:g} s quiet, another connection floods `public.river_insert`/`river_control`/"
        f"`river_leadership` for {flood_s:g} s with 3000-deep nesting, non-JSON, 7999-byte "
        "payloads, wrong types, out-of-range and forged job ids, forged resignations.",
        figures,
        ok=not problems,
        problems=problems,
        data={
            "sent": sent,
            "queue_drained_s": drained,
            "cpu_quiet": cpu_quiet,
            "cpu_flood": cpu_flood,
            "quiet_p50_ms": percentile(quiet, 50),
            "quiet_p99_ms": percentile(quiet, 99),
            "flood_p50_ms": percentile(during, 50),
            "flood_p99_ms": percentile(during, 99),
            "after_p99_ms": percentile(after, 99),
            "logged": len(logged),
        },
    )


async def scenario_crashing_service(ctx: Ctx) -> Outcome:
    app = (
        "worker_apps.broken_poller:make_config"
        if ctx.smoke
        else "worker_apps.faults_crashing:make_config"
    )
    t0 = time.time()
    w = Worker("w", ctx.url, app=app, env=ctx.env())
    status = await w.wait_exit(60)
    if status is None:
        w.close()
    t_exit = (w.exited or time.time()) - t0
    started = w.matching("worker started")
    crashes = w.matching(r"service \S+ crashed")
    failed = w.matching("services failed")
    tracebacks = len(w.matching(r"^Traceback"))
    problems = []
    if status != 3:
        problems.append(f"exit status {status}, expected 3")
    t_started = started[0][0] - t0 if started else None
    first_crash = crashes[0][0] - t0 if crashes else None
    figures = (
        f"exit status {status} {t_exit:.1f} s after the start ({fmt_s(t_started)} to `worker "
        f"started`, first crash at {fmt_s(first_crash)}); {len(crashes)} crash lines (ERROR, each "
        f"with its traceback: {tracebacks} tracebacks); last line: "
        f"`{short(failed[-1][1]) if failed else short(w.tail(1))}`"
    )
    backoff = "0.05 s backoff (smoke)" if ctx.smoke else "default backoff 0.5 s doubling"
    return Outcome(
        "crashing-service",
        f"a worker whose poller raises at every run ({backoff}; failed after 5 crashes in a "
        "row): `river worker` must exit with status 3.",
        figures,
        ok=not problems,
        problems=problems,
        data={"exit_s": t_exit, "status": status, "crashes": len(crashes)},
    )


class BadArgs(river.JobArgs):
    kind: ClassVar[str] = "fault_bad"
    value: Any = None


def bad_values() -> dict[str, Any]:
    from river._validate import DEFAULT_MAX_ENCODED_SIZE

    return {
        "NUL": "a\x00b",
        "NaN": float("nan"),
        "lone surrogate": "a\ud800b",
        "2**64": 2**64,
        "16 MiB string": "x" * DEFAULT_MAX_ENCODED_SIZE,
    }


async def scenario_bad_input(ctx: Ctx) -> Outcome:
    values = bad_values()
    results: dict[tuple[str, str], tuple[str, float]] = {}  # (value, path) -> (error, µs)
    dead_port = free_port()  # nothing listens there
    dead_url = f"postgresql://postgres@127.0.0.1:{dead_port}/nothing"
    aclient = river.AsyncClient(ctx.url, river.Config(connect_timeout=2))
    adead = river.AsyncClient(dead_url, river.Config(connect_timeout=2))
    sclient = river.Client(ctx.url, river.Config(connect_timeout=2))
    sdead = river.Client(dead_url, river.Config(connect_timeout=2))
    await aclient.insert(FaultSleep(seconds=0))  # opens the pool: rejections then time no connect
    await query(ctx.url, "DELETE FROM river_job")
    sclient.insert(FaultSleep(seconds=0))
    await query(ctx.url, "DELETE FROM river_job")
    dead_ok: dict[str, bool] = {}

    def paths(client: Any) -> dict[str, Callable[[Any], Any]]:
        return {
            "insert": lambda a: client.insert(a),
            "insert_many": lambda a: client.insert_many([a]),
            "insert_many_fast": lambda a: client.insert_many_fast([a]),
        }

    async def attempt(fn: Callable[[Any], Any], args: Any, is_async: bool) -> str:
        try:
            result = fn(args)
            if is_async:
                await result
        except river.ValidationError:
            return "ValidationError"
        except Exception as exc:
            return f"{type(exc).__name__}: {short(describe(exc), 80)}"
        return "accepted"

    for label, value in values.items():
        args = BadArgs(value=value)
        reps = 3 if "MiB" in label else 200
        for kind, client, dead, is_async in (
            ("AsyncClient", aclient, adead, True),
            ("Client", sclient, sdead, False),
        ):
            for method, fn in paths(client).items():
                error = await attempt(fn, args, is_async)
                times = []
                if error == "ValidationError":
                    for _ in range(reps):
                        t = time.perf_counter()
                        await attempt(fn, args, is_async)
                        times.append((time.perf_counter() - t) * 1e6)
                results[(label, f"{kind}.{method}")] = (
                    error,
                    statistics.median(times) if times else float("nan"),
                )
                dead_error = await attempt(paths(dead)[method], args, is_async)
                dead_ok[f"{label} {kind}.{method}"] = dead_error == "ValidationError"
    await aclient.close()
    await adead.close()
    sclient.close()
    sdead.close()
    rows = int((await query(ctx.url, "SELECT count(*) FROM river_job"))[0][0])
    problems = []
    not_validation = {k: v[0] for k, v in results.items() if v[0] != "ValidationError"}
    for (label, path), error in not_validation.items():
        problems.append(f"{label} via {path}: {error}")
    if rows:
        problems.append(f"{rows} rows written")
    needs_connection = [k for k, ok in dead_ok.items() if not ok]
    if needs_connection:
        problems.append(
            f"{len(needs_connection)} rejections needed a connection (client on a closed port "
            f"did not raise ValidationError), e.g. {needs_connection[0]}"
        )
    per_value = []
    for label in values:
        times = [
            us for (lab, _), (err, us) in results.items() if lab == label and not math.isnan(us)
        ]
        if times:
            lo, hi = min(times), max(times)
            shown = f"{lo / 1000:.1f}-{hi / 1000:.1f} ms" if hi >= 1000 else f"{lo:.0f}-{hi:.0f} µs"
        else:
            shown = "not rejected"
        per_value.append(f"{label} {shown}")
    total = len(results)
    good = total - len(not_validation)
    figures = (
        f"{good}/{total} raised river.ValidationError; time to reject (median per path, range "
        f"over the 6 paths): {', '.join(per_value)}; rows written: {rows}; "
        f"{len(dead_ok) - len(needs_connection)}/{len(dead_ok)} also raised it with the "
        "database unreachable (no connection needed)"
    )
    return Outcome(
        "bad-input",
        "args holding a NUL, NaN, a lone surrogate, 2**64 or a 16 MiB string, through insert, "
        "insert_many and insert_many_fast of AsyncClient and Client.",
        figures,
        ok=not problems,
        problems=problems,
        data={
            "results": {f"{k[0]} {k[1]}": v for k, v in results.items()},
            "rows": rows,
        },
    )


SCENARIOS: dict[str, Callable[[Ctx], Awaitable[Outcome]]] = {
    "kill9-worker": scenario_kill9_worker,
    "pg-restart-fast": lambda ctx: scenario_pg_restart(ctx, "fast"),
    "pg-restart-immediate": lambda ctx: scenario_pg_restart(ctx, "immediate"),
    "network-freeze-30s": scenario_network_freeze,
    "leader-kill9": lambda ctx: scenario_leader(ctx, "kill9"),
    "leader-sigterm": lambda ctx: scenario_leader(ctx, "sigterm"),
    "hostile-notify": scenario_hostile_notify,
    "crashing-service": scenario_crashing_service,
    "bad-input": scenario_bad_input,
}
#: Bound of each scenario's run (full scale), seconds.
BUDGET = {"network-freeze-30s": 400.0, "leader-kill9": 180.0}
SMOKE_BUDGET = {"network-freeze-30s": 120.0}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def caption(info: dict[str, Any], smoke: bool) -> str:
    cpu = f" ({info['cpu']})" if info.get("cpu") else ""
    text = (
        f"Measured {info['date']} on {info['cores']} cores{cpu}, PostgreSQL {info['postgres']} "
        f"(a private cluster of river.dev, fsync on), Python {info['python']}, river-queue "
        f"{info['river']}; workers are `river worker` processes, all on the same host."
    )
    if smoke:
        text += " **--smoke run: tiny scale, figures not representative.**"
    return f"*{text}*"


def render(outcomes: list[Outcome], info: dict[str, Any], smoke: bool) -> str:
    out = [caption(info, smoke), "", TABLE_HEADER, "|---|---|---|---|"]
    for o in outcomes:
        figures = o.figures
        if not o.ok:
            figures = "**NOT OK: " + "; ".join(o.problems) + ".** " + figures
        date = f" ({o.date})" if o.date and o.date != info["date"] else ""
        out.append(
            f"| `{o.name}`{date} | {o.happened.replace('|', '/')} | {figures} | `{o.command}` |"
        )
    return "\n".join(out) + "\n"


def write_docs(table: str) -> None:
    if not DOCS_FILE.exists():
        DOCS_FILE.write_text(f"# Reliability\n\n{BEGIN}\n{END}\n")
    text = DOCS_FILE.read_text()
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOCS_FILE.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")
    log(f"wrote the table into {DOCS_FILE.relative_to(ROOT)}")


def saved_scenarios() -> set[str]:
    """The scenarios with full-scale results in RESULTS_FILE (none when it is missing)."""
    with contextlib.suppress(OSError, ValueError):
        return set(json.loads(RESULTS_FILE.read_text()).get("outcomes", {}))
    return set()


def merge_results(
    outcomes: list[Outcome], info: dict[str, Any]
) -> tuple[list[Outcome], dict[str, Any]]:
    """Full-scale outcomes merged with those saved by earlier runs (one row per scenario, in
    the scenarios' order); saves the merge."""
    saved: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(RESULTS_FILE.read_text())
    rows = dict(saved.get("outcomes", {}))
    for o in outcomes:
        rows[o.name] = o.__dict__
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps({"info": info, "outcomes": rows}, indent=1, default=str))
    merged = [Outcome(**rows[name]) for name in SCENARIOS if name in rows]
    return merged, info


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


async def run_all(opts: argparse.Namespace, names: list[str]) -> int:
    cluster = Cluster()
    log(f"private Postgres in {cluster.root} (stopped and removed at the end)")
    outcomes: list[Outcome] = []
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        cluster.start()
        info = machine_info(cluster)
        log(
            f"PostgreSQL {info['postgres']} on port {cluster.port}; {info['cores']} cores; "
            f"{'smoke' if opts.smoke else 'full'} scale"
        )
        for name in names:
            db = "faults_" + name.replace("-", "_")
            url = cluster.url(db)
            log(f"== {name}")
            workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cluster.root))
            command = shlex.join(
                [".venv/bin/python", "bench/faults.py", "--only", name]
                + (["--smoke"] if opts.smoke else [])
            )
            started = time.monotonic()
            try:
                if cluster.server is None or not dev.status(cluster.root):
                    cluster.start()  # a scenario left it down
                url = cluster.create_database(db)
                ctx = Ctx(cluster, url, db, opts.smoke, workdir)
                budget = SMOKE_BUDGET.get(name, 60.0) if opts.smoke else BUDGET.get(name, 150.0)
                outcome = await asyncio.wait_for(SCENARIOS[name](ctx), budget)
            except Exception as exc:
                detail = describe(exc) if not isinstance(exc, TimeoutError) else "timed out"
                outcome = Outcome(
                    name,
                    "the harness failed",
                    short(f"{type(exc).__name__}: {detail}", 400),
                    ok=False,
                    problems=["harness error"],
                )
                log(f"  harness error: {type(exc).__name__}: {detail}")
            finally:
                for worker in ALL_WORKERS:
                    worker.close()
                ALL_WORKERS.clear()
            outcome.smoke = opts.smoke
            outcome.date = info["date"]
            outcome.command = command
            outcomes.append(outcome)
            verdict = "ok" if outcome.ok else "NOT OK (" + "; ".join(outcome.problems) + ")"
            log(f"  {name} [{time.monotonic() - started:.1f} s] {verdict}: {outcome.figures}")
    finally:
        for worker in ALL_WORKERS:
            worker.close()
        cluster.stop(keep=opts.keep)
        if opts.keep:
            log(f"kept {cluster.root}")
    print()
    print(render(outcomes, info, opts.smoke), flush=True)
    documented = outcomes
    if not opts.smoke:
        documented, _ = merge_results(outcomes, info)
    if opts.write_docs:
        write_docs(render(documented, info, opts.smoke))
    return 0 if all(o.ok for o in outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    global VERBOSE
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--keep", action="store_true")
    opts = parser.parse_args(argv)
    VERBOSE = opts.verbose
    # What the inserting app's driver logs (psycopg.pool on a restart) is part of what a user
    # sees: shown, marked as the app's.
    logging.basicConfig(level=logging.WARNING, format="  app| %(levelname)s %(name)s: %(message)s")
    names = [n.strip() for n in opts.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if not RIVER_BIN.exists():
        parser.error(f"{RIVER_BIN} not found: run with the virtualenv's python (.venv/bin/python)")
    if opts.write_docs and not opts.smoke:
        # The table is rebuilt from the merged results: without the other scenarios' saved
        # results (a fresh clone has none), their rows would silently disappear from the docs.
        missing = [n for n in SCENARIOS if n not in names and n not in saved_scenarios()]
        if missing:
            parser.error(
                f"--write-docs would drop the rows of {', '.join(missing)}: "
                f"{RESULTS_FILE.relative_to(ROOT)} has no results for them; "
                "run them too (or every scenario)"
            )
    try:
        return asyncio.run(run_all(opts, names))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
