"""The ``river.job`` log lines (failed attempts, discards, cancellations) and their rate limit,
the configuration behind them (``Config.job_log``, ``[client.job_log]``), and the leadership
lines of ``river.elector``, including in a real ``river worker``'s output.

Runtime tests start a real AsyncClient on a fresh database and read the records with caplog,
waiting on conditions with deadlines.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from helpers import fast_config, make_workers, open_db, started_client, wait_for
from worker_apps.harness import running_worker, worker_env

import river
import river._joblog
from river._joblog import JobLogger
from river.worker._config import build_plan, load_file

pytestmark = pytest.mark.anyio

JOB_FIELDS = ("job_id", "job_kind", "queue", "attempt", "max_attempts")


class Flaky(river.JobArgs):
    kind: ClassVar[str] = "log_flaky"
    mode: str = "raise"
    n: int = 0


class FlakyWorker(river.Worker[Flaky]):
    async def work(self, job: river.Job[Flaky]) -> None:
        if job.args.mode == "raise":
            raise ValueError(f"smtp down {job.args.n}")
        if job.args.mode == "cancel":
            raise river.JobCancel("recipient unsubscribed")
        if job.args.mode == "snooze":
            if "snoozes" not in job.metadata:
                raise river.JobSnooze(0.01)
            return
        assert job.args.mode == "ok"


def retry_in(seconds: float) -> Any:
    def policy(error_count: int, now: datetime) -> datetime:
        return now + timedelta(seconds=seconds)

    return policy


def config(**overrides: Any) -> river.Config:
    overrides.setdefault("retry_policy", retry_in(0.01))
    return fast_config(make_workers(FlakyWorker()), **overrides)


def job_records(caplog: pytest.LogCaptureFixture, above: int = logging.DEBUG) -> list[Any]:
    return [r for r in caplog.records if r.name == "river.job" and r.levelno > above]


async def insert(db_url: str, args: river.JobArgs, max_attempts: int = 25) -> int:
    async with river.AsyncClient(db_url) as c:
        res = await c.insert(args, river.InsertOpts(max_attempts=max_attempts))
    return res.job.id


def assert_fields(record: Any, job_id: int, attempt: int, max_attempts: int, kind: str) -> None:
    values = {name: getattr(record, name) for name in JOB_FIELDS}
    assert values == {
        "job_id": job_id,
        "job_kind": kind,
        "queue": "default",
        "attempt": attempt,
        "max_attempts": max_attempts,
    }


async def test_failed_attempts_warn_and_the_discard_is_an_error_with_its_traceback(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="river.job")
    job_id = await insert(db_url, Flaky(mode="raise", n=7), max_attempts=3)
    async with open_db(db_url) as db, started_client(db_url, config()):
        await db.wait_state(job_id, "discarded")
    records = job_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING, logging.ERROR]
    for attempt, record in enumerate(records, start=1):
        assert_fields(record, job_id, attempt, 3, "log_flaky")
        assert record.error_type == "ValueError"
        assert record.error == "ValueError: smtp down 7"
        line = record.getMessage()
        assert line.startswith(f"job {job_id} failed")
        assert f"kind log_flaky, queue default, attempt {attempt}/3" in line, line
        assert line.endswith("ValueError: smtp down 7"), line
    assert records[0].outcome == "retried"
    assert "retrying in" in records[0].getMessage()
    assert records[0].retry_at is not None
    assert records[0].exc_info is None  # the traceback once: on the discard only
    assert records[2].outcome == "discarded"
    assert "discarded, no attempts left" in records[2].getMessage()
    assert records[2].exc_info is not None
    assert "Traceback (most recent call last)" in caplog.text
    assert caplog.text.count("Traceback (most recent call last)") == 1


async def test_unknown_kind_says_retried_then_discarded(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="river.job")
    async with open_db(db_url) as db:
        job_id = await db.scalar(
            "INSERT INTO river_job (args, kind, max_attempts) VALUES ('{}', 'nobody_logs_me', 2)"
            " RETURNING id"
        )
        async with started_client(db_url, config()):
            row = await db.wait_state(job_id, "discarded")
    first, second = (e["error"] for e in row["errors"])
    assert "not registered" in first, first
    assert "the job will be retried" in first, first
    assert "no attempts left: it is discarded" in second, second
    assert "retried" not in second
    records = job_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING, logging.ERROR]
    assert_fields(records[0], job_id, 1, 2, "nobody_logs_me")
    assert_fields(records[1], job_id, 2, 2, "nobody_logs_me")
    assert "retrying in" in records[0].getMessage()
    assert "the job will be retried" in records[0].getMessage()
    assert "discarded" in records[1].getMessage()
    assert "retr" not in records[1].getMessage()
    assert records[0].error_type == records[1].error_type == "UnknownKind"
    assert all(r.exc_info is None for r in records)  # nothing a traceback would explain


async def test_args_failing_validation_log_one_line_naming_the_field(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="river.job")
    async with open_db(db_url) as db:
        job_id = await db.scalar(
            "INSERT INTO river_job (args, kind, max_attempts)"
            " VALUES ('{\"n\": \"many\"}', 'log_flaky', 1) RETURNING id"
        )
        async with started_client(db_url, config()):
            await db.wait_state(job_id, "discarded")
    (record,) = job_records(caplog)
    assert record.levelno == logging.ERROR
    assert_fields(record, job_id, 1, 1, "log_flaky")
    line = record.getMessage()
    assert "args do not validate against Flaky: n: " in line, line
    assert "\n" not in line
    assert record.exc_info is None


async def test_cancel_logs_info_and_snooze_nothing_above_debug(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="river.job")
    cancel = await insert(db_url, Flaky(mode="cancel"))
    snooze = await insert(db_url, Flaky(mode="snooze"))
    async with open_db(db_url) as db, started_client(db_url, config()):
        await db.wait_state(cancel, "cancelled")
        await db.wait_state(snooze, "completed")
    (record,) = job_records(caplog)
    assert record.levelno == logging.INFO
    assert_fields(record, cancel, 1, 25, "log_flaky")
    assert record.outcome == "cancelled"
    line = record.getMessage()
    assert f"job {cancel} cancelled by its worker" in line
    assert line.endswith(": recipient unsubscribed"), line
    debug = [r for r in caplog.records if r.name == "river.job" and r.levelno == logging.DEBUG]
    assert [r.outcome for r in debug] == ["snoozed"]
    assert debug[0].job_id == snooze


async def test_a_flood_logs_at_most_max_lines_then_one_summary(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="river.job")
    n, limit = 200, 5
    async with river.AsyncClient(db_url) as c:
        await c.insert_many([Flaky(mode="raise", n=i) for i in range(n)])
    cfg = config(
        retry_policy=retry_in(3600),
        job_log=river.JobLogConfig(max_lines=limit, interval=600),
    )
    started = time.monotonic()
    async with open_db(db_url) as db:
        async with started_client(db_url, cfg):
            await db.wait_count(n, "state = 'retryable'", timeout=60)
            assert len(job_records(caplog)) == limit
        elapsed = time.monotonic() - started
        # The client stopped: the failures held back are summed up in one line.
        records = job_records(caplog)
    assert len(records) == limit + 1, [r.getMessage() for r in records]
    assert all(r.levelno == logging.WARNING for r in records)
    summary = records[-1]
    assert summary.suppressed == n - limit
    match = re.fullmatch(
        r"suppressed (\d+) similar failures \(retried\) of kind log_flaky in queue default "
        r"in the last ([\d.]+)(s|m\d+s)",
        summary.getMessage(),
    )
    assert match, summary.getMessage()
    assert int(match.group(1)) == n - limit
    assert elapsed < 60


async def test_the_summary_comes_at_the_end_of_the_interval_without_more_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No database needed: the rate limiter alone, on the running loop's timer."""
    caplog.set_level(logging.DEBUG, logger="river.job")
    log = JobLogger(river.JobLogConfig(max_lines=2, interval=0.3))
    now = datetime.now(UTC)
    for i in range(1, 11):
        row = fake_row(i, "burst")
        log.failed(row, ValueError("x"), "ValueError: x", "worker", retry_at=now, now=now)
    assert len(job_records(caplog)) == 2
    await wait_for(lambda: len(job_records(caplog)) == 3, timeout=10, message="the summary")
    summary = job_records(caplog)[-1]
    assert summary.getMessage().startswith("suppressed 8 similar failures (retried) of kind burst")
    # A new interval starts afresh.
    log.failed(row, ValueError("x"), "ValueError: x", "worker", retry_at=None, now=now)
    assert job_records(caplog)[-1].levelno == logging.ERROR
    log.flush()
    assert len(job_records(caplog)) == 4


def fake_row(job_id: int, kind: str) -> river.JobRow:
    now = datetime.now(UTC)
    return river.JobRow(
        id=job_id,
        kind=kind,
        queue="q",
        state=river.JobState.RUNNING,
        encoded_args="{}",
        attempt=1,
        max_attempts=5,
        priority=1,
        created_at=now,
        scheduled_at=now,
    )


def test_without_a_loop_the_summary_comes_with_the_next_line_and_old_windows_go(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="river.job")
    monkeypatch.setattr(river._joblog, "_MAX_WINDOWS", 3)
    clock = [0.0]
    log = JobLogger(river.JobLogConfig(max_lines=1, interval=10), clock=lambda: clock[0])
    now = datetime.now(UTC)

    def fail(kind: str) -> None:
        log.failed(fake_row(1, kind), ValueError("x"), "x", "worker", retry_at=now, now=now)

    for _ in range(3):
        fail("a")
    assert len(job_records(caplog)) == 1  # no event loop here: no timer either
    clock[0] = 10.5
    fail("a")
    messages = [r.getMessage() for r in job_records(caplog)]
    assert messages[1] == (
        "suppressed 2 similar failures (retried) of kind a in queue q in the last 10.5s"
    )
    assert messages[2].startswith("job 1 failed, retrying in")
    fail("a")  # suppressed in the new window
    for kind in "bcd":
        fail(kind)
    assert len(log._windows) == 4  # nothing expired yet
    clock[0] = 30.0
    for kind in "efg":
        fail(kind)
    # The windows that expired were swept (and "a"'s held-back failure summed up).
    assert set(log._windows) == {(k, "q", "retried") for k in "efg"}
    assert job_records(caplog)[-2].getMessage().startswith("suppressed 1 similar failures")


async def test_job_log_off_logs_nothing(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="river.job")
    failing = await insert(db_url, Flaky(mode="raise"), max_attempts=2)
    cancel = await insert(db_url, Flaky(mode="cancel"))
    async with open_db(db_url) as db:
        unknown = await db.scalar(
            "INSERT INTO river_job (args, kind, max_attempts) VALUES ('{}', 'nobody', 1)"
            " RETURNING id"
        )
        async with started_client(db_url, config(job_log=None)):
            await db.wait_state(failing, "discarded")
            await db.wait_state(cancel, "cancelled")
            await db.wait_state(unknown, "discarded")
    assert [r for r in caplog.records if r.name == "river.job"] == []


async def test_levels_are_configurable_and_off_per_line(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="river.job")
    job_id = await insert(db_url, Flaky(mode="raise"), max_attempts=2)
    cfg = config(
        job_log=river.JobLogConfig(
            failure_level="off", discard_level="critical", tracebacks="never"
        )
    )
    async with open_db(db_url) as db, started_client(db_url, cfg):
        await db.wait_state(job_id, "discarded")
    (record,) = job_records(caplog)
    assert record.levelno == logging.CRITICAL
    assert record.exc_info is None


def test_job_log_config_validation() -> None:
    assert river.Config().job_log == river.JobLogConfig()
    river.JobLogConfig(failure_level="Info", discard_level=35, cancel_level=None, max_lines=None)
    for bad in (
        {"failure_level": "loud"},
        {"discard_level": True},
        {"cancel_level": -1},
        {"tracebacks": "sometimes"},
        {"max_lines": 0},
        {"interval": 0},
        {"interval": float("nan")},
    ):
        with pytest.raises(river.InvalidConfigError) as info:
            river.JobLogConfig(**bad)
        assert info.value.field == f"job_log.{next(iter(bad))}"
    with pytest.raises(river.InvalidConfigError, match="job_log"):
        river.Config(job_log="off")  # type: ignore[arg-type]


def _plan(tmp_path: Path, text: str, base: river.Config) -> Any:
    path = tmp_path / "river.toml"
    path.write_text(text)
    return build_plan(load_file(path, {"database": {"url": "postgres://h/db"}}), base, path=path)


def test_worker_file_client_job_log(tmp_path: Path) -> None:
    base = river.Config(workers=make_workers(FlakyWorker()))
    plan = _plan(tmp_path, "[client.job_log]\nenabled = false\n", base)
    assert plan.config.job_log is None
    plan = _plan(
        tmp_path,
        '[client.job_log]\nfailure_level = "info"\nmax_lines = "unlimited"\ninterval = "5s"\n',
        base,
    )
    assert plan.config.job_log == river.JobLogConfig(
        failure_level="info", max_lines=None, interval=5.0
    )
    assert plan.restart_only["client.job_log"] == plan.config.job_log
    # Keys left out keep the app's values.
    app = river.Config(
        workers=base.workers, job_log=river.JobLogConfig(cancel_level="warning", max_lines=3)
    )
    plan = _plan(tmp_path, '[client.job_log]\ntracebacks = "always"\n', app)
    assert plan.config.job_log == river.JobLogConfig(
        cancel_level="warning", max_lines=3, tracebacks="always"
    )
    for text, key in (
        ('[client.job_log]\nfailure_level = "loud"\n', "client.job_log.failure_level"),
        ("[client.job_log]\nmax_lines = 0\n", "client.job_log.max_lines"),
        ('[client.job_log]\nlevel = "info"\n', "client.job_log.level"),
    ):
        with pytest.raises(river.InvalidConfigError) as info:
            _plan(tmp_path, text, base)
        assert info.value.field == key, str(info.value)


async def test_leadership_changes_are_logged_at_info(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="river.elector")
    cfg = config(id="log_leader_1", leader_elect_interval=0.2, leader_ttl=1.5)
    async with started_client(db_url, cfg) as client:
        await wait_for(lambda: client.is_leader, timeout=10, message="leadership")
    lines = [
        (r.levelno, r.getMessage(), r.client_id)
        for r in caplog.records
        if r.name == "river.elector" and r.levelno == logging.INFO
    ]
    assert lines == [
        (logging.INFO, "client log_leader_1 gained leadership", "log_leader_1"),
        (logging.INFO, "client log_leader_1 resigned leadership (stopping)", "log_leader_1"),
    ]


def test_river_worker_output_shows_leadership_and_job_failures(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO river_job (args, kind, max_attempts) VALUES ('{}', 'no_such_kind', 5)"
            " RETURNING id"
        ).fetchone()
    assert row is not None
    with running_worker(["worker_apps.basic:make_config"], worker_env(db_url)) as worker:
        worker.wait_for(r"INFO river\.elector: client \S+ gained leadership")
        line = worker.wait_for(
            rf"WARNING river\.job: job {row[0]} failed, retrying in .*kind no_such_kind"
        )
        assert "is not registered" in line.string
        worker.send(signal.SIGINT)
        assert worker.wait_exit() == 0, worker.output()
    assert worker.matches(r"INFO river\.elector: client \S+ resigned leadership \(stopping\)")


def test_superseded_attempts_are_rate_limited_and_summed_up_like_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The summary of a window of superseded attempts (job_complete_tx fenced out) raised
    # KeyError: its outcome had no level nor wording.
    caplog.set_level(logging.DEBUG, logger="river.job")
    clock = [0.0]
    log = JobLogger(river.JobLogConfig(max_lines=1, interval=10), clock=lambda: clock[0])
    for job_id in (1, 2, 3):
        log.superseded(fake_row(job_id, "charge"), river.JobNotRunningError(job_id, 1))
    log.flush()
    records = job_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING]
    assert records[0].getMessage().startswith("job 1: attempt 1 no longer owns the job")
    assert records[0].outcome == "superseded"  # type: ignore[attr-defined]
    assert records[1].getMessage() == (
        "suppressed 2 similar attempts that no longer owned their job (superseded) of kind "
        "charge in queue q in the last 0s"
    )


class AfterTx(river.JobArgs):
    kind: ClassVar[str] = "log_after_tx"
    commit: bool


class AfterTxWorker(river.Worker[AfterTx]):
    """Completes the job in its own transaction, then raises: after the commit (a post-commit
    step failed), or inside the transaction, which then rolls back."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    async def work(self, job: river.Job[AfterTx]) -> None:
        async with await psycopg.AsyncConnection.connect(self.db_url) as conn:
            if job.args.commit:
                async with conn.transaction():
                    await river.job_complete_tx(conn, job)
                raise ValueError("the e-mail after the commit failed")
            async with conn.transaction():
                await river.job_complete_tx(conn, job)
                raise ValueError("failed inside the transaction")


class SyncAfterTxWorker(river.Worker[AfterTx]):
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def work(self, job: river.Job[AfterTx]) -> None:
        with psycopg.connect(self.db_url) as conn, conn.transaction():
            river.job_complete_tx(conn, job)
        raise ValueError("the e-mail after the commit failed")


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_an_error_after_job_complete_tx_says_whether_the_job_stayed_completed(
    db_url: str, caplog: pytest.LogCaptureFixture, flavour: str
) -> None:
    # It was logged "failed, retrying in ..." whether or not the worker's transaction had
    # committed; a committed one leaves the job completed, and nothing is retried.
    caplog.set_level(logging.DEBUG, logger="river.job")
    worker = AfterTxWorker(db_url) if flavour == "async" else SyncAfterTxWorker(db_url)
    settings = {"retry_policy": retry_in(60)}
    async with (
        open_db(db_url) as db,
        started_client(db_url, fast_config(make_workers(worker), **settings)) as client,
    ):
        committed = (await client.insert(AfterTx(commit=True))).job.id
        row = await db.wait_state(committed, "completed")
        await wait_for(lambda: len(job_records(caplog)) == 1, message="the committed one's line")
        rolled_back = None
        if flavour == "async":
            rolled_back = (await client.insert(AfterTx(commit=False))).job.id
            await db.wait_state(rolled_back, "retryable")
            await wait_for(lambda: len(job_records(caplog)) == 2, message="the other's line")
    assert not row["errors"]  # the error was not recorded
    first = job_records(caplog)[0]
    assert first.levelno == logging.WARNING
    assert first.getMessage().startswith(
        f"job {committed} raised after job_complete_tx had completed it in the worker's "
        "transaction, which committed: the job stays completed and the error is not recorded"
    )
    assert first.getMessage().endswith("ValueError: the e-mail after the commit failed")
    assert first.outcome == "completed_then_raised"
    assert_fields(first, committed, 1, 25, "log_after_tx")
    if rolled_back is not None:
        second = job_records(caplog)[1]
        assert second.getMessage().startswith(f"job {rolled_back} failed, retrying in")
        assert second.outcome == "retried"
