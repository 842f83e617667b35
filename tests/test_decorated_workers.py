"""Workers whose ``work`` is wrapped by a decorator: an async ``work`` behind a sync wrapper
must still be awaited (it used to run in a thread, return a coroutine nobody awaited, and the
job was marked completed without its body having run)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import psycopg
import pytest

import river
from river.testing import work_job


class Note(river.JobArgs):
    kind: ClassVar[str] = "decorated_note"
    text: str = ""


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A plain sync decorator, as applications write them (logging, metrics)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def hiding(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A wrapper without functools.wraps: nothing tells it wraps a coroutine function."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


class Wrapped(river.Worker[Note]):
    def __init__(self) -> None:
        self.ran: list[str] = []

    @logged
    async def work(self, job: river.Job[Note]) -> None:
        self.ran.append(job.args.text)


class Hidden(river.Worker[Note]):
    def __init__(self) -> None:
        self.ran: list[str] = []

    @hiding
    async def work(self, job: river.Job[Note]) -> None:
        self.ran.append(job.args.text)


@pytest.mark.parametrize("worker_type", [Wrapped, Hidden])
def test_an_async_work_behind_a_sync_wrapper_runs(
    db_url: str, worker_type: type[Wrapped | Hidden], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="river.executor")
    worker = worker_type()
    with psycopg.connect(db_url, autocommit=True) as conn:
        result = work_job(conn, worker, Note(text="hello"))
    assert result.state is river.JobState.COMPLETED
    assert worker.ran == ["hello"]
    warned = [r for r in caplog.records if "returned an awaitable" in r.getMessage()]
    # Seen through functools.wraps at registration: no warning. Hidden: awaited, and said.
    assert len(warned) == (1 if worker_type is Hidden else 0)
