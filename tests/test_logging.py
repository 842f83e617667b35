"""Log lines (issue 13): the text and JSON formats of ``river worker`` (river/_logfmt.py), the
structured fields of records about jobs and queues, and who prints river's lines when the app
configured logging itself (``--log-handler``, river/worker/_logs.py).

The formatters are tested directly; the rest runs ``river worker`` in a subprocess against the
test database with the apps in tests/worker_apps/logging_*.py.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import fast_config, started_client
from worker_apps.harness import (
    WorkerProcess,
    run_python,
    run_with_worker_logging,
    running_worker,
    worker_env,
)
from worker_apps.logging_app import Boom, workers

import river
from river._logfmt import (
    JsonFormatter,
    TextFormatter,
    job_fields,
    parse_log_level,
    record_fields,
)
from river.cli import main
from river.worker import WorkerConfigError, load_file

APP = "worker_apps.logging_app:make_config"
BASIC_CONFIG_APP = "worker_apps.logging_basic_config:make_config"
DICT_CONFIG_APP = "worker_apps.logging_dict_config:make_config"

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
JOB_KEYS = ("job_id", "job_kind", "queue", "attempt")


# --------------------------------------------------------------------------------------------
# Formatters
# --------------------------------------------------------------------------------------------


def make_record(
    msg: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    *,
    level: int = logging.WARNING,
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
    stack_info: bool = False,
) -> logging.LogRecord:
    logger = logging.getLogger("river.test_logfmt")
    record = logger.makeRecord(
        logger.name, level, __file__, 1, msg, args, exc_info, extra=extra, sinfo=None
    )
    if stack_info:
        record.stack_info = "Stack (most recent call last):\n  File 'x', line 1"
    return record


def failing() -> Any:
    try:
        raise ValueError("bad value ünïcode")
    except ValueError:
        return sys.exc_info()


def test_text_line_has_time_level_logger_message_and_fields() -> None:
    record = make_record(extra={"job_id": 5, "job_kind": "email", "queue": "default"})
    record.created = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC).timestamp()
    record.msecs = 678.0
    line = TextFormatter().format(record)
    assert line == (
        "2026-01-02T03:04:05.678Z WARNING river.test_logfmt: hello world "
        "job_id=5 job_kind=email queue=default"
    )


def test_text_quotes_values_that_would_break_the_line() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    extra = {
        "error": 'ValueError: two words and "quotes"',
        "multi": "a\nb",
        "empty": "",
        "eq": "a=b",
        "none": None,
        "flag": True,
        "at": when,
        "who": "ünï",
    }
    line = TextFormatter().format(make_record(extra=extra))
    assert "\n" not in line
    assert line.endswith(
        ' error="ValueError: two words and \\"quotes\\"" multi="a\\nb" empty="" eq="a=b" '
        f"none=null flag=true at={when.isoformat()} who=ünï"
    )


def test_text_keeps_a_multi_line_message_on_one_line() -> None:
    # A driver's error ("...\nDETAIL: ...") in the message used to put its end and the fields
    # after it on a line of their own.
    record = make_record(
        "write failed: %s",
        ("duplicate key\r\nDETAIL: Key (id)=(1).\nHINT: x",),
        extra={"job_id": 5},
    )
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\r" not in line
    assert line.endswith("write failed: duplicate key\\nDETAIL: Key (id)=(1).\\nHINT: x job_id=5")


def test_text_appends_the_traceback_and_shows_the_process_index() -> None:
    record = make_record(exc_info=failing())
    text = TextFormatter(process_index=2).format(record)
    first, *rest = text.splitlines()
    assert re.fullmatch(rf"{TIME} WARNING river\.test_logfmt\[2:\d+\]: hello world", first)
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: bad value ünïcode"


def test_json_line_is_one_object_with_the_fixed_keys_and_the_fields() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    extra = {
        "job_id": 5,
        "job_kind": "email",
        "queue": "default",
        "attempt": 2,
        "retry_at": when,
        "delay": timedelta(seconds=1.5),
        "tags": {"a"},
        "ratio": float("nan"),
        "odd": {(1, 2): "tuple key"},
    }
    line = JsonFormatter().format(make_record(extra=extra))
    obj = json.loads(line)
    assert list(obj)[:5] == ["time", "level", "logger", "message", "process"]
    assert re.fullmatch(TIME, obj["time"])
    assert obj["level"] == "WARNING"
    assert obj["logger"] == "river.test_logfmt"
    assert obj["message"] == "hello world"
    assert isinstance(obj["process"], int)
    assert "process_index" not in obj
    assert {k: obj[k] for k in JOB_KEYS} == {
        "job_id": 5,
        "job_kind": "email",
        "queue": "default",
        "attempt": 2,
    }
    assert obj["retry_at"] == "2026-01-02T03:04:05+00:00"
    assert obj["delay"] == 1.5
    assert obj["tags"] == ["a"]
    assert obj["ratio"] == "nan"
    assert obj["odd"] == "{(1, 2): 'tuple key'}"
    assert "exc_info" not in obj


def test_json_keeps_exceptions_newlines_and_non_ascii_on_one_ascii_line() -> None:
    record = make_record(
        "first line\nsecond line: %s", ("ünïcode ✓ 日本",), exc_info=failing(), stack_info=True
    )
    line = JsonFormatter(process_index=1).format(record)
    assert "\n" not in line
    assert line.isascii()
    obj = json.loads(line)
    assert obj["message"] == "first line\nsecond line: ünïcode ✓ 日本"
    assert obj["exc_info"].startswith("Traceback (most recent call last):")
    assert obj["exc_info"].endswith("ValueError: bad value ünïcode")
    assert obj["stack_info"].startswith("Stack (most recent call last):")
    assert obj["process_index"] == 1


def test_json_fields_do_not_overwrite_the_lines_own_keys() -> None:
    obj = json.loads(JsonFormatter().format(make_record(extra={"time": "t", "level": "l"})))
    assert re.fullmatch(TIME, obj["time"])
    assert obj["level"] == "WARNING"
    assert (obj["extra_time"], obj["extra_level"]) == ("t", "l")


def test_record_fields_are_the_extras_only() -> None:
    assert record_fields(make_record()) == {}
    assert record_fields(make_record(extra={"queue": "q"})) == {"queue": "q"}


def test_job_fields() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    row = river.JobRow(
        id=7,
        kind="email",
        queue="mail",
        state=river.JobState.RUNNING,
        encoded_args="{}",
        attempt=3,
        max_attempts=25,
        priority=1,
        created_at=at,
        scheduled_at=at,
    )
    assert job_fields(row) == {"job_id": 7, "job_kind": "email", "queue": "mail", "attempt": 3}


@pytest.mark.parametrize(
    ("text", "level"),
    [("debug", 10), ("INFO", 20), (" Warning ", 30), ("error", 40), ("critical", 50), ("15", 15)],
)
def test_parse_log_level(text: str, level: int) -> None:
    assert parse_log_level(text) == level


@pytest.mark.parametrize("text", ["loud", "", "-1", "0", 0, "notset", True])
def test_parse_log_level_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="must be a logging level"):
        parse_log_level(text)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_toml_logging_keys(tmp_path: Path) -> None:
    path = tmp_path / "river.toml"
    path.write_text('[worker]\nlog_format = "json"\nlog_level = "debug"\nlog_handler = "always"\n')
    worker = load_file(path).worker
    assert (worker.log_format, worker.log_level, worker.log_handler) == ("json", 10, "always")
    # Flags (merged as overrides) win over the file.
    worker = load_file(path, {"worker": {"log_format": "text", "log_level": 40}}).worker
    assert (worker.log_format, worker.log_level, worker.log_handler) == ("text", 40, "always")
    assert load_file(None).worker.log_format is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('log_format = "xml"', "worker.log_format"),
        ('log_level = "loud"', "worker.log_level"),
        ('log_handler = "sometimes"', "worker.log_handler"),
    ],
)
def test_toml_logging_keys_are_validated(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "river.toml"
    path.write_text(f"[worker]\n{text}\n")
    with pytest.raises(WorkerConfigError) as info:
        load_file(path)
    assert info.value.field == key


def test_bad_log_flags_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", APP, "--log-level", "loud"]) == 1
    assert "--log-level: must be a logging level" in capsys.readouterr().err
    assert main(["worker", APP, "--log-format", "xml"]) == 1
    assert "--log-format" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# river worker
# --------------------------------------------------------------------------------------------


def insert_failing(db_url: str, text: str = "kaboom") -> int:
    """A job that fails on its only attempt (discarded: an ERROR line with the traceback)."""
    with river.Client(db_url) as client:
        return client.insert(Boom(text=text), river.InsertOpts(max_attempts=1)).job.id


def run_until_discarded(
    db_url: str, args: list[str], pattern: str, *, started: str = "worker started"
) -> tuple[WorkerProcess, int]:
    """Start the worker, fail one job, wait for ``pattern`` (formatted with the job id) and
    stop the worker cleanly."""
    with running_worker(args, worker_env(db_url)) as worker:
        worker.wait_for(started)
        job_id = insert_failing(db_url)
        worker.wait_for(pattern.format(job_id=job_id))
        worker.send(signal.SIGINT)
        assert worker.wait_exit() == 0, worker.output()
    return worker, job_id


def json_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    out = []
    for line in worker.lines:
        obj = json.loads(line)  # every line: a JSON object
        assert isinstance(obj, dict), line
        assert {"time", "level", "logger", "message", "process"} <= obj.keys(), line
        assert re.fullmatch(TIME, obj["time"]), line
        out.append(obj)
    return out


def test_worker_json_lines(db_url: str) -> None:
    worker, job_id = run_until_discarded(
        db_url, [APP, "--log-format", "json"], r'"job_id": {job_id}, .*"outcome": "discarded"'
    )
    records = json_lines(worker)
    (discard,) = [r for r in records if r.get("outcome") == "discarded"]
    assert discard["logger"] == "river.job"
    assert discard["level"] == "ERROR"
    assert {k: discard[k] for k in JOB_KEYS} == {
        "job_id": job_id,
        "job_kind": "log_boom",
        "queue": "default",
        "attempt": 1,
    }
    assert discard["error_type"] == "ValueError"
    assert discard["exc_info"].endswith("ValueError: kaboom")
    messages = [(r["logger"], r["message"]) for r in records]
    assert any(m.startswith("worker started") for name, m in messages if name == "river.worker")
    assert ("river.worker", f"worker stopped pid={worker.pid}") in messages


def test_worker_text_lines(db_url: str) -> None:
    worker, job_id = run_until_discarded(db_url, [APP], r"ERROR river\.job: job {job_id} failed")
    (line,) = worker.matches(rf"^{TIME} ERROR river\.job: job {job_id} failed and was discarded")
    assert f" job_id={job_id} job_kind=log_boom queue=default attempt=1 " in line.string
    assert ' error="ValueError: kaboom"' in line.string
    for text in worker.lines:
        # Every line is a log line, or a line of the discarded job's traceback.
        assert re.match(rf"{TIME} (INFO|WARNING|ERROR) river\.", text) or not re.match(
            r"\d{4}-", text
        ), text
    assert worker.matches(rf"^{TIME} INFO river\.worker: worker started pid=")


def test_worker_log_settings_from_the_file_and_flags(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "river.toml"
    config.write_text('[worker]\nlog_format = "json"\nlog_level = "info"\n')
    # The file asks for JSON at INFO; the flag lowers the level to WARNING: the lifecycle
    # lines (INFO) go, the discard line (ERROR) stays, every line is JSON.
    args = [APP, "--config", str(config), "--log-level", "warning"]
    with running_worker(args, worker_env(db_url)) as worker:
        job_id = insert_failing(db_url)
        worker.wait_for(rf'"job_id": {job_id}, ')
        worker.send(signal.SIGINT)
        assert worker.wait_exit() == 0, worker.output()
    records = json_lines(worker)
    assert records
    assert {r["level"] for r in records} <= {"WARNING", "ERROR", "CRITICAL"}


def test_app_with_basic_config_gets_each_river_line_once(db_url: str) -> None:
    worker, job_id = run_until_discarded(
        db_url, [BASIC_CONFIG_APP], r"river\.job: job {job_id} failed"
    )
    assert worker.matches(r"^APP INFO app: app logging configured$")
    started = worker.matches("worker started")
    assert len(started) == 1, worker.output()
    assert started[0].string.startswith("APP INFO river.worker: worker started pid=")
    failed = worker.matches(rf"job {job_id} failed")
    assert len(failed) == 1, worker.output()
    assert failed[0].string.startswith(f"APP ERROR river.job: job {job_id} failed")
    # No line in the worker's own format: the app's handler printed everything.
    assert not worker.matches(rf"^{TIME} "), worker.output()


def test_app_with_a_river_handler_gets_each_river_line_once(db_url: str) -> None:
    worker, job_id = run_until_discarded(
        db_url, [DICT_CONFIG_APP, "--log-format", "json"], r"river\.job: job {job_id} failed"
    )
    started = worker.matches("worker started")
    assert len(started) == 1, worker.output()
    assert started[0].string.startswith("RIVERAPP INFO river.worker: worker started")
    assert len(worker.matches(rf"job {job_id} failed")) == 1, worker.output()
    assert not worker.matches(r'^\{"time"'), worker.output()


def test_log_handler_always_prints_river_lines_once_in_the_workers_format(db_url: str) -> None:
    args = [BASIC_CONFIG_APP, "--log-handler", "always", "--log-format", "json"]
    with running_worker(args, worker_env(db_url)) as worker:
        worker.wait_for('"message": "worker started')
        job_id = insert_failing(db_url)
        worker.wait_for(rf'"job_id": {job_id}, ')
        worker.send(signal.SIGINT)
        assert worker.wait_exit() == 0, worker.output()
    # The app's own lines keep its format; river's lines are JSON, once (not also through the
    # app's root handler).
    assert worker.matches(r"^APP INFO app: app logging configured$")
    assert not worker.matches(r"^APP \w+ river\."), worker.output()
    records = [json.loads(line) for line in worker.lines if line.startswith("{")]
    assert len(records) == len(worker.lines) - 1, worker.output()
    assert sum(r["message"].startswith("worker started") for r in records) == 1
    assert sum(r.get("job_id") == job_id for r in records) == 1


def test_log_handler_never_leaves_river_lines_to_the_app(db_url: str) -> None:
    # No handler from the worker and none from the app: Python's last resort prints WARNING
    # and above as bare messages; the INFO lifecycle lines are not printed at all.
    with running_worker([APP, "--log-handler", "never"], worker_env(db_url)) as worker:
        job_id = insert_failing(db_url)
        worker.wait_for(rf"^job {job_id} failed and was discarded")
        worker.send(signal.SIGINT)
        assert worker.wait_exit() == 0, worker.output()
    assert not worker.matches("worker started"), worker.output()
    assert not worker.matches(rf"^{TIME} "), worker.output()


def test_processes_show_their_index_in_json(db_url: str) -> None:
    args = [APP, "--processes", "2", "--log-format", "json", "--shutdown-timeout", "5s"]
    with running_worker(args, worker_env(db_url)) as worker:
        worker.wait_for('"message": "worker started', count=2)
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
    records = json_lines(worker)
    started = [r for r in records if r["message"].startswith("worker started")]
    assert sorted(r["process_index"] for r in started) == [0, 1]
    supervisor = [r for r in records if r["message"].startswith("supervisor pid=")]
    assert len(supervisor) == 1
    assert "process_index" not in supervisor[0]


def test_psycopg_lines_reach_the_json_handler_once() -> None:
    proc = run_with_worker_logging(
        "logging.getLogger('psycopg.pool').warning('error connecting in %r: boom', 'river-x')\n",
        settings="_logs.LogSettings(format='json')",
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    obj = json.loads(line)
    assert (obj["level"], obj["logger"], obj["message"]) == (
        "WARNING",
        "psycopg.pool",
        "error connecting in 'river-x': boom",
    )


def test_auto_handler_steps_aside_when_the_app_configures_logging_later() -> None:
    # The decision is made once the app is imported; a root handler added after that (a
    # module-level logging.warning() runs basicConfig) must not make every line appear twice.
    proc = run_with_worker_logging(
        "logging.getLogger('river.job').warning('before')\n"
        "logging.warning('the app configures logging late')\n"
        "logging.getLogger('river.job').warning('after')\n"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert [line for line in lines if "before" in line] == [lines[0]]
    assert lines[0].endswith("WARNING river.job: before")
    assert [line for line in lines if "after" in line] == ["WARNING:river.job:after"]


def test_setup_is_undone() -> None:
    # In one process (river.cli.main called twice, as tests and embedding programs do): the
    # river logger is left as the command found it.
    code = (
        "import logging\n"
        "from river.worker import _logs\n"
        "river_logger = logging.getLogger('river')\n"
        "before = (list(river_logger.handlers), river_logger.level, river_logger.propagate)\n"
        "job = logging.getLogger('river.job')\n"
        "undo = _logs.setup_logging(_logs.LogSettings(handler='always', level=10), [], 0)\n"
        "assert river_logger.level == 10 and not river_logger.propagate\n"
        "assert len(river_logger.handlers) == 1\n"
        "undo()\n"
        "after = (list(river_logger.handlers), river_logger.level, river_logger.propagate)\n"
        "assert before == after, (before, after)\n"
        "assert not logging.getLogger('psycopg').handlers\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.anyio
async def test_queue_records_carry_the_queue(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="river")
    async with started_client(db_url, fast_config(workers)) as client:
        await client.queues.add("log_q", river.QueueConfig(max_workers=1))
        await client.queues.update("log_q", max_workers=2)
        await client.queues.pause("log_q")
        await client.queues.resume("log_q")
        await client.queues.remove("log_q")
        await client.stop()
    records = [r for r in caplog.records if r.getMessage().startswith("queue log_q ")]
    assert [r.getMessage().split()[2] for r in records] == [
        "added",
        "updated",
        "paused",
        "resumed",
        "removed",
    ]
    assert all(getattr(r, "queue", None) == "log_q" for r in records)
