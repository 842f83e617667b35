"""The public exceptions: shown as ``river.X``, and picklable with everything they carry (the
default pickling of exceptions calls the class with the message alone, which their
constructors do not take)."""

from __future__ import annotations

import pickle
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import psycopg
import pytest

import river
from river._migrate_types import MigrationVersionResult

#: One instance of every exception class river exports, built as the library builds them.
SAMPLES: list[BaseException] = [
    river.RiverError("plain"),
    river.ValidationError("args.to", "must be a string"),
    river.InvalidConfigError("queues['a'].max_workers", "must be at least 1"),
    river.DuplicateUniqueKeyInBatchError("items[1].unique_opts", "has the same unique key"),
    river.UnknownJobKindError("kind", "no worker handles 'x'"),
    river.MigrationError("planning failed"),
    river.UnknownMigrationLineError("pro", ["main"]),
    river.MigrationTargetError("target version 99 is unknown"),
    river.MigrationStateError("river_migration contradicts itself"),
    river.MigrationFailedError(
        6,
        "add column",
        "up",
        [MigrationVersionResult(version=5, name="five", direction="up", duration=0.25, sql="")],
        psycopg.errors.SyntaxError("syntax error at or near x"),
    ),
    river.DatabaseUnavailableError("connection refused"),
    river.ListenUnavailableError(2.5),
    river.SchemaNotReadyError("run river migrate-up", found_version=4, required_version=7),
    river.JobNotFoundError(7),
    river.JobRunningError(7, "deleted"),
    river.UniqueConflictError(7, 8, "available"),
    river.JobNotRunningError(7, 2),
    river.QueueNotFoundError("mail"),
    river.QueueAlreadyAddedError("mail"),
    river.JobCancel(ValueError("bad input")),
    river.JobSnooze(30),
]


def _public_exception_classes() -> set[type[BaseException]]:
    exported = (getattr(river, name) for name in river.__all__)
    return {c for c in exported if isinstance(c, type) and issubclass(c, BaseException)}


def test_the_samples_cover_every_exported_exception() -> None:
    assert {type(e) for e in SAMPLES} == _public_exception_classes()


def _fields(error: BaseException) -> dict[str, Any]:
    fields = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    return {k: str(v) if isinstance(v, BaseException) else v for k, v in fields.items()}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_pickles_with_its_message_and_fields(error: BaseException) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert _fields(copy) == _fields(error)


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_is_shown_as_river_dot_its_name(error: BaseException) -> None:
    name = type(error).__name__
    assert f"{type(error).__module__}.{type(error).__qualname__}" == f"river.{name}"
    line = traceback.format_exception_only(error)[-1]
    assert line.startswith(f"river.{name}: ")


def _raise_not_found(job_id: int) -> None:
    raise river.JobNotFoundError(job_id)


def test_crosses_a_process_pool() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_raise_not_found, 41)
        with pytest.raises(river.JobNotFoundError, match="job 41 not found") as info:
            future.result(timeout=60)
    assert info.value.job_id == 41
