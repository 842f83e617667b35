"""Microbenchmark of the client CPU per job of batch statements' parameters and results.

Measures, for one batch (1,000 jobs by default), the parts of the completer's write and of
``insert_many`` that run in Python: building the columns, psycopg converting the parameters
(river/_pgarray.py builds most of them), and the whole call on a real database. Usage::

    .venv/bin/python bench/params_micro.py [--db URL] [--n 1000] [--runs 15] [--only PREFIX]
        [--nogc]

Sections (microseconds of CPU of this process per job; the server's work is not counted):

- ``complete.to_batch``: ``river._completer._to_batch`` of ``n`` completed outcomes;
- ``complete.dump``: ``set_state_many_op`` building its parameters, and psycopg converting
  them (``PostgresQuery``, what ``cursor.execute`` does before sending);
- ``complete.full``: both, plus running the statement on ``n`` running rows;
- ``complete_mixed.*``: the same for a batch mixing completions, retries (an error),
  snoozes (scheduled_at, attempt) and staged metadata;
- ``insert.build`` / ``insert.dump``: ``build_batch`` of ``n`` one-field args, and
  ``insert_many_op`` building its parameters plus psycopg converting them;
- ``insert.full``: ``Client.insert_many_tx`` of those ``n`` jobs.

The database (``--db``, default ``$DATABASE_URL``) must be migrated; nothing is left in it:
the whole run is one transaction rolled back at the end, each timed run inside a savepoint
rolled back after it. The session runs in UTC, as the client's own pools do. Times are
``time.process_time()`` (steadier than wall time on a shared machine), the first two runs
are warm-up, and the best and the median of the rest are printed; ``--nogc`` turns the garbage
collector off while timing. To compare with another version of the library, extract it and put
it first on the path, e.g.
``git archive HEAD river | tar -x -C /tmp/base`` then
``PYTHONPATH=/tmp/base .venv/bin/python bench/params_micro.py`` (the path of the package
measured is printed first).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

import river
from river._completer import _to_batch
from river._driver import CompletionBatch, insert_many_op, queries_for, set_state_many_op
from river._insert import InsertDefaults, build_batch
from river._outcome import Outcome
from river._sansio import run_sync
from river._types import AttemptError, JobRow, JobState


class SmallArgs(river.JobArgs):
    kind: ClassVar[str] = "bench_params_micro"
    num: int


def _completed(rows: list[JobRow]) -> list[Outcome]:
    return [Outcome(r, JobState.COMPLETED, "job_completed", datetime.now(UTC)) for r in rows]


def _mixed(rows: list[JobRow]) -> list[Outcome]:
    out = []
    for k, r in enumerate(rows):
        now = datetime.now(UTC)
        if k % 4 == 0:
            out.append(Outcome(r, JobState.COMPLETED, "job_completed", now))
        elif k % 4 == 1:
            error = AttemptError(at=now, attempt=1, error='boom "x" \\ y', trace="tb\nline")
            later = now + timedelta(seconds=3)
            out.append(Outcome(r, JobState.RETRYABLE, "job_failed", None, later, None, error))
        elif k % 4 == 2:
            later = now + timedelta(minutes=1)
            snoozes = {"snoozes": 1}
            out.append(Outcome(r, JobState.SCHEDULED, "job_snoozed", None, later, 0, None, snoozes))
        else:
            output = {"output": {"a": [1, 2, "three"]}}
            out.append(
                Outcome(r, JobState.COMPLETED, "job_completed", now, None, None, None, output)
            )
    return out


class Timer:
    def __init__(self, conn: psycopg.Connection[Any], jobs: int, runs: int, only: str, nogc: bool):
        self.conn, self.jobs, self.runs, self.only, self.nogc = conn, jobs, runs, only, nogc

    def measure(self, name: str, fn: Callable[[], object], savepoint: bool = False) -> None:
        if self.only and not name.startswith(self.only):
            return
        times = []
        for _ in range(self.runs + 2):
            gc.collect()
            with self.conn.transaction(force_rollback=True) if savepoint else _nothing():
                if self.nogc:
                    gc.disable()
                started = time.process_time()
                fn()
                times.append(time.process_time() - started)
                gc.enable()
        times = times[2:]
        print(
            f"{name:24s} best {min(times) / self.jobs * 1e6:7.2f} us/job   "
            f"median {statistics.median(times) / self.jobs * 1e6:7.2f} us/job"
        )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", default=os.environ.get("DATABASE_URL"), help="database URL")
    parser.add_argument("--n", type=int, default=1000, help="jobs per batch")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", default="", help="only the sections starting with this")
    parser.add_argument("--nogc", action="store_true", help="garbage collector off while timing")
    opts = parser.parse_args()
    if not opts.db:
        parser.error("--db or $DATABASE_URL is required")
    print(f"river from {os.path.dirname(river.__file__)}")
    n = opts.n
    q = queries_for(None)
    with psycopg.connect(opts.db) as conn:
        found = conn.execute("SELECT to_regclass('river_job') IS NOT NULL").fetchone()
        if not (found and found[0]):
            parser.error("the database has no river_job table: migrate it first")
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        timer = Timer(conn, n, opts.runs, opts.only, opts.nogc)
        cur = conn.execute(
            "INSERT INTO river_job (args, kind, queue, state, attempt, attempted_at, max_attempts,"
            " priority) SELECT '{\"num\":1}', %s, 'default', 'running', 1, now(), 25, 1"
            " FROM generate_series(1, %s) RETURNING id",
            (SmallArgs.kind, n),
        )
        now = datetime.now(UTC)
        rows = [
            JobRow(r[0], SmallArgs.kind, "default", JobState.RUNNING, '{"num":1}', 1, 25, 1, now,
                   now, now)
            for r in cur.fetchall()
        ]  # fmt: skip
        for label, outcomes in (("complete", _completed(rows)), ("complete_mixed", _mixed(rows))):
            batch = _to_batch(outcomes)

            def dump(b: CompletionBatch = batch) -> None:
                query = next(set_state_many_op(q, b))
                PostgresQuery(Transformer(conn)).convert(query.sql, query.params)

            def written(o: list[Outcome] = outcomes) -> None:
                assert len(run_sync(conn, set_state_many_op(q, _to_batch(o)))) == n

            timer.measure(f"{label}.to_batch", lambda o=outcomes: _to_batch(o))
            timer.measure(f"{label}.dump", dump)
            timer.measure(f"{label}.full", written, savepoint=True)
        defaults = InsertDefaults()
        items = [(SmallArgs(num=i), None) for i in range(n)]
        insert_batch = build_batch(items, defaults, None, field_prefix="jobs")

        def insert_dump() -> None:
            query = next(insert_many_op(q, insert_batch))
            PostgresQuery(Transformer(conn)).convert(query.sql, query.params)

        client = river.Client(config=river.Config())
        plain = [args for args, _ in items]
        timer.measure(
            "insert.build", lambda: build_batch(items, defaults, None, field_prefix="jobs")
        )
        timer.measure("insert.dump", insert_dump)
        timer.measure("insert.full", lambda: client.insert_many_tx(conn, plain), savepoint=True)
        conn.rollback()


if __name__ == "__main__":
    main()
