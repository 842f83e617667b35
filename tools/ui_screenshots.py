"""Screenshots of the dashboard for docs/ui.md (docs/images/ui-*.png).

Fills a fresh database with a realistic mix: a client works several kinds on three queues
(emails that sometimes fail with a Python traceback, thumbnails, slow reports still running),
some jobs are discarded, cancelled or scheduled, a periodic job runs, the reports queue is
paused and the email queue has a cluster-wide max_workers override. An hour of earlier
completions is written directly, so that the throughput chart has a history to show. Then it
serves the dashboard (created with the client, as an application would) and photographs each
page with headless Chromium (/usr/bin/chromium, driven by Playwright).

    python tools/ui_screenshots.py            # uses $DATABASE_URL's server, else river dev
    python tools/ui_screenshots.py --out /tmp/shots

The database it creates (river_ui_screenshots) is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import psycopg
import uvicorn
from playwright.async_api import async_playwright
from psycopg import conninfo, sql

import river
import river.ui
from river import dev
from river.migrate import Migrator

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DATABASE = "river_ui_screenshots"


class SendEmail(river.JobArgs):
    kind: ClassVar[str] = "send_email"
    to: str
    template: str


class Thumbnail(river.JobArgs):
    kind: ClassVar[str] = "make_thumbnail"
    image_id: int
    width: int


class MonthlyReport(river.JobArgs):
    kind: ClassVar[str] = "monthly_report"
    account_id: int


class CleanupSessions(river.JobArgs):
    kind: ClassVar[str] = "cleanup_sessions"


class SmtpError(Exception):
    pass


class SendEmailWorker(river.Worker[SendEmail]):
    async def work(self, job: river.Job[SendEmail]) -> None:
        await asyncio.sleep(random.uniform(0.005, 0.03))
        if job.args.to.endswith("@bounce.example"):
            self._deliver(job.args.to)

    def _deliver(self, to: str) -> None:
        raise SmtpError(f"550 5.1.1 <{to}>: recipient address rejected")


class ThumbnailWorker(river.Worker[Thumbnail]):
    async def work(self, job: river.Job[Thumbnail]) -> None:
        await asyncio.sleep(random.uniform(0.002, 0.01))
        if job.args.width > 4000:
            raise ValueError(f"width {job.args.width} exceeds the 4000 px limit")


class MonthlyReportWorker(river.Worker[MonthlyReport]):
    async def work(self, job: river.Job[MonthlyReport]) -> None:
        await asyncio.sleep(600)  # still running when the photos are taken


class CleanupWorker(river.Worker[CleanupSessions]):
    async def work(self, job: river.Job[CleanupSessions]) -> None:
        pass


def _database_url() -> tuple[str, str]:
    server = dev.database_url()
    params = conninfo.conninfo_to_dict(server)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    params["dbname"] = DATABASE
    url = conninfo.make_conninfo("", **params)
    with psycopg.connect(url, autocommit=True) as conn:
        Migrator(conn).migrate_up()
    return server, url


def _history(url: str) -> None:
    """An hour of earlier completions and failures, for the throughput chart."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO river_job (kind, queue, state, args, attempt, max_attempts, attempted_at,
                                   finalized_at, attempted_by, created_at, scheduled_at)
            SELECT kind, queue, 'completed', jsonb_build_object('n', n), 1, 25,
                   t - interval '40 ms', t, ARRAY['web-1'], t - interval '1 s', t - interval '1 s'
            FROM (
                SELECT n, now() - make_interval(mins => m) + random() * interval '55 s' AS t,
                       CASE WHEN n % 3 = 0 THEN 'make_thumbnail' ELSE 'send_email' END AS kind,
                       CASE WHEN n % 3 = 0 THEN 'default' ELSE 'email' END AS queue
                FROM generate_series(1, 59) AS m,
                     LATERAL generate_series(1, 20 + (30 * (1 + sin(m / 6.0)))::int) AS n
            ) AS earlier
            """
        )
        conn.execute(
            """
            INSERT INTO river_job (kind, queue, state, args, attempt, max_attempts, attempted_at,
                                   finalized_at, attempted_by, errors, created_at, scheduled_at)
            SELECT 'send_email', 'email', 'discarded',
                   jsonb_build_object('to', 'old' || m || '@bounce.example', 'template', 'receipt'),
                   3, 3, t, t, ARRAY['web-1'],
                   ARRAY[jsonb_build_object('at', t, 'attempt', 3,
                         'error', 'SmtpError: 550 5.1.1 recipient address rejected', 'trace', '')],
                   t - interval '10 min', t - interval '1 s'
            FROM generate_series(1, 60, 7) AS m,
                 LATERAL (SELECT now() - make_interval(mins => m) AS t) AS base
            """
        )


async def _fill(client: river.AsyncClient) -> None:
    rng = random.Random(7)
    emails = [
        SendEmail(to=f"user{i}@{'bounce' if i % 9 == 0 else 'mail'}.example", template="welcome")
        for i in range(120)
    ]
    await client.insert_many([(e, river.InsertOpts(queue="email", max_attempts=3)) for e in emails])
    await client.insert_many(
        [
            (
                Thumbnail(image_id=i, width=rng.choice([320, 640, 1280, 8000])),
                river.InsertOpts(tags=["images"]),
            )
            for i in range(80)
        ]
    )
    await client.insert_many(
        [
            (MonthlyReport(account_id=i), river.InsertOpts(queue="reports", priority=2))
            for i in range(6)
        ]
    )
    later = river.InsertOpts(queue="email", scheduled_at=_in(hours=2), tags=["newsletter"])
    await client.insert_many(
        [(SendEmail(to=f"n{i}@mail.example", template="newsletter"), later) for i in range(15)]
    )
    waiting = await client.insert(SendEmail(to="vip@mail.example", template="renewal"), later)
    await client.job_cancel(waiting.job.id)


def _in(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _photograph(base: str, out: Path, failed_job: int) -> list[Path]:
    shots = [
        ("ui-overview.png", "/", "light"),
        ("ui-jobs.png", "/jobs?limit=14", "light"),
        ("ui-jobs-retryable.png", "/jobs?state=retryable&limit=10", "light"),
        ("ui-job.png", f"/jobs/{failed_job}", "light"),
        ("ui-queues.png", "/queues", "light"),
        ("ui-queue.png", "/queues/email", "light"),
        ("ui-periodic.png", "/periodic", "light"),
        ("ui-overview-dark.png", "/", "dark"),
    ]
    written = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for name, path, scheme in shots:
            context = await browser.new_context(
                viewport={"width": 1280, "height": 860}, color_scheme=scheme, device_scale_factor=1
            )
            page = await context.new_page()
            await page.goto(base + path)
            await page.wait_for_selector("main h1")
            await page.wait_for_function(
                "!document.querySelector('main').textContent.includes('Loading')"
            )
            await page.wait_for_timeout(400)
            target = out / name
            await page.screenshot(path=str(target), full_page=True)
            written.append(target)
            await context.close()
        await browser.close()
    return written


async def main(out: Path) -> None:
    server, url = _database_url()
    _history(url)
    workers = river.Workers()
    for worker in (SendEmailWorker(), ThumbnailWorker(), MonthlyReportWorker(), CleanupWorker()):
        workers.add(worker)
    config = river.Config(
        id="web-1",
        workers=workers,
        queues={
            "default": river.QueueConfig(max_workers=10),
            "email": river.QueueConfig(max_workers=20),
            "reports": river.QueueConfig(max_workers=2),
        },
        periodic_jobs=[
            river.PeriodicJob(
                river.Cron("*/15 * * * *"),
                CleanupSessions,
                id="cleanup_sessions",
                run_on_start=True,
            ),
            river.PeriodicJob(
                river.PeriodicInterval(3600),
                lambda: MonthlyReport(account_id=0),
                id="hourly_rollup",
            ),
        ],
        retry_policy=lambda errors, now: now + timedelta(minutes=10 * errors),
    )
    client = river.AsyncClient(url, config)
    await client.start()
    try:
        await _fill(client)
        for _ in range(400):
            jobs = await client.job_list(river.JobListParams(states=["retryable"], limit=1))
            if jobs.jobs and client.is_leader:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(3)
        await client.queue_pause("reports")
        await client.queue_update("email", max_workers=8)
        failed = (
            await client.job_list(
                river.JobListParams(kinds=["send_email"], states=["retryable"], limit=1)
            )
        ).jobs
        dashboard = river.ui.create_app(url, client=client, title="River · acme-prod")
        port = _free_port()
        server_ = uvicorn.Server(
            uvicorn.Config(
                dashboard, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
            )
        )
        serving = asyncio.ensure_future(server_.serve())  # stopped and awaited below
        for _ in range(200):  # a tool, not a test: a short poll until uvicorn listens
            if server_.started:
                break
            await asyncio.sleep(0.05)
        try:
            written = await _photograph(
                f"http://127.0.0.1:{port}", out, failed[0].id if failed else 1
            )
        finally:
            server_.should_exit = True
            await serving
            await dashboard.close()
        for path in written:
            print("wrote", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    finally:
        await client.stop(timeout=1)
        await client.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(out))
