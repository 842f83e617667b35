"""``river.contrib.django.admin``: River's jobs and queues in Django's admin, through Django's
test client on the test project (tests/django_project) pointed at each test's own database;
the rows checked with SQL from another connection."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django_project.harness import django_on, manage

JOBS = "/admin/river/job/"
QUEUES = "/admin/river/queue/"
XSS = "<img src=x onerror=alert(1)>"


def _sql(db_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _job(db_url: str, state: str, kind: str = "k", queue: str = "default", **extra: Any) -> int:
    finalized = state in ("completed", "cancelled", "discarded")
    rows = _sql(
        db_url,
        "INSERT INTO river_job (state, kind, queue, max_attempts, attempt, args, errors,"
        " attempted_by, tags, finalized_at, scheduled_at)"
        " VALUES (%s::river_job_state, %s, %s, 3, %s, %s::jsonb, %s::jsonb[], %s, %s,"
        " CASE WHEN %s THEN now() END, now() + %s::interval) RETURNING id",
        state,
        kind,
        queue,
        extra.get("attempt", 1 if state != "available" else 0),
        extra.get("args", '{"n": 1}'),
        extra.get("errors", []),
        extra.get("attempted_by", ["host-1"] if state != "available" else None),
        extra.get("tags", ["t1"]),
        finalized,
        "1 hour" if state in ("scheduled", "retryable") else "0",
    )
    return int(rows[0][0])


def _state(db_url: str, job_id: int) -> str | None:
    rows = _sql(db_url, "SELECT state::text FROM river_job WHERE id = %s", job_id)
    return rows[0][0] if rows else None


@pytest.fixture
def admin_client(db_url: str) -> Iterator[Any]:
    with django_on(db_url):
        from django.contrib.auth.models import User
        from django.test import Client
        from django.test.utils import setup_test_environment, teardown_test_environment

        setup_test_environment()  # response.context, as Django's test runner sets it up
        try:
            user = User.objects.create_superuser("admin", "admin@example.com", "pw")
            client = Client()
            client.force_login(user)
            yield client
        finally:
            teardown_test_environment()


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def _action(client: Any, url: str, action: str, ids: list[Any]) -> list[str]:
    response = client.post(url, {"action": action, "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return _messages(response)


def test_changelist_lists_jobs_and_filters_work(admin_client: Any, db_url: str) -> None:
    a = _job(db_url, "available", kind="email")
    r = _job(db_url, "running", kind="report", queue="slow")
    c = _job(db_url, "completed", kind="email")
    d = _job(db_url, "discarded", kind="report")
    _sql(db_url, "INSERT INTO river_queue (name, updated_at) VALUES ('slow', now())")
    page = admin_client.get(JOBS)
    assert page.status_code == 200
    text = page.content.decode()
    for job_id in (a, r, c, d):
        assert f"/admin/river/job/{job_id}/change/" in text
    assert "1/3" in text  # attempt/max

    def ids(query: str) -> set[int]:
        response = admin_client.get(JOBS + query)
        assert response.status_code == 200
        return {job.id for job in response.context["cl"].result_list}

    assert ids("?state=running") == {r}
    assert ids("?state=completed") == {c}
    assert ids("?kind=report") == {r, d}
    assert ids("?queue=slow") == {r}
    assert ids("?kind=email&state=available") == {a}
    assert ids(f"?q={d}") == {d}
    assert ids("?q=email") == {a, c}
    assert ids("?q=²") == set()  # a digit to str.isdigit, no integer: a kind search
    # The kind filter's choices (the index skip scan) and the queue's (river_queue).
    assert 'href="?kind=report"' in text
    assert 'href="?kind=email"' in text
    assert 'href="?queue=slow"' in text
    assert "Add job" not in text


def test_detail_page_shows_args_and_error_traces_escaped(admin_client: Any, db_url: str) -> None:
    error = (
        '{"at": "2024-01-01T00:00:00Z", "attempt": 1, "error": "boom <b>", '
        '"trace": "Traceback (most recent call last):\\n  File \\"x.py\\"\\nValueError: <script>"}'
    )
    job_id = _job(
        db_url,
        "retryable",
        args='{"html": "' + XSS + '"}',
        errors=[error, '{"at": "2024-01-01T00:01:00Z", "attempt": 2, "error": "again"}'],
    )
    page = admin_client.get(f"{JOBS}{job_id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert XSS not in text
    assert "<script>" not in text
    assert html.escape(XSS, quote=True) in text
    assert "boom &lt;b&gt;" in text
    assert "ValueError: &lt;script&gt;" in text
    assert "attempt 1" in text
    assert "attempt 2" in text
    assert "(no trace)" in text
    assert "host-1" in text
    assert "t1" in text
    assert 'name="_save"' not in text  # read-only


def test_retry_cancel_delete_actions_follow_rivers_rules(admin_client: Any, db_url: str) -> None:
    discarded = _job(db_url, "discarded")
    running = _job(db_url, "running")
    msgs = _action(admin_client, JOBS, "retry_jobs", [discarded, running])
    assert _state(db_url, discarded) == "available"
    assert _state(db_url, running) == "running"
    assert any(m.startswith("retried") and str(discarded) in m for m in msgs)
    assert any("not retried: running" in m and str(running) in m for m in msgs)

    scheduled = _job(db_url, "scheduled")
    completed = _job(db_url, "completed")
    msgs = _action(admin_client, JOBS, "cancel_jobs", [scheduled, running, completed])
    assert _state(db_url, scheduled) == "cancelled"
    assert _state(db_url, completed) == "completed"
    assert _state(db_url, running) == "running"  # marked; its client cancels the attempt
    marked = _sql(
        db_url, "SELECT metadata ? 'cancel_attempted_at' FROM river_job WHERE id = %s", running
    )
    assert marked == [(True,)]
    assert any(m.startswith("cancelled") for m in msgs)
    assert any("cancel requested" in m for m in msgs)
    assert any("not cancelled: already completed" in m for m in msgs)

    msgs = _action(admin_client, JOBS, "delete_jobs", [scheduled, running])
    assert _state(db_url, scheduled) is None
    assert _state(db_url, running) == "running"
    assert any(m.startswith("deleted") and str(scheduled) in m for m in msgs)
    assert any("not deleted: running" in m and str(running) in m for m in msgs)
    # No Django delete view or delete_selected action.
    assert admin_client.get(f"{JOBS}{running}/delete/").status_code in (302, 403)
    page = admin_client.get(JOBS).content.decode()
    assert "delete_selected" not in page
    assert "delete_jobs" in page


def _log(object_id: Any) -> list[tuple[int, str, str]]:
    from django.contrib.admin.models import LogEntry

    return list(
        LogEntry.objects.filter(object_id=str(object_id))
        .order_by("id")
        .values_list("action_flag", "object_repr", "change_message")
    )


def test_actions_write_the_admin_log(admin_client: Any, db_url: str) -> None:
    """What an action did is in the admin's log (the object's history, "Recent actions"), by
    the user who did it; refusals are not."""
    from django.contrib.admin.models import CHANGE, DELETION, LogEntry

    retried = _job(db_url, "discarded", kind="mail")
    running = _job(db_url, "running", kind="mail")
    _action(admin_client, JOBS, "retry_jobs", [retried, running])
    assert _log(retried) == [
        (CHANGE, f"mail #{retried}", "Retried (available now) (river admin action).")
    ]
    assert _log(running) == []  # not retried: nothing to log
    _action(admin_client, JOBS, "cancel_jobs", [running])
    assert _log(running) == [
        (
            CHANGE,
            f"mail #{running}",
            "Cancel requested: the client working the job stops it (river admin action).",
        )
    ]
    _action(admin_client, JOBS, "delete_jobs", [retried])
    assert _log(retried)[-1] == (DELETION, f"mail #{retried}", "Deleted (river admin action).")
    assert {e.user.username for e in LogEntry.objects.all()} == {"admin"}
    # The job's history page lists them.
    history = admin_client.get(f"{JOBS}{running}/history/").content.decode()
    assert "Cancel requested" in history

    # A retry the job's unique key forbids: reported, nothing changed, nothing logged.
    holder = _job(db_url, "available", kind="mail")
    old = _job(db_url, "discarded", kind="mail")
    for job_id in (holder, old):
        _sql(
            db_url,
            "UPDATE river_job SET unique_key = 'k', unique_states = 245::bit(8) WHERE id = %s",
            job_id,
        )
    msgs = _action(admin_client, JOBS, "retry_jobs", [old])
    refusal = "not retried: another job holds its unique key (retry once it is finalized)"
    assert msgs == [f"{refusal}: 1 job(s) ({old})"]
    assert _state(db_url, old) == "discarded"
    assert _log(old) == []

    _sql(db_url, "INSERT INTO river_queue (name, updated_at) VALUES ('mailq', now())")
    _action(admin_client, QUEUES, "pause_queues", ["mailq"])
    assert _log("mailq") == [(CHANGE, "mailq", "Paused (river admin action).")]


def test_queue_pause_and_resume_actions(admin_client: Any, db_url: str) -> None:
    _sql(
        db_url,
        "INSERT INTO river_queue (name, updated_at, metadata)"
        " VALUES ('default', now(), '{\"note\": \"<i>x</i>\"}'), ('other', now(), '{}')",
    )
    page = admin_client.get(QUEUES)
    assert page.status_code == 200
    assert "other" in page.content.decode()
    msgs = _action(admin_client, QUEUES, "pause_queues", ["default"])
    assert msgs == ["paused: default"]
    paused = dict(_sql(db_url, "SELECT name, paused_at IS NOT NULL FROM river_queue"))
    assert paused == {"default": True, "other": False}
    detail = admin_client.get(f"{QUEUES}default/change/").content.decode()
    assert "&lt;i&gt;x&lt;/i&gt;" in detail
    _action(admin_client, QUEUES, "resume_queues", ["default"])
    paused = dict(_sql(db_url, "SELECT name, paused_at IS NOT NULL FROM river_queue"))
    assert paused == {"default": False, "other": False}


def test_makemigrations_has_nothing_to_do(db_url: str) -> None:
    # The river app only: the models are unmanaged and out of Django's migration state.
    result = manage(["makemigrations", "river", "--check", "--dry-run"], db_url, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def test_models_read_the_configured_schema(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA jobs")
    manage(["migrate"], empty_db_url, RIVER_SCHEMA="jobs")
    _sql(
        empty_db_url,
        "INSERT INTO jobs.river_job (kind, max_attempts, args) VALUES ('in_jobs', 1, '{}')",
    )
    code = (
        "from river.contrib.django.models import Job; "
        "print(Job._meta.db_table, list(Job.objects.values_list('kind', flat=True)))"
    )
    out = manage(["shell", "-c", code], empty_db_url, RIVER_SCHEMA="jobs").stdout
    assert out.strip().splitlines()[-1] == '"jobs"."river_job" [\'in_jobs\']'


def test_admin_opt_out() -> None:
    from django_project.harness import setup_django

    setup_django()
    from django.test import override_settings

    from river.contrib.django.admin import admin_enabled

    assert admin_enabled()
    with override_settings(RIVER={"ADMIN": False}):
        assert not admin_enabled()


def test_the_list_sorts_by_id_only(admin_client: Any, db_url: str) -> None:
    # Django offers sortable_by's columns only, but sorts by any the query string names:
    # ?o=6 (priority; column 0 is the checkbox) would sort the whole table.
    ids = [_job(db_url, "available") for _ in range(3)]
    _sql(db_url, "UPDATE river_job SET priority = 4 - id %% 3")
    for query, expected in [("", ids[::-1]), ("?o=1", ids), ("?o=6", ids[::-1])]:
        response = admin_client.get(JOBS + query)
        assert response.status_code == 200
        cl = response.context["cl"]
        assert [job.id for job in cl.result_list] == expected, query
        assert "priority" not in str(cl.queryset.query).rpartition("ORDER BY")[2]
        assert set(cl.get_ordering_field_columns()) <= {1}
