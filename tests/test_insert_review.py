"""Insert validation found by review: a queue name check in linear time, scheduled_at within
what can be read back, unique options (empty per-insert options, empty by_args, unbounded
periods) and set-typed args encoded the same in every process."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import ClassVar

import psycopg
import pytest

import river
from river._names import validate_queue_name


class Note(river.JobArgs):
    kind: ClassVar[str] = "review_note"
    n: int = 0


class UniqueNote(river.JobArgs):
    kind: ClassVar[str] = "review_unique_note"
    n: int = 0

    def insert_opts(self) -> river.InsertOpts:
        return river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))


def test_an_invalid_queue_name_is_refused_at_once() -> None:
    # River (Go)'s pattern, with nested quantifiers, took exponential time in Python's regex
    # engine on an invalid name (4 s at 27 characters, for ever at 64): run where a hang
    # cannot hold the test run.
    code = (
        "from river._names import validate_queue_name\n"
        "from river import ValidationError\n"
        "for name in ['a' * 63 + '_', 'customer_notifications_high_priority_', 'a_' * 32]:\n"
        "    try:\n"
        "        validate_queue_name(name)\n"
        "    except ValidationError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=20)
    for good in ("a", "a_b", "a-b|c", "default", "q1-2_3"):
        assert validate_queue_name(good) == good


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),  # year 10000 UTC
        datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5))),  # before year 1 UTC
    ],
)
def test_a_scheduled_at_that_could_not_be_read_back_is_refused_before_any_sql(
    db_url: str, when: datetime
) -> None:
    with river.Client(db_url) as client:
        with pytest.raises(river.ValidationError) as info:
            client.insert(Note(), river.InsertOpts(scheduled_at=when))
        assert info.value.field == "scheduled_at"
        with pytest.raises(river.ValidationError):
            client.insert_many_fast([(Note(), river.InsertOpts(scheduled_at=when))])
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM river_job").fetchone() == (0,)


def test_empty_per_insert_unique_options_leave_the_args_own(db_url: str) -> None:
    # PROTOCOL.md 5.1: the per-insert options apply unless empty (exclude_kind alone is
    # empty), else the args' own, as in River (Go).
    with river.Client(db_url) as client:
        for opts in (river.UniqueOpts(), river.UniqueOpts(exclude_kind=True)):
            result = client.insert(UniqueNote(n=1), river.InsertOpts(unique_opts=opts))
            assert result.job.unique_key is not None
        again = client.insert(UniqueNote(n=1))
        assert again.unique_skipped_as_duplicate


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"by_args": []}, "empty list"),
        ({"by_period": float("inf")}, "at most 100 years"),
        ({"by_period": float("nan")}, "by_period"),
        ({"by_period": timedelta(days=365 * 200)}, "at most 100 years"),
    ],
)
def test_unique_options_that_cannot_mean_anything_are_refused(
    kwargs: dict[str, object], rule: str
) -> None:
    with pytest.raises(river.ValidationError, match=rule):
        river.UniqueOpts(**kwargs)  # type: ignore[arg-type]


def test_set_args_give_the_same_unique_key_in_every_process() -> None:
    # A set's iteration order depends on hash randomisation: its encoding (and the unique key
    # over it) changed from one process to the next.
    code = (
        "from typing import ClassVar\n"
        "import river\n"
        "from datetime import UTC, datetime\n"
        "from river._insert import InsertDefaults, build_batch\n"
        "class A(river.JobArgs):\n"
        "    kind: ClassVar[str] = 'set_args'\n"
        "    tags: set[str]\n"
        "    nums: frozenset[int] = frozenset()\n"
        "a = A(tags={'alpha', 'beta', 'gamma', 'delta', 'eps'}, nums=frozenset({33, 1, 7, 100}))\n"
        "opts = river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))\n"
        "now = datetime(2026, 1, 1, tzinfo=UTC)\n"
        "b = build_batch([(a, opts)], InsertDefaults(), None, now=now)\n"
        "print(b.args[0], b.unique_key[0].hex())\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            timeout=60,
        ).stdout
        for seed in range(1, 6)
    }
    assert len(outputs) == 1, outputs
    assert '"tags":["alpha","beta","delta","eps","gamma"]' in outputs.pop()
