"""`make demo`: the whole product in under a minute.

On the embedded Postgres (or $DATABASE_URL), in a schema of its own (`river_demo`, recreated on
every run): migrate, insert ~20,000 jobs over three queues (some fail and retry, some snooze,
some are scheduled a few seconds ahead), work them with a live display of counts by state and
jobs/s, stop gracefully, and print a summary.

Options: `--jobs N` (default 20000), `--schema NAME`, `--keep` (do not drop the schema first).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import psycopg
from psycopg import sql

import river
from river import dev
from river.migrate import AsyncMigrator

# --- jobs ------------------------------------------------------------------------------------


class SendEmail(river.JobArgs):
    kind: ClassVar[str] = "send_email"
    to: str
    subject: str


class RenderReport(river.JobArgs):
    kind: ClassVar[str] = "render_report"
    report_id: int
    pages: int


class DeliverWebhook(river.JobArgs):
    kind: ClassVar[str] = "deliver_webhook"
    url: str
    attempt_fails: int  # fail this many times before succeeding


class SendEmailWorker(river.Worker[SendEmail]):
    async def work(self, job: river.Job[SendEmail]) -> None:
        await asyncio.sleep(0.001)  # talk to an SMTP server


class RenderReportWorker(river.Worker[RenderReport]):
    async def work(self, job: river.Job[RenderReport]) -> None:
        # A report that is "not ready yet" snoozes: it runs again later without using an attempt.
        if job.args.report_id % 50 == 0 and not job.metadata.get("snoozes"):
            raise river.JobSnooze(1.0)
        await asyncio.sleep(0.002 * job.args.pages)


class DeliverWebhookWorker(river.Worker[DeliverWebhook]):
    async def work(self, job: river.Job[DeliverWebhook]) -> None:
        if job.attempt <= job.args.attempt_fails:
            raise ConnectionError(f"{job.args.url} answered 503")


def quick_retries(error_count: int, now: datetime) -> datetime:
    """The demo retries after 0.5 s, 1 s, 1.5 s... instead of River's 1 s, 16 s, 81 s..."""
    return now + timedelta(seconds=0.5 * error_count)


# --- display -----------------------------------------------------------------------------------

STATES = ["available", "running", "retryable", "scheduled", "completed", "discarded", "cancelled"]


async def counts(conn: psycopg.AsyncConnection, schema: str) -> dict[str, int]:
    cur = await conn.execute(
        sql.SQL("SELECT state::text, count(*) FROM {}.river_job GROUP BY 1").format(
            sql.Identifier(schema)
        )
    )
    return {state: n for state, n in await cur.fetchall()}


def render(c: dict[str, int], rate: float, elapsed: float) -> str:
    parts = " ".join(f"{s} {c.get(s, 0):>6}" for s in STATES if c.get(s, 0) or s == "completed")
    return f"[{elapsed:5.1f}s] {parts} | {rate:8.0f} jobs/s"


# --- main --------------------------------------------------------------------------------------


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--schema", default="river_demo")
    parser.add_argument("--keep", action="store_true")
    opts = parser.parse_args()

    url = dev.database_url()
    print(
        f"database: {url}" + ("" if "DATABASE_URL" in __import__("os").environ else " (embedded)")
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if not opts.keep:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(opts.schema))
            )
        await conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(opts.schema))
        )
        result = await AsyncMigrator(conn, schema=opts.schema).migrate_up()
        print(f"migrated schema {opts.schema}: {len(result.versions)} versions applied")

        workers = river.Workers()
        workers.add(SendEmailWorker())
        workers.add(RenderReportWorker())
        workers.add(DeliverWebhookWorker())
        config = river.Config(
            schema=opts.schema,
            workers=workers,
            queues={
                "email": river.QueueConfig(max_workers=200),
                "reports": river.QueueConfig(max_workers=50),
                "webhooks": river.QueueConfig(max_workers=100),
            },
            retry_policy=quick_retries,
            max_attempts=3,
            scheduler_interval=1.0,  # River's default is 5 s; the demo is short
            # Webhooks fail on purpose here: a few log lines per kind (river.job) are enough.
            job_log=river.JobLogConfig(max_lines=3, tracebacks="never"),
        )
        rng = random.Random(7)
        remind_at = datetime.now(UTC) + timedelta(seconds=3)
        jobs: list[river.InsertManyItem] = []
        for i in range(opts.jobs):
            pick = rng.random()
            if pick < 0.05:
                # Reminders: scheduled 3 s ahead; the leader's scheduler makes them available.
                email = SendEmail(to=f"user{i}@example.com", subject="Reminder")
                jobs.append((email, river.InsertOpts(queue="email", scheduled_at=remind_at)))
            elif pick < 0.6:
                email = SendEmail(to=f"user{i}@example.com", subject="Welcome")
                jobs.append((email, river.InsertOpts(queue="email")))
            elif pick < 0.8:
                report = RenderReport(report_id=i, pages=rng.randint(1, 5))
                jobs.append((report, river.InsertOpts(queue="reports", priority=2)))
            else:
                fails = rng.choice([0, 0, 1, 2, 5])  # 5 > max_attempts: discarded
                hook = DeliverWebhook(url=f"https://hooks.example/{i}", attempt_fails=fails)
                jobs.append((hook, river.InsertOpts(queue="webhooks")))

        client = river.AsyncClient(url, config)
        t0 = time.monotonic()
        inserted = 0
        for start in range(0, len(jobs), 5000):
            inserted += await client.insert_many_fast(jobs[start : start + 5000])
        print(f"inserted {inserted} jobs in {time.monotonic() - t0:.2f}s (COPY)")

        tty = sys.stdout.isatty()
        t0 = time.monotonic()
        last_done, last_t = 0, t0
        async with client:
            while True:
                await asyncio.sleep(0.5)
                c = await counts(conn, opts.schema)
                done = c.get("completed", 0) + c.get("discarded", 0) + c.get("cancelled", 0)
                now = time.monotonic()
                rate = (done - last_done) / (now - last_t)
                last_done, last_t = done, now
                line = render(c, rate, now - t0)
                print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
                if done >= inserted or now - t0 > 120:
                    break
            if tty:
                print()
            print("stopping gracefully (running jobs finish, outcomes are written)...")
        elapsed = time.monotonic() - t0
        c = await counts(conn, opts.schema)
        done = c.get("completed", 0) + c.get("discarded", 0) + c.get("cancelled", 0)
        print(f"summary: {done} jobs finished in {elapsed:.1f}s ({done / elapsed:.0f} jobs/s)")
        for state in STATES:
            if c.get(state):
                print(f"  {state:<10} {c[state]:>7}")
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}.river_job WHERE cardinality(errors) > 0").format(
                sql.Identifier(opts.schema)
            )
        )
        (retried,) = await cur.fetchone() or (0,)
        print(f"  jobs that failed at least once and were retried: {retried}")
        print(f"inspect them: psql {url} -c 'SELECT * FROM {opts.schema}.river_job LIMIT 5'")
    return 0 if done >= inserted else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
