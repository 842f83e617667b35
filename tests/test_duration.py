"""The one duration parser (river/_duration.py) and every place that reads a duration through
it, each with the syntax it accepts and the words of its errors. No database needed.

Go's grammar itself (``parse_go_duration``) is also checked against Go's own answers in
tests/test_schedule.py (cron's ``@every``)."""

from __future__ import annotations

import argparse
import ast
import math
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import river
from river import _bench, cli
from river._duration import DurationError, parse_duration, parse_go_duration
from river.worker._config import parse_seconds

PACKAGE = Path(river.__file__).parent

# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("0", 0),
        ("+0", 0),
        ("300ms", 300_000_000),
        ("1.5s", 1_500_000_000),
        ("1m30s", 90_000_000_000),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("250μs", 250_000),
        ("-1h", -3_600_000_000_000),
        ("1.000000001s", 1_000_000_001),
    ],
)
def test_go_duration(text: str, nanoseconds: int) -> None:
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "invalid duration ''"),
        ("1", "missing unit in duration '1'"),
        ("1d", "unknown unit 'd' in duration '1d'"),
        (" 1s", "invalid duration ' 1s'"),  # Go does not strip
        ("9223372037s", "invalid duration '9223372037s'"),  # past int64 nanoseconds
    ],
)
def test_go_duration_errors_use_gos_words(text: str, words: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_go_duration(text)
    assert str(info.value) == words
    assert info.value.problem == "syntax"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("value", "kwargs", "seconds"),
    [
        (2, {}, 2.0),
        (0.25, {}, 0.25),
        (-1, {}, -1.0),  # range rules belong to the caller
        (timedelta(milliseconds=1500), {}, 1.5),
        (Decimal("1.5"), {}, 1.5),
        pytest.param(10**400, {}, math.inf, id="huge int"),
        pytest.param(-(10**400), {}, -math.inf, id="huge negative int"),
        ("500ms", {"text": "go"}, 0.5),
        (" 1m30s ", {"text": "go"}, 90.0),  # strings are stripped
        ("2.5", {"text": "go_or_seconds"}, 2.5),
        ("1h", {"text": "go_or_seconds"}, 3600.0),
        ("0", {"text": "go_or_seconds"}, 0.0),
        ("2.5", {"text": "seconds"}, 2.5),
    ],
)
def test_parse_duration(value: object, kwargs: dict[str, str], seconds: float) -> None:
    assert parse_duration(value, **kwargs) == seconds  # type: ignore[arg-type]


def test_parse_duration_nan_is_returned_for_the_caller_to_judge() -> None:
    assert math.isnan(parse_duration(float("nan")))
    assert math.isnan(parse_duration("nan", text="seconds"))


@pytest.mark.parametrize(
    ("value", "kwargs", "problem"),
    [
        (True, {}, "bool"),
        (False, {"text": "go"}, "bool"),
        ([1], {}, "type"),
        (None, {}, "type"),
        ("1s", {}, "type"),  # strings only when the call site takes them
        (timedelta(seconds=1), {"timedeltas": False}, "type"),
        ("2.5", {"text": "go"}, "syntax"),
        ("1s", {"text": "seconds"}, "syntax"),
        ("soon", {"text": "go_or_seconds"}, "syntax"),
    ],
)
def test_parse_duration_refusals(value: object, kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(value, **kwargs)  # type: ignore[arg-type]
    assert info.value.problem == problem


def test_only_the_duration_module_implements_gos_grammar() -> None:
    """One parser: no other module defines a Go unit table or a duration parser of its own."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_duration.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "ms" for k in node.keys
            ):
                offenders.append(f"{path.name}:{node.lineno}: a table of duration units")
            if isinstance(node, ast.FunctionDef) and node.name == "parse_go_duration":
                offenders.append(f"{path.name}:{node.lineno}: def parse_go_duration")
    assert not offenders


# --------------------------------------------------------------------------------------------
# Each call site: its syntax and its words
# --------------------------------------------------------------------------------------------


def test_cli_flags_read_go_durations() -> None:
    assert cli.parse_duration(" 1m30s ") == 90_000_000_000
    with pytest.raises(
        ValueError, match=r"^invalid duration '30' \(examples: 500ms, 10s, 1m30s\)$"
    ):
        cli.parse_duration("30")
    with pytest.raises(argparse.ArgumentTypeError, match="must be at least 1ms, got '500us'"):
        cli._statement_timeout("500us")
    assert cli._statement_timeout("1.5s") == 1500


@pytest.mark.parametrize(
    ("value", "allow_zero", "words"),
    [
        (True, False, "must be a duration (seconds, or a string such as '30s'), not a boolean"),
        ("soon", False, "invalid duration 'soon' (examples: 500ms, 30s, 1m30s, or seconds)"),
        ([1], False, "must be a duration (seconds, or a string such as '30s'), got [1]"),
        (timedelta(1), False, "must be a duration (seconds, or a string such as '30s'), got "),
        ("inf", False, "must be a finite duration, got 'inf'"),
        pytest.param(10**400, False, "must be a finite duration", id="huge int"),
        (0, False, "must be positive, got 0"),
        ("-1s", True, "must be 0 or more, got '-1s'"),
    ],
)
def test_worker_file_and_flags(value: object, allow_zero: bool, words: str) -> None:
    with pytest.raises(ValueError, match=r"^must|^invalid") as info:
        parse_seconds(value, allow_zero=allow_zero)
    assert str(info.value).startswith(words)


def test_worker_file_and_flags_accept_go_durations_and_seconds() -> None:
    assert parse_seconds(" 500ms ") == 0.5
    assert parse_seconds("2.5") == 2.5
    assert parse_seconds(3) == 3.0
    assert parse_seconds("0", allow_zero=True) == 0.0


def test_bench_flags() -> None:
    assert _bench.parse_seconds(" 1m ") == 60.0
    assert _bench.parse_seconds("2.5") == 2.5
    assert _bench.parse_seconds("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError) as info:
        _bench.parse_seconds(" soon ")
    assert str(info.value) == "invalid duration 'soon' (seconds, or e.g. 500ms, 30s, 1m30s)"
    with pytest.raises(argparse.ArgumentTypeError, match=r"^duration must be >= 0, got '-1s'$"):
        _bench.parse_seconds("-1s")


def test_config_durations() -> None:
    config = river.Config(
        fetch_cooldown=timedelta(milliseconds=5),
        connect_timeout=timedelta(seconds=3),
        job_timeout=timedelta(minutes=2),
    )
    assert config.connect_timeout_seconds == 3.0
    assert config.job_timeout_seconds == 120.0
    assert river.Config(job_timeout=-1).job_timeout_seconds == -1.0
    # A string of seconds was accepted by float() before the parser was shared: still is.
    assert river.QueueConfig(fetch_cooldown="0.5").fetch_cooldown == "0.5"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({"fetch_cooldown": True}, "fetch_cooldown", "must be a duration in seconds, not a bool"),
        ({"fetch_poll_interval": 0.0001}, "fetch_poll_interval", "must be at least 0.001s"),
        ({"connect_timeout": "1s"}, "connect_timeout", "must be a duration in seconds or a "),
        ({"scheduler_interval": [5]}, "scheduler_interval", "must be a duration in seconds or"),
        ({"job_timeout": 0}, "job_timeout", "must be positive seconds, or -1 for none"),
        ({"job_timeout": True}, "job_timeout", "must be a duration in seconds, not a bool"),
        # 0 made the completer's flush loop spin.
        ({"completer_flush_interval": 0}, "completer_flush_interval", "must be a number of"),
        ({"completer_flush_interval": True}, "completer_flush_interval", "must be a number of"),
        ({"completer_flush_interval": "1"}, "completer_flush_interval", "must be a number of"),
        (
            {"completer_flush_interval": float("nan")},
            "completer_flush_interval",
            "must be a number of",
        ),
        # Intervals the database subtracts from now(): beyond timestamptz's range every
        # maintenance pass failed ("timestamp out of range").
        ({"completed_job_retention": 1e300}, "completed_job_retention", "must be at most 100"),
        ({"discarded_job_retention": math.inf}, "discarded_job_retention", "must be at most"),
        ({"queue_idle_retention": 1e12}, "queue_idle_retention", "must be at most 100 years"),
        # Under the clients' refresh of their rows: live queues deleted, and so unpaused.
        ({"queue_idle_retention": 300}, "queue_idle_retention", "must be at least 1200s"),
        ({"job_timeout": 1e300}, "job_timeout", "must be at most 100 years"),
        ({"rescue_stuck_jobs_after": 1e300}, "rescue_stuck_jobs_after", "must be at most 100"),
        # A cooldown of hours (infinity: for ever) held every stop of the queue that long.
        ({"fetch_cooldown": math.inf}, "fetch_cooldown", "must be at most a day"),
        ({"fetch_poll_interval": 86_401}, "fetch_poll_interval", "must be at most a day"),
        # Counts, not durations: floats passed and failed at start or at every flush.
        ({"sync_worker_threads": 40.0}, "sync_worker_threads", "must be an integer of at least"),
        ({"completer_batch_size": 5e3}, "completer_batch_size", "must be an integer of at least"),
        ({"completer_max_backlog": 0}, "completer_max_backlog", "must be an integer of at least"),
    ],
)
def test_config_duration_errors(kwargs: dict[str, object], field: str, rule: str) -> None:
    with pytest.raises(river.InvalidConfigError) as info:
        river.Config(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert info.value.rule.startswith(rule)
    if field.startswith("fetch_"):  # a queue's own settings have the same bounds
        with pytest.raises(river.InvalidConfigError) as info:
            river.QueueConfig(**kwargs)  # type: ignore[arg-type]
        assert info.value.rule.startswith(rule)


def test_job_log_interval() -> None:
    assert river.JobLogConfig(interval=timedelta(minutes=2)).interval_seconds == 120.0
    with pytest.raises(river.InvalidConfigError, match="must be seconds, not a bool"):
        river.JobLogConfig(interval=True)
    with pytest.raises(river.InvalidConfigError, match="must be seconds or a timedelta"):
        river.JobLogConfig(interval="soon")  # type: ignore[arg-type]
    with pytest.raises(river.InvalidConfigError, match="must be positive"):
        river.JobLogConfig(interval=0)


def test_unique_period() -> None:
    assert river.UniqueOpts(by_period=timedelta(hours=1)).period_seconds == 3600
    assert river.UniqueOpts(by_period=90).period_seconds == 90
    for bad in (-1, "soon", float("nan"), True):
        with pytest.raises(river.ValidationError, match="must be zero or a positive duration"):
            river.UniqueOpts(by_period=bad)  # type: ignore[arg-type]


def test_periodic_interval() -> None:
    long = timedelta(days=999_999_999, microseconds=1)
    assert river.PeriodicInterval(long).interval == long  # kept exact, not through a float
    assert river.PeriodicInterval(90).interval == timedelta(seconds=90)
    assert river.PeriodicInterval(0.5).interval == timedelta(milliseconds=500)
    for bad, words in [
        ("5", "must be a number of seconds or a timedelta, got str"),
        (True, "must be a number of seconds or a timedelta, got bool"),
        (math.inf, "must be finite, got inf"),
        (10**400, "must be finite"),
        (1e300, "seconds is too large"),
        (0, "must be positive"),
    ]:
        with pytest.raises(river.ValidationError, match=words):
            river.PeriodicInterval(bad)  # type: ignore[arg-type]


def test_cron_every() -> None:
    assert river.Cron("@every 1h30m") is not None
    with pytest.raises(river.ValidationError, match=r"@every: unknown unit 'd' in duration '1d'"):
        river.Cron("@every 1d")
    with pytest.raises(river.ValidationError, match=r"@every: duration '-1s' is negative"):
        river.Cron("@every -1s")
