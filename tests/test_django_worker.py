"""``python manage.py river_worker`` as operators run it: a real subprocess of the test project
(tests/django_project), real signals, a real Postgres."""

from __future__ import annotations

import signal

import psycopg
import pytest
from django_project.harness import manage, project_env, running_manage
from worker_apps.harness import query, wait_until

import river


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    manage(["migrate"], db_url)  # the notes table (River's versions are there already)
    return project_env(db_url)


def _insert(db_url: str, *jobs: river.JobArgs) -> list[int]:
    with river.Client(db_url) as client:
        return [r.job.id for r in client.insert_many(list(jobs))]


def _states(db_url: str, ids: list[int]) -> list[str]:
    rows = query(db_url, "SELECT state::text FROM river_job WHERE id = ANY(%s) ORDER BY id", [ids])
    return [r[0] for r in rows]


def _open_note_connections(db_url: str) -> int:
    """How many of the connections that wrote notes (Django's, in the worker's threads) are
    still open."""
    rows = query(
        db_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid IN (SELECT backend_pid FROM notes_note)",
    )
    return int(rows[0][0])


def test_river_worker_works_orm_jobs_and_stops_on_sigterm(db_url: str, env: dict[str, str]) -> None:
    from notes.args import CreateNote, CreateNoteAsync

    with running_manage(["river_worker", "--shutdown-timeout", "10s"], env) as worker:
        worker.wait_for(r"worker started pid=\d+ generation=1 queues=\[default,tasks\]")
        assert (
            "kinds=[create_note,create_note_async,create_note_hidden,create_note_wrapped,"
            "django_task,paired_note_async]"
        ) in worker.output()
        ids = _insert(db_url, CreateNote(text="sync"), CreateNoteAsync(text="async"))
        wait_until(
            lambda: _states(db_url, ids) == ["completed", "completed"],
            message=lambda: f"{_states(db_url, ids)}\n{worker.output()}",
        )
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
    notes = query(db_url, "SELECT text FROM notes_note ORDER BY text")
    assert [n[0] for n in notes] == ["async", "sync"]
    assert "SIGTERM: stopping" in worker.output()
    assert "worker stopped" in worker.output()
    assert "Error" not in worker.output()


@pytest.mark.parametrize(("conn_max_age", "left_open"), [("0", False), ("600", True)])
def test_connection_hygiene_around_each_job(
    db_url: str, env: dict[str, str], conn_max_age: str, left_open: bool
) -> None:
    # close_old_connections() runs in the worker's thread after each job, as Django does after
    # each request: with CONN_MAX_AGE = 0 the job's connection is closed at once, with a
    # longer age it stays open for the next job of that thread.
    from notes.args import CreateNote, CreateNoteAsync

    env = {**env, "DJANGO_CONN_MAX_AGE": conn_max_age}
    with running_manage(["river_worker"], env) as worker:
        worker.wait_for("worker started")
        for n in range(3):
            (job,) = _insert(db_url, CreateNote(text=str(n)))
            wait_until(lambda job=job: _states(db_url, [job]) == ["completed"])  # type: ignore[misc]
        (job,) = _insert(db_url, CreateNoteAsync(text="async"))  # in asgiref's thread
        wait_until(lambda: _states(db_url, [job]) == ["completed"])
        if left_open:
            assert _open_note_connections(db_url) >= 1
        else:
            wait_until(lambda: _open_note_connections(db_url) == 0, timeout=5)
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
    assert _count_notes(db_url) == 4
    # A kept connection is closed as its thread ends, not collected open (-W error turns
    # psycopg's ResourceWarning into an "Exception ignored" report).
    assert "Exception ignored" not in worker.output(), worker.output()


def test_async_work_behind_a_sync_decorator_runs(db_url: str, env: dict[str, str]) -> None:
    """An async work() under a sync decorator, with or without functools.wraps, is awaited:
    the Django wrapper called it in a thread and dropped its coroutine (the job was marked
    completed, and nothing ran)."""
    from notes.args import CreateNoteHidden, CreateNoteWrapped

    with running_manage(["river_worker"], env) as worker:
        worker.wait_for("worker started")
        ids = _insert(db_url, CreateNoteWrapped(text="wrapped"), CreateNoteHidden(text="hidden"))
        wait_until(
            lambda: _states(db_url, ids) == ["completed", "completed"],
            message=lambda: f"{_states(db_url, ids)}\n{worker.output()}",
        )
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
    notes = query(db_url, "SELECT text FROM notes_note ORDER BY text")
    assert [n[0] for n in notes] == ["hidden", "wrapped"]
    assert "never awaited" not in worker.output()


@pytest.mark.parametrize("conn_max_age", ["0", "600"])
def test_async_jobs_each_have_their_own_connection(
    db_url: str, env: dict[str, str], conn_max_age: str
) -> None:
    """Two async jobs side by side: each one's ORM calls use a connection of its own, which
    the other's cleanup leaves alone, as each request has under Django's ASGI handler (all
    went through asgiref's one thread: with a CONN_MAX_AGE the two jobs used one connection
    at once)."""
    from notes.args import PairedNoteAsync

    env = {**env, "DJANGO_CONN_MAX_AGE": conn_max_age}
    with running_manage(["river_worker"], env) as worker:
        worker.wait_for("worker started")
        ids = _insert(
            db_url,
            PairedNoteAsync(text="lingers", pair=1, linger=True),
            PairedNoteAsync(text="ends", pair=1),
        )
        wait_until(
            lambda: _states(db_url, ids) == ["completed", "completed"],
            message=lambda: f"{_states(db_url, ids)}\n{worker.output()}",
        )
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
    pids = dict(query(db_url, "SELECT text, backend_pid FROM notes_note"))
    assert set(pids) == {"lingers", "ends"}
    assert -1 not in pids.values(), pids  # -1: its connection changed while it ran
    assert pids["lingers"] != pids["ends"]
    assert "Exception ignored" not in worker.output(), worker.output()


def test_river_worker_processes_start_django_children(db_url: str, env: dict[str, str]) -> None:
    from notes.args import CreateNote

    args = ["river_worker", "--processes", "2", "--shutdown-timeout", "10s"]
    with running_manage(args, env) as supervisor:
        supervisor.wait_for(r"worker started pid=\d+", count=2, timeout=30)
        ids = _insert(db_url, *(CreateNote(text=str(n)) for n in range(20)))
        wait_until(lambda: set(_states(db_url, ids)) == {"completed"}, timeout=30)
        supervisor.send(signal.SIGTERM)
        assert supervisor.wait_exit(30) == 0, supervisor.output()
    assert _count_notes(db_url) == 20


def _count_notes(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM notes_note").fetchone()
    assert row is not None
    return int(row[0])


def test_river_worker_reports_a_bad_app(db_url: str) -> None:
    result = manage(["river_worker", "nowhere.jobs:workers"], db_url, check=False)
    assert result.returncode == 1
    assert "cannot import APP 'nowhere.jobs:workers'" in result.stderr
    assert "Traceback" not in result.stderr


def test_river_worker_flag_errors_are_usage_errors(db_url: str) -> None:
    result = manage(["river_worker", "--max-workers", "0"], db_url, check=False)
    assert result.returncode == 2
    assert "--max-workers: must be 1 to 10000, got 0" in result.stderr
