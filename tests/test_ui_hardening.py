"""Input Postgres cannot take, rows River's own clients never write, and a network that goes
silent: the dashboard's API answers each with a 4xx or a 503 naming the cause, never a 500,
and never hangs. Against a real Postgres (the network failures through tests/netproxy.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from typing import Any

import anyio
import httpx
import psycopg
import pytest

from river.ui import Dashboard, create_app
from tests.netproxy import CuttableProxy, server_address
from tests.test_ui_api import (
    add_queue,
    clear_of_a_minute_boundary,
    client_for,
    csrf_of,
    insert_job,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def dashboard(db_url: str) -> AsyncIterator[Dashboard]:
    app = create_app(db_url)
    try:
        yield app
    finally:
        await app.close()


@pytest.fixture
async def http(dashboard: Dashboard) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(dashboard) as c:
        yield c


# --------------------------------------------------------------------------------------------
# Text Postgres cannot hold
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/jobs?kind=a%00b", "kind"),
        ("/api/jobs?q=a%00b", "q"),
        ("/api/jobs?tag=a%00b", "tag"),
        ("/api/jobs?queue=a%00b", "queue"),
        ("/api/jobs?state=available&kind=x,a%00b", "kind"),
        ("/api/jobs/count?queue=a%00b", "queue"),
        ("/api/jobs/count?q=%00", "q"),
        ("/api/throughput?queue=%00", "queue"),
        ("/api/counts?queue=a%00b", "queue"),
        ("/api/queue?name=a%00b", "name"),
        ("/api/queues/a%00b", "name"),
    ],
)
async def test_a_nul_character_is_400_naming_the_field(
    http: httpx.AsyncClient, path: str, field: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert "NUL" in response.json()["error"]


@pytest.mark.parametrize(
    ("q", "rule"),
    [
        ('{"n":NaN}', "NaN"),
        ('{"n":Infinity}', "Infinity"),
        ('{"n":[-Infinity]}', "Infinity"),
        ('{"n":1e999}', "finite"),
        ('{"n":-1e999}', "finite"),
        ('{"a":"\\u0000"}', "NUL"),
        ('{"\\u0000":1}', "NUL"),
        ('{"a":{"b":["x\\u0000"]}}', "NUL"),
        ('{"a":"\\ud800"}', "surrogate"),
        ('{"a":' + "[" * 995, "nested"),
    ],
)
async def test_a_json_search_jsonb_cannot_hold_is_400(
    http: httpx.AsyncClient, q: str, rule: str
) -> None:
    for path in ("/api/jobs", "/api/jobs/count"):
        response = await http.get(path, params={"q": q})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["field"] == "q"
        assert rule in response.json()["error"]


async def test_a_json_search_jsonb_can_hold_still_searches(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    job = insert_job(conn, args={"n": 1e300, "s": "é", "deep": [[[1]]]})
    insert_job(conn, args={"n": 2})
    for q in ('{"n":1e300}', '{"s":"\\u00e9"}', '{"deep":[[[1]]]}'):
        jobs = (await http.get("/api/jobs", params={"q": q})).json()["jobs"]
        assert [j["id"] for j in jobs] == [job], q
    # Not a JSON object: a substring search, as before.
    assert (await http.get("/api/jobs", params={"q": "{NaN"})).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filter": {"kind": "a\u0000b"}}, "kind"),
        ({"filter": {"q": "x\u0000"}}, "q"),
        ({"filter": {"q": '{"n": NaN}'}}, "q"),
        ({"filter": {"tag": ["ok", "\ud800"]}}, "tag"),
    ],
)
async def test_text_a_bulk_filter_cannot_use_is_400(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    body = {"action": "cancel", "max_id": 10, "count": 1, **body}
    response = await http.post(
        "/api/jobs/bulk",
        content=json.dumps(body).encode(),  # a lone surrogate travels as its \\u escape
        headers={**await csrf_of(http), "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_a_database_data_error_is_400_and_logged_once(
    dashboard: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    """The safety net: a data error of Postgres that no input check caught is the caller's
    bad input (400, naming the database's reason), logged once, not a 500."""
    from starlette.requests import Request

    api = dashboard.api

    async def handler(request: Request) -> Any:
        def bad(admin: Any, c: psycopg.AsyncConnection[Any]) -> Any:
            return c.execute("SELECT %s::int", ["not a number"])

        await api.store.call(bad)
        raise AssertionError("the statement should have failed")

    scope = {"type": "http", "method": "GET", "path": "/api/x", "headers": [], "query_string": b""}
    caplog.set_level(logging.DEBUG, logger="river.ui")
    handle = api.endpoint(handler)
    for _ in range(3):
        response = await handle(Request(scope))
        assert response.status_code == 400
        body = response.body.decode()
        assert "the database refused" in body
        assert "invalid input syntax for type integer" in body
    warnings = [r for r in caplog.records if r.name == "river.ui" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


# --------------------------------------------------------------------------------------------
# Errors whose time River's clients never write
# --------------------------------------------------------------------------------------------


async def test_throughput_skips_error_times_postgres_cannot_read(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    await clear_of_a_minute_boundary(conn)
    (now,) = conn.execute("SELECT now()").fetchone()
    utc = now.astimezone(UTC) - timedelta(minutes=2)
    stamp = utc.strftime("%Y-%m-%dT%H:%M:%S")
    impossible = [
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",  # not a leap year
        "1900-02-29T00:00:00Z",  # nor is 1900
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "0000-01-01T00:00:00Z",
        f"{stamp[:11]}25:00:00Z",
        f"{stamp[:14]}60:00Z",
        f"{stamp[:17]}61Z",
        f"{stamp}+99:00",
        f"{stamp}+16:00",
        f"{stamp}+05:60",
        f"{stamp}-0599",
        "not a time",
    ]
    readable = [
        f"{stamp}Z",
        f"{stamp}.123456789Z",
        f"{stamp[:10]} {stamp[11:]}+00:00",
        (utc + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S") + "+0530",
        (utc - timedelta(hours=15, minutes=59)).strftime("%Y-%m-%dT%H:%M:%S") + "-15:59",
    ]
    errors = [{"at": at, "attempt": i, "error": "x"} for i, at in enumerate(impossible + readable)]
    insert_job(conn, state="retryable", attempt=len(errors), errors=errors)
    insert_job(conn, state="discarded", errors=[{"at": "2024-02-30T00:00:00Z", "error": "x"}])
    response = await http.get("/api/throughput?minutes=60")
    assert response.status_code == 200, response.text
    assert sum(response.json()["series"]["failed"]) == len(readable)
    assert response.json()["series"]["failed"][57] == len(readable)
    # The overview reads nothing of the errors and the job itself still shows.
    assert (await http.get("/api/overview")).status_code == 200


async def test_the_guard_accepts_what_postgres_reads(conn: psycopg.Connection) -> None:
    """Every date of a leap-year cycle (and every second of a day, every offset) that the
    guard of ui_failures lets through is one Postgres reads, and it lets through every one
    Postgres reads: the guard only skips, it never hides a readable failure."""
    from river.ui._queries import ui_queries

    query = ui_queries(None).ui_failures.decode()
    start = query.index("WHEN t.text ~")  # the pattern and the fields (not the window)
    end = query.index("END AS at", start) + len("END")
    guard = "CASE " + query[start:end].replace("t.text", "%(s)s::text")
    days = [f"{y:04d}-{m:02d}-{d:02d}" for y in (1, 1900, 2000, 2023, 2024) for m in range(14)
            for d in (0, 1, 28, 29, 30, 31, 32)]  # fmt: skip
    times = ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "07:08:09.5"]
    offsets = ["Z", "+15:59", "-15:59", "+16:00", "+05:60", "+0530", "-1200"]
    samples = [f"{d}T{t}{o}" for d in days for t in times[:2] for o in offsets[:1]]
    samples += [f"2024-02-29{sep}{t}{o}" for sep in "T " for t in times for o in offsets]
    for s in samples:
        with conn.transaction():
            try:
                with conn.transaction():
                    conn.execute("SELECT %s::timestamptz", (s,))
                readable = True
            except psycopg.DataError:
                readable = False
        (guarded,) = conn.execute(f"SELECT {guard}", {"s": s}).fetchone()  # type: ignore[misc]
        if guarded is not None:
            assert readable, s
        # 24:00:00 and a 60th second are readable but not RFC 3339: skipping them is fine.
        elif readable:
            assert "24:00:00" in s or ":60" in s, s


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


async def test_a_deeply_nested_body_is_400(http: httpx.AsyncClient) -> None:
    headers = {**await csrf_of(http), "Content-Type": "application/json"}
    for path in ("/api/jobs/bulk", "/api/queues/default/settings"):
        response = await http.post(path, content=b"[" * 200_000, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "body"
        assert "nested" in response.json()["error"]


async def test_a_count_whose_arithmetic_would_overflow_is_400(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    headers = await csrf_of(http)
    base = {"action": "delete", "filter": {"state": "completed"}, "max_id": 100}
    for count in (2**63 - 1, 2**63, 2**64):
        response = await http.post("/api/jobs/bulk", json={**base, "count": count}, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "count"
        assert "at most" in response.json()["error"]
    # The largest count accepted runs (nothing matches).
    response = await http.post("/api/jobs/bulk", json={**base, "count": 2**63 - 2}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["matched"] == 0


async def test_a_body_is_read_no_further_than_the_limit(http: httpx.AsyncClient) -> None:
    chunks_sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield b'{"action": "retry", "ids": ['
        for _ in range(400):  # 26 MB if all were read
            chunks_sent += 1
            yield b"1," * 32_768

    headers = {**await csrf_of(http), "Content-Type": "application/json"}
    response = await http.post("/api/jobs/bulk", content=endless(), headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "body"
    assert "1 MB" in response.json()["error"]
    assert chunks_sent <= 17  # 1 MB and a chunk, not the whole body
    # A Content-Length over the limit is refused before reading anything.
    response = await http.post("/api/jobs/bulk", content=b"1" * 1_000_001, headers=headers)
    assert response.status_code == 400
    assert "1 MB" in response.json()["error"]
    # Up to the limit is read and parsed.
    body = b'{"action": "retry", "ids": [' + b"1," * 10_000 + b"1]}"
    assert len(body) < 1_000_000
    assert (await http.post("/api/jobs/bulk", content=body, headers=headers)).status_code == 400


async def test_a_wrong_method_on_an_endpoint_is_405(http: httpx.AsyncClient) -> None:
    for method, path, allow in (
        ("GET", "/api/jobs/bulk", "POST"),
        ("HEAD", "/api/jobs/bulk", "POST"),
        ("GET", "/api/jobs/5/retry", "POST"),
        ("GET", "/api/queues/default/pause", "POST"),
        ("POST", "/api/overview", "GET"),
    ):
        headers = await csrf_of(http) if method == "POST" else {}
        response = await http.request(method, path, headers=headers)
        assert response.status_code == 405, (method, path, response.text)
        assert allow in response.headers["allow"], (method, path)
        if method != "HEAD":
            assert response.json()["error"]
    assert (await http.get("/api/nowhere")).status_code == 404
    response = await http.post("/api/nowhere", headers=await csrf_of(http))
    assert response.status_code == 404
    assert response.json()["error"] == "no endpoint /api/nowhere"


# --------------------------------------------------------------------------------------------
# A network that goes silent
# --------------------------------------------------------------------------------------------


async def served_soon(http: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET ``path`` until it is not answered "busy" (within 10 s): the dead connection's
    replacement must be opened first, which can take longer than the short wait_timeout of
    these tests on a busy machine."""
    with anyio.fail_after(10):
        while True:
            response = await http.get(path)
            if response.status_code != 503 or response.json().get("reason") != "busy":
                return response
            await anyio.sleep(0.05)


async def test_a_silent_network_answers_503_within_the_bound_and_drops_the_connection(
    conn: psycopg.Connection, db_url: str
) -> None:
    """The server is up but the link to it stops carrying bytes (a half-open TCP connection,
    as after a NAT or firewall forgets it): the request is abandoned on the client side after
    statement_timeout + wait_timeout + a margin, answered 503, and its connection is closed,
    not put back: the next request opens a new one and succeeds."""
    add_queue(conn, "default")
    async with CuttableProxy(*server_address(db_url)) as proxy:
        app = create_app(
            proxy.url(db_url, "river ui frozen"), statement_timeout=0.5, wait_timeout=0.5
        )
        try:
            async with client_for(app) as http:
                assert (await http.get("/api/jobs?limit=1")).status_code == 200
                proxy.freeze()  # the open connection goes silent; new ones work
                started = time.monotonic()
                with anyio.fail_after(15):
                    response = await http.get("/api/jobs?limit=1")
                elapsed = time.monotonic() - started
                assert response.status_code == 503, response.text
                assert response.json()["reason"] == "unreachable"
                assert "did not answer" in response.json()["error"]
                assert elapsed < app.api.store.request_deadline + 5  # not the 15 s above
                for path in ("/api/jobs?limit=1", "/api/overview", "/api/queues/default"):
                    again = await served_soon(http, path)
                    assert again.status_code == 200, (path, again.text)
        finally:
            with anyio.fail_after(10):
                await app.close()


async def test_a_silent_network_during_a_change_is_503_too(
    conn: psycopg.Connection, db_url: str
) -> None:
    job = insert_job(conn, state="available")
    async with CuttableProxy(*server_address(db_url)) as proxy:
        app = create_app(proxy.url(db_url, "river ui frozen"), statement_timeout=0.3)
        try:
            async with client_for(app) as http:
                headers = await csrf_of(http)
                assert (await http.get(f"/api/jobs/{job}")).status_code == 200
                proxy.freeze()
                with anyio.fail_after(15):
                    response = await http.post(f"/api/jobs/{job}/cancel", headers=headers)
                assert response.status_code == 503, response.text
                with anyio.fail_after(5):
                    assert (await http.get(f"/api/jobs/{job}")).status_code == 200
        finally:
            with anyio.fail_after(10):
                await app.close()


async def test_a_silent_network_on_a_pool_of_the_caller(
    conn: psycopg.Connection, db_url: str
) -> None:
    """On a pool the application lends, the silent connection is closed and handed back (the
    pool discards it and opens another), and the pool is otherwise left as it was."""
    from psycopg_pool import AsyncConnectionPool

    async with CuttableProxy(*server_address(db_url)) as proxy:
        pool = AsyncConnectionPool(
            proxy.url(db_url, "river ui lent"),
            min_size=1,
            max_size=1,
            open=False,
            kwargs={"autocommit": True},
        )
        await pool.open(wait=True)
        app = create_app(pool, statement_timeout=0.3, wait_timeout=0.5)
        try:
            async with client_for(app) as http:
                assert (await http.get("/api/jobs?limit=1")).status_code == 200
                proxy.freeze()
                with anyio.fail_after(15):
                    response = await http.get("/api/jobs?limit=1")
                assert response.status_code == 503, response.text
                assert response.json()["reason"] == "unreachable"
                assert (await served_soon(http, "/api/jobs?limit=1")).status_code == 200
                assert not pool.closed
                stats = pool.get_stats()
                assert stats["pool_max"] == 1
        finally:
            with anyio.fail_after(10):
                await app.close()
                await pool.close()


# --------------------------------------------------------------------------------------------
# Numbers Python reads as infinite
# --------------------------------------------------------------------------------------------


async def test_a_number_beyond_python_ints_in_metadata_is_shown_not_a_500(
    conn: psycopg.Connection, http: httpx.AsyncClient
) -> None:
    # jsonb keeps any number; an integer of more than 4,300 digits reads as an infinite float,
    # which JSON cannot hold: the queue pages and the overview raised ValueError (a 500).
    huge = "9" * 5000
    add_queue(conn, "huge")
    conn.execute(
        "UPDATE river_queue SET metadata = %s::jsonb WHERE name = 'huge'",
        (f'{{"n": {huge}, "m": -{huge}, "ok": 1}}',),
    )
    job_id = insert_job(conn, queue="huge")
    conn.execute(
        "UPDATE river_job SET metadata = %s::jsonb WHERE id = %s", (f'{{"n": [{huge}]}}', job_id)
    )
    for path in ("/api/queues", "/api/queue?name=huge", "/api/queues/huge", "/api/overview"):
        response = await http.get(path)
        assert response.status_code == 200, (path, response.text)
    queue = (await http.get("/api/queues/huge")).json()["queue"]
    assert queue["metadata"] == {"n": "Infinity", "m": "-Infinity", "ok": 1}
    response = await http.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["job"]["metadata"] == {"n": ["Infinity"]}
