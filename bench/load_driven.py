"""Load-driven queues, measured (issue 19; docs/performance.md "Load-driven queues").

    .venv/bin/python bench/load_driven.py [--smoke] [--write-docs]

On the Postgres of ``river dev`` (started if needed) or $DATABASE_URL's server, each case in a
database of its own:

- **autoscale**: a burst of 2,000 jobs of 200 ms into a queue with ``min_workers=1,
  max_workers=50``: the time until 45 or more run at once, the time back to a target of 5 or
  less once the backlog is gone, and the target's changes of direction during a steady load
  (jobs arriving at about 60 % of what 50 slots can run).
- **rate limit**: 2, then 4 processes (``river`` clients in subprocesses) on one queue limited
  to 50 jobs/s, 5,000 no-op jobs: the start rate over every 10 s window of the database clock
  (``attempted_at``), and the CPU per job of the working processes against the same jobs on an
  unlimited queue.

``--write-docs`` puts the table between the ``load-driven`` markers of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import sql

import river
from river import QueueConfig, dev
from river.testing import signals

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- load-driven:begin -->", "<!-- load-driven:end -->"


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or dev.database_url()


def fresh_database(name: str) -> str:
    base = server_url()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(base)
    params["dbname"] = name
    url = psycopg.conninfo.make_conninfo("", **params)
    with psycopg.connect(url, autocommit=True) as conn:
        river.Migrator(conn).migrate_up()
    return url


def drop_database(name: str) -> None:
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- autoscale ----------------------------------------------------------------------------------


class Sleep(river.JobArgs):
    kind: ClassVar[str] = "bench_sleep"
    seconds: float = 0.2


class SleepWorker(river.Worker[Sleep]):
    def __init__(self) -> None:
        self.running = 0

    async def work(self, job: river.Job[Sleep]) -> None:
        self.running += 1
        try:
            await asyncio.sleep(job.args.seconds)
        finally:
            self.running -= 1


async def autoscale(burst: int, steady_seconds: float) -> dict[str, Any]:
    url = fresh_database("river_bench_autoscale")
    worker = SleepWorker()
    workers = river.Workers()
    workers.add(worker)
    config = river.Config(
        workers=workers,
        queues={"burst": QueueConfig(min_workers=1, max_workers=50)},
        leader_election=False,
    )
    client = river.AsyncClient(url, config)
    s = signals(client)
    try:
        await client.start()
        t0 = time.monotonic()
        await client.insert_many_fast([(Sleep(), river.InsertOpts(queue="burst"))] * burst)
        reach_45 = None
        while worker.running or time.monotonic() - t0 < 1:
            if reach_45 is None and worker.running >= 45:
                reach_45 = time.monotonic() - t0
            await asyncio.sleep(0.01)
        drained = time.monotonic()
        log(f"autoscale: burst drained in {drained - t0:.1f}s, 45+ at {reach_45}")
        s.scaled.drain()  # the ramp-up's changes
        if client.queues.get("burst").target_workers > 5:
            await s.scaled.wait_for(lambda change: change[2] <= 5, timeout=120)
        back_to_5 = time.monotonic() - drained
        log(f"autoscale: back to <= 5 in {back_to_5:.1f}s")

        # Steady load: 150 jobs/s of 200 ms need 30 slots of the 50.
        s.scaled.drain()
        stop_at = time.monotonic() + steady_seconds
        while time.monotonic() < stop_at:
            await client.insert_many([(Sleep(), river.InsertOpts(queue="burst"))] * 15)
            await asyncio.sleep(0.1)
        changes = s.scaled.drain()
        # Directions of the changes after the ramp-up (the first 3 s).
        directions = [1 if new > old else -1 for _, old, new in changes]
        reversals = sum(1 for a, b in itertools.pairwise(directions) if a != b)
        final = client.queues.get("burst").target_workers
        log(f"autoscale: steady load: {len(changes)} changes, {reversals} reversals, at {final}")
        await client.stop()
    finally:
        await client.close()
        drop_database("river_bench_autoscale")
    return {
        "burst": burst,
        "reach_45_s": reach_45,
        "back_to_5_s": back_to_5,
        "steady_seconds": steady_seconds,
        "steady_changes": len(changes),
        "steady_reversals": reversals,
        "steady_target": final,
    }


# --- rate limit ---------------------------------------------------------------------------------


class Noop(river.JobArgs):
    kind: ClassVar[str] = "bench_noop"


_CLIENT = textwrap.dedent(
    """
    import asyncio, os, resource, sys
    from typing import ClassVar
    import river
    from river import QueueConfig, RateLimit

    class Noop(river.JobArgs):
        kind: ClassVar[str] = "bench_noop"

    class NoopWorker(river.Worker[Noop]):
        async def work(self, job):
            return None

    async def main():
        workers = river.Workers()
        workers.add(NoopWorker())
        limit = int(sys.argv[1])
        rate_limit = RateLimit(jobs=limit, per=1) if limit else None
        queue = QueueConfig(max_workers=100, rate_limit=rate_limit)
        config = river.Config(workers=workers, queues={"q": queue}, leader_election=False)
        async with river.AsyncClient(os.environ["DATABASE_URL"], config):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            started = usage.ru_utime + usage.ru_stime
            print("started", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            usage = resource.getrusage(resource.RUSAGE_SELF)
        # CPU while working only (start-up and shutdown left out).
        print(f"cpu {usage.ru_utime + usage.ru_stime - started}", flush=True)

    asyncio.run(main())
    """
)


def _windows(times: list[float], width: float) -> list[float]:
    """Start rates (jobs/s) over consecutive windows of ``width`` seconds, full windows only."""
    if not times:
        return []
    start, end = times[0], times[-1]
    rates = []
    t = start
    while t + width <= end:
        n = sum(1 for x in times if t <= x < t + width)
        rates.append(n / width)
        t += width
    return rates


def rate_case(processes: int, jobs: int, limit: int) -> dict[str, Any]:
    name = f"river_bench_rate_{processes}_{limit}"
    url = fresh_database(name)
    env = {**os.environ, "DATABASE_URL": url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "started"
        with psycopg.connect(url, autocommit=True) as conn:
            t0 = time.monotonic()
            # The jobs, all at once (the limit, not the inserts, sets the pace).
            with river.Client(url) as inserter:
                inserter.insert_many_fast([(Noop(), river.InsertOpts(queue="q"))] * jobs)
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM river_job WHERE state = 'completed'"
                ).fetchone()
                assert row is not None
                if row[0] >= jobs:
                    break
                time.sleep(0.2)
            wall = time.monotonic() - t0
            rows = conn.execute(
                "SELECT extract(epoch FROM attempted_at)::float8 FROM river_job"
                " ORDER BY attempted_at"
            ).fetchall()
            by_client = conn.execute(
                "SELECT count(DISTINCT attempted_by[1]) FROM river_job"
            ).fetchone()
    finally:
        cpu = 0.0
        for proc in procs:
            out, _ = proc.communicate("", timeout=60)
            for line in out.splitlines():
                if line.startswith("cpu "):
                    cpu += float(line.split()[1])
        drop_database(name)
    times = [r[0] for r in rows]
    rates = _windows(times, 10.0)
    return {
        "processes": processes,
        "jobs": jobs,
        "limit": limit,
        "wall_s": wall,
        "rate": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None,
        "windows": rates,
        "clients_that_worked": by_client[0] if by_client else 0,
        "cpu_us_per_job": cpu / jobs * 1e6,
    }


# --- report ---------------------------------------------------------------------------------------


def table(auto: dict[str, Any], rates: list[dict[str, Any]], unlimited: dict[str, Any]) -> str:
    lines = [
        BEGIN,
        "",
        "| autoscale (min 1, max 50, jobs of 200 ms) | measured | goal |",
        "|---|---|---|",
        f"| burst of {auto['burst']:,}: 45+ running at once after | "
        f"{auto['reach_45_s']:.2f} s | < 3 s |",
        f"| backlog gone: target back to 5 or less after | {auto['back_to_5_s']:.1f} s | < 30 s |",
        f"| steady load for {auto['steady_seconds']:.0f} s: target changes / reversals | "
        f"{auto['steady_changes']} / {auto['steady_reversals']} (settled at "
        f"{auto['steady_target']}) | no flapping |",
        "",
        "| rate limit 50 jobs/s, 5,000 no-op jobs | start rate overall | every 10 s window "
        "| worst window vs limit | CPU per job (all processes) |",
        "|---|---|---|---|---|",
    ]
    for r in rates:
        windows = ", ".join(f"{w:.1f}" for w in r["windows"])
        worst = max(abs(w - r["limit"]) / r["limit"] for w in r["windows"]) if r["windows"] else 0
        lines.append(
            f"| {r['processes']} processes ({r['clients_that_worked']} worked jobs) | "
            f"{r['rate']:.1f} jobs/s | {windows} | {worst * 100:+.1f} % | "
            f"{r['cpu_us_per_job']:.0f} us |"
        )
    lines.append(
        f"| unlimited, {unlimited['processes']} processes (for the CPU cost) | "
        f"{unlimited['rate']:,.0f} jobs/s | - | - | {unlimited['cpu_us_per_job']:.0f} us |"
    )
    lines += [
        "",
        "Measured with `.venv/bin/python bench/load_driven.py --write-docs` on the development "
        "machine (2 cores shared by Postgres and the clients). The CPU per job of a limited "
        "queue is all the working processes' CPU over the run (100 s at 50 jobs/s) divided by "
        "the jobs: at this rate each process makes about ten fetches and completion writes a "
        "second for a few jobs each, plus its poll and keep-alive, so the cost per job is that "
        "of a few statements, against a share of large batches when unlimited.",
        "",
        END,
    ]
    return "\n".join(lines)


def write_docs(text: str) -> None:
    current = DOCS.read_text(encoding="utf-8")
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        updated = head + text + tail
    else:
        updated = current.rstrip("\n") + "\n\n## Load-driven queues\n\n" + text + "\n"
    DOCS.write_text(updated, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, no docs")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    burst, steady, jobs = (200, 5.0, 300) if args.smoke else (2000, 30.0, 5000)
    auto = asyncio.run(autoscale(burst, steady))
    rates = [rate_case(n, jobs, 50) for n in (2, 4)]
    for r in rates:
        log(f"rate: {r['processes']} processes: {r['rate']:.1f} jobs/s, windows {r['windows']}")
    unlimited = rate_case(2, jobs, 0)
    log(f"unlimited: {unlimited['rate']:.0f} jobs/s, {unlimited['cpu_us_per_job']:.0f} us/job")
    text = table(auto, rates, unlimited)
    print(text)
    if args.write_docs and not args.smoke:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
