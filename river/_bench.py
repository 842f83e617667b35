"""``river bench``: River (Go)'s benchmark command for this library (PROTOCOL.md section 14).

Two modes, as in River (Go):

- ``-n N`` inserts N jobs (COPY, batches of 5,000), then works them down and stops;
- ``--duration D`` (or neither flag: until Ctrl-C) keeps at least 75,000 jobs available, topping
  up with COPY batches every 250 ms, and works continuously.

The jobs are of kind ``benchmark`` with args ``{"num": n}``; the worker does nothing (or sleeps
``--job-duration`` seconds). Every 2 s a progress line reports the jobs worked in the interval::

    bench: jobs worked [      24310 ], inserted [          0 ], job/sec [    12155.0 ] [2s]

and a summary follows the final ``bench: total jobs worked ...`` line: insert and work rates, CPU
seconds of this process per job and, when the server runs on this machine and its processes are
readable, the Postgres CPU per job.

The bench works in a schema of its own (default ``river_bench``, created and migrated when
missing) and empties only that schema's river_job, river_leader, river_queue and
river_notification tables. It refuses to run when river_job holds jobs of another kind, unless
``--force`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

import psycopg
from psycopg import sql

from river._args import JobArgs, Worker, Workers
from river._client import AsyncClient, InsertManyItem
from river._config import MAX_WORKERS_LIMIT, Config, QueueConfig
from river._duration import DurationError, parse_duration
from river._errors import RiverError
from river._pool import owned
from river._schema import validate_schema
from river._types import InsertOpts, Job
from river.migrate import AsyncMigrator

__all__ = [
    "BENCH_KIND",
    "DEFAULT_SCHEMA",
    "BenchError",
    "BenchmarkArgs",
    "BenchmarkWorker",
    "PostgresCpu",
    "add_flags",
    "build_parser",
    "main",
    "run_bench",
]

#: Job kind of the benchmark jobs (River (Go)'s ``BenchmarkArgs``).
BENCH_KIND = "benchmark"
#: Schema the bench works in unless ``--schema`` says otherwise.
DEFAULT_SCHEMA = "river_bench"
#: Jobs per COPY batch.
INSERT_BATCH = 5_000
#: Available jobs kept in --duration mode.
MIN_BACKLOG = 75_000
#: Seconds between top-up checks in --duration mode.
TOPUP_INTERVAL = 0.25
#: Seconds between progress lines.
REPORT_INTERVAL = 2.0
#: Tables the bench empties (those that exist) in its schema.
_TABLES = ("river_job", "river_leader", "river_queue", "river_notification")


class BenchError(RiverError):
    """The bench cannot run (bad flags, foreign jobs, unmigrated schema...)."""


class BenchmarkArgs(JobArgs):
    """River (Go)'s benchmark job: ``{"num": n}``."""

    kind: ClassVar[str] = BENCH_KIND
    num: int


class _Counter:
    __slots__ = ("done", "last_at", "target", "worked")

    def __init__(self) -> None:
        self.worked = 0
        self.target = 0  # 0: no target
        self.done = asyncio.Event()
        #: Monotonic time the last job was worked (what the rates are measured to).
        self.last_at = 0.0


class BenchmarkWorker(Worker[BenchmarkArgs]):
    """Counts the jobs it works; sleeps ``job_duration`` seconds per job when above 0."""

    def __init__(self, counter: _Counter, job_duration: float = 0.0) -> None:
        self._counter = counter
        self._job_duration = job_duration

    async def work(self, job: Job[BenchmarkArgs]) -> None:
        if self._job_duration > 0:
            await asyncio.sleep(self._job_duration)
        c = self._counter
        c.worked += 1
        c.last_at = time.monotonic()
        if c.target and c.worked >= c.target:
            c.done.set()


# --------------------------------------------------------------------------------------------
# Postgres CPU
# --------------------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU seconds, reaped children's CPU seconds) of a process, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): ppid is 4, utime 14, stime 15, cutime 16, cstime 17.
    try:
        ppid = int(fields[1])
        own = (int(fields[11]) + int(fields[12])) / _CLK_TCK
        children = (int(fields[13]) + int(fields[14])) / _CLK_TCK
    except (IndexError, ValueError):
        return None
    return ppid, own, children


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


class PostgresCpu:
    """CPU seconds used by a Postgres server running on this machine, read from /proc.

    Counted: the postmaster itself, the background processes (checkpointer, WAL writer,
    background writer, autovacuum launcher...), autovacuum workers and client backends of
    ``dbname`` only; backends of other databases (another test suite on the same server) are not.
    A backend that exits between two samples loses its CPU time, so take the last sample before
    closing connections. :meth:`locate` returns None when the server is not local or /proc is
    unreadable.
    """

    def __init__(self, postmaster_pid: int, dbname: str) -> None:
        self.postmaster_pid = postmaster_pid
        self.dbname = dbname

    @classmethod
    async def locate(cls, conn: psycopg.AsyncConnection[Any]) -> PostgresCpu | None:
        """The server behind ``conn`` if it is a local process this user can read."""
        cur = await conn.execute("SELECT pg_backend_pid(), current_database()")
        row = await cur.fetchone()
        if row is None:
            return None
        backend_pid, dbname = int(row[0]), str(row[1])
        stat = _proc_stat(backend_pid)
        if stat is None:
            return None
        ppid = stat[0]
        # A local server: the backend's parent is the postmaster, a process we can read.
        if "postgres" not in _cmdline(ppid) or "postgres" not in _cmdline(backend_pid):
            return None
        return cls(ppid, dbname)

    def _counted(self, cmdline: str) -> bool:
        parts = cmdline.split()
        if len(parts) >= 4 and ("(" in parts[3] or parts[3] == "[local]"):
            return parts[2] == self.dbname  # client backend: "postgres: user db host(port) ..."
        if len(parts) >= 4 and parts[1:3] == ["autovacuum", "worker"]:
            return parts[3] == self.dbname
        return True

    def sample(self) -> dict[int, float]:
        """CPU seconds so far of every counted process, by pid."""
        out: dict[int, float] = {}
        main = _proc_stat(self.postmaster_pid)
        if main is not None:
            out[self.postmaster_pid] = main[1]
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                stat = _proc_stat(pid)
                if stat is None or stat[0] != self.postmaster_pid:
                    continue
                if self._counted(_cmdline(pid)):
                    out[pid] = stat[1]
        return out

    @staticmethod
    def seconds(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds used between two samples (processes born in between count fully)."""
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# --------------------------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------------------------


def parse_seconds(text: str) -> float:
    """Seconds from ``30``, ``2.5``, or a Go duration such as ``500ms``, ``1m30s``."""
    text = text.strip()
    try:
        value = parse_duration(text, text="go_or_seconds")
    except DurationError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r} (seconds, or e.g. 500ms, 30s, 1m30s)"
        ) from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"duration must be >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add the bench flags to ``parser`` (for a CLI that creates the subparser itself)."""
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgres:// URL of the database (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--schema",
        default=DEFAULT_SCHEMA,
        help=f"schema to bench in, created and migrated when missing (default {DEFAULT_SCHEMA})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "-n",
        "--num-total-jobs",
        type=_positive_int,
        default=0,
        metavar="N",
        help="insert N jobs, then work them down and stop",
    )
    mode.add_argument(
        "--duration",
        type=parse_seconds,
        default=0.0,
        metavar="D",
        help="work continuously for D (seconds, or 30s, 1m...) keeping >= 75,000 jobs "
        "available; without -n or --duration: until Ctrl-C",
    )
    parser.add_argument(
        "--backlog",
        type=_positive_int,
        default=MIN_BACKLOG,
        metavar="N",
        help=f"jobs kept available in --duration mode (default {MIN_BACKLOG:,})",
    )
    parser.add_argument(
        "--max-workers",
        type=_positive_int,
        default=1000,
        help="max_workers of each queue (default 1000)",
    )
    parser.add_argument(
        "--queues",
        type=_positive_int,
        default=1,
        metavar="Q",
        help="number of queues, jobs spread evenly (default 1: the queue 'default')",
    )
    parser.add_argument(
        "--job-duration",
        type=parse_seconds,
        default=0.0,
        metavar="D",
        help="seconds each job sleeps (asyncio.sleep); 0, the default, is a no-op job",
    )
    parser.add_argument(
        "--fetch-cooldown",
        type=parse_seconds,
        default=None,
        metavar="D",
        help="Config.fetch_cooldown (default: the library's)",
    )
    parser.add_argument(
        "--fetch-poll-interval",
        type=parse_seconds,
        default=None,
        metavar="D",
        help="Config.fetch_poll_interval (default: the library's)",
    )
    parser.add_argument(
        "--poll-only", action="store_true", help="no LISTEN connection (Config(poll_only=True))"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run even if the schema's river_job holds jobs of other kinds (they are deleted)",
    )


HELP = "benchmark: insert and work no-op jobs, printing jobs/s"
DESCRIPTION = (
    "Insert and work benchmark jobs in a dedicated schema and print jobs/s every 2 seconds, "
    "then a summary (insert and work rates, CPU per job). Empties the schema's River tables "
    "first; refuses if they hold jobs of other kinds unless --force."
)


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser (``python -m river._bench``)."""
    parser = argparse.ArgumentParser(prog="river bench", description=DESCRIPTION)
    add_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m river._bench [flags]``."""
    return run_bench(build_parser().parse_args(argv))


# --------------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------------


@dataclass
class _Options:
    url: str
    schema: str
    num_total_jobs: int
    duration: float
    backlog: int
    max_workers: int
    queues: int
    job_duration: float
    fetch_cooldown: float | None
    fetch_poll_interval: float | None
    poll_only: bool
    force: bool


def _options(args: argparse.Namespace) -> _Options:
    url = getattr(args, "database_url", None) or os.environ.get("DATABASE_URL")
    if not url:
        raise BenchError("no database: pass --database-url or set DATABASE_URL")
    schema = validate_schema(getattr(args, "schema", None) or DEFAULT_SCHEMA)
    assert schema is not None
    max_workers = int(getattr(args, "max_workers", 1000))
    if max_workers > MAX_WORKERS_LIMIT:
        raise BenchError(f"--max-workers must be at most {MAX_WORKERS_LIMIT}")
    return _Options(
        url=url,
        schema=schema,
        num_total_jobs=int(getattr(args, "num_total_jobs", 0) or 0),
        duration=float(getattr(args, "duration", 0.0) or 0.0),
        backlog=int(getattr(args, "backlog", MIN_BACKLOG) or MIN_BACKLOG),
        max_workers=max_workers,
        queues=int(getattr(args, "queues", 1) or 1),
        job_duration=float(getattr(args, "job_duration", 0.0) or 0.0),
        fetch_cooldown=getattr(args, "fetch_cooldown", None),
        fetch_poll_interval=getattr(args, "fetch_poll_interval", None),
        poll_only=bool(getattr(args, "poll_only", False)),
        force=bool(getattr(args, "force", False)),
    )


def run_bench(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``river bench`` with parsed flags; print to ``out`` (stdout); return the exit status.

    Failures print ``Error: ...`` on stderr and return 1.
    """
    stream = out if out is not None else sys.stdout
    try:
        opts = _options(args)
        return asyncio.run(_Bench(opts, stream).run())
    except (RiverError, psycopg.Error, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"Error: {message}\n")
        return 1


def _go_duration(seconds: float) -> str:
    """A short duration in Go's style: 2s, 1.234s, 350ms."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{seconds * 1000:.1f}".rstrip("0").rstrip(".") + "ms"


def _rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


class _Bench:
    def __init__(self, opts: _Options, out: TextIO) -> None:
        self.o = opts
        self.out = out
        self.counter = _Counter()
        self.inserted = 0
        self.insert_seconds = 0.0
        self.next_num = 0
        self.stop_requested = asyncio.Event()
        if opts.queues == 1:
            self.queue_names = ["default"]
        else:
            width = len(str(opts.queues - 1))
            self.queue_names = [f"bench_{i:0{width}d}" for i in range(opts.queues)]
        self.queue_opts = [InsertOpts(queue=q) for q in self.queue_names]

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    # --- setup ---------------------------------------------------------------------------

    async def prepare(self, conn: psycopg.AsyncConnection[Any]) -> None:
        schema = self.o.schema
        ident = sql.Identifier(schema)
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".river_job',))
        row = await cur.fetchone()
        has_job_table = bool(row and row[0])
        migrator = AsyncMigrator(conn, schema=schema)
        if not has_job_table:
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            result = await migrator.migrate_up()
            if result.versions:
                self.say(f"bench: migrated schema {schema} ({len(result.versions)} versions)")
        else:
            validation = await migrator.validate()
            if not validation.ok:
                raise BenchError(
                    f"schema {schema} has unapplied migrations {list(validation.unapplied)}: "
                    f"run `river migrate-up --schema {schema}` first, or bench in another schema"
                )
        cur = await conn.execute(
            sql.SQL(
                "SELECT kind, count(*) FROM {}.river_job WHERE kind <> %s GROUP BY kind "
                "ORDER BY count(*) DESC LIMIT 3"
            ).format(ident),
            (BENCH_KIND,),
        )
        foreign = await cur.fetchall()
        if foreign and not self.o.force:
            kinds = ", ".join(f"{k!r} ({n})" for k, n in foreign)
            raise BenchError(
                f"schema {schema} holds jobs that are not benchmark jobs (kinds {kinds}); the "
                "bench empties its schema's river_job table: bench in a dedicated schema "
                "(--schema) or pass --force to delete them"
            )
        cur = await conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)",
            (schema, list(_TABLES)),
        )
        tables = [r[0] for r in await cur.fetchall()]
        await conn.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)
            )
        )
        await conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, "river_job")))

    def client(self) -> AsyncClient:
        o = self.o
        workers = Workers()
        workers.add(BenchmarkWorker(self.counter, o.job_duration))
        queue_config = QueueConfig(max_workers=o.max_workers)
        kwargs: dict[str, Any] = {}
        if o.fetch_cooldown is not None:
            kwargs["fetch_cooldown"] = o.fetch_cooldown
        if o.fetch_poll_interval is not None:
            kwargs["fetch_poll_interval"] = o.fetch_poll_interval
        config = Config(
            schema=o.schema,
            workers=workers,
            queues=dict.fromkeys(self.queue_names, queue_config),
            poll_only=o.poll_only,
            **kwargs,
        )
        return AsyncClient(o.url, config)

    async def insert(self, client: AsyncClient, count: int) -> None:
        """Insert ``count`` jobs by COPY in batches, spread evenly over the queues."""
        nq = len(self.queue_names)
        while count > 0:
            size = min(count, INSERT_BATCH)
            items: list[InsertManyItem] = []
            for n in range(self.next_num, self.next_num + size):
                args = BenchmarkArgs(num=n)
                items.append(args if nq == 1 else (args, self.queue_opts[n % nq]))
            started = time.perf_counter()
            inserted = await client.insert_many_fast(items)
            self.insert_seconds += time.perf_counter() - started
            self.next_num += size
            self.inserted += inserted
            count -= size

    async def top_up(self, client: AsyncClient) -> None:
        while True:
            await asyncio.sleep(TOPUP_INTERVAL)
            backlog = self.inserted - self.counter.worked
            if backlog < self.o.backlog:
                await self.insert(client, self.o.backlog - backlog)

    # --- run -----------------------------------------------------------------------------

    def _install_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop_requested.set)
            except (ValueError, RuntimeError, NotImplementedError):
                continue
            installed.append(sig)
        return installed

    async def run(self) -> int:
        o = self.o
        conn = await psycopg.AsyncConnection.connect(o.url, autocommit=True)
        async with owned(conn):
            await self.prepare(conn)
            pg = await PostgresCpu.locate(conn)
            client = self.client()
            installed = self._install_signals()
            try:
                return await self._run(conn, client, pg)
            finally:
                for sig in installed:
                    asyncio.get_running_loop().remove_signal_handler(sig)
                await client.close()

    async def _run(
        self, conn: psycopg.AsyncConnection[Any], client: AsyncClient, pg: PostgresCpu | None
    ) -> int:
        o = self.o
        burn_down = o.num_total_jobs > 0
        initial = o.num_total_jobs if burn_down else o.backlog
        await self.insert(client, initial)
        self.say(
            f"bench: inserted {self.inserted} jobs in {self.insert_seconds:.2f}s "
            f"({_rate(self.inserted, self.insert_seconds):,.0f} jobs/s, COPY in batches of "
            f"{INSERT_BATCH:,}) into {len(self.queue_names)} queue(s) of schema {o.schema}"
        )
        if burn_down:
            self.counter.target = o.num_total_jobs
        inserted_before_start = self.inserted

        cpu0 = time.process_time()
        pg0 = pg.sample() if pg is not None else None
        started = time.monotonic()
        await client.start()
        topper = None if burn_down else asyncio.create_task(self.top_up(client))
        last_worked, last_inserted = 0, self.inserted
        last_tick = started
        iterations = 0
        period = "0s"
        finished = False
        stop_wait = asyncio.create_task(self.stop_requested.wait())
        try:
            while True:
                worked = self.counter.worked
                now = time.monotonic()
                self.say(
                    f"bench: jobs worked [ {worked - last_worked:10d} ], inserted "
                    f"[ {self.inserted - last_inserted:10d} ], job/sec "
                    f"[ {_rate(worked - last_worked, now - last_tick):10.1f} ] [{period}]"
                )
                last_worked, last_inserted, last_tick = worked, self.inserted, now
                if finished or self.stop_requested.is_set():
                    break
                if burn_down and worked >= o.num_total_jobs:
                    break
                iterations += 1
                deadline = started + iterations * REPORT_INTERVAL
                if o.duration:
                    deadline = min(deadline, started + o.duration)
                waiters: list[asyncio.Future[Any]] = [stop_wait]
                done_wait = None
                if burn_down:
                    done_wait = asyncio.ensure_future(self.counter.done.wait())
                    waiters.append(done_wait)
                await asyncio.wait(
                    waiters,
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if done_wait is not None and not done_wait.done():
                    done_wait.cancel()
                now = time.monotonic()
                tick = now - last_tick
                period = "2s" if abs(tick - REPORT_INTERVAL) < 0.05 else _go_duration(tick)
                finished = bool(o.duration) and now >= started + o.duration - 0.005
                if finished:
                    # --duration: what was worked inside the window, up to its last job.
                    window_worked, window_last = self.counter.worked, self.counter.last_at
        finally:
            stop_wait.cancel()
            if topper is not None:
                topper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await topper
        if not o.duration or not finished:
            window_worked, window_last = self.counter.worked, self.counter.last_at
        # Soft stop: running jobs finish and every outcome is written before it returns.
        await client.stop(timeout=30)
        elapsed = time.monotonic() - started
        # The rates: jobs / (time of the last job worked - start), as River (Go)'s bench does;
        # not up to the next report tick nor the stop.
        work_seconds = max(window_last - started, 1e-9) if window_worked else elapsed
        cpu = time.process_time() - cpu0
        pg_seconds = PostgresCpu.seconds(pg0, pg.sample()) if pg is not None and pg0 else None
        worked = self.counter.worked
        self.say(
            f"bench: total jobs worked [ {worked:10d} ], total jobs inserted "
            f"[ {self.inserted:10d} ], overall job/sec "
            f"[ {_rate(window_worked, work_seconds):10.1f} ], running {_go_duration(work_seconds)}"
        )
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE state = 'completed'").format(
                sql.Identifier(o.schema, "river_job")
            )
        )
        row = await cur.fetchone()
        completed = int(row[0]) if row else 0
        self._summary(
            worked,
            completed,
            elapsed,
            cpu,
            pg_seconds,
            inserted_before_start,
            window_worked,
            work_seconds,
        )
        if burn_down and completed < o.num_total_jobs and not self.stop_requested.is_set():
            self.say(f"bench: only {completed} of {o.num_total_jobs} jobs were completed")
            return 1
        return 0

    def _summary(
        self,
        worked: int,
        completed: int,
        elapsed: float,
        cpu: float,
        pg_seconds: float | None,
        inserted_before_start: int,
        window_worked: int,
        work_seconds: float,
    ) -> None:
        o = self.o
        job = "no-op" if o.job_duration <= 0 else f"{_go_duration(o.job_duration)} sleep"
        topped = self.inserted - inserted_before_start
        self.say("summary:")
        insert_rate = _rate(self.inserted, self.insert_seconds)
        self.say(
            f"  inserted  {self.inserted:>10,} jobs: {insert_rate:>10,.0f} jobs/s "
            f"({self.insert_seconds:.2f}s in insert_many_fast"
            + (f"; {topped:,} topped up while working)" if topped else ")")
        )
        self.say(
            f"  worked    {window_worked:>10,} jobs: {_rate(window_worked, work_seconds):>10,.0f} "
            f"jobs/s ({work_seconds:.2f}s from start to the last job worked"
            + (f" in the {_go_duration(o.duration)} window" if o.duration else "")
            + f"; {elapsed:.2f}s to stop; {job} jobs, {len(self.queue_names)} queue(s), "
            f"max_workers {o.max_workers}{', poll only' if o.poll_only else ''})"
        )
        if worked != window_worked:
            self.say(f"            {worked - window_worked:>10,} more worked while stopping")
        self.say(f"  completed {completed:>10,} jobs in river_job")
        per_job = f"{cpu / worked * 1e6:,.1f} us/job" if worked else "n/a"
        self.say(
            f"  cpu       {cpu:>10.2f} s of this process while working: {per_job}"
            + (" (top-up inserts included)" if topped else "")
        )
        if pg_seconds is None:
            self.say("  postgres  cpu not readable (server not local, or /proc not readable)")
        else:
            pg_per_job = f"{pg_seconds / worked * 1e6:,.1f} us/job" if worked else "n/a"
            self.say(
                f"  postgres  {pg_seconds:>10.2f} s of server CPU while working: {pg_per_job} "
                "(this database's backends and the background processes)"
            )


if __name__ == "__main__":
    sys.exit(main())
