"""``river job ...`` and ``river queue ...`` (river/_cli_admin.py), run as subprocesses against
the test database, and the progress counter they share with ``migrate-up`` (river/_progress.py).
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

import river
from river._progress import Progress

RIVER = Path(sys.executable).parent / "river"
#: Nothing listens on port 1: connecting fails at once.
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nothing"

JOB_COLUMNS = {
    "id",
    "state",
    "queue",
    "kind",
    "priority",
    "attempt",
    "max_attempts",
    "args",
    "metadata",
    "tags",
    "created_at",
    "scheduled_at",
    "attempted_at",
    "finalized_at",
    "attempted_by",
    "errors",
    "unique_key",
    "unique_states",
}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # No DATABASE_URL or PG* variable of the test run leaks into the command.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    env.update(extra or {})
    return env


def river_cmd(
    *argv: str, url: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``river argv... [--database-url url]``."""
    args = [str(RIVER), *argv, *(["--database-url", url] if url else [])]
    return subprocess.run(args, capture_output=True, text=True, env=_env(env), timeout=60)


def ok(*argv: str, url: str) -> str:
    proc = river_cmd(*argv, url=url)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def with_pty(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run ``argv`` with stderr on a pseudo-terminal; (exit status, stdout, terminal output)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=_env(),
        )
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=60), out, b"".join(chunks).decode()


def insert_job(
    conn: psycopg.Connection[Any],
    *,
    kind: str = "email",
    queue: str = "default",
    state: str = "available",
    args: str = "{}",
    attempt: int = 0,
    max_attempts: int = 25,
    errors: Sequence[dict[str, Any]] = (),
    tags: Sequence[str] = (),
    metadata: str = "{}",
    attempted_by: Sequence[str] | None = None,
) -> int:
    finalized = state in ("completed", "cancelled", "discarded")
    row = conn.execute(
        """
        INSERT INTO river_job (kind, queue, state, args, attempt, max_attempts, errors, tags,
                               metadata, attempted_by, attempted_at, finalized_at)
        VALUES (%(kind)s, %(queue)s, %(state)s, %(args)s, %(attempt)s, %(max_attempts)s,
                %(errors)s::jsonb[], %(tags)s, %(metadata)s, %(attempted_by)s,
                CASE WHEN %(attempt)s > 0 THEN now() END,
                CASE WHEN %(finalized)s THEN now() END)
        RETURNING id
        """,
        {
            "kind": kind,
            "queue": queue,
            "state": state,
            "args": args,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "errors": [json.dumps(e) for e in errors] or None,
            "tags": list(tags),
            "metadata": metadata,
            "attempted_by": list(attempted_by) if attempted_by is not None else None,
            "finalized": finalized,
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def job_state(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    row = conn.execute("SELECT state::text FROM river_job WHERE id = %s", [job_id]).fetchone()
    return None if row is None else str(row[0])


def add_queue(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(
        "INSERT INTO river_queue (name, created_at, metadata, updated_at) "
        "VALUES (%s, now(), '{}', now())",
        [name],
    )


def table_ids(out: str) -> list[int]:
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATE", "QUEUE"]
    return [int(line.split()[0]) for line in lines[1:]]


# --------------------------------------------------------------------------------------------
# job list / get
# --------------------------------------------------------------------------------------------


def test_job_list_filters(conn: psycopg.Connection[Any], db_url: str) -> None:
    a = insert_job(conn, kind="email", queue="default", state="available")
    b = insert_job(
        conn,
        kind="email",
        queue="mail",
        state="retryable",
        attempt=1,
        errors=[
            {"at": "2026-01-01T00:00:00Z", "attempt": 1, "error": "smtp down\nmore", "trace": ""}
        ],
    )
    c = insert_job(conn, kind="report", queue="default", state="completed", attempt=1)
    d = insert_job(conn, kind="report", queue="mail", state="discarded", attempt=25)

    out = ok("job", "list", url=db_url)
    assert table_ids(out) == [d, c, b, a]  # newest first
    row_b = next(line for line in out.splitlines() if line.lstrip().startswith(f"{b} "))
    assert "retryable" in row_b
    assert "1/25" in row_b
    assert "scheduled" in row_b
    assert "smtp down..." in row_b  # first line of the last error, marked as cut
    row_c = next(line for line in out.splitlines() if line.lstrip().startswith(f"{c} "))
    assert "finalized" in row_c
    assert "Z" in row_c

    assert table_ids(ok("job", "list", "--state", "retryable", url=db_url)) == [b]
    assert table_ids(ok("job", "list", "--state", "retryable,discarded", url=db_url)) == [d, b]
    assert table_ids(ok("job", "list", "--kind", "report", url=db_url)) == [d, c]
    assert table_ids(ok("job", "list", "--queue", "mail", "--queue", "x", url=db_url)) == [d, b]
    assert table_ids(ok("job", "list", "--kind", "email", "--queue", "mail", url=db_url)) == [b]
    assert ok("job", "list", "--kind", "nothing", url=db_url) == "no jobs\n"

    # A full page says how to get the next one (on stderr: stdout stays the table).
    proc = river_cmd("job", "list", "--limit", "2", url=db_url)
    assert proc.returncode == 0
    assert table_ids(proc.stdout) == [d, c]
    cursor = proc.stderr.split("--after ")[1].split(")")[0]
    assert table_ids(ok("job", "list", "--limit", "2", "--after", cursor, url=db_url)) == [b, a]


def test_job_list_json(conn: psycopg.Connection[Any], db_url: str) -> None:
    job_id = insert_job(
        conn,
        state="retryable",
        args='{"to": "a@example.com", "n": 3}',
        attempt=1,
        tags=["t1"],
        errors=[{"at": "2026-01-01T00:00:00Z", "attempt": 1, "error": "boom", "trace": "tb"}],
        attempted_by=["host-1"],
    )
    document = json.loads(ok("job", "list", "--json", url=db_url))
    assert set(document) == {"jobs", "cursor"}
    (job,) = document["jobs"]
    assert set(job) == JOB_COLUMNS
    assert job["id"] == job_id
    assert job["args"] == {"to": "a@example.com", "n": 3}
    assert job["tags"] == ["t1"]
    assert job["attempted_by"] == ["host-1"]
    assert job["errors"] == [
        {"at": "2026-01-01T00:00:00Z", "attempt": 1, "error": "boom", "trace": "tb"}
    ]
    for column in ("created_at", "scheduled_at", "attempted_at"):
        assert job[column].endswith("Z")
        assert datetime.fromisoformat(job[column]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert job["finalized_at"] is None
    assert json.loads(ok("job", "list", "--json", "--state", "running", url=db_url)) == {
        "jobs": [],
        "cursor": None,
    }


def test_job_get(conn: psycopg.Connection[Any], db_url: str) -> None:
    job_id = insert_job(
        conn,
        kind="email",
        state="retryable",
        args='{"to": "a@example.com"}',
        metadata='{"tenant": 7}',
        attempt=2,
        tags=["urgent", "eu"],
        attempted_by=["host-1", "host-2"],
        errors=[
            {
                "at": "2026-01-01T00:00:00Z",
                "attempt": 1,
                "error": "first failure",
                "trace": 'Traceback (most recent call last):\n  File "w.py"\nValueError: x',
            },
            {"at": "2026-01-01T00:01:00Z", "attempt": 2, "error": "second failure", "trace": ""},
        ],
    )
    out = ok("job", "get", str(job_id), url=db_url)
    assert f"id:           {job_id}" in out
    assert "state:        retryable" in out
    assert "attempt:      2 of 25" in out
    assert "tags:         urgent, eu" in out
    assert "attempted by: host-1, host-2" in out
    assert "finalized:    -" in out
    assert '"to": "a@example.com"' in out
    assert '"tenant": 7' in out
    assert "errors (2):" in out
    assert "attempt 1 at 2026-01-01T00:00:00Z:" in out
    assert "    first failure\n    Traceback (most recent call last):" in out
    assert "    ValueError: x" in out
    assert "attempt 2 at 2026-01-01T00:01:00Z:\n    second failure" in out

    job = json.loads(ok("job", "get", str(job_id), "--json", url=db_url))
    assert set(job) == JOB_COLUMNS
    assert job["metadata"] == {"tenant": 7}
    assert [e["error"] for e in job["errors"]] == ["first failure", "second failure"]

    proc = river_cmd("job", "get", str(job_id + 1000), url=db_url)
    assert one_error_line(proc, 3) == f"Error: job {job_id + 1000} not found"
    assert proc.stdout == ""


def test_errors_whose_time_does_not_parse(conn: psycopg.Connection[Any], db_url: str) -> None:
    """Another writer's error entries with an unreadable ``at`` show as an unknown time, in
    ``get``, ``--json`` and the report of an action, which goes on to the next id."""
    bad = [
        {"at": "2024-02-30T00:00:00Z", "attempt": 1, "error": "bad date", "trace": ""},
        {"at": None, "attempt": 2, "error": "no date", "trace": ""},
    ]
    first, second = (
        insert_job(conn, state="discarded", attempt=2, max_attempts=2, errors=bad) for _ in range(2)
    )
    out = ok("job", "get", str(first), url=db_url)
    assert "attempt 1 at an unknown time:\n    bad date" in out
    assert "attempt 2 at an unknown time:\n    no date" in out
    job = json.loads(ok("job", "get", str(first), "--json", url=db_url))
    assert [e["at"] for e in job["errors"]] == [None, None]
    out = ok("job", "retry", str(first), str(second), url=db_url)
    assert f"{first} retried" in out
    assert f"{second} retried" in out
    states = conn.execute(
        "SELECT state::text FROM river_job WHERE id = ANY(%s)", ([first, second],)
    ).fetchall()
    assert states == [("available",), ("available",)]


# --------------------------------------------------------------------------------------------
# job retry / cancel / delete
# --------------------------------------------------------------------------------------------


def test_job_retry(conn: psycopg.Connection[Any], db_url: str) -> None:
    discarded = insert_job(conn, state="discarded", attempt=25, max_attempts=25)
    retryable = insert_job(conn, state="retryable", attempt=1)
    running = insert_job(conn, state="running", attempt=1)
    due = insert_job(conn, state="available")  # already due: left as it is
    missing = due + 1000
    ids = [discarded, missing, retryable, running, due]
    proc = river_cmd("job", "retry", *map(str, ids), url=db_url)
    # The missing job is reported; the others are still acted on.
    assert one_error_line(proc, 3) == f"Error: job {missing} not found"
    assert proc.stdout.splitlines() == [
        f"{discarded} retried (available)",
        f"{retryable} retried (available)",
        f"{running} not retried (running)",
        f"{due} not retried (available)",
    ]
    assert job_state(conn, discarded) == job_state(conn, retryable) == "available"
    assert job_state(conn, running) == "running"
    # All attempts used: one more granted.
    row = conn.execute("SELECT max_attempts FROM river_job WHERE id = %s", [discarded]).fetchone()
    assert row == (26,)


def test_job_retry_refuses_a_held_unique_key_and_goes_on(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    holder = insert_job(conn, state="available")
    old = insert_job(conn, state="discarded", attempt=25, max_attempts=25)
    other = insert_job(conn, state="retryable", attempt=1)
    for job_id in (holder, old):  # River's default unique states: discarded is outside them
        conn.execute(
            "UPDATE river_job SET unique_key = 'k', unique_states = 245::bit(8) WHERE id = %s",
            [job_id],
        )
    proc = river_cmd("job", "retry", str(old), str(other), url=db_url)
    assert one_error_line(proc, 3) == (
        f"Error: job {old} was not retried: job {holder} (available) holds the same unique "
        "key; retry it once that job is finalized, or delete one of them"
    )
    assert proc.stdout.splitlines() == [f"{other} retried (available)"]
    assert job_state(conn, old) == "discarded"
    assert job_state(conn, other) == "available"
    proc = river_cmd("job", "retry", "--json", str(old), url=db_url)
    assert proc.returncode == 3
    assert json.loads(proc.stdout) == [{"id": old, "result": "unique_conflict", "job": None}]


@pytest.mark.parametrize("command", ["retry", "cancel", "delete"])
def test_a_statement_failing_for_one_id_is_reported_and_the_others_go_on(
    conn: psycopg.Connection[Any], db_url: str, command: str
) -> None:
    # The middle job's row is locked by another transaction past the statement timeout: that
    # id fails (nothing changed), the next one is still acted on, and the status says a
    # statement failed (1), not that an id was stale (3).
    first, locked, last = (insert_job(conn, state="scheduled") for _ in range(3))
    with psycopg.connect(db_url) as other:
        other.execute("SELECT 1 FROM river_job WHERE id = %s FOR UPDATE", [locked])
        proc = river_cmd(
            "job",
            command,
            str(first),
            str(locked),
            str(last),
            "--statement-timeout",
            "300ms",
            "--json",
            url=db_url,
        )
        other.rollback()
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    results = json.loads(proc.stdout)
    assert [(r["id"], r["job"] is None) for r in results] == [
        (first, False),
        (locked, True),
        (last, False),
    ]
    assert results[1]["result"] == "error"
    assert "statement timeout" in results[1]["error"]
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"Error: job {locked}: canceling statement due to statement timeout")
    assert job_state(conn, locked) == "scheduled"
    expected = {"retry": "available", "cancel": "cancelled", "delete": None}[command]
    assert job_state(conn, first) == job_state(conn, last) == expected


def test_job_retry_cancel_delete_by_selection(
    conn: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # Every job the flags select, however many pages the selection spans (two per page here),
    # in id order; what the selection does not match is left alone.
    from river import _cli_admin, cli

    monkeypatch.setattr(_cli_admin, "_SELECTION_PAGE", 2)
    discarded = [insert_job(conn, state="discarded", attempt=25, max_attempts=25) for _ in range(5)]
    other_queue = insert_job(conn, state="discarded", queue="other")
    completed = insert_job(conn, state="completed")
    assert (
        cli.main(
            ["job", "retry", "--state", "discarded", "--queue", "default", "--database-url", db_url]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{i} retried (available)" for i in discarded]
    assert {job_state(conn, i) for i in discarded} == {"available"}
    assert job_state(conn, other_queue) == "discarded"
    assert job_state(conn, completed) == "completed"

    assert (
        cli.main(
            ["job", "delete", "--state", "available,completed", "--json", "--database-url", db_url]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in results] == sorted([*discarded, completed])
    assert {r["result"] for r in results} == {"deleted"}
    assert job_state(conn, other_queue) == "discarded"

    # Nothing selected: said, and a success.
    assert (
        cli.main(["job", "cancel", "--kind", "nothing_of_this_kind", "--database-url", db_url]) == 0
    )
    assert capsys.readouterr().out == "no jobs\n"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["job", "retry"], "Error: ids: give job ids, or select jobs with --state"),
        (["job", "delete", "3", "--state", "completed"], "Error: ids: give job ids or a selection"),
        (["job", "cancel", "--state", "nope"], "Error: --state: 'nope' is not a job state"),
        (["job", "retry", "--queue", "Bad Queue"], "Error: --queue: 'Bad Queue' must be"),
    ],
)
def test_selection_errors_exit_2_before_connecting(argv: list[str], error: str) -> None:
    proc = river_cmd(*argv, url=UNREACHABLE)
    assert one_error_line(proc, 2).startswith(error)


def test_job_cancel(conn: psycopg.Connection[Any], db_url: str) -> None:
    available = insert_job(conn, state="available")
    running = insert_job(conn, state="running", attempt=1)
    completed = insert_job(conn, state="completed", attempt=1)
    out = ok("job", "cancel", str(available), str(running), str(completed), url=db_url)
    assert out.splitlines() == [
        f"{available} cancelled (cancelled)",
        f"{running} cancel requested (running)",
        f"{completed} not cancelled (completed)",
    ]
    assert job_state(conn, available) == "cancelled"
    assert job_state(conn, completed) == "completed"
    with river.Client(db_url) as client:
        assert "cancel_attempted_at" in client.job_get(running).metadata


def test_job_delete_json(conn: psycopg.Connection[Any], db_url: str) -> None:
    done = insert_job(conn, state="completed", attempt=1)
    waiting = insert_job(conn, state="available")
    running = insert_job(conn, state="running", attempt=1)
    missing = running + 1000
    proc = river_cmd(
        "job",
        "delete",
        str(done),
        str(running),
        str(missing),
        str(waiting),
        str(done),  # repeated ids count once
        "--json",
        url=db_url,
    )
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        f"Error: job {running} is running and cannot be deleted",
        f"Error: job {missing} not found",
    ]
    results = json.loads(proc.stdout)
    assert [(r["id"], r["result"]) for r in results] == [
        (done, "deleted"),
        (running, "running"),
        (missing, "not_found"),
        (waiting, "deleted"),
    ]
    assert results[0]["job"]["state"] == "completed"
    assert set(results[0]["job"]) == JOB_COLUMNS
    assert results[1]["job"] is None
    assert job_state(conn, done) is None
    assert job_state(conn, waiting) is None
    assert job_state(conn, running) == "running"


# --------------------------------------------------------------------------------------------
# Exit statuses: bad input (2), operational errors (1)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["job", "get", "abc"], "Error: id: must be a positive integer, got 'abc'"),
        (["job", "retry", "1", "0"], "Error: id: must be a positive integer, got '0'"),
        (["job", "cancel", "-3"], "Error: id: "),
        (["job", "delete", "1.5"], "Error: id: "),
        (["job", "delete", "1_000"], "Error: id: must be a positive integer, got '1_000'"),
        (["job", "get", "\u0665"], "Error: id: "),  # ARABIC-INDIC DIGIT FIVE
        (["job", "retry", "+4"], "Error: id: "),
        (["job", "list", "--state", "bogus"], "Error: --state: 'bogus' is not a job state"),
        (["job", "list", "--limit", "0"], "Error: --limit: must be between 1 and 10000, got 0"),
        (["job", "list", "--limit", "ten"], "Error: --limit: must be an integer"),
        (["job", "list", "--queue", "Bad Queue"], "Error: --queue: 'Bad Queue' must be"),
        (["job", "list", "--after", "%%%"], "Error: --after: "),
        (["job", "list", "--schema", "no-dash"], "Error: --schema: "),
        (["queue", "pause", "Bad"], "Error: name: 'Bad' must be"),
        (["queue", "resume", "ok", "no way"], "Error: name: "),
        (
            ["queue", "update", "default", "--fetch-cooldown", "5x"],
            "Error: --fetch-cooldown: invalid duration '5x'",
        ),
        (
            ["queue", "update", "default", "--max-workers", "0"],
            "Error: --max-workers: must be between 1 and ",
        ),
        (["queue", "update", "default", "--max-workers", "many"], "Error: --max-workers: "),
        (
            ["queue", "update", "default", "--fetch-cooldown", "2s", "--fetch-poll-interval", "1s"],
            "Error: --fetch-poll-interval: must be at least fetch_cooldown",
        ),
        (["queue", "update", "default", "--clear", "speed"], "Error: --clear: 'speed' is not"),
        (
            ["queue", "update", "default", "--max-workers", "3", "--clear", "max-workers"],
            "Error: --clear: max_workers is also given as --max-workers",
        ),
        (["queue", "update", "default"], "Error: queue update: nothing to update"),
    ],
)
def test_bad_input_exits_2_before_connecting(argv: list[str], error: str) -> None:
    # The URL cannot be reached: exit 2 (not 1) shows that nothing tried to connect.
    proc = river_cmd(*argv, url=UNREACHABLE)
    assert one_error_line(proc, 2).startswith(error)
    assert proc.stdout == ""


def test_bad_input_acts_on_nothing(conn: psycopg.Connection[Any], db_url: str) -> None:
    job_id = insert_job(conn, state="available")
    proc = river_cmd("job", "cancel", str(job_id), "x", url=db_url)
    assert one_error_line(proc, 2) == "Error: id: must be a positive integer, got 'x'"
    assert job_state(conn, job_id) == "available"


@pytest.mark.parametrize(
    "argv",
    [
        ["job", "get"],  # missing ID
        ["job", "frobnicate"],
        ["queue", "update"],
        ["job", "list", "--no-such-flag"],
    ],
)
def test_flag_errors_exit_2_with_usage(argv: list[str]) -> None:
    proc = river_cmd(*argv, url=UNREACHABLE)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: ")
    assert "usage: river " in proc.stderr


def test_migrate_flag_errors_still_exit_1() -> None:
    # River (Go)'s commands keep River (Go)'s status for flag errors.
    proc = river_cmd("migrate-up", "--max-steps", "x", url=UNREACHABLE)
    assert proc.returncode == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["job", "list"],
        ["job", "get", "1"],
        ["job", "retry", "1", "2"],
        ["queue", "list"],
        ["queue", "pause", "*"],
        ["queue", "update", "default", "--max-workers", "3"],
    ],
)
def test_unreachable_database_exits_1(argv: list[str]) -> None:
    line = one_error_line(river_cmd(*argv, url=UNREACHABLE), 1)
    assert line.startswith("Error: cannot connect to the database: ")


def test_no_database_given_exits_1() -> None:
    line = one_error_line(river_cmd("job", "list"), 1)
    assert "no database given" in line


@pytest.mark.parametrize("argv", [["job", "list"], ["job", "retry", "1"], ["queue", "list"]])
def test_missing_schema_exits_1(empty_db_url: str, argv: list[str]) -> None:
    line = one_error_line(river_cmd(*argv, url=empty_db_url), 1)
    assert "river migrate-up" in line


def test_database_url_from_environment(conn: psycopg.Connection[Any], db_url: str) -> None:
    job_id = insert_job(conn)
    proc = river_cmd("job", "list", env={"DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    assert table_ids(proc.stdout) == [job_id]


# --------------------------------------------------------------------------------------------
# queue commands
# --------------------------------------------------------------------------------------------


def test_queue_list(conn: psycopg.Connection[Any], db_url: str) -> None:
    assert ok("queue", "list", url=db_url) == "no queues\n"
    add_queue(conn, "default")
    add_queue(conn, "idle")
    for state in ["available", "available", "running", "retryable", "scheduled", "completed"]:
        insert_job(conn, queue="default", state=state, attempt=1 if state != "available" else 0)
    insert_job(conn, queue="orphan", state="available")  # no river_queue row
    with river.Client(db_url) as client:
        client.queue_pause("idle")
        client.queue_update("default", max_workers=7, fetch_cooldown=0.25)

    out = ok("queue", "list", url=db_url)
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATUS",
        "CREATED",
        "(UTC)",
        "UPDATED",
        "OVERRIDE",
        "AVAILABLE",
        "RUNNING",
        "RETRYABLE",
        "SCHEDULED",
    ]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert list(rows) == ["default", "idle", "orphan"]
    assert rows["default"].split()[1] == "active"
    assert "max_workers=7 fetch_cooldown=250ms" in rows["default"]
    assert rows["default"].split()[-4:] == ["2", "1", "1", "1"]
    assert rows["idle"].split()[1] == "paused"
    assert rows["idle"].split()[-4:] == ["0", "0", "0", "0"]
    assert rows["orphan"].split()[1:3] == ["no", "row"]
    assert rows["orphan"].split()[-4:] == ["1", "0", "0", "0"]
    assert lines[4].startswith("no row: ")

    document = json.loads(ok("queue", "list", "--json", url=db_url))
    by_name = {q["name"]: q for q in document}
    assert by_name["default"]["override"] == {"max_workers": 7, "fetch_cooldown": 0.25}
    assert by_name["default"]["jobs"] == {
        "available": 2,
        "running": 1,
        "retryable": 1,
        "scheduled": 1,
    }
    assert by_name["default"]["created_at"].endswith("Z")
    assert by_name["idle"]["paused"] is True
    assert by_name["idle"]["status"] == "paused"
    assert by_name["idle"]["paused_at"].endswith("Z")
    assert by_name["orphan"]["has_row"] is False
    assert by_name["orphan"]["status"] == "no row"

    # Without counts: one query on river_queue only, so queues without a row are not known.
    document = json.loads(ok("queue", "list", "--json", "--no-counts", url=db_url))
    assert [(q["name"], q["jobs"]) for q in document] == [("default", None), ("idle", None)]


def paused(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    rows = conn.execute("SELECT name, paused_at IS NOT NULL FROM river_queue ORDER BY name")
    return dict(rows.fetchall())


def test_queue_pause_and_resume(conn: psycopg.Connection[Any], db_url: str) -> None:
    for name in ["alpha", "beta", "gamma"]:
        add_queue(conn, name)
    proc = river_cmd("queue", "pause", "alpha", "missing", "beta", url=db_url)
    assert one_error_line(proc, 3) == "Error: queue 'missing' not found"
    assert proc.stdout.splitlines() == ["alpha paused", "beta paused"]
    assert paused(conn) == {"alpha": True, "beta": True, "gamma": False}

    assert ok("queue", "resume", "beta", url=db_url) == "beta resumed\n"
    assert paused(conn) == {"alpha": True, "beta": False, "gamma": False}

    assert ok("queue", "pause", "*", url=db_url) == "all queues paused\n"
    assert paused(conn) == {"alpha": True, "beta": True, "gamma": True}
    assert ok("queue", "resume", "*", url=db_url) == "all queues resumed\n"
    assert paused(conn) == {"alpha": False, "beta": False, "gamma": False}


def test_queue_update_and_clear(conn: psycopg.Connection[Any], db_url: str) -> None:
    add_queue(conn, "email")
    out = ok(
        "queue",
        "update",
        "email",
        "--max-workers",
        "50",
        "--fetch-cooldown",
        "100ms",
        "--fetch-poll-interval",
        "1.5",  # plain seconds
        url=db_url,
    )
    assert out == "email updated: max_workers=50 fetch_cooldown=100ms fetch_poll_interval=1.5s\n"
    with river.Client(db_url) as client:
        override = client.queue_get("email").override
        assert (override.max_workers, override.fetch_cooldown, override.fetch_poll_interval) == (
            50,
            0.1,
            1.5,
        )

        document = json.loads(
            ok("queue", "update", "email", "--clear", "max-workers", "--json", url=db_url)
        )
        assert document["name"] == "email"
        assert document["override"] == {"fetch_cooldown": 0.1, "fetch_poll_interval": 1.5}
        override = client.queue_get("email").override
        assert override.max_workers is None
        assert override.fetch_cooldown == 0.1

        assert ok("queue", "update", "email", "--fetch-cooldown", "2m", url=db_url) == (
            "email updated: fetch_cooldown=120s fetch_poll_interval=1.5s\n"
        )
        assert ok("queue", "update", "email", "--clear", url=db_url) == (
            "email updated: no override\n"
        )
        assert not client.queue_get("email").override

    proc = river_cmd("queue", "update", "nowhere", "--max-workers", "3", url=db_url)
    assert one_error_line(proc, 3).startswith("Error: queue 'nowhere' not found")


def test_queue_update_autoscale_and_rate_limit(conn: psycopg.Connection[Any], db_url: str) -> None:
    add_queue(conn, "api")
    out = ok("queue", "update", "api", "--min-workers", "2", "--rate-limit", "50/1s", url=db_url)
    assert out == "api updated: min_workers=2 rate_limit=50/1s\n"
    assert ok("queue", "update", "api", "--rate-limit", "10/m,burst=3", url=db_url) == (
        "api updated: min_workers=2 rate_limit=10/60s,burst=3\n"
    )
    with river.Client(db_url) as client:
        override = client.queue_get("api").override
        assert override.min_workers == 2
        assert override.rate_limit == river.RateLimit(jobs=10, per=60.0, burst=3)
    listed = json.loads(ok("queue", "list", "--json", url=db_url))
    (api,) = [q for q in listed if q["name"] == "api"]
    assert api["override"]["rate_limit"] == {"jobs": 10, "per": 60.0, "burst": 3}
    assert ok("queue", "update", "api", "--clear", "rate-limit", url=db_url) == (
        "api updated: min_workers=2\n"
    )
    for bad, field in [
        ("50", "--rate-limit"),
        ("x/1s", "--rate-limit jobs"),
        ("0/1s", "--rate-limit"),
        ("5/soon", "--rate-limit period"),
        ("5/1s,limit=3", "--rate-limit"),
    ]:
        proc = river_cmd("queue", "update", "api", "--rate-limit", bad, url=db_url)
        assert one_error_line(proc, 2).startswith(f"Error: {field}:"), (bad, proc.stderr)
    proc = river_cmd(
        "queue", "update", "api", "--min-workers", "9", "--max-workers", "3", url=db_url
    )
    assert one_error_line(proc, 2).startswith("Error: --min-workers: must be at most")


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


def test_progress_on_a_terminal_only(conn: psycopg.Connection[Any], db_url: str) -> None:
    ids = [str(insert_job(conn, state="retryable", attempt=1)) for _ in range(60)]
    argv = [str(RIVER), "job", "retry", *ids, "--database-url", db_url]

    code, out, terminal = with_pty(argv)
    assert code == 0
    assert len(out.splitlines()) == 60
    assert "\r  60/60 jobs" in terminal
    assert terminal.endswith("\r")  # the counter erased itself

    # The same ids without a terminal: no counter, nothing on stderr (and nothing to do: the
    # jobs are available and due now).
    proc = river_cmd("job", "retry", *ids, url=db_url)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == out.replace(" retried", " not retried")

    # A few ids: no counter even on a terminal.
    code, out, terminal = with_pty(argv[:6] + argv[-2:])
    assert (code, terminal) == (0, "")
    assert len(out.splitlines()) == 3


def test_migrate_up_progress_on_a_terminal(empty_db_url: str) -> None:
    code, out, terminal = with_pty([str(RIVER), "migrate-up", "--database-url", empty_db_url])
    assert code == 0
    assert "\r  1/7 migrations  001 [up] create river migration" in terminal
    assert "\r  7/7 migrations  007 [up] " in terminal
    # stdout keeps River (Go)'s lines.
    assert [line[:27] for line in out.splitlines()] == [
        f"applied migration {v:03d} [up] " for v in range(1, 8)
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_throttles_and_erases() -> None:
    now = [0.0]
    stream = _Terminal()
    progress = Progress(100, "jobs", stream=stream, min_total=50, clock=lambda: now[0])
    assert progress.enabled
    progress.advance()  # first: drawn
    progress.advance()  # same instant: not drawn
    now[0] = 0.5
    progress.advance()  # interval passed: drawn
    progress.advance(97)  # last: always drawn
    progress.close()
    assert stream.getvalue() == (
        "\r  1/100 jobs" + "\r  3/100 jobs" + "\r  100/100 jobs" + "\r" + " " * 14 + "\r"
    )


def test_progress_is_silent_off_a_terminal_or_below_threshold() -> None:
    plain = io.StringIO()
    progress = Progress(1000, "jobs", stream=plain)
    progress.advance(1000)
    progress.close()
    assert not progress.enabled
    assert plain.getvalue() == ""

    small = _Terminal()
    progress = Progress(10, "jobs", stream=small, min_total=50)
    progress.advance(10)
    progress.close()
    assert not progress.enabled
    assert small.getvalue() == ""
