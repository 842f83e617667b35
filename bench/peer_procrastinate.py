"""procrastinate bench cases (runs in .venv-bench): insert-one, insert-many, burndown, latency.

Through procrastinate's public API (``App`` with a ``PsycopgConnector``, pool of 4 to 10
connections like river-queue's default 10), in a database of its own; the schema is applied with
``schema_manager.apply_schema_async()`` when missing. Each case empties procrastinate's tables
first.

Insert: ``task.defer_async`` one at a time, ``task.batch_defer_async`` in batches. Burn-down:
``run_worker_async(concurrency=N, wait=False)`` (returns once the queue is empty). Latency: a
running worker (LISTEN/NOTIFY on) and ``defer_async`` every 10 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import procrastinate
import psycopg
from common import Meter, base_parser, emit, latency_result, percentile

TASK = "benchmark"
TABLES = (
    "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, procrastinate_workers"
)


class State:
    worked = 0
    record = False
    started_at: dict[int, float] = {}  # noqa: RUF012


def make_app(url: str) -> tuple[procrastinate.App, Any]:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url, min_size=4, max_size=10)
    )

    @app.task(name=TASK)
    async def benchmark(num: int) -> None:
        if State.record:
            State.started_at[num] = time.time()
        State.worked += 1

    return app, benchmark


async def prepare(app: procrastinate.App, url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cur.fetchone()
        if not (row and row[0]):
            await app.schema_manager.apply_schema_async()
        await conn.execute(f"TRUNCATE {TABLES} CASCADE")
        await conn.execute("VACUUM ANALYZE procrastinate_jobs")


async def insert_one(url: str, n: int) -> dict[str, Any]:
    app, task = make_app(url)
    meter = Meter(url)
    async with app.open_async():
        await prepare(app, url)
        for i in range(50):
            await task.defer_async(num=-i)
        meter.start()
        for i in range(n):
            await task.defer_async(num=i)
        meter.stop()
    return meter.result(n)


async def insert_many(url: str, n: int, batch: int) -> dict[str, Any]:
    app, task = make_app(url)
    meter = Meter(url)
    async with app.open_async():
        await prepare(app, url)
        await task.batch_defer_async(*({"num": -i} for i in range(10)))
        meter.start()
        for lo in range(0, n, batch):
            await task.batch_defer_async(*({"num": i} for i in range(lo, min(n, lo + batch))))
        meter.stop()
    return meter.result(n, batch=batch)


async def burndown(url: str, n: int, concurrency: int) -> dict[str, Any]:
    app, task = make_app(url)
    meter = Meter(url)
    async with app.open_async():
        await prepare(app, url)
        for lo in range(0, n, 5000):
            await task.batch_defer_async(*({"num": i} for i in range(lo, min(n, lo + 5000))))
        meter.start()
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
        meter.stop()
    if State.worked < n:
        raise RuntimeError(f"only {State.worked} of {n} jobs worked")
    return meter.result(n, concurrency=concurrency)


async def latency(url: str, n: int, interval: float) -> dict[str, Any]:
    app, task = make_app(url)
    inserted_before: dict[int, float] = {}
    inserted_after: dict[int, float] = {}
    async with app.open_async():
        await prepare(app, url)
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=100, install_signal_handlers=False)
        )
        for i in range(20):
            await task.defer_async(num=-1 - i)
        await asyncio.sleep(1.5)
        State.record = True
        t0 = time.monotonic()
        for i in range(n):
            inserted_before[i] = time.time()
            await task.defer_async(num=i)
            inserted_after[i] = time.time()
            delay = t0 + (i + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        deadline = time.monotonic() + 10
        while len(State.started_at) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    keys = [k for k in State.started_at if k >= 0]
    samples = [(State.started_at[k] - inserted_before[k]) * 1000 for k in keys]
    after = [(State.started_at[k] - inserted_after[k]) * 1000 for k in keys]
    return latency_result(
        samples, n, p50_after_ms=percentile(after, 50), p99_after_ms=percentile(after, 99)
    )


def main() -> None:
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
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
    result["library"] = "procrastinate"
    result["version"] = procrastinate.__version__
    emit(result)


if __name__ == "__main__":
    main()
