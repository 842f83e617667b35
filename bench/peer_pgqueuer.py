"""PgQueuer bench cases (runs in .venv-bench): insert-one, insert-many, burndown, latency.

Through PgQueuer's public API with its asyncpg driver (its primary driver), in a database of its
own. Its schema is installed with ``Queries.install()`` (default durability: every table
logged, like River's). Each case empties PgQueuer's tables first.

Burn-down: one ``QueueManager`` in drain mode with ``batch_size=50`` and
``max_concurrent_tasks`` = the concurrency (PgQueuer needs it >= 2 x batch). Latency: a running
QueueManager (LISTEN/NOTIFY on its channel) and a second connection that enqueues one job every
10 ms.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import asyncpg
from common import Meter, base_parser, emit, latency_result, percentile
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer import __version__ as pgq_version
from pgqueuer.domain.settings import db_settings
from pgqueuer.domain.types import QueueExecutionMode

ENTRYPOINT = "benchmark"


def payload(i: int) -> bytes:
    return json.dumps({"num": i}).encode()


async def prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        s = db_settings()
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", s.queue_table)
        if not exists:
            await Queries(AsyncpgDriver(conn)).install()
        tables = [s.queue_table, s.queue_table_log, s.statistics_table, s.schedules_table]
        await conn.execute(f"TRUNCATE {', '.join(tables)}")
        await conn.execute(f"VACUUM ANALYZE {s.queue_table}")
    finally:
        await conn.close()


async def insert_one(url: str, n: int) -> dict[str, Any]:
    await prepare(url)
    meter = Meter(url)
    conn = await asyncpg.connect(url)
    try:
        q = Queries(AsyncpgDriver(conn))
        for i in range(50):
            await q.enqueue(ENTRYPOINT, payload(-i))
        meter.start()
        for i in range(n):
            await q.enqueue(ENTRYPOINT, payload(i))
        meter.stop()
    finally:
        await conn.close()
    return meter.result(n)


async def insert_many(url: str, n: int, batch: int) -> dict[str, Any]:
    await prepare(url)
    meter = Meter(url)
    conn = await asyncpg.connect(url)
    try:
        q = Queries(AsyncpgDriver(conn))
        await q.enqueue([ENTRYPOINT] * 10, [payload(-i) for i in range(10)], [0] * 10)
        meter.start()
        for lo in range(0, n, batch):
            size = min(n, lo + batch) - lo
            await q.enqueue(
                [ENTRYPOINT] * size, [payload(i) for i in range(lo, lo + size)], [0] * size
            )
        meter.stop()
    finally:
        await conn.close()
    return meter.result(n, batch=batch)


async def _fill(url: str, n: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        q = Queries(AsyncpgDriver(conn))
        for lo in range(0, n, 5000):
            size = min(n, lo + 5000) - lo
            await q.enqueue(
                [ENTRYPOINT] * size, [payload(i) for i in range(lo, lo + size)], [0] * size
            )
    finally:
        await conn.close()


async def burndown(url: str, n: int, concurrency: int) -> dict[str, Any]:
    await prepare(url)
    await _fill(url, n)
    batch = min(50, concurrency // 2)
    meter = Meter(url)
    conn = await asyncpg.connect(url)
    worked = 0
    try:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint(ENTRYPOINT)
        async def work(job: Any) -> None:
            nonlocal worked
            worked += 1

        meter.start()
        await qm.run(
            batch_size=batch,
            max_concurrent_tasks=concurrency,
            mode=QueueExecutionMode.drain,
            dequeue_timeout=timedelta(seconds=1),
        )
        meter.stop()
    finally:
        await conn.close()
    if worked < n:
        raise RuntimeError(f"only {worked} of {n} jobs worked")
    return meter.result(n, concurrency=concurrency, batch_size=batch)


async def latency(url: str, n: int, interval: float) -> dict[str, Any]:
    await prepare(url)
    started_at: dict[int, float] = {}
    conn = await asyncpg.connect(url)
    ins_conn = await asyncpg.connect(url)
    inserted_before: dict[int, float] = {}
    inserted_after: dict[int, float] = {}
    try:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint(ENTRYPOINT)
        async def work(job: Any) -> None:
            started_at[json.loads(job.payload)["num"]] = time.time()

        runner = asyncio.create_task(qm.run(batch_size=10, max_concurrent_tasks=100))
        q = Queries(AsyncpgDriver(ins_conn))
        for i in range(20):
            await q.enqueue(ENTRYPOINT, payload(-1 - i))
        await asyncio.sleep(1.5)
        t0 = time.monotonic()
        for i in range(n):
            inserted_before[i] = time.time()
            await q.enqueue(ENTRYPOINT, payload(i))
            inserted_after[i] = time.time()
            delay = t0 + (i + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        deadline = time.monotonic() + 5
        while sum(1 for k in started_at if k >= 0) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        qm.shutdown.set()
        await asyncio.wait_for(runner, 30)
    finally:
        await ins_conn.close()
        await conn.close()
    keys = [k for k in started_at if k >= 0]
    samples = [(started_at[k] - inserted_before[k]) * 1000 for k in keys]
    after = [(started_at[k] - inserted_after[k]) * 1000 for k in keys]
    return latency_result(
        samples, n, p50_after_ms=percentile(after, 50), p99_after_ms=percentile(after, 99)
    )


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.case == "insert-one":
        result = asyncio.run(insert_one(args.db, args.n))
    elif args.case == "insert-many":
        result = asyncio.run(insert_many(args.db, args.n, args.batch))
    elif args.case == "burndown":
        result = asyncio.run(burndown(args.db, args.n, args.concurrency))
    elif args.case == "latency":
        result = asyncio.run(latency(args.db, args.n, args.interval))
    else:
        parser.error(f"unknown case {args.case!r}")
    result["library"] = "pgqueuer"
    result["version"] = pgq_version
    emit(result)


if __name__ == "__main__":
    main()
