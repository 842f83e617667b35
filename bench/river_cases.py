"""river-queue bench cases; one case per process: ``python bench/river_cases.py CASE --db URL``.

Cases: insert-one, insert-psycopg, pg-floor, insert-many, insert-fast, burndown, latency, timed,
many-queues. Each prints one ``RESULT {json}`` line (see common.py). The database must be one
the suite owns: every case empties river_job first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, ClassVar

import psycopg
from common import Meter, base_parser, emit, latency_result, log, peak_rss_mb, percentile
from psycopg import conninfo

import river
from river._config import DEFAULT_FETCH_COOLDOWN
from river._driver import queries_for
from river._insert import NotifyLimiter, insert_payload
from river.migrate import Migrator

KIND = "benchmark"
TABLES = "river_job, river_leader, river_queue, river_notification"


class BenchArgs(river.JobArgs):
    kind: ClassVar[str] = KIND
    num: int


class Counter:
    def __init__(self, target: int = 0) -> None:
        self.worked = 0
        self.target = target
        self.done = asyncio.Event()
        self.started_at: dict[int, float] = {}
        self.record = False

    async def wait_worked(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` jobs were worked in all (False after ``timeout`` seconds)."""
        self.target = count
        if self.worked >= count:
            return True
        self.done = asyncio.Event()
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def hit(self) -> None:
        self.worked += 1
        if self.target and self.worked >= self.target:
            self.done.set()


class NoopWorker(river.Worker[BenchArgs]):
    def __init__(self, counter: Counter, sleep: float = 0.0) -> None:
        self.counter = counter
        self.sleep = sleep

    async def work(self, job: river.Job[BenchArgs]) -> None:
        if self.counter.record:
            self.counter.started_at[job.args.num] = time.time()
        if self.sleep:
            await asyncio.sleep(self.sleep)
        self.counter.hit()


def prepare(url: str) -> None:
    """Migrate when needed, then empty the tables (fresh storage) and refresh statistics."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('river_job') IS NOT NULL").fetchone()
        if not (row and row[0]):
            Migrator(conn).migrate_up()
        conn.execute(f"TRUNCATE {TABLES}")
        conn.execute("VACUUM ANALYZE river_job")


def workers(counter: Counter, sleep: float = 0.0) -> river.Workers:
    w = river.Workers()
    w.add(NoopWorker(counter, sleep))
    return w


async def copy_jobs(client: river.AsyncClient, n: int, queues: list[str] | None = None) -> float:
    """Insert n jobs with COPY in batches of 5,000 (spread over ``queues``); seconds taken."""
    started = time.perf_counter()
    opts = [river.InsertOpts(queue=q) for q in queues] if queues else None
    for lo in range(0, n, 5000):
        items: list[river.InsertManyItem] = []
        for i in range(lo, min(n, lo + 5000)):
            args = BenchArgs(num=i)
            items.append((args, opts[i % len(opts)]) if opts else args)
        await client.insert_many_fast(items)
    return time.perf_counter() - started


# --- insert -----------------------------------------------------------------------------------


async def insert_one(url: str, n: int) -> dict[str, Any]:
    prepare(url)
    meter = Meter(url)
    async with river.AsyncClient(url) as client:
        for i in range(50):  # warm-up: pool connection, prepared statements
            await client.insert(BenchArgs(num=-i))
        meter.start()
        for i in range(n):
            await client.insert(BenchArgs(num=i))
        meter.stop()
    return meter.result(n)


async def insert_many(url: str, n: int, batch: int, fast: bool) -> dict[str, Any]:
    prepare(url)
    meter = Meter(url)
    async with river.AsyncClient(url) as client:
        warm = [BenchArgs(num=-i) for i in range(10)]
        await (client.insert_many_fast(warm) if fast else client.insert_many(warm))
        meter.start()
        for lo in range(0, n, batch):
            items: list[river.InsertManyItem] = [
                BenchArgs(num=i) for i in range(lo, min(n, lo + batch))
            ]
            if fast:
                await client.insert_many_fast(items)
            else:
                await client.insert_many(items)
        meter.stop()
    return meter.result(n, batch=batch)


async def insert_psycopg(url: str, n: int) -> dict[str, Any]:
    """The single insert's own statement through psycopg alone: what ``insert`` sends (the
    same parameters, a notification whenever the client's limiter would send one), on one
    connection and a kept cursor, with no validation, pool or result objects. The ceiling of
    a Python client on this driver; ``insert-one`` minus this is the library's own cost."""
    prepare(url)
    text = queries_for(None).job_insert_one_new
    limiter = NotifyLimiter(DEFAULT_FETCH_COOLDOWN)
    payload = insert_payload("default")

    def params(i: int) -> dict[str, Any]:
        return {
            "schema": None,
            "notify_payload": payload if limiter.allow("default") else None,
            "args": f'{{"num":{i}}}',
            "kind": KIND,
            "queue": "default",
            "priority": 1,
            "max_attempts": 25,
            "state": "available",
            "scheduled_at": None,
            "tags": "",
            "metadata": "{}",
            "unique_key": None,
            "unique_states": None,
        }

    meter = Meter(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET TimeZone TO 'UTC'")  # as the client's own connections
        cur = conn.cursor()
        for i in range(50):
            await cur.execute(text, params(-i), prepare=True)
            await cur.fetchall()
        meter.start()
        for i in range(n):
            await cur.execute(text, params(i), prepare=True)
            await cur.fetchall()
        meter.stop()
    return meter.result(n)


async def pg_floor(url: str, n: int) -> dict[str, Any]:
    """The server's floor for one-at-a-time inserts: a plain one-row INSERT per transaction
    (prepared, autocommit, no job queue), i.e. the commit (WAL flush) rate of one connection."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_floor")
        conn.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, args jsonb NOT NULL)")
    meter = Meter(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        text = "INSERT INTO bench_floor (args) VALUES (%s::jsonb)"
        for i in range(50):
            await conn.execute(text, (f'{{"num": {-i}}}',), prepare=True)
        meter.start()
        for i in range(n):
            await conn.execute(text, (f'{{"num": {i}}}',), prepare=True)
        meter.stop()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_floor")
    return meter.result(n)


# --- work -------------------------------------------------------------------------------------


async def burndown(url: str, n: int, concurrency: int, sleep: float = 0.0) -> dict[str, Any]:
    prepare(url)
    counter = Counter(target=n)
    config = river.Config(
        workers=workers(counter, sleep),
        queues={"default": river.QueueConfig(max_workers=concurrency)},
    )
    meter = Meter(url)
    client = river.AsyncClient(url, config)
    try:
        await copy_jobs(client, n)
        meter.start()
        await client.start()
        if not await counter.wait_worked(n, max(120.0, n / 200)):
            raise RuntimeError(f"only {counter.worked} of {n} jobs worked")
        await client.stop()  # every outcome written
        meter.stop()
    finally:
        await client.close()
    return meter.result(n, concurrency=concurrency)


async def latency(url: str, n: int, interval: float, poll_only: bool) -> dict[str, Any]:
    prepare(url)
    counter = Counter()
    config = river.Config(
        workers=workers(counter),
        queues={"default": river.QueueConfig(max_workers=100)},
        poll_only=poll_only,
    )
    inserted_before: dict[int, float] = {}
    inserted_after: dict[int, float] = {}
    async with river.AsyncClient(url, config) as worker, river.AsyncClient(url) as inserter:
        for i in range(20):  # warm-up: connections and prepared statements on both sides
            await inserter.insert(BenchArgs(num=-1 - i))
        await counter.wait_worked(20, 10.0)
        await asyncio.sleep(0.5)  # idle
        counter.record = True
        t0 = time.monotonic()
        for i in range(n):
            inserted_before[i] = time.time()
            await inserter.insert(BenchArgs(num=i))
            inserted_after[i] = time.time()
            delay = t0 + (i + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await counter.wait_worked(20 + n, 5.0 if not poll_only else 15.0)
        _ = worker
    samples = [(counter.started_at[i] - inserted_before[i]) * 1000 for i in counter.started_at]
    after = [(counter.started_at[i] - inserted_after[i]) * 1000 for i in counter.started_at]
    return latency_result(
        samples,
        n,
        poll_only=poll_only,
        p50_after_ms=percentile(after, 50),
        p99_after_ms=percentile(after, 99),
    )


async def timed(
    url: str, slots: int, sleep: float, seconds: float, backlog_seconds: float
) -> dict[str, Any]:
    """10 ms jobs: (1) capacity, a backlog of ``backlog_seconds`` of ideal work burned down;
    (2) a steady insert rate of 70% of that capacity for ``seconds``: throughput and
    created->finalized percentiles from the rows."""
    backlog_jobs = max(200, int(slots / sleep * backlog_seconds))
    capacity = await burndown(url, backlog_jobs, slots, sleep)
    rate = 0.7 * capacity["jobs_per_s"]
    prepare(url)
    counter = Counter()
    config = river.Config(
        workers=workers(counter, sleep),
        queues={"default": river.QueueConfig(max_workers=slots)},
    )
    total = 0
    async with river.AsyncClient(url, config) as _, river.AsyncClient(url) as inserter:
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        ticks = 0
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(rate * elapsed) - total
            if due > 0:
                await inserter.insert_many_fast([BenchArgs(num=total + j) for j in range(due)])
                total += due
            ticks += 1
            await asyncio.sleep(max(0.0, t0 + ticks * 0.01 - time.monotonic()))
        await counter.wait_worked(total, 60.0)
        elapsed = time.monotonic() - t0
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*),"
            " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
            " (ORDER BY extract(epoch FROM finalized_at - created_at)),"
            " extract(epoch FROM max(finalized_at) - min(created_at))"
            " FROM river_job WHERE state = 'completed'"
        ).fetchone()
    assert row is not None
    done, pcts, span = int(row[0]), row[1] or [None, None, None], float(row[2] or 0.0)
    return {
        "slots": slots,
        "capacity_jobs_per_s": capacity["jobs_per_s"],
        "capacity_cpu_us_per_job": capacity["cpu_us_per_job"],
        "offered_jobs_per_s": rate,
        "steady_jobs": total,
        "steady_completed": done,
        "steady_jobs_per_s": done / span if span else 0.0,
        "steady_seconds": elapsed,
        "p50_ms": pcts[0] * 1000 if pcts[0] is not None else None,
        "p95_ms": pcts[1] * 1000 if pcts[1] is not None else None,
        "p99_ms": pcts[2] * 1000 if pcts[2] is not None else None,
        "rss_mb": peak_rss_mb(),
    }


def _admin_url(url: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params["dbname"] = "postgres"
    return conninfo.make_conninfo("", **params)


def _xacts(admin_url: str, dbname: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else 0


async def many_queues(url: str, queues: int, n: int, idle_seconds: float) -> dict[str, Any]:
    """Issue 4's scale case: add every queue to a running client, COPY n jobs spread evenly
    over them (round robin, so each fetch touches rows scattered over the table), drain them
    all from a fresh start while adding and removing queues on the side, then measure the
    idle cost and remove every queue."""
    prepare(url)
    names = [f"q_{i:05d}" for i in range(queues)]
    counter = Counter(target=n)
    config = river.Config(workers=workers(counter), queues={"default": river.QueueConfig()})
    client = river.AsyncClient(url, config)
    out: dict[str, Any] = {"queues": queues}
    try:
        await client.start()
        t = time.perf_counter()
        add_ms = []
        for name in names:
            t0 = time.perf_counter()
            await client.queues.add(name, river.QueueConfig())
            add_ms.append((time.perf_counter() - t0) * 1000)
        out["add_all_s"] = time.perf_counter() - t
        out["add_p50_ms"] = percentile(add_ms, 50)
        out["add_p99_ms"] = percentile(add_ms, 99)
        log(f"added {queues} queues to a running client in {out['add_all_s']:.2f}s")
        # Jobs go in while the client is stopped so that the drain is measured on its own
        # (start() with every queue and the whole backlog is part of it).
        await client.stop()
        insert_s = await copy_jobs(client, n, names)
        out["insert_jobs_per_s"] = n / insert_s
        log(f"inserted {n} jobs over {queues} queues in {insert_s:.1f}s")
        meter = Meter(url)
        meter.start()
        t = time.perf_counter()
        await client.start()
        out["start_s"] = time.perf_counter() - t
        churn_add: list[float] = []
        churn_remove: list[float] = []

        async def churn() -> None:
            # A queue added and removed every 100 ms while the others drain.
            i = 0
            while True:
                await asyncio.sleep(0.1)
                name = f"extra_{i}"
                i += 1
                t0 = time.perf_counter()
                await client.queues.add(name, river.QueueConfig())
                churn_add.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await client.queues.remove(name)
                churn_remove.append((time.perf_counter() - t0) * 1000)

        churner = asyncio.create_task(churn())
        try:
            if not await counter.wait_worked(n, max(300.0, n / 500)):
                raise RuntimeError(f"only {counter.worked} of {n} jobs worked")
        finally:
            churner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await churner
        meter.stop()
        out.update(meter.result(n))
        out["load_add_p50_ms"] = percentile(churn_add, 50)
        out["load_add_p99_ms"] = percentile(churn_add, 99)
        out["load_remove_p50_ms"] = percentile(churn_remove, 50)
        out["load_remove_p99_ms"] = percentile(churn_remove, 99)
        log(f"drained in {meter.wall:.1f}s")
        # Idle: the client runs with every queue empty; count the database's transactions
        # (each statement of the client is one) from another database's connection. Postgres
        # 15 backends report their counts up to 10 s late once idle, so the drain's own
        # transactions must be flushed before the window opens.
        await asyncio.sleep(min(12.0, 4 * idle_seconds))
        dbname = str(conninfo.conninfo_to_dict(url).get("dbname"))
        admin = _admin_url(url)
        x0 = await asyncio.to_thread(_xacts, admin, dbname)
        t = time.monotonic()
        await asyncio.sleep(idle_seconds)
        x1 = await asyncio.to_thread(_xacts, admin, dbname)
        out["idle_queries_per_s"] = (x1 - x0) / (time.monotonic() - t)
        t = time.perf_counter()
        for name in names:
            await client.queues.remove(name)
        out["remove_all_s"] = time.perf_counter() - t
        await client.stop()
    finally:
        await client.close()
    out["rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=2000)
    parser.add_argument("--backlog-seconds", type=float, default=5.0)
    args = parser.parse_args()
    url = args.db
    case = args.case
    if case == "insert-one":
        result = asyncio.run(insert_one(url, args.n))
    elif case == "insert-psycopg":
        result = asyncio.run(insert_psycopg(url, args.n))
    elif case == "pg-floor":
        result = asyncio.run(pg_floor(url, args.n))
    elif case == "insert-many":
        result = asyncio.run(insert_many(url, args.n, args.batch, fast=False))
    elif case == "insert-fast":
        result = asyncio.run(insert_many(url, args.n, args.batch, fast=True))
    elif case == "burndown":
        result = asyncio.run(burndown(url, args.n, args.concurrency))
    elif case == "latency":
        result = asyncio.run(latency(url, args.n, args.interval, args.poll_only))
    elif case == "timed":
        result = asyncio.run(
            timed(url, args.concurrency, args.sleep, args.seconds, args.backlog_seconds)
        )
    elif case == "many-queues":
        result = asyncio.run(many_queues(url, args.queues, args.n, args.seconds))
    else:
        parser.error(f"unknown case {case!r}")
    result["library"] = "river-queue"
    result["version"] = river.__version__
    emit(result)


if __name__ == "__main__":
    main()
