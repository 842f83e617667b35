"""The dashboard's JSON API (river/ui), driven in-process through httpx's ASGI transport against
a real Postgres: every endpoint, the figures against SQL, deep paging, bulk actions, and the
security layer (auth hooks, CSRF, read-only, allowed hosts, headers)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

import river
from river.ui import _api, _data
from river.ui._queries import ui_queries
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.anyio

from river.ui import Dashboard, auth_from_env, basic_auth, bearer_token, create_app  # noqa: E402
from river.ui._app import CONTENT_SECURITY_POLICY  # noqa: E402

HOST = "http://localhost"


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


def insert_job(conn: psycopg.Connection, **fields: Any) -> int:
    """One river_job row written as SQL (as River (Go) or any client would leave it)."""
    row: dict[str, Any] = {
        "kind": "email",
        "queue": "default",
        "state": "available",
        "args": Jsonb({"to": "a@example.com"}),
        "max_attempts": 25,
        "priority": 1,
        "attempt": 0,
        "tags": [],
        "metadata": Jsonb({}),
    }
    row.update(fields)
    if isinstance(row["args"], dict):
        row["args"] = Jsonb(row["args"])
    if isinstance(row["metadata"], dict):
        row["metadata"] = Jsonb(row["metadata"])
    if row["state"] in ("completed", "cancelled", "discarded"):
        row.setdefault("finalized_at", datetime.now(UTC))
    if "errors" in row:
        row["errors"] = [Jsonb(e) for e in row["errors"]]
    columns = ", ".join(row)
    values = ", ".join(f"%({k})s" for k in row)
    (job_id,) = conn.execute(
        f"INSERT INTO river_job ({columns}) VALUES ({values}) RETURNING id", row
    ).fetchone()
    return int(job_id)


def add_queue(conn: psycopg.Connection, name: str, *, paused: bool = False) -> None:
    conn.execute(
        "INSERT INTO river_queue (name, created_at, metadata, paused_at, updated_at)"
        " VALUES (%s, now(), '{}', CASE WHEN %s THEN now() END, now())",
        (name, paused),
    )


def error(attempt: int, text: str, at: datetime | None = None, trace: str = "") -> dict[str, Any]:
    at = at or datetime.now(UTC)
    return {"at": at.isoformat(), "attempt": attempt, "error": text, "trace": trace}


def seed(conn: psycopg.Connection) -> None:
    """A mix of kinds, queues and every state."""
    add_queue(conn, "default")
    add_queue(conn, "mail", paused=True)
    for i in range(6):
        insert_job(conn, kind="email", queue="mail", args={"to": f"u{i}@example.com"})
    for _ in range(4):
        insert_job(conn, kind="resize", queue="default", state="completed", attempt=1)
    insert_job(conn, kind="resize", queue="default", state="running", attempt=1,
               attempted_at=datetime.now(UTC), attempted_by=["host-a"])  # fmt: skip
    insert_job(conn, kind="report", queue="reports", state="scheduled",
               scheduled_at=datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
    insert_job(conn, kind="report", queue="reports", state="retryable", attempt=1,
               errors=[error(1, "ValueError: bad", trace="Traceback ...")])  # fmt: skip
    insert_job(conn, kind="report", queue="reports", state="discarded", attempt=25,
               errors=[error(25, "gave up")])  # fmt: skip
    insert_job(conn, kind="email", queue="mail", state="cancelled")
    insert_job(conn, kind="email", queue="mail", state="pending")


@pytest.fixture
async def dashboard(db_url: str) -> AsyncIterator[Dashboard]:
    app = create_app(db_url)
    try:
        yield app
    finally:
        await app.close()


def client_for(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=kwargs.pop("base_url", HOST), **kwargs
    )


@pytest.fixture
async def http(dashboard: Dashboard) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(dashboard) as c:
        yield c


async def csrf_of(http: httpx.AsyncClient, prefix: str = "") -> dict[str, str]:
    token = (await http.get(f"{prefix}/api/meta")).json()["csrf_token"]
    return {"X-River-CSRF": token}


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


async def test_overview_counts_match_sql(conn: psycopg.Connection, http: httpx.AsyncClient) -> None:
    seed(conn)
    conn.execute(
        "INSERT INTO river_leader (leader_id, elected_at, expires_at, name)"
        " VALUES ('host-a', now(), now() + interval '30 seconds', 'default')"
    )
    body = (await http.get("/api/overview")).json()
    by_state = dict(conn.execute("SELECT state::text, count(*) FROM river_job GROUP BY state"))
    assert {k: v for k, v in body["states"].items() if v} == by_state
    assert body["total"] == sum(by_state.values())
    assert set(body["states"]) == {s.value for s in river.JobState}
    sql_queues: dict[str, dict[str, int]] = {}
    for queue, state, count in conn.execute(
        "SELECT queue, state::text, count(*) FROM river_job GROUP BY queue, state"
    ):
        sql_queues.setdefault(queue, {})[state] = count
    queues = {q["name"]: q for q in body["queues"]}
    assert set(queues) == {"default", "mail", "reports"}
    for name, counts in sql_queues.items():
        assert {k: v for k, v in queues[name]["counts"].items() if v} == counts
    assert queues["mail"]["paused"] is True
    assert queues["mail"]["known"] is True
    assert queues["reports"]["known"] is False  # jobs only, no river_queue row
    assert body["leader"]["id"] == "host-a"
    assert [c["id"] for c in body["clients"]] == ["host-a"]
    assert body["clients"][0]["running"] == 1
    counts = (await http.get("/api/counts?queue=mail")).json()
    assert counts["states"]["available"] == 6
    assert counts["total"] == 8
    assert sorted(counts["queues"]) == ["default", "mail", "reports"]
    # Several queues as the job list takes them (a comma list showed zeros: no queue has
    # that name): their counts added up, either way of writing them.
    both = {
        state: sql_queues.get("mail", {}).get(state, 0)
        + sql_queues.get("reports", {}).get(state, 0)
        for state in counts["states"]
    }
    for query in ("queue=mail,reports", "queue=mail&queue=reports"):
        several = (await http.get(f"/api/counts?{query}")).json()
        assert several["states"] == both, query
        assert several["total"] == sum(both.values())


async def clear_of_a_minute_boundary(conn: psycopg.Connection) -> None:
    """Wait, when the server's minute is about to end, for the next one: a test that reads
    per-minute buckets expects them where they were when it began (a boundary passing between
    its clock reading and the dashboard's shifted every bucket by one)."""
    import anyio

    (second,) = conn.execute("SELECT extract(second FROM now())::float8").fetchone()
    if second > 50:
        await anyio.sleep(60.1 - second)


async def test_throughput_per_minute(conn: psycopg.Connection, http: httpx.AsyncClient) -> None:
    await clear_of_a_minute_boundary(conn)
    (now,) = conn.execute("SELECT date_trunc('minute', now())").fetchone()
    ago = lambda minutes: now - timedelta(minutes=minutes) + timedelta(seconds=5)  # noqa: E731
    for _ in range(3):
        insert_job(conn, state="completed", finalized_at=ago(0))
    insert_job(conn, state="completed", finalized_at=ago(10), queue="other")
    insert_job(conn, state="discarded", finalized_at=ago(10), errors=[error(1, "x", ago(10))])
    insert_job(conn, state="cancelled", finalized_at=ago(59))
    insert_job(conn, state="completed", finalized_at=ago(61))  # outside the window
    insert_job(
        conn, state="retryable", attempt=2, errors=[error(1, "a", ago(5)), error(2, "b", ago(0))]
    )
    insert_job(conn, state="retryable", errors=[{"at": "not a time", "attempt": 1, "error": "?"}])
    body = (await http.get("/api/throughput?minutes=60")).json()
    series = body["series"]
    assert len(series["completed"]) == 60
    assert series["completed"][59] == 3
    assert series["completed"][49] == 1
    assert sum(series["completed"]) == 4
    assert series["discarded"][49] == 1
    assert series["cancelled"][0] == 1
    assert series["failed"][59] == 1
    assert series["failed"][54] == 1
    assert series["failed"][49] == 1
    assert sum(series["failed"]) == 3
    one_queue = (await http.get("/api/throughput?minutes=30&queue=other")).json()["series"]
    assert sum(one_queue["completed"]) == 1
    assert len(one_queue["completed"]) == 30


async def test_job_list_filters_and_sorts(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    seed(conn)
    tagged = insert_job(conn, kind="tagged", tags=["vip", "eu"], priority=3,
                        args={"user": {"id": 7}, "note": "100% done_now"})  # fmt: skip
    insert_job(conn, kind="tagged", tags=["vip"], metadata={"tenant": "acme"})

    async def ids(query: str) -> list[int]:
        response = await http.get(f"/api/jobs?{query}")
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["jobs"]]

    def sql_ids(where: str, order: str = "id DESC") -> list[int]:
        return [
            r[0] for r in conn.execute(f"SELECT id FROM river_job WHERE {where} ORDER BY {order}")
        ]

    assert await ids("") == sql_ids("true")
    assert await ids("state=available") == sql_ids("state = 'available'")
    assert await ids("state=completed,cancelled") == sql_ids("state IN ('completed', 'cancelled')")
    assert await ids("state=completed&state=cancelled") == sql_ids(
        "state IN ('completed', 'cancelled')"
    )
    assert await ids("kind=report") == sql_ids("kind = 'report'")
    assert await ids("queue=mail&state=available") == sql_ids(
        "queue = 'mail' AND state = 'available'"
    )
    assert await ids("priority=3") == [tagged]
    assert await ids(f"id={tagged},1") == [tagged, 1]
    assert await ids("tag=vip") == sql_ids("tags @> ARRAY['vip']::varchar[]")
    assert await ids("tag=vip,eu") == [tagged]
    # Free text: in args or metadata, case-insensitive, its own % and _ taken literally.
    assert await ids("q=U3@EXAMPLE") == sql_ids("args->>'to' = 'u3@example.com'")
    assert await ids("q=100%25 done_") == [tagged]
    assert await ids("q=100%25%25") == []
    assert await ids("q=acme") == sql_ids("metadata->>'tenant' = 'acme'")
    # A JSON object: containment in args or metadata.
    assert await ids('q={"user": {"id": 7}}') == [tagged]
    assert await ids('q={"tenant": "acme"}') == sql_ids("metadata->>'tenant' = 'acme'")
    assert await ids("order=asc") == sql_ids("true", "id ASC")
    # "time" where an index returns that order: one finalized state by finalized_at, one
    # waiting state of one queue and one priority by scheduled_at, running by attempted_at.
    insert_job(conn, kind="report", queue="reports", state="scheduled",
               scheduled_at=datetime.now(UTC) + timedelta(minutes=5))  # fmt: skip
    assert await ids("state=completed&sort=time") == sql_ids(
        "state = 'completed'", "finalized_at DESC, id DESC"
    )
    assert await ids("state=scheduled&queue=reports&priority=1&sort=time&order=asc") == sql_ids(
        "state = 'scheduled' AND queue = 'reports' AND priority = 1", "scheduled_at ASC, id ASC"
    )
    assert await ids("state=running&sort=time") == sql_ids("state = 'running'")
    assert await ids(f"id={tagged},1&sort=time&order=asc") == sql_ids(
        f"id IN ({tagged}, 1)", "created_at ASC, id ASC"
    )
    # Elsewhere it would sort every matching row on each page: id order, and the reason.
    for query, reason in [
        ("state=completed,discarded,cancelled", "needs one state"),
        ("", "needs one state"),
        ("state=available", "one queue and one priority"),
        ("state=scheduled&queue=reports", "one queue and one priority"),
        ("state=completed&q=example", "text or tag search"),
    ]:
        body = (await http.get(f"/api/jobs?{query}&sort=time")).json()
        assert body["sort"] == "id", query
        assert body["sort_column"] == "id", query
        assert reason in body["sort_note"], query
        assert [j["id"] for j in body["jobs"]] == (await ids(query)), query
    served = (await http.get("/api/jobs?state=completed&sort=time")).json()
    assert (served["sort"], served["sort_column"], served["sort_note"]) == (
        "time",
        "finalized_at",
        None,
    )
    page = (await http.get("/api/jobs?kind=report")).json()["jobs"]
    retryable = next(j for j in page if j["state"] == "retryable")
    assert retryable["error_count"] == 1
    assert retryable["last_error"] == "ValueError: bad"
    assert retryable["args_preview"] == '{"to": "a@example.com"}'


async def test_cursor_paging_walks_every_row_once(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    for i in range(57):
        if i % 2:
            finalized = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i // 6)
            insert_job(conn, state="completed", finalized_at=finalized)
        else:
            insert_job(conn)
    for query, where, order in [
        ("", "true", "id DESC"),
        ("order=asc", "true", "id ASC"),
        ("state=completed&sort=time", "state = 'completed'", "finalized_at DESC, id DESC"),
        ("state=completed&sort=time&order=asc", "state = 'completed'", "finalized_at, id"),
    ]:
        seen: list[int] = []
        after = ""
        for _ in range(20):
            response = await http.get(f"/api/jobs?limit=10&{query}{after}")
            body = response.json()
            seen += [j["id"] for j in body["jobs"]]
            if body["next"] is None:
                break
            after = f"&after={body['next']}"
        expected = [
            r[0] for r in conn.execute(f"SELECT id FROM river_job WHERE {where} ORDER BY {order}")
        ]
        assert seen == expected, query
    # A cursor of one order cannot page another.
    cursor = (await http.get("/api/jobs?limit=1")).json()["next"]
    response = await http.get(f"/api/jobs?state=completed&sort=time&after={cursor}")
    assert response.status_code == 400
    assert response.json()["field"] == "after"


async def test_job_detail(conn: psycopg.Connection, http: httpx.AsyncClient) -> None:
    job_id = insert_job(
        conn,
        kind="report",
        state="retryable",
        attempt=2,
        attempted_by=["host-a", "host-b"],
        tags=["monthly"],
        metadata={"output": {"rows": 3}, "periodic": True},
        errors=[error(1, "first"), error(2, "second", trace='File "x.py", line 1\nValueError')],
    )
    body = (await http.get(f"/api/jobs/{job_id}")).json()
    job = body["job"]
    assert body["now"].endswith("Z")
    assert job["id"] == job_id
    assert job["state"] == "retryable"
    assert job["attempt"] == 2
    assert job["args"] == {"to": "a@example.com"}
    assert job["output"] == {"rows": 3}
    assert job["has_output"] is True
    assert job["attempted_by"] == ["host-a", "host-b"]
    assert [e["error"] for e in job["errors"]] == ["first", "second"]
    assert job["errors"][1]["trace"].startswith('File "x.py"')
    assert job["errors"][0]["at"].endswith("Z")
    missing = await http.get("/api/jobs/999999")
    assert missing.status_code == 404
    assert missing.json()["field"] == "id"


async def test_kinds_and_periodic_standalone(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    seed(conn)
    insert_job(
        conn, kind="nightly", metadata={"periodic": True, "river:periodic_job_id": "nightly"}
    )
    last = insert_job(
        conn, kind="nightly", metadata={"periodic": True, "river:periodic_job_id": "nightly"}
    )
    assert (await http.get("/api/kinds")).json()["kinds"] == [
        "email",
        "nightly",
        "report",
        "resize",
    ]
    body = (await http.get("/api/periodic")).json()
    assert body["known"] is False
    assert body["jobs"] == []
    assert body["seen"] == [
        {
            "id": "nightly",
            "kind": "nightly",
            "queue": "default",
            "count": 2,
            "last_run": body["seen"][0]["last_run"],
            "last_job_id": last,
        }
    ]


class Nightly(river.JobArgs):
    kind: ClassVar[str] = "nightly"


async def test_periodic_jobs_of_a_client(conn: psycopg.Connection, db_url: str) -> None:
    last = insert_job(
        conn, kind="nightly", metadata={"periodic": True, "river:periodic_job_id": "nightly"}
    )
    (created,) = conn.execute("SELECT created_at FROM river_job WHERE id = %s", (last,)).fetchone()
    periodic = [
        river.PeriodicJob(river.PeriodicInterval(3600), Nightly, id="nightly"),
        river.PeriodicJob(river.Cron("*/5 * * * *"), Nightly, run_on_start=True),
    ]
    client = river.AsyncClient(db_url, river.Config(periodic_jobs=periodic))
    app = create_app(db_url, client=client)
    try:
        async with client_for(app) as http:
            assert (await http.get("/api/meta")).json()["periodic_known"] is True
            body = (await http.get("/api/periodic")).json()
    finally:
        await app.close()
        await client.close()
    assert body["known"] is True
    assert body["client"]["leader"] is False
    interval, cron = body["jobs"]
    assert interval["id"] == "nightly"
    assert interval["schedule"] == "every 1h"
    assert interval["last_job_id"] == last
    assert interval["kind"] == "nightly"
    next_run = datetime.fromisoformat(interval["next_run"])
    assert next_run == created.astimezone(UTC).replace(microsecond=created.microsecond) + timedelta(
        hours=1
    )
    assert cron["schedule"] == "*/5 * * * *"
    assert cron["run_on_start"] is True
    assert datetime.fromisoformat(cron["next_run"]).minute % 5 == 0
    assert body["seen"] == []  # the one seen is the client's own


# --------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------


async def test_single_job_actions(conn: psycopg.Connection, http: httpx.AsyncClient) -> None:
    discarded = insert_job(conn, state="discarded", attempt=25, max_attempts=25)
    waiting = insert_job(
        conn, state="scheduled", scheduled_at=datetime.now(UTC) + timedelta(hours=1)
    )
    running = insert_job(conn, state="running", attempt=1, attempted_at=datetime.now(UTC))
    headers = await csrf_of(http)

    retried = await http.post(f"/api/jobs/{discarded}/retry", headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["job"]["state"] == "available"
    assert retried.json()["job"]["max_attempts"] == 26  # one more attempt, as job_retry gives

    cancelled = await http.post(f"/api/jobs/{waiting}/cancel", headers=headers)
    assert cancelled.json()["job"]["state"] == "cancelled"
    marked = await http.post(f"/api/jobs/{running}/cancel", headers=headers)
    assert marked.json()["job"]["state"] == "running"  # its client cancels the attempt
    assert "cancel_attempted_at" in marked.json()["job"]["metadata"]

    refused = await http.post(f"/api/jobs/{running}/delete", headers=headers)
    assert refused.status_code == 409
    assert "running" in refused.json()["error"]
    deleted = await http.post(f"/api/jobs/{waiting}/delete", headers=headers)
    assert deleted.json() == {"deleted": True, "job": deleted.json()["job"]}
    assert (await http.get(f"/api/jobs/{waiting}")).status_code == 404
    unknown = await http.post(f"/api/jobs/{waiting}/frobnicate", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "action"


async def test_bulk_actions_on_ids(conn: psycopg.Connection, http: httpx.AsyncClient) -> None:
    ids = [insert_job(conn, state="discarded", attempt=3, max_attempts=3) for _ in range(5)]
    running = insert_job(conn, state="running", attempt=1, attempted_at=datetime.now(UTC))
    headers = await csrf_of(http)
    response = await http.post(
        "/api/jobs/bulk", json={"action": "retry", "ids": ids[:3]}, headers=headers
    )
    assert response.json() == {
        "action": "retry", "matched": 3, "changed": 3, "skipped": 0, "conflicts": 0,
        "next": None, "stopped": None,
    }  # fmt: skip
    states = dict(conn.execute("SELECT id, state::text FROM river_job"))
    assert [states[i] for i in ids] == ["available"] * 3 + ["discarded"] * 2

    with conn.cursor() as cur:
        cur.execute('LISTEN "public.river_control"')
    response = await http.post(
        "/api/jobs/bulk", json={"action": "cancel", "ids": [*ids, running]}, headers=headers
    )
    assert response.json()["changed"] == 4  # 3 available + the running one; 2 are finalized
    states = dict(conn.execute("SELECT id, state::text FROM river_job"))
    assert [states[i] for i in ids] == ["cancelled"] * 3 + ["discarded"] * 2
    assert states[running] == "running"
    notes = [json.loads(n.payload) for n in conn.notifies(timeout=1, stop_after=1)]
    assert notes == [{"action": "cancel", "job_id": running, "queue": "default"}]

    # Retrying cancelled jobs clears their cancel mark, as the single-job retry does: a mark
    # left behind would cancel the job at its next failure instead of retrying it.
    response = await http.post(
        "/api/jobs/bulk", json={"action": "retry", "ids": ids[:3]}, headers=headers
    )
    assert response.json()["changed"] == 3
    marks = conn.execute(
        "SELECT id, state::text, metadata ? 'cancel_attempted_at' FROM river_job"
        " WHERE id = ANY(%s) ORDER BY id",
        (ids[:3],),
    ).fetchall()
    assert marks == [(i, "available", False) for i in ids[:3]]

    response = await http.post(
        "/api/jobs/bulk", json={"action": "delete", "ids": [*ids, running]}, headers=headers
    )
    assert response.json() == {
        "action": "delete", "matched": 6, "changed": 5, "skipped": 1, "conflicts": 0,
        "next": None, "stopped": None,
    }  # fmt: skip
    assert [r[0] for r in conn.execute("SELECT id FROM river_job")] == [running]


async def test_bulk_action_on_all_matching_stops_at_the_count(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    for i in range(2500):  # more than one batch of 1,000
        insert_job(conn, kind="bulk", state="discarded" if i % 5 else "completed")
    insert_job(conn, kind="other", state="discarded")
    count = (await http.get("/api/jobs/count?kind=bulk&state=discarded")).json()
    assert count["count"] == 2000
    late = insert_job(conn, kind="bulk", state="discarded")  # inserted after the count
    headers = await csrf_of(http)
    response = await http.post(
        "/api/jobs/bulk",
        json={
            "action": "retry",
            "filter": {"kind": "bulk", "state": ["discarded"]},
            "max_id": count["max_id"],
            "count": count["count"],
        },
        headers=headers,
    )
    assert response.json() == {
        "action": "retry", "matched": 2000, "changed": 2000, "skipped": 0, "conflicts": 0,
        "next": None, "stopped": None,
    }  # fmt: skip
    left = dict(conn.execute("SELECT kind || ':' || state, count(*) FROM river_job GROUP BY 1"))
    assert left == {
        "bulk:available": 2000,
        "bulk:completed": 500,
        "bulk:discarded": 1,
        "other:discarded": 1,
    }
    assert conn.execute("SELECT state::text FROM river_job WHERE id = %s", (late,)).fetchone() == (
        "discarded",
    )


async def count_all(
    http: httpx.AsyncClient, flt: dict[str, Any], answers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``GET /api/jobs/count`` as the page runs it: again with each answer's ``next`` until the
    count is complete (every answer is appended to ``answers``)."""
    more: dict[str, Any] = {}
    for _ in range(1000):
        response = await http.get("/api/jobs/count", params={**flt, **more})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        if answers is not None:
            answers.append(answer)
        if answer["next"] is None:
            assert answer["complete"] is True
            return answer
        assert answer["complete"] is False
        more = answer["next"]
    raise AssertionError("the count never completed")


async def _bulk_all(
    http: httpx.AsyncClient, action: str, flt: dict[str, Any], **extra: Any
) -> list[dict[str, Any]]:
    """A bulk action over a filter as the page runs it: count, confirm, call until done."""
    count = await count_all(http, flt)
    body: dict[str, Any] = {"action": action, "filter": flt, "max_id": count["max_id"]}
    body["count"] = count["count"]
    body.update(extra)
    headers = await csrf_of(http)
    answers = []
    for _ in range(100):
        response = await http.post("/api/jobs/bulk", json=body, headers=headers)
        assert response.status_code == 200, response.text
        answers.append(response.json())
        if answers[-1].get("next") is None:
            break
        body.update(answers[-1]["next"])
    return answers


async def test_a_bulk_text_search_starts_at_the_lowest_id(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    """A text filter is read window by window of ids: from 0, a table whose ids start at 50
    million (years of cleanup) took ~500 calls of empty windows to check the count, and as
    many again before the first retry. It starts at the table's lowest id."""
    conn.execute("SELECT setval(pg_get_serial_sequence('river_job', 'id'), 50000000)")
    ids = [
        insert_job(conn, kind="far", state="discarded", args={"note": "timeout here"})
        for _ in range(5)
    ]
    assert min(ids) > 50_000_000
    answers = await _bulk_all(http, "retry", {"q": "timeout"})
    assert len(answers) <= 2, [a["next"] for a in answers]
    assert sum(a["changed"] for a in answers) == 5
    states = conn.execute(
        "SELECT DISTINCT state::text FROM river_job WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    assert states == [("available",)]


async def test_bulk_over_a_filter_acts_only_on_jobs_that_still_match(
    conn: psycopg.Connection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that leaves the filter between the batch's read and its statement is left alone
    (it was deleted by "delete all available" when completed meanwhile)."""
    ids = [insert_job(conn, kind="race") for _ in range(4)]
    victim = ids[1]
    original = _data.matching_ids_op

    def racing(*args: Any, **kwargs: Any) -> Any:
        found = yield from original(*args, **kwargs)
        conn.execute(
            "UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = %s",
            (victim,),
        )
        return found

    monkeypatch.setattr(_data, "matching_ids_op", racing)
    (answer,) = await _bulk_all(http, "delete", {"kind": "race", "state": "available"})
    assert (answer["matched"], answer["changed"], answer["skipped"]) == (4, 3, 1)
    left = list(conn.execute("SELECT id, state::text FROM river_job"))
    assert left == [(victim, "completed")]


async def test_bulk_over_a_filter_never_acts_on_more_than_confirmed(
    conn: psycopg.Connection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [insert_job(conn, kind="grow", state="discarded") for _ in range(4)]
    late = insert_job(conn, kind="grow")  # available for now
    flt = {"kind": "grow", "state": "discarded"}
    count = (await http.get("/api/jobs/count", params=flt)).json()
    assert count["count"] == 4
    conn.execute(
        "UPDATE river_job SET state = 'discarded', finalized_at = now() WHERE id = %s", (late,)
    )
    # Five jobs match now, up to the max_id confirmed: nothing is done, and the answer says why.
    body = {"action": "retry", "filter": flt, "max_id": late, "count": 4}
    response = await http.post("/api/jobs/bulk", json=body, headers=await csrf_of(http))
    answer = response.json()
    assert answer["stopped"]
    assert "more jobs match" in answer["stopped"]
    assert (answer["matched"], answer["changed"], answer["next"]) == (0, 0, None)
    assert {r[0] for r in conn.execute("SELECT state::text FROM river_job")} == {"discarded"}

    # A job that joins the filter while the action runs: it stops at the count confirmed.
    conn.execute(
        "UPDATE river_job SET state = 'available', finalized_at = NULL WHERE id = %s", (late,)
    )
    monkeypatch.setattr(_api, "BULK_BATCH", 2)
    original = _data.bulk_op

    def joining(*args: Any, **kwargs: Any) -> Any:
        result = yield from original(*args, **kwargs)
        conn.execute(
            "UPDATE river_job SET state = 'discarded', finalized_at = now() WHERE id = %s",
            (late,),
        )
        return result

    monkeypatch.setattr(_data, "bulk_op", joining)
    body["max_id"] = late
    response = await http.post("/api/jobs/bulk", json=body, headers=await csrf_of(http))
    answer = response.json()
    assert answer["changed"] == 4
    assert answer["stopped"]
    assert "more jobs match" in answer["stopped"]
    states = dict(conn.execute("SELECT id, state::text FROM river_job"))
    assert [states[i] for i in ids] == ["available"] * 4
    assert states[late] == "discarded"


async def test_bulk_over_a_filter_goes_on_in_bounded_calls(
    conn: psycopg.Connection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_api, "BULK_BATCH", 2)
    monkeypatch.setattr(_api, "BULK_PER_CALL", 3)
    ids = [insert_job(conn, kind="steps", state="cancelled") for _ in range(7)]
    answers = await _bulk_all(http, "delete", {"kind": "steps"})
    assert [a["matched"] for a in answers] == [4, 3]
    assert answers[0]["next"] == {"after_id": ids[3], "matched_before": 4}
    assert sum(a["changed"] for a in answers) == 7
    assert conn.execute("SELECT count(*) FROM river_job").fetchone() == (0,)


async def test_a_second_bulk_action_is_refused_while_one_runs(
    conn: psycopg.Connection, dashboard: Dashboard, http: httpx.AsyncClient
) -> None:
    job = insert_job(conn, state="discarded")
    headers = await csrf_of(http)
    async with dashboard.api._bulk_lock:
        response = await http.post(
            "/api/jobs/bulk", json={"action": "delete", "ids": [job]}, headers=headers
        )
    assert response.status_code == 409
    assert "another bulk action" in response.json()["error"]
    assert conn.execute("SELECT count(*) FROM river_job").fetchone() == (1,)


#: River's default unique states (every state but cancelled and discarded) as an integer.
DEFAULT_UNIQUE_STATES = 0b11110101


def make_unique(conn: psycopg.Connection, job_id: int, key: bytes) -> None:
    conn.execute(
        "UPDATE river_job SET unique_key = %s, unique_states = %s::integer::bit(8) WHERE id = %s",
        (key, DEFAULT_UNIQUE_STATES, job_id),
    )


async def test_retry_of_a_job_whose_unique_key_is_held(
    conn: psycopg.Connection, db_url: str, http: httpx.AsyncClient
) -> None:
    holder = insert_job(conn, kind="uniq")
    make_unique(conn, holder, b"key-1")
    old = insert_job(conn, kind="uniq", state="discarded", attempt=25)
    make_unique(conn, old, b"key-1")  # discarded: not in its unique states, so allowed
    # The admin API refuses the same retry (UniqueConflictError): the dashboard says why.
    async with river.AsyncClient(db_url) as client:
        with pytest.raises(river.UniqueConflictError) as refused:
            await client.job_retry(old)
    assert (refused.value.holder_id, refused.value.holder_state) == (holder, "available")
    response = await http.post(f"/api/jobs/{old}/retry", headers=await csrf_of(http))
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["field"] == "unique_key"
    assert body["conflict"] == {"id": holder, "state": "available"}
    assert f"job {holder} (available) holds the same unique key" in body["error"]
    assert conn.execute("SELECT state::text FROM river_job WHERE id = %s", (old,)).fetchone() == (
        "discarded",
    )


async def test_bulk_retry_skips_unique_conflicts(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    holder = insert_job(conn, kind="uniq")
    make_unique(conn, holder, b"held")
    blocked = insert_job(conn, kind="uniq", state="discarded")
    make_unique(conn, blocked, b"held")
    first, second = (insert_job(conn, kind="uniq", state="discarded") for _ in range(2))
    make_unique(conn, first, b"twice")  # two discarded jobs of one key: only one may come back
    make_unique(conn, second, b"twice")
    plain = insert_job(conn, kind="uniq", state="discarded")
    response = await http.post(
        "/api/jobs/bulk",
        json={"action": "retry", "ids": [blocked, first, second, plain]},
        headers=await csrf_of(http),
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["matched"], answer["changed"], answer["conflicts"], answer["skipped"]) == (
        4, 2, 2, 2,
    )  # fmt: skip
    states = dict(conn.execute("SELECT id, state::text FROM river_job"))
    assert states == {
        holder: "available", blocked: "discarded", first: "available", second: "discarded",
        plain: "available",
    }  # fmt: skip
    # Over a filter too, batch after batch.
    conn.execute("UPDATE river_job SET state = 'discarded', finalized_at = now() WHERE id = %s",
                 (first,))  # fmt: skip
    (answer,) = await _bulk_all(http, "retry", {"kind": "uniq", "state": "discarded"})
    assert (answer["matched"], answer["changed"], answer["conflicts"]) == (3, 1, 2)


async def test_queue_endpoints(conn: psycopg.Connection, http: httpx.AsyncClient) -> None:
    seed(conn)
    headers = await csrf_of(http)
    queues = {q["name"]: q for q in (await http.get("/api/queues")).json()["queues"]}
    assert queues["mail"]["paused"]
    assert not queues["default"]["paused"]
    assert queues["default"]["counts"]["completed"] == 4
    one = (await http.get("/api/queues/reports")).json()["queue"]
    assert one["known"] is False
    assert one["total"] == 3
    assert (await http.get("/api/queues/nowhere")).status_code == 404

    paused = await http.post("/api/queues/default/pause", headers=headers)
    assert paused.json()["queue"]["paused"] is True
    assert conn.execute(
        "SELECT paused_at IS NOT NULL FROM river_queue WHERE name = 'default'"
    ).fetchone() == (True,)
    resumed = await http.post("/api/queues/default/resume", headers=headers)
    assert resumed.json()["queue"]["paused"] is False

    updated = await http.post(
        "/api/queues/default/settings",
        json={"max_workers": 5, "fetch_poll_interval": 2.5},
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["queue"]["override"] == {"max_workers": 5, "fetch_poll_interval": 2.5}
    (metadata,) = conn.execute("SELECT metadata FROM river_queue WHERE name = 'default'").fetchone()
    assert metadata == {"river_py": {"settings": {"max_workers": 5, "fetch_poll_interval": 2.5}}}
    cleared = await http.post(
        "/api/queues/default/settings", json={"clear": ["max_workers"]}, headers=headers
    )
    assert cleared.json()["queue"]["override"] == {"fetch_poll_interval": 2.5}
    missing = await http.post("/api/queues/reports/pause", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["field"] == "queue"
    # "*" is every queue to the admin calls, not a queue: refused before anything is paused.
    paused_query = "SELECT name FROM river_queue WHERE paused_at IS NOT NULL ORDER BY name"
    paused_before = conn.execute(paused_query).fetchall()
    for path in ("/api/queues/*/pause", "/api/queue/pause?name=*", "/api/queues/*/resume"):
        refused = await http.post(path, headers=headers)
        assert refused.status_code == 400, (path, refused.text)
        assert refused.json()["field"] == "name"
        assert "'*'" in refused.json()["error"]
    assert conn.execute(paused_query).fetchall() == paused_before


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/jobs/abc", "id"),
        ("/api/jobs/0", "id"),
        ("/api/jobs/99999999999999999999", "id"),
        ("/api/jobs?state=finished", "state"),
        ("/api/jobs?priority=9", "priority"),
        ("/api/jobs?id=x", "id"),
        ("/api/jobs?limit=0", "limit"),
        ("/api/jobs?limit=abc", "limit"),
        ("/api/jobs?sort=kind", "sort"),
        ("/api/jobs?order=up", "order"),
        ("/api/jobs?after=not-a-cursor", "after"),
        ("/api/jobs?after=eyJ4IjoxfQ==", "after"),
        ("/api/jobs/count?state=nope", "state"),
        ("/api/jobs/count?below=0", "below"),
        ("/api/jobs/count?count_before=3", "below"),
        ("/api/jobs/count?below=9&count_before=-1", "count_before"),
        ("/api/jobs/count?below=9&count_before=1&max_id_before=4", "max_id_before"),
        ("/api/throughput?minutes=0", "minutes"),
        ("/api/throughput?minutes=x", "minutes"),
    ],
)
async def test_bad_query_input_is_400_naming_the_field(
    http: httpx.AsyncClient, path: str, field: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/jobs/bulk", {"action": "explode", "ids": [1]}, "action"),
        ("/api/jobs/bulk", {"action": "retry"}, "ids"),
        ("/api/jobs/bulk", {"action": "retry", "ids": []}, "ids"),
        ("/api/jobs/bulk", {"action": "retry", "ids": ["x"]}, "ids"),
        ("/api/jobs/bulk", {"action": "retry", "filter": {"state": "x"}, "max_id": 1}, "state"),
        (
            "/api/jobs/bulk",
            {"action": "retry", "filter": {"color": "x"}, "max_id": 1},
            "filter.color",
        ),
        ("/api/jobs/bulk", {"action": "retry", "filter": {}}, "max_id"),
        ("/api/jobs/bulk", {"action": "retry", "filter": {}, "max_id": 9}, "count"),
        (
            "/api/jobs/bulk",
            {"action": "retry", "filter": {}, "max_id": 9, "count": 2, "matched_before": 3},
            "matched_before",
        ),
        (
            "/api/jobs/bulk",
            {"action": "retry", "filter": {}, "max_id": 9, "count": 2, "after_id": 10},
            "after_id",
        ),
        (
            "/api/jobs/bulk",
            {"action": "retry", "filter": {}, "max_id": 9, "count": 2, "checked_id": 10},
            "checked_id",
        ),
        (
            "/api/jobs/bulk",
            {"action": "retry", "filter": {}, "max_id": 9, "count": 2, "checked": 3},
            "checked",
        ),
        ("/api/jobs/bulk", [1, 2], "body"),
        ("/api/queues/default/settings", {"max_workers": 0}, "max_workers"),
        ("/api/queues/default/settings", {"max_workers": "many"}, "max_workers"),
        ("/api/queues/default/settings", {"fetch_cooldown": -1}, "fetch_cooldown"),
        ("/api/queues/default/settings", {"speed": 3}, "speed"),
        ("/api/queues/default/settings", {"clear": ["speed"]}, "clear"),
        ("/api/queues/default/settings", {}, "body"),
        ("/api/queues/Bad%20Name/pause", {}, "queue"),
    ],
)
async def test_bad_body_input_is_400_naming_the_field(
    conn: psycopg.Connection, http: httpx.AsyncClient, path: str, body: Any, field: str
) -> None:
    add_queue(conn, "default")
    response = await http.post(path, json=body, headers=await csrf_of(http))
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_invalid_json_body(http: httpx.AsyncClient) -> None:
    headers = {**await csrf_of(http), "Content-Type": "application/json"}
    response = await http.post("/api/jobs/bulk", content=b"{nope", headers=headers)
    assert response.status_code == 400
    assert response.json()["field"] == "body"


# --------------------------------------------------------------------------------------------
# Security
# --------------------------------------------------------------------------------------------


async def test_page_headers_and_escaping(db_url: str) -> None:
    app = create_app(db_url, title='<script>alert("t")</script>')
    try:
        async with client_for(app) as http:
            page = await http.get("/jobs/12")
            api = await http.get("/api/meta")
            css = await http.get("/static/app.css")
            js = await http.get("/static/app.js")
            missing = await http.get("/static/../_app.py")
    finally:
        await app.close()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script>alert("t")' not in page.text
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in page.text
    for response in (page, api, css, js):
        csp = response.headers["content-security-policy"]
        assert csp == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert page.headers["cache-control"] == "no-store"
    assert js.headers["content-type"].startswith("text/javascript")
    assert "etag" in js.headers
    assert css.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404
    # No inline script or style in the page; the script builds the DOM from text only.
    assert "<script>" not in page.text
    assert "style=" not in page.text
    code = "\n".join(ln for ln in js.text.splitlines() if not ln.strip().startswith("//"))
    for sink in (
        ".innerHTML",
        ".outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
    ):
        assert sink not in code, sink


def test_assets_reach_nothing_outside() -> None:
    static = REPO_ROOT / "river" / "ui" / "static"
    for path in static.iterdir():
        text = path.read_text(encoding="utf-8")
        urls = [u for u in text.split() if "http://" in u or "https://" in u]
        assert all("www.w3.org/2000/svg" in u for u in urls), (path.name, urls)


async def test_auth_hooks(db_url: str) -> None:
    calls: list[str] = []

    def deny(request: Any) -> bool:
        calls.append(request.url.path)
        return request.headers.get("x-user") == "alice"

    async def deny_async(request: Any) -> bool:
        return request.headers.get("x-user") == "alice"

    for hook in (deny, deny_async):
        app = create_app(db_url, auth=hook)
        try:
            async with client_for(app) as http:
                assert (await http.get("/api/meta")).status_code == 403
                assert (await http.get("/")).status_code == 403
                assert (await http.get("/static/app.js")).status_code == 403
                assert (await http.get("/api/meta", headers={"x-user": "alice"})).status_code == 200
        finally:
            await app.close()
    assert calls


async def test_bearer_token(db_url: str) -> None:
    token = "s3cret-token-0123456789"
    app = create_app(db_url, auth=bearer_token(token))
    try:
        async with client_for(app, base_url=HOST) as http:
            refused = await http.get("/api/meta")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            wrong = await http.get("/api/meta", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            ok = await http.get("/api/meta", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200
            # A browser signs in once with ?token= and keeps a cookie (not the token itself).
            signin = await http.get(f"/jobs?state=running&token={token}")
            assert signin.status_code == 303
            assert signin.headers["location"] == "/jobs?state=running"
            cookie = signin.headers["set-cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=strict" in cookie
            assert token not in cookie
            assert (await http.get("/api/meta")).status_code == 200  # the cookie jar sent it
        async with client_for(app) as fresh:
            assert (await fresh.get(f"/?token={token}x")).status_code == 401
    finally:
        await app.close()
    with pytest.raises(ValueError, match="16"):
        bearer_token("short")


async def test_token_sign_in_never_redirects_to_another_site(db_url: str) -> None:
    token = "s3cret-token-0123456789"
    app = create_app(db_url, auth=bearer_token(token))
    try:
        async with client_for(app) as http:
            for path, expected in [
                (f"//evil.example/?token={token}", "/evil.example/"),
                (f"///evil.example/x?token={token}&a=1", "/evil.example/x?a=1"),
                (f"/%5Cevil.example/?token={token}", "/%5Cevil.example/"),
                (f"/jobs?token={token}", "/jobs"),
            ]:
                http.cookies.clear()
                response = await http.get(f"http://localhost{path}")
                assert response.status_code == 303, path
                location = response.headers["location"]
                assert location == expected, path
                assert not location.startswith(("//", "/\\"))
                assert "://" not in location
    finally:
        await app.close()


async def test_sign_in_form(db_url: str) -> None:
    """A browser signs in with a POSTed form: the token stays out of URLs and access logs."""
    token = "s3cret-token-0123456789"
    app = create_app(db_url, auth=bearer_token(token))
    html_accept = {"Accept": "text/html,application/xhtml+xml"}
    try:
        async with client_for(app) as http:
            form = await http.get("/jobs?state=running", headers=html_accept)
            assert form.status_code == 401
            assert form.headers["content-type"].startswith("text/html")
            assert 'action="/login"' in form.text
            assert 'name="next" value="/jobs?state=running"' in form.text
            assert form.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            # Scripts and the API keep their JSON answer.
            assert (await http.get("/api/meta", headers=html_accept)).json()["error"]
            wrong = await http.post("/login", data={"token": "nope", "next": "/jobs"})
            assert wrong.status_code == 403
            assert "set-cookie" not in wrong.headers
            signed = await http.post("/login", data={"token": token, "next": "/jobs?state=x"})
            assert signed.status_code == 303
            assert signed.headers["location"] == "/jobs?state=x"
            assert "HttpOnly" in signed.headers["set-cookie"]
            assert (await http.get("/api/meta")).status_code == 200  # the cookie jar sent it
        async with client_for(app) as fresh:
            for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
                away = await fresh.post("/login", data={"token": token, "next": target})
                assert away.status_code == 303
                assert away.headers["location"] in ("/", "/evil.example", "/evil.example/")
    finally:
        await app.close()


async def test_assets_are_cached_privately_behind_auth(db_url: str) -> None:
    token = "s3cret-token-0123456789"
    for auth, expected in [(bearer_token(token), "private"), (None, "public")]:
        app = create_app(db_url, auth=auth)
        try:
            async with client_for(app) as http:
                js = await http.get("/static/app.js", headers={"Authorization": f"Bearer {token}"})
                assert js.status_code == 200
                assert js.headers["cache-control"] == f"{expected}, max-age=3600"
        finally:
            await app.close()


async def test_basic_auth_and_env(db_url: str) -> None:
    app = create_app(db_url, auth=basic_auth("admin", "pa:ss"))
    good = "Basic " + base64.b64encode(b"admin:pa:ss").decode()
    bad = "Basic " + base64.b64encode(b"admin:nope").decode()
    try:
        async with client_for(app) as http:
            challenge = await http.get("/")
            assert challenge.status_code == 401
            assert challenge.headers["www-authenticate"].startswith('Basic realm="River"')
            assert (await http.get("/", headers={"Authorization": bad})).status_code == 401
            assert (await http.get("/", headers={"Authorization": "Basic !!"})).status_code == 401
            assert (await http.get("/", headers={"Authorization": good})).status_code == 200
    finally:
        await app.close()
    assert auth_from_env({}) is None
    assert auth_from_env({"RIVER_UI_TOKEN": "x" * 20}) is not None
    assert auth_from_env({"RIVER_UI_BASIC_AUTH": "u:p"}) is not None
    with pytest.raises(ValueError, match="user:password"):
        auth_from_env({"RIVER_UI_BASIC_AUTH": "nopassword"})
    with pytest.raises(ValueError, match="not both"):
        auth_from_env({"RIVER_UI_TOKEN": "x" * 20, "RIVER_UI_BASIC_AUTH": "u:p"})


async def test_csrf_protection(conn: psycopg.Connection, http: httpx.AsyncClient) -> None:
    add_queue(conn, "default")
    good = await csrf_of(http)
    path = "/api/queues/default/pause"
    for headers in [
        {},
        {"X-River-CSRF": "wrong-token-wrong-token"},
        {**good, "Origin": "https://evil.example"},
        {**good, "Origin": "null"},
        {**good, "Sec-Fetch-Site": "cross-site"},
        {**good, "Sec-Fetch-Site": "same-site"},
    ]:
        response = await http.post(path, headers=headers)
        assert response.status_code == 403, headers
        assert response.json()["field"] == "csrf"
    assert conn.execute("SELECT paused_at FROM river_queue").fetchone() == (None,)
    ok = await http.post(
        path, headers={**good, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    )
    assert ok.status_code == 200
    for method in ("PUT", "DELETE", "PATCH"):
        assert (await http.request(method, path, headers=good)).status_code == 405


async def test_read_only_refuses_every_mutation(conn: psycopg.Connection, db_url: str) -> None:
    add_queue(conn, "default")
    job = insert_job(conn, state="discarded")
    app = create_app(db_url, read_only=True)
    try:
        async with client_for(app) as http:
            meta = (await http.get("/api/meta")).json()
            assert meta["read_only"] is True
            page = await http.get("/")
            assert '<meta name="river-read-only" content="true">' in page.text
            headers = {"X-River-CSRF": meta["csrf_token"]}
            for path, body in [
                (f"/api/jobs/{job}/retry", {}),
                (f"/api/jobs/{job}/delete", {}),
                ("/api/jobs/bulk", {"action": "delete", "ids": [job]}),
                ("/api/queues/default/pause", {}),
                ("/api/queues/default/settings", {"max_workers": 3}),
            ]:
                response = await http.post(path, json=body, headers=headers)
                assert response.status_code == 403
                assert "read-only" in response.json()["error"]
            assert (await http.get(f"/api/jobs/{job}")).status_code == 200
    finally:
        await app.close()
    assert conn.execute("SELECT state::text FROM river_job").fetchone() == ("discarded",)


async def test_allowed_hosts(db_url: str) -> None:
    app = create_app(db_url, allowed_hosts=["jobs.example.com", "other.example:8443"])
    try:
        for base, status in [
            ("http://jobs.example.com", 200),
            ("http://jobs.example.com:8080", 200),
            ("http://other.example:8443", 200),
            ("http://other.example:9000", 400),
            ("http://localhost:8080", 200),  # loopback names: always
            ("http://rebound.example", 400),
        ]:
            async with client_for(app, base_url=base) as http:
                response = await http.get("/api/meta")
                assert response.status_code == status, base
        assert response.json()["field"] == "host"
        assert "allowed_hosts" in response.json()["error"]
    finally:
        await app.close()


async def test_without_auth_only_loopback_host_names_are_answered(db_url: str) -> None:
    """DNS rebinding: a page of attacker.example re-pointed at 127.0.0.1 must not read the CSRF
    token (nor anything) of a dashboard mounted without auth."""
    app = create_app(db_url)
    try:
        for base in (
            "http://localhost",
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "http://127.0.0.2:9000",
            "http://[::1]:8080",
        ):
            async with client_for(app, base_url=base) as http:
                assert (await http.get("/api/meta")).status_code == 200, base
        async with client_for(app, base_url="http://attacker.example:8080") as http:
            for path in ("/api/meta", "/", "/static/app.js"):
                response = await http.get(path)
                assert response.status_code == 400, path
                assert "csrf_token" not in response.text
            error = response.json()["error"]
            assert "allowed_hosts" in error
            assert "auth" in error
            assert response.json()["field"] == "host"
        for header in ("", "localhost:80:80", "[::1", "localhost:x"):
            async with client_for(app) as http:
                response = await http.get("/api/meta", headers={"Host": header})
                assert response.status_code == 400, header
    finally:
        await app.close()
    # With an auth hook, or allowed_hosts=["*"], any name is answered.
    for app in (
        create_app(db_url, auth=lambda request: True),
        create_app(db_url, allowed_hosts=["*"]),
    ):
        try:
            async with client_for(app, base_url="http://jobs.example.com") as http:
                assert (await http.get("/api/meta")).status_code == 200
        finally:
            await app.close()
    with pytest.raises(river.RiverError, match="allowed_hosts"):
        create_app(db_url, allowed_hosts="localhost")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Mounted in FastAPI under a base path
# --------------------------------------------------------------------------------------------


async def test_mounted_in_fastapi_under_a_base_path(conn: psycopg.Connection, db_url: str) -> None:
    from fastapi import FastAPI

    seed(conn)
    dashboard = create_app(db_url)
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.mount("/admin/river", dashboard)
    try:
        async with client_for(app) as http:
            assert (await http.get("/hello")).json() == {"hello": "world"}
            page = await http.get("/admin/river/jobs/3")
            assert page.status_code == 200
            assert '<meta name="river-base" content="/admin/river">' in page.text
            assert 'src="/admin/river/static/app.js?v=' in page.text
            assert 'href="/admin/river/jobs"' in page.text
            asset = await http.get("/admin/river/static/app.js")
            assert asset.status_code == 200
            assert "river-queue dashboard" in asset.text
            overview = (await http.get("/admin/river/api/overview")).json()
            assert overview["total"] == 16
            headers = await csrf_of(http, "/admin/river")
            paused = await http.post("/admin/river/api/queues/default/pause", headers=headers)
            assert paused.json()["queue"]["paused"] is True
            assert (await http.get("/api/overview")).status_code == 404  # only under the prefix
    finally:
        await dashboard.close()


# --------------------------------------------------------------------------------------------
# Deep paging: keyset, so page 400 costs what page 1 costs
# --------------------------------------------------------------------------------------------


def _plans(conn: psycopg.Connection, op: Any, analyze: bool = False) -> list[dict[str, Any]]:
    """The plan (JSON) of every statement of a sans-IO op, each run too (in a transaction
    rolled back at the end) so that the op goes on to its next statement with real results."""
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    plans = []
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        try:
            query = next(op)
            while True:
                sql = query.sql
                text = sql.as_string(conn) if not isinstance(sql, bytes) else sql.decode()
                cur.execute(f"EXPLAIN ({options}) {text}".encode(), query.params)
                row = cur.fetchone()
                assert row is not None
                plan: dict[str, Any] = row[0][0]
                plan["Statement"] = text
                plans.append(plan)
                cur.execute(text.encode(), query.params)
                result = cur.fetchone() if query.fetch == "one" else cur.fetchall()
                query = op.send(result)
        except StopIteration:
            pass
    return plans


def _plan(conn: psycopg.Connection, op: Any) -> dict[str, Any]:
    """The plan of the list statement of a job page op (ANALYZE, BUFFERS)."""
    (plan,) = [p for p in _plans(conn, op, analyze=True) if "LIMIT" in p["Statement"]]
    return plan


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _blocks(plan: dict[str, Any]) -> int:
    top = plan["Plan"]
    return int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flt", "note"),
    [
        (_data.JobFilter(text="invoice"), "a text or tag search reads the jobs by id"),
        (_data.JobFilter(tags=("eu",)), "a text or tag search reads the jobs by id"),
        (
            _data.JobFilter(queues=("email",)),
            "a queue or priority filter without a state or kind reads the jobs by id",
        ),
        (
            _data.JobFilter(priorities=(1,)),
            "a queue or priority filter without a state or kind reads the jobs by id",
        ),
        (_data.JobFilter(states=(river.JobState.COMPLETED,)), None),
    ],
)
def test_why_a_time_order_falls_back_to_ids(flt: _data.JobFilter, note: str | None) -> None:
    """The note says why a list asked for a time order is by id, with the filter's own reason
    (a queue filter was told it was a text search, "newest first" even when oldest first)."""
    column, why = _data.list_order(flt, "time")
    assert why == note
    assert column == ("id" if note else "finalized_at")


async def test_deep_pages_cost_what_the_first_costs(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    conn.execute(
        """
        INSERT INTO river_job (kind, queue, state, args, max_attempts, attempt, finalized_at)
        SELECT 'k' || (i % 7), 'q' || (i % 3),
               (CASE WHEN i % 4 = 0 THEN 'available' ELSE 'completed' END)::river_job_state,
               jsonb_build_object('i', i), 25, 1,
               CASE WHEN i % 4 = 0 THEN NULL
                    ELSE now() - make_interval(secs => 20000 - i) END
        FROM generate_series(1, 20000) AS i
        """
    )
    conn.execute("ANALYZE river_job")
    q = ui_queries(None)
    figures = {}
    for label, flt, sort, deep_id in [
        ("all, id order", _data.JobFilter(), "id", 1_000),
        ("completed, id order", _data.JobFilter(states=(river.JobState.COMPLETED,)), "id", 1_002),
        (
            "completed, finalized_at order",
            _data.JobFilter(states=(river.JobState.COMPLETED,)),
            "time",
            1_002,
        ),
    ]:
        # The cursor of a row near the end of a newest-first walk: page ~380 of 50.
        (row,) = [
            r
            for r in conn.execute(
                "SELECT id, kind, queue, finalized_at FROM river_job WHERE id = %s", (deep_id,)
            )
        ]
        job = river.JobRow(id=row[0], kind=row[1], queue=row[2], state=river.JobState.COMPLETED,
                           encoded_args="{}", attempt=1, max_attempts=25, priority=1,
                           created_at=datetime.now(UTC), scheduled_at=datetime.now(UTC),
                           finalized_at=row[3])  # fmt: skip
        from river._admin import encode_cursor

        cursor = encode_cursor(job, "id" if sort == "id" else "finalized_at")
        first = _plan(conn, _data.job_page_op(q, flt, sort=sort, limit=50))  # type: ignore[arg-type]
        deep = _plan(conn, _data.job_page_op(q, flt, sort=sort, limit=50, after=cursor))  # type: ignore[arg-type]
        for plan in (first, deep):
            kinds = {n["Node Type"] for n in _nodes(plan["Plan"])}
            assert "Seq Scan" not in kinds, (label, kinds)
            assert kinds & {
                "Index Scan",
                "Index Scan Backward",
                "Index Only Scan",
                "Bitmap Index Scan",
            }, kinds
        figures[label] = (
            round(first["Execution Time"], 2), round(deep["Execution Time"], 2),
            _blocks(first), _blocks(deep),
        )  # fmt: skip
        assert _blocks(deep) <= 3 * _blocks(first) + 20, (label, figures[label])
    print("\ndeep paging (ms first, ms deep, blocks first, blocks deep):", figures)

    # And through the API: the deep page holds exactly the rows SQL says.
    page = (await http.get("/api/jobs?limit=50&state=completed&sort=id")).json()
    after = page["next"]
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        deep_page = (
            await http.get(f"/api/jobs?limit=50&state=completed&sort=id&after={after}")
        ).json()
        timings.append(time.perf_counter() - started)
    expected = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM river_job WHERE state = 'completed' AND id < %s"
            " ORDER BY id DESC LIMIT 50",
            (page["jobs"][-1]["id"],),
        )
    ]
    assert [j["id"] for j in deep_page["jobs"]] == expected
    print(f"API deep page: {min(timings) * 1000:.1f} ms (best of 3)")


async def test_counts_are_capped_per_queue_and_state(
    conn: psycopg.Connection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_data, "COUNT_CAP", 5)
    for _ in range(7):
        insert_job(conn, queue="big")
    for _ in range(3):
        insert_job(conn, queue="small")
    insert_job(conn, queue="small", state="completed")
    overview = (await http.get("/api/overview")).json()
    assert overview["states"]["available"] == 5 + 3  # "big" capped at 5, "small" exact
    assert overview["states"]["completed"] == 1
    assert overview["capped"] == ["available"]
    assert overview["count_cap"] == 5
    queues = {q["name"]: q for q in overview["queues"]}
    assert (queues["big"]["counts"]["available"], queues["big"]["capped"]) == (5, ["available"])
    assert (queues["small"]["counts"]["available"], queues["small"]["capped"]) == (3, [])
    small = (await http.get("/api/counts?queue=small")).json()
    assert (small["total"], small["capped"]) == (4, [])


async def test_text_search_reads_a_bounded_window_and_goes_on(
    conn: psycopg.Connection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_data, "SCAN_WINDOW", 10)
    for i in range(45):
        insert_job(conn, args={"n": i, "needle": "yes" if i % 7 == 0 else "no"})
    (low, high) = conn.execute("SELECT min(id), max(id) FROM river_job").fetchone()
    for order, sql_order in (("desc", "id DESC"), ("asc", "id ASC")):
        seen: list[int] = []
        windows: list[tuple[int, int]] = []
        after = ""
        for _ in range(20):
            page = (await http.get(f"/api/jobs?q=yes&limit=3&order={order}{after}")).json()
            assert page["sort"] == "id"
            searched = page["searched"]
            assert searched["high_id"] - searched["low_id"] < 10  # never more than the window
            windows.append((searched["low_id"], searched["high_id"]))
            seen += [j["id"] for j in page["jobs"]]
            if page["next"] is None:
                break
            after = f"&after={page['next']}"
        expected = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM river_job WHERE args->>'needle' = 'yes' ORDER BY {sql_order}"
            )
        ]
        assert seen == expected, order
        assert min(w[0] for w in windows) == low
        assert max(w[1] for w in windows) == high
    # A tag filter is bounded too; a JSON object (the GIN indexes) and a state are not.
    assert (await http.get("/api/jobs?tag=x")).json()["searched"] is not None
    assert (await http.get('/api/jobs?q={"n": 3}')).json()["searched"] is None
    assert (await http.get("/api/jobs?state=available&q=yes")).json()["searched"] is not None
    assert (await http.get("/api/jobs?state=available&queue=x")).json()["searched"] is None
    # A bulk action over a text filter walks the same windows, every match found.
    monkeypatch.setattr(_api, "BULK_WINDOWS_PER_CALL", 2)
    answers = await _bulk_all(http, "cancel", {"q": "yes"})
    assert len(answers) > 1
    assert sum(a["changed"] for a in answers) == len(expected)
    (cancelled,) = conn.execute(
        "SELECT count(*) FROM river_job WHERE state = 'cancelled' AND args->>'needle' = 'yes'"
    ).fetchone()
    assert cancelled == len(expected)


async def _walk(http: httpx.AsyncClient, query: str, first: str = "") -> list[dict[str, Any]]:
    """Every page of ``/api/jobs?{query}``, from the cursor ``first`` (none: page one)."""
    pages = []
    after = f"&after={first}" if first else ""
    for _ in range(200):
        response = await http.get(f"/api/jobs?{query}{after}")
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if pages[-1]["next"] is None:
            return pages
        after = f"&after={pages[-1]['next']}"
    raise AssertionError(f"paging {query} never ended")


async def test_finalized_tabs_are_by_time_and_cursors_stay_valid(
    conn: psycopg.Connection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tab of one finalized state lists the most recently finalized first (an index
    serves it, however many newer jobs are in other states): every row once across pages,
    ties of finalized_at broken by id; a cursor of the id order still pages by id; by id on
    request, a bounded window of ids per page, every row once too."""
    monkeypatch.setattr(_data, "SCAN_WINDOW", 10)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(23):  # finalized out of id order, three jobs per second (ties)
        state = "completed" if i % 4 else "discarded"
        insert_job(conn, state=state, queue=f"q{i % 2}",
                   finalized_at=base + timedelta(seconds=(i * 7 % 23) // 3))  # fmt: skip
    for _ in range(30):  # a burst of newer jobs in another state
        insert_job(conn)

    def sql_ids(where: str, order: str) -> list[int]:
        rows = conn.execute(f"SELECT id FROM river_job WHERE {where} ORDER BY {order}")
        return [r[0] for r in rows]

    for query, where, order in [
        ("state=completed", "state = 'completed'", "finalized_at DESC, id DESC"),
        ("state=completed&order=asc", "state = 'completed'", "finalized_at, id"),
        ("state=discarded", "state = 'discarded'", "finalized_at DESC, id DESC"),
        ("state=completed&queue=q1", "state = 'completed' AND queue = 'q1'",
         "finalized_at DESC, id DESC"),
    ]:  # fmt: skip
        pages = await _walk(http, f"{query}&limit=4")
        assert {(p["sort"], p["sort_column"], p["sort_note"]) for p in pages} == {
            ("time", "finalized_at", None)
        }
        assert all(p["searched"] is None for p in pages), query
        assert [j["id"] for p in pages for j in p["jobs"]] == sql_ids(where, order), query

    # Other states, and several finalized states, keep the id order by default.
    for query in ("state=available", "state=completed,discarded", ""):
        page = (await http.get(f"/api/jobs?{query}")).json()
        assert (page["sort"], page["searched"]) == ("id", None), query

    # By id on request: a window of ids per page (short pages, then "search older"), every
    # completed job once, newest first.
    pages = await _walk(http, "state=completed&sort=id&limit=4")
    assert all(p["sort_column"] == "id" for p in pages)
    assert all(p["searched"]["high_id"] - p["searched"]["low_id"] < 10 for p in pages)
    assert "id order" in pages[0]["searched"]["why"]
    assert [j["id"] for p in pages for j in p["jobs"]] == sql_ids("state = 'completed'", "id DESC")

    # A cursor carries its order: one of the id order (a page opened before the default
    # changed, a script) goes on by id without sort=id; one of the time order by time.
    (by_id,) = [p for p in pages if p["jobs"] and p["next"]][:1]
    last = by_id["jobs"][-1]["id"]
    rest = await _walk(http, "state=completed&limit=4", by_id["next"])
    assert all(p["sort_column"] == "id" for p in rest)
    assert [j["id"] for p in rest for j in p["jobs"]] == sql_ids(
        f"state = 'completed' AND id < {last}", "id DESC"
    )
    first = (await http.get("/api/jobs?state=completed&limit=4")).json()
    rest = await _walk(http, "state=completed&limit=4", first["next"])
    seen = [j["id"] for j in first["jobs"]] + [j["id"] for p in rest for j in p["jobs"]]
    assert seen == sql_ids("state = 'completed'", "finalized_at DESC, id DESC")
    # A cursor of the time order cannot page the id order asked for (and the reverse).
    response = await http.get(f"/api/jobs?state=completed&sort=id&after={first['next']}")
    assert (response.status_code, response.json()["field"]) == (400, "after")


async def test_a_count_no_index_serves_goes_on_window_by_window(
    conn: psycopg.Connection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text or tag filter is counted a few windows of ids per call, newest first: each
    answer until the last is a lower bound and says where to go on; the last is exact."""
    monkeypatch.setattr(_data, "SCAN_WINDOW", 10)
    monkeypatch.setattr(_data, "COUNT_WINDOWS", 2)
    for i in range(95):
        insert_job(conn, args={"n": i, "needle": "yes" if i % 7 == 0 else "no"},
                   tags=["odd"] if i % 2 else [])  # fmt: skip
    (low, high) = conn.execute("SELECT min(id), max(id) FROM river_job").fetchone()
    for flt, where in [
        ({"q": "yes"}, "args->>'needle' = 'yes'"),
        ({"tag": "odd"}, "tags @> ARRAY['odd']::varchar[]"),
        ({"q": "yes", "state": "available"}, "args->>'needle' = 'yes'"),
    ]:
        answers: list[dict[str, Any]] = []
        final = await count_all(http, flt, answers)
        (count, max_id) = conn.execute(
            f"SELECT count(*), max(id) FROM river_job WHERE {where}"
        ).fetchone()
        assert (final["count"], final["max_id"]) == (count, max_id), flt
        assert len(answers) == 5  # 95 ids, 20 per call
        counts = [a["count"] for a in answers]
        assert counts == sorted(counts)
        assert counts[-1] == count
        # The ids read, call after call: adjacent windows from the newest down to the oldest.
        spans = [(a["searched"]["low_id"], a["searched"]["high_id"]) for a in answers]
        assert spans[0][1] == high
        assert spans[-1][0] == low
        assert all(a[0] == b[1] + 1 for a, b in itertools.pairwise(spans))
        assert all(hi - lo < 20 for lo, hi in spans)
    # What an index serves is counted in one call; "below" counts the ids below it.
    one = (await http.get("/api/jobs/count?state=available")).json()
    assert (one["count"], one["complete"], one["next"], one["searched"]) == (95, True, None, None)
    below = (
        await http.get(
            f"/api/jobs/count?state=available&below={low + 10}&count_before=0&max_id_before=0"
        )
    ).json()
    assert (below["count"], below["max_id"]) == (10, low + 9)
    # Nothing matches: zero, and no max_id.
    none = await count_all(http, {"q": "nowhere"})
    assert (none["count"], none["max_id"]) == (0, 0)


async def test_a_bulk_action_over_a_text_search_checks_its_count_window_by_window(
    conn: psycopg.Connection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before its first change, a bulk action over a filter no index serves checks that no
    more jobs match than confirmed a few windows per call; then it acts. When more match, it
    stops having changed nothing."""
    monkeypatch.setattr(_data, "SCAN_WINDOW", 10)
    monkeypatch.setattr(_api, "BULK_WINDOWS_PER_CALL", 2)
    for i in range(60):
        insert_job(conn, args={"n": i, "needle": "yes" if i % 5 == 0 else "no"})
    answers = await _bulk_all(http, "cancel", {"q": "yes"})
    checking = [a for a in answers if a["next"] and "checked_id" in a["next"]]
    assert len(checking) >= 2
    assert all(a["matched"] == 0 for a in checking)
    assert sum(a["changed"] for a in answers) == 12
    assert all(a["stopped"] is None for a in answers)
    (cancelled,) = conn.execute(
        "SELECT count(*) FROM river_job WHERE state = 'cancelled' AND args->>'needle' = 'yes'"
    ).fetchone()
    assert cancelled == 12

    # More jobs match than confirmed (one more was confirmed away): found by the check in a
    # later call, before any change.
    conn.execute("UPDATE river_job SET state = 'available', finalized_at = NULL")
    count = await count_all(http, {"q": "yes"})
    body: dict[str, Any] = {"action": "delete", "filter": {"q": "yes"},
                            "max_id": count["max_id"], "count": count["count"] - 1}  # fmt: skip
    headers = await csrf_of(http)
    for _ in range(20):
        answer = (await http.post("/api/jobs/bulk", json=body, headers=headers)).json()
        assert answer["matched"] == 0
        if answer["next"] is None:
            break
        body.update(answer["next"])
    assert answer["stopped"]
    assert "more jobs match" in answer["stopped"]
    assert conn.execute("SELECT count(*) FROM river_job").fetchone() == (60,)


async def test_no_path_of_the_dashboard_scans_the_table(conn: psycopg.Connection) -> None:
    """On 20,000 jobs with statistics (ANALYZE, enable_seqscan on), no query the dashboard
    keeps reads the whole table: every plan finds its rows through an index."""
    conn.execute(
        """
        INSERT INTO river_job (kind, queue, state, args, max_attempts, attempt, priority,
                               scheduled_at, attempted_at, finalized_at, attempted_by, errors,
                               tags, metadata, unique_key, unique_states)
        SELECT 'k' || (i % 9), 'q' || (i % 4), s.state::river_job_state,
               jsonb_build_object('i', i), 25, 1, 1 + i % 2,
               now() - make_interval(secs => 20000 - i),
               CASE WHEN s.state IN ('running', 'completed', 'discarded', 'retryable')
                    THEN now() - make_interval(secs => 20000 - i) END,
               CASE WHEN s.state IN ('completed', 'discarded', 'cancelled')
                    THEN now() - make_interval(mins => (20000 - i) / 2) END,
               ARRAY['host-' || (i % 3)],
               CASE WHEN s.state IN ('discarded', 'retryable') THEN ARRAY[jsonb_build_object(
                   'at', now(), 'attempt', 1, 'error', 'boom', 'trace', '')] END,
               ARRAY['t' || (i % 50)]::varchar(255)[],
               CASE WHEN i % 500 = 0 THEN '{"periodic": true}'::jsonb ELSE '{}'::jsonb END,
               CASE WHEN i % 10 = 0 THEN sha256(i::text::bytea) END,
               CASE WHEN i % 10 = 0 THEN 245::integer::bit(8) END
        FROM generate_series(1, 20000) AS i,
             LATERAL (SELECT CASE
                 WHEN i % 50 = 0 THEN 'available' WHEN i % 50 = 1 THEN 'scheduled'
                 WHEN i % 50 = 2 THEN 'retryable' WHEN i % 200 = 3 THEN 'running'
                 WHEN i % 50 = 4 THEN 'discarded' WHEN i % 100 = 5 THEN 'cancelled'
                 ELSE 'completed' END AS state) AS s
        """
    )
    conn.execute("ANALYZE river_job")
    q = ui_queries(None)
    runtime = river._driver.queries_for(None)
    state = river.JobState
    jf = _data.JobFilter
    (max_id,) = conn.execute("SELECT max(id) FROM river_job").fetchone()
    (unique_job,) = conn.execute(
        "SELECT id FROM river_job WHERE unique_key IS NOT NULL LIMIT 1"
    ).fetchone()
    batch = list(range(max_id - 999, max_id + 1))
    now = datetime.now(UTC)
    paths: list[tuple[str, Any]] = [
        ("list, newest first", _data.job_page_op(q, jf())),
        ("list, oldest first", _data.job_page_op(q, jf(), descending=False)),
        ("list of a state, by id", _data.job_page_op(q, jf(states=(state.AVAILABLE,)))),
        ("list of completed, by id", _data.job_page_op(q, jf(states=(state.COMPLETED,)))),
        (
            "list of completed, default order",
            _data.job_page_op(q, jf(states=(state.COMPLETED,)), sort=None),
        ),
        (
            "list of completed of a queue, default order",
            _data.job_page_op(q, jf(states=(state.COMPLETED,), queues=("q1",)), sort=None),
        ),
        (
            "list of discarded, by time",
            _data.job_page_op(q, jf(states=(state.DISCARDED,)), sort="time"),
        ),
        (
            "list of completed of a kind, by time",
            _data.job_page_op(q, jf(states=(state.COMPLETED,), kinds=("k3",)), sort="time"),
        ),
        (
            "list of available of one queue and priority, by time",
            _data.job_page_op(
                q,
                jf(states=(state.AVAILABLE,), queues=("q1",), priorities=(2,)),
                sort="time",
                descending=False,
            ),
        ),
        (
            "list of running, by time",
            _data.job_page_op(q, jf(states=(state.RUNNING,)), sort="time"),
        ),
        ("list of a kind", _data.job_page_op(q, jf(kinds=("k2",)))),
        ("text search, no match", _data.job_page_op(q, jf(text="nowhere"), window=5000)),
        ("tag search", _data.job_page_op(q, jf(tags=("t7",)), window=5000)),
        ("JSON search", _data.job_page_op(q, jf(text='{"i": 42}'))),
        ("counts", _data.counts_op(q)),
        ("throughput, 60 minutes", _data.throughput_op(q, minutes=60)),
        ("throughput, 1440 minutes", _data.throughput_op(q, minutes=1440)),
        ("overview (counts)", _data.overview_op(q, runtime)),
        ("kinds", _data.kinds_op(q)),
        ("periodic runs", _data.periodic_runs_op(q)),
        ("count of discarded", _data.count_op(q, jf(states=(state.DISCARDED,)))),
        ("count of a text search", _data.count_op(q, jf(text="nowhere"), window=5000)),
        ("count of a tag search", _data.count_op(q, jf(tags=("t7",)), window=5000)),
        (
            "count up to the confirmed, one window",
            _data.count_upto_op(q, jf(text="x"), after_id=5000, max_id=10_000, limit=401),
        ),
        (
            "count up to the confirmed",
            _data.count_upto_op(q, jf(states=(state.DISCARDED,)), max_id=max_id, limit=401),
        ),
        (
            "bulk batch ids",
            _data.matching_ids_op(
                q, jf(states=(state.DISCARDED,)), after_id=0, upper_id=max_id, limit=1000
            ),
        ),
        ("bulk retry", _data.bulk_op(q, "retry", batch, now, jf(states=(state.DISCARDED,)))),
        ("bulk cancel", _data.bulk_op(q, "cancel", batch, now, jf(kinds=("k1",)))),
        ("bulk delete", _data.bulk_op(q, "delete", batch, now, jf(text="x"))),
        ("retry of a unique job", river._admin.job_retry_op(runtime, unique_job)),
        ("id bounds", _data.id_bounds_op(q)),
    ]
    failures = {}
    for label, op in paths:
        for plan in _plans(conn, op):  # every statement of the op
            nodes = [
                f"{n['Node Type']} {n.get('Relation Name', '')}".strip()
                for n in _nodes(plan["Plan"])
            ]
            if "Seq Scan river_job" in nodes:
                failures[label] = nodes
    # The later statements of the ops with several (throughput's failed attempts, the
    # overview's active clients) are checked one by one too.
    for label, statement, params in [
        ("failed attempts", q.ui_failures, {"minutes": 1440, "queue": None}),
        ("active clients", q.ui_active_clients, {"minutes": 5}),
    ]:
        with conn.cursor() as cur:
            cur.execute(b"EXPLAIN (FORMAT JSON) " + statement, params)
            plan = cur.fetchone()[0][0]  # type: ignore[index]
        nodes = [
            f"{n['Node Type']} {n.get('Relation Name', '')}".strip() for n in _nodes(plan["Plan"])
        ]
        if "Seq Scan river_job" in nodes:
            failures[label] = nodes
    assert failures == {}, json.dumps(failures, indent=1)


# --------------------------------------------------------------------------------------------
# Packaging and start-up
# --------------------------------------------------------------------------------------------


def test_ui_catalog_renders_for_a_schema() -> None:
    from river._driver import queries_for

    runtime = queries_for(None)
    for schema in (None, "my_schema"):
        q = ui_queries(schema)
        for name, text in q._q.items():
            assert b"/* schema */" not in text, name
            assert name not in runtime._q, f"{name} is also a runtime query"
        for name, fragment in q._fragments.items():
            assert "/* schema */" not in fragment.as_string(), name
    assert b'FROM "my_schema".river_job' in ui_queries("my_schema").ui_counts


def test_import_river_does_not_load_starlette_and_the_extra_is_named() -> None:
    code = "import sys, river, river.cli; print('starlette' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
    blocked = (
        "import sys; sys.modules['starlette'] = None\n"
        "try:\n    import river.ui\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, check=True
    )
    assert "pip install 'river-queue[ui]'" in result.stdout
    cli = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from river.cli import main\n"
        "sys.exit(main(['ui', '--database-url', 'postgresql://localhost/x']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", cli], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "pip install 'river-queue[ui]'" in result.stderr


def _connections(
    conn: psycopg.Connection, app_name: str = "river ui", *, waiting_on_a_lock: bool = False
) -> int:
    """The dashboard's sessions on this test's database (pytest-xdist workers share a server)."""
    (n,) = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = %s AND datname = current_database()"
        " AND (NOT %s OR wait_event_type = 'Lock')",
        (app_name, waiting_on_a_lock),
    ).fetchone()
    return int(n)


async def test_a_busy_pool_answers_busy_and_never_grows_past_its_size(
    conn: psycopg.Connection, db_url: str
) -> None:
    """Slow requests hold every connection: the others get a 503 that says so, within the
    wait timeout asked for, and no new pool (nor connection) comes to replace the busy one."""
    import anyio

    job = insert_job(conn, state="available")
    app = create_app(db_url, pool_size=2, wait_timeout=0.3)
    watcher = psycopg.connect(db_url, autocommit=True)
    try:
        async with client_for(app) as http, anyio.create_task_group() as tg:
            headers = await csrf_of(http)
            assert (await http.get("/api/overview")).status_code == 200
            slow: list[httpx.Response] = []

            async def cancel() -> None:
                slow.append(await http.post(f"/api/jobs/{job}/cancel", headers=headers))

            # Watched from a connection of its own, outside the lock's transaction: within a
            # transaction pg_stat_activity keeps the sessions of its first read, so a pool
            # connection still starting then never showed up (CI failed so).
            with conn.transaction():
                conn.execute("SELECT 1 FROM river_job WHERE id = %s FOR UPDATE", (job,))
                tg.start_soon(cancel)
                tg.start_soon(cancel)
                # Both wait on the row lock, holding both connections.
                deadline = time.monotonic() + 20
                while _connections(watcher, waiting_on_a_lock=True) < 2:
                    if time.monotonic() > deadline:
                        raise AssertionError("the two slow requests never waited on the row lock")
                    await anyio.sleep(0.02)
                for _ in range(3):
                    started = time.monotonic()
                    busy = await http.get("/api/jobs?limit=1")  # not a shared (cached) read
                    assert time.monotonic() - started < 2  # wait_timeout=0.3, not 3
                    assert busy.status_code == 503
                    assert busy.json()["reason"] == "busy"
                    assert "busy" in busy.json()["error"]
                    assert "database up" not in busy.json()["error"]
                    assert _connections(watcher) <= 2
            # The lock released: the slow requests end, and the pool serves again.
        assert [r.status_code for r in slow] == [200, 200]
        async with client_for(app) as http:
            assert (await http.get("/api/overview")).status_code == 200
        assert _connections(conn) <= 2
    finally:
        watcher.close()
        await app.close()


async def test_timeouts_hold_on_a_pool_of_the_caller(conn: psycopg.Connection, db_url: str) -> None:
    from psycopg_pool import AsyncConnectionPool

    job = insert_job(conn, state="available")
    pool = AsyncConnectionPool(
        db_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    app = create_app(pool, statement_timeout=0.5, wait_timeout=0.3)
    try:
        async with client_for(app) as http:
            headers = await csrf_of(http)
            with conn.transaction():
                conn.execute("SELECT 1 FROM river_job WHERE id = %s FOR UPDATE", (job,))
                started = time.monotonic()
                with anyio_fail_after(5):
                    cut = await http.post(f"/api/jobs/{job}/cancel", headers=headers)
                assert cut.status_code == 504, cut.text
                assert time.monotonic() - started < 3
            # The timeout was the transaction's: the pool's connection keeps the server's.
            async with pool.connection() as c:
                assert (await (await c.execute("SHOW statement_timeout")).fetchone()) == ("0",)
                # Its only connection taken: the dashboard waits wait_timeout, then says busy.
                started = time.monotonic()
                busy = await http.get("/api/jobs?limit=1")
                assert busy.status_code == 503
                assert busy.json()["reason"] == "busy"
                assert time.monotonic() - started < 2
            assert (await http.get("/api/overview")).status_code == 200
    finally:
        await app.close()
        await pool.close()


def anyio_fail_after(seconds: float) -> Any:
    import anyio

    return anyio.fail_after(seconds)


async def test_missing_schema_and_unreachable_database(db_url: str) -> None:
    app = create_app(db_url, schema="nowhere")
    try:
        async with client_for(app) as http:
            response = await http.get("/api/overview")
            assert response.status_code == 503
            assert "migrate-up" in response.json()["error"]
    finally:
        await app.close()
    app = create_app("postgresql://postgres@127.0.0.1:1/none", wait_timeout=0.5)
    try:
        async with client_for(app) as http:
            started = time.monotonic()
            response = await http.get("/api/overview")
            assert response.status_code == 503
            assert "cannot connect to the database" in response.json()["error"]
            assert time.monotonic() - started < 5
            assert (await http.get("/")).status_code == 200  # the page still loads (banner)
    finally:
        await app.close()


def test_create_app_refuses_bad_arguments(db_url: str) -> None:
    with pytest.raises(river.RiverError, match="database"):
        create_app()
    with pytest.raises(river.ValidationError):
        create_app(db_url, schema="bad schema!")
    with pytest.raises(river.RiverError, match="csrf_token"):
        create_app(db_url, csrf_token="short")


def test_river_ui_serves_under_a_base_path_on_localhost_only(db_url: str) -> None:
    import socket

    from worker_apps.harness import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "river.cli",
            "ui",
            "--database-url",
            db_url,
            "--port",
            str(port),
            "--base-path",
            "/jobs/",
            "--read-only",
            "--title",
            "Staging",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert proc.poll() is None, "river ui exited"
                assert time.monotonic() < deadline, "river ui did not start"
                time.sleep(0.05)
        with httpx.Client(base_url=base) as http:
            root = http.get("/")
            assert root.status_code == 307
            assert root.headers["location"] == "/jobs/"
            page = http.get("/jobs/queues")
            assert '<meta name="river-base" content="/jobs">' in page.text
            assert "<title>Staging</title>" in page.text
            meta = http.get("/jobs/api/meta").json()
            assert meta["read_only"] is True
            refused = http.post(
                "/jobs/api/queues/x/pause", headers={"X-River-CSRF": meta["csrf_token"]}
            )
            assert refused.status_code == 403
            # Another Host name (a DNS-rebinding page) is refused on a loopback address.
            rebound = http.get("/jobs/api/meta", headers={"Host": f"attacker.example:{port}"})
            assert rebound.status_code == 400
            assert (
                http.get("/jobs/api/meta", headers={"Host": f"localhost:{port}"}).status_code == 200
            )
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"serving on http://127.0.0.1:{port}/jobs/ (read-only)" in out


def test_river_ui_refuses_a_network_address_without_auth(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVER_UI_")}
    command = [sys.executable, "-m", "river.cli", "ui", "--database-url", db_url, "--port", "1"]
    result = subprocess.run(
        [*command, "--host", "0.0.0.0"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "without authentication" in result.stderr
    assert "--insecure-no-auth" in result.stderr
    assert "RIVER_UI_TOKEN" in result.stderr


async def test_river_ui_takes_pgappname_and_the_statement_timeout_flag(
    conn: psycopg.Connection,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With PGAPPNAME set, ``river ui`` keeps that name (it failed on a KeyError), and
    ``--statement-timeout`` bounds the dashboard's statements (its own 10 s won over it)."""
    import uvicorn

    from river import cli

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    monkeypatch.setenv("PGAPPNAME", "ops ui")
    argv = ["ui", "--database-url", db_url, "--port", "8999", "--statement-timeout", "1m"]
    assert cli.main(argv) == 0
    (app,) = served
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST) as h:
            response = await h.get("/api/queues")
            assert response.status_code == 200, response.text
        assert _connections(conn, "ops ui") >= 1
        assert app.api.store.statement_timeout == 60
    finally:
        await app.close()
    assert cli.main([*argv[:-1], "2h"]) != 0
    err = capsys.readouterr().err
    assert "--statement-timeout" in err
    assert "Traceback" not in err


def test_river_ui_answers_on_any_loopback_address(db_url: str) -> None:
    """127.0.0.0/8 is loopback: ``--host 127.0.0.2`` answers its own address (it answered
    400 to every request)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVER_UI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "river.cli", "ui", "--database-url", db_url, "--host",
         "127.0.0.2", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.2", port), timeout=0.2):
                    break
            except OSError:
                assert proc.poll() is None, "river ui exited"
                assert time.monotonic() < deadline, "river ui did not start"
                time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.2:{port}") as http:
            assert http.get("/api/meta").status_code == 200
            assert http.get("/api/meta", headers={"Host": "localhost"}).status_code == 200
            assert http.get("/api/meta", headers={"Host": "evil.example"}).status_code == 400
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
