"""job_list against a real Postgres (PROTOCOL.md 13.1): filters, order, keyset pagination and
the cursor text River (Go) emits and reads.

Rows are written with plain SQL so every time column is under the test's control; expected
orders are computed in Python from what was written.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import test_admin as shared
from test_admin import AnyClient, insert_job

import river
from river import JobListParams, JobState, ValidationError

pytestmark = pytest.mark.anyio

# test_admin's fixtures, registered in this module too (each module gets its own database).
module_db_url = shared.module_db_url
db_url = shared.db_url
client = shared.client
tx = shared.tx

ZERO_TIME = "0001-01-01T00:00:00Z"
T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def decode(cursor: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(cursor))
    return value


def ids_of(result: river.JobListResult) -> list[int]:
    return [j.id for j in result.jobs]


async def all_pages(client: AnyClient, params: JobListParams) -> list[int]:
    """Follow cursors until a page is empty; fail on a repeated id or a runaway loop."""
    seen: list[int] = []
    after: str | None = None
    for _ in range(100):
        page = await client.job_list(
            JobListParams(**{**_fields(params), "after": after}) if after else params
        )
        if not page.jobs:
            assert page.cursor is None
            return seen
        assert page.cursor is not None
        assert len(page.jobs) <= params.limit
        seen.extend(ids_of(page))
        assert len(seen) == len(set(seen)), f"a row came back twice: {seen}"
        after = page.cursor
    raise AssertionError("pagination did not end")


def _fields(params: JobListParams) -> dict[str, Any]:
    return {f: getattr(params, f) for f in JobListParams.__dataclass_fields__}


# --- defaults, limit -----------------------------------------------------------------------------


async def test_empty_database(client: AnyClient) -> None:
    result = await client.job_list()
    assert result.jobs == []
    assert result.cursor is None


async def test_default_is_id_ascending_limit_100(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    # Scheduled times in reverse id order: the default ignores them.
    conn.execute(
        "INSERT INTO river_job (kind, args, scheduled_at, state, finalized_at, attempted_at)"
        " SELECT 'list_job', '{}', %(t)s::timestamptz - i * interval '1 second',"
        " s::river_job_state, CASE WHEN s = 'completed' THEN now() END,"
        " CASE WHEN s = 'running' THEN now() END"
        " FROM generate_series(1, 105) AS i, LATERAL"
        " (SELECT (ARRAY['available','completed','running','scheduled'])[1 + i %% 4]) AS x(s)",
        {"t": T0},
    )
    result = await client.job_list()
    assert ids_of(result) == list(range(1, 101))
    assert {j.state for j in result.jobs} == {
        JobState.AVAILABLE,
        JobState.COMPLETED,
        JobState.RUNNING,
        JobState.SCHEDULED,
    }  # every state by default
    assert (await client.job_list(JobListParams(limit=1))).jobs[0].id == 1


@pytest.mark.parametrize("limit", [0, -1, 10_001, True, False])
async def test_limit_bounds(client: AnyClient, limit: Any) -> None:
    with pytest.raises(ValidationError) as info:
        await client.job_list(JobListParams(limit=limit))
    assert info.value.field == "limit"


@pytest.mark.parametrize("limit", [1, 3, 10_000])
async def test_limit_accepted(client: AnyClient, conn: psycopg.Connection[Any], limit: int) -> None:
    for _ in range(4):
        insert_job(conn)
    result = await client.job_list(JobListParams(limit=limit))
    assert ids_of(result) == [1, 2, 3, 4][:limit]


async def test_job_list_tx_sees_uncommitted_rows(client: AnyClient, tx: Any) -> None:
    class ListArgs(river.JobArgs):
        kind = "list_tx_job"

    inserted = await client.insert_tx(tx.conn, ListArgs())
    result = await client.job_list_tx(tx.conn, JobListParams(kinds=["list_tx_job"]))
    assert ids_of(result) == [inserted.job.id]
    assert (await client.job_list(JobListParams(kinds=["list_tx_job"]))).jobs == []


# --- filters -------------------------------------------------------------------------------------


def _rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    now = datetime.now(UTC)
    return {
        "a": insert_job(
            conn,
            kind="kind_a",
            queue="q1",
            priority=1,
            state="available",
            tags=["red", "big"],
            metadata={"tenant": {"id": 1, "name": "x"}, "flag": True},
        ),
        "b": insert_job(
            conn,
            kind="kind_b",
            queue="q2",
            priority=2,
            state="completed",
            tags=["red"],
            metadata={"tenant": {"id": 2}},
        ),
        "c": insert_job(
            conn,
            kind="kind_a",
            queue="q2",
            priority=3,
            state="running",
            tags=["blue", "big"],
            metadata={"tenant": {"id": 1}, "list": [1, 2, 3]},
        ),
        "d": insert_job(
            conn,
            kind="kind_c",
            queue="q1",
            priority=4,
            state="scheduled",
            scheduled_at=now + timedelta(hours=1),
            tags=[],
        ),
        "e": insert_job(
            conn,
            kind="kind_b",
            queue="q3",
            priority=2,
            state="discarded",
            tags=["green"],
            metadata={"flag": False},
        ),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"ids": "b,d,e"}, "bde"),
        ({"kinds": ["kind_a"]}, "ac"),
        ({"kinds": ["kind_b", "kind_c"]}, "bde"),
        ({"queues": ["q2"]}, "bc"),
        ({"queues": ["q1", "q3"]}, "ade"),
        ({"states": ["available"]}, "a"),
        ({"states": [JobState.RUNNING, "discarded"]}, "ce"),
        ({"priorities": [2]}, "be"),
        ({"priorities": [1, 4]}, "ad"),
        ({"tags_all": ["red"]}, "ab"),
        ({"tags_all": ["red", "big"]}, "a"),
        ({"tags_all": ["big", "red"]}, "a"),
        ({"tags_any": ["big", "green"]}, "ace"),
        ({"tags_any": ["nope"]}, ""),
        ({"metadata": {"tenant": {"id": 1}}}, "ac"),
        ({"metadata": {"flag": True}}, "a"),
        ({"metadata": {"flag": False}}, "e"),
        ({"metadata": {"list": [2]}}, "c"),
        ({"metadata": {}}, "abcde"),
        ({"kinds": ["kind_a"], "queues": ["q2"]}, "c"),
        ({"kinds": ["kind_b"], "states": ["completed", "discarded"], "priorities": [2]}, "be"),
        ({"tags_any": ["big"], "metadata": {"tenant": {"name": "x"}}}, "a"),
        ({"kinds": ["missing"]}, ""),
    ],
)
async def test_filters(
    client: AnyClient, conn: psycopg.Connection[Any], params: dict[str, Any], expected: str
) -> None:
    rows = _rows(conn)
    if "ids" in params:
        params = {**params, "ids": [rows[k] for k in params["ids"].split(",")]}
    result = await client.job_list(JobListParams(**params))
    assert ids_of(result) == [rows[k] for k in expected]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"states": ["nope"]}, "states"),
        ({"metadata": [1]}, "metadata"),
        ({"order_by": "bogus"}, "order_by"),
        # A lone string is not a list of one: it was taken as its characters.
        ({"states": "running"}, "states"),
        ({"kinds": "email"}, "kinds"),
        ({"queues": "default"}, "queues"),
        ({"tags_all": "a"}, "tags_all"),
        ({"tags_any": b"a"}, "tags_any"),
        ({"ids": 5}, "ids"),
        ({"queues": {"default": 1}}, "queues"),
        # Values outside what the columns hold are refused before any SQL, by rule.
        ({"ids": [2**63]}, "ids"),
        ({"ids": [0]}, "ids"),
        ({"ids": [True]}, "ids"),
        ({"ids": ["1"]}, "ids"),
        ({"priorities": [40000]}, "priorities"),
        ({"priorities": [0]}, "priorities"),
        ({"kinds": [1]}, "kinds"),
        ({"queues": [None]}, "queues"),
    ],
)
async def test_invalid_params(client: AnyClient, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        await client.job_list(JobListParams(**params))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"queues": "default"}, "queues"),
        ({"kinds": "admin_job"}, "kinds"),
        ({"states": "completed"}, "states"),
        ({"ids": [2**63]}, "ids"),
        ({"priorities": [5]}, "priorities"),
    ],
)
async def test_job_delete_many_refuses_bad_filters_and_deletes_nothing(
    client: AnyClient, conn: psycopg.Connection[Any], filters: dict[str, Any], field: str
) -> None:
    # queues="default" deleted the jobs of queue "d" (and "e", "f", ...), not of "default".
    for queue in ("d", "default"):
        insert_job(conn, queue=queue, state="completed")
    with pytest.raises(ValidationError) as info:
        await client.job_delete_many(**filters)
    assert info.value.field == field
    assert shared.job_count(conn) == 2


# --- order ---------------------------------------------------------------------------------------


def _timed_rows(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[datetime, int]]]:
    """Rows whose time columns run against id order: (time, id) pairs per sort column."""
    out: dict[str, list[tuple[datetime, int]]] = {
        "available": [],
        "running": [],
        "completed": [],
    }
    for i in range(6):
        # Later ids get earlier times; pairs of rows share a time (ties broken by id).
        t = T0 - timedelta(minutes=i // 2)
        out["available"].append((t, insert_job(conn, state="available", scheduled_at=t)))
        out["running"].append(
            (
                t,
                insert_job(
                    conn, state="running", attempted_at=t, scheduled_at=T0 + timedelta(hours=i)
                ),
            )
        )
        out["completed"].append(
            (
                t,
                insert_job(
                    conn, state="completed", finalized_at=t, scheduled_at=T0 + timedelta(hours=i)
                ),
            )
        )
    return out


def _sorted_ids(pairs: list[tuple[datetime, int]], descending: bool = False) -> list[int]:
    return [i for _, i in sorted(pairs, reverse=descending)]


@pytest.mark.parametrize("state", ["available", "running", "completed"])
@pytest.mark.parametrize("descending", [False, True])
async def test_order_by_time_uses_the_first_states_field(
    client: AnyClient, conn: psycopg.Connection[Any], state: str, descending: bool
) -> None:
    rows = _timed_rows(conn)
    result = await client.job_list(
        JobListParams(states=[state], order_by="time", descending=descending)
    )
    assert ids_of(result) == _sorted_ids(rows[state], descending)


async def test_order_by_time_pending_retryable_scheduled_use_scheduled_at(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    pairs = []
    for i, state in enumerate(["pending", "retryable", "scheduled"] * 2):
        t = T0 + timedelta(minutes=10 - i)
        pairs.append((t, insert_job(conn, state=state, scheduled_at=t)))
    for state in ("pending", "retryable", "scheduled"):
        result = await client.job_list(
            JobListParams(states=[state, "pending", "retryable", "scheduled"], order_by="time")
        )
        assert ids_of(result) == _sorted_ids(pairs)


async def test_order_by_time_without_states_uses_scheduled_at(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    pairs = [
        (
            T0 + timedelta(seconds=5 - i),
            insert_job(conn, scheduled_at=T0 + timedelta(seconds=5 - i)),
        )
        for i in range(5)
    ]
    result = await client.job_list(JobListParams(order_by="time"))
    assert ids_of(result) == _sorted_ids(pairs)


async def test_order_by_time_with_mixed_states_places_missing_times_like_go(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    """First state running: attempted_at, which is null for the available rows. Postgres (and
    so River (Go)) puts nulls last ascending and first descending."""
    running_late = insert_job(conn, state="running", attempted_at=T0 + timedelta(seconds=2))
    avail_1 = insert_job(conn, state="available")
    running_early = insert_job(conn, state="running", attempted_at=T0)
    avail_2 = insert_job(conn, state="available")
    params = JobListParams(states=["running", "available"], order_by="time")
    assert ids_of(await client.job_list(params)) == [running_early, running_late, avail_1, avail_2]
    desc = JobListParams(states=["running", "available"], order_by="time", descending=True)
    assert ids_of(await client.job_list(desc)) == [avail_2, avail_1, running_late, running_early]


@pytest.mark.parametrize("descending", [False, True])
async def test_order_by_scheduled_at(
    client: AnyClient, conn: psycopg.Connection[Any], descending: bool
) -> None:
    rows = _timed_rows(conn)
    pairs = [(T0 + timedelta(hours=i), id_) for i, (_, id_) in enumerate(rows["running"])]
    pairs += [(T0 + timedelta(hours=i), id_) for i, (_, id_) in enumerate(rows["completed"])]
    pairs += rows["available"]
    result = await client.job_list(JobListParams(order_by="scheduled_at", descending=descending))
    assert ids_of(result) == _sorted_ids(pairs, descending)


async def test_order_by_finalized_at_with_finalized_states(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    rows = _timed_rows(conn)
    cancelled = insert_job(conn, state="cancelled", finalized_at=T0 - timedelta(days=1))
    result = await client.job_list(
        JobListParams(states=["completed", "cancelled", "discarded"], order_by="finalized_at")
    )
    assert ids_of(result) == [cancelled, *_sorted_ids(rows["completed"])]
    desc = await client.job_list(
        JobListParams(states=["completed", "cancelled"], order_by="finalized_at", descending=True)
    )
    assert ids_of(desc) == [*_sorted_ids(rows["completed"], True), cancelled]


@pytest.mark.parametrize(
    "states",
    [None, [], ["available"], ["completed", "available"], ["running", "completed"]],
)
async def test_order_by_finalized_at_rejected_unless_all_states_finalized(
    client: AnyClient, states: list[str] | None
) -> None:
    with pytest.raises(ValidationError) as info:
        await client.job_list(JobListParams(states=states, order_by="finalized_at"))
    assert info.value.field == "order_by"


@pytest.mark.parametrize("descending", [False, True])
async def test_order_by_id(
    client: AnyClient, conn: psycopg.Connection[Any], descending: bool
) -> None:
    ids = [insert_job(conn, scheduled_at=T0 - timedelta(seconds=i)) for i in range(7)]
    result = await client.job_list(JobListParams(descending=descending))
    assert ids_of(result) == (ids[::-1] if descending else ids)


# --- keyset pagination ---------------------------------------------------------------------------


def _paging_rows(conn: psycopg.Connection[Any]) -> list[tuple[datetime, int]]:
    """23 completed rows; times in 5 groups of ties, groups interleaved with id order."""
    pairs = []
    for i in range(23):
        t = T0 + timedelta(microseconds=123_456) - timedelta(minutes=(i * 3) % 5)
        pairs.append(
            (t, insert_job(conn, state="completed", scheduled_at=t, finalized_at=t, attempt=1))
        )
    return pairs


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize(
    ("order_by", "states"),
    [
        ("id", None),
        ("time", ["completed"]),
        ("scheduled_at", None),
        ("finalized_at", ["completed"]),
    ],
)
@pytest.mark.parametrize("limit", [1, 4, 23])
async def test_pagination_yields_every_row_once_in_order(
    client: AnyClient,
    conn: psycopg.Connection[Any],
    order_by: Any,
    states: list[str] | None,
    descending: bool,
    limit: int,
) -> None:
    pairs = _paging_rows(conn)
    if order_by == "id":
        expected = sorted((i for _, i in pairs), reverse=descending)
    else:
        expected = _sorted_ids(pairs, descending)
    params = JobListParams(states=states, order_by=order_by, descending=descending, limit=limit)
    assert await all_pages(client, params) == expected


async def test_pagination_with_filters(client: AnyClient, conn: psycopg.Connection[Any]) -> None:
    wanted = []
    for i in range(12):
        t = T0 + timedelta(seconds=i % 3)
        job_id = insert_job(conn, kind="kind_a" if i % 2 else "kind_b", scheduled_at=t)
        if i % 2:
            wanted.append((t, job_id))
    params = JobListParams(kinds=["kind_a"], order_by="scheduled_at", limit=2)
    assert await all_pages(client, params) == _sorted_ids(wanted)


async def test_pagination_over_rows_without_a_time(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    """Rows whose sort column is null (attempted_at of jobs never run) are paged too."""
    running = [
        insert_job(conn, state="running", attempted_at=T0 + timedelta(seconds=i)) for i in range(3)
    ]
    available = [insert_job(conn, state="available") for _ in range(5)]
    for descending in (False, True):
        for order_by, states in (("attempted_at", None), ("time", ["running", "available"])):
            params = JobListParams(states=states, order_by=order_by, descending=descending, limit=2)
            expected = running + available
            assert await all_pages(client, params) == (
                expected[::-1] if descending else expected
            ), (order_by, descending)


async def test_page_after_the_last_row_is_empty(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    ids = [insert_job(conn) for _ in range(3)]
    page = await client.job_list(JobListParams(limit=3))
    assert ids_of(page) == ids
    assert page.cursor is not None
    nxt = await client.job_list(JobListParams(limit=3, after=page.cursor))
    assert nxt.jobs == []
    assert nxt.cursor is None


async def test_cursor_sees_rows_inserted_after_it_was_issued(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    first = [insert_job(conn) for _ in range(2)]
    page = await client.job_list(JobListParams(limit=2))
    assert ids_of(page) == first
    later = insert_job(conn)
    assert ids_of(await client.job_list(JobListParams(after=page.cursor))) == [later]


# --- cursor text ---------------------------------------------------------------------------------


def _expected_cursor(job_id: int, kind: str, queue: str, sort_field: str, time: str) -> str:
    text = (
        f'{{"id":{job_id},"kind":{kind},"queue":"{queue}","sort_field":"{sort_field}",'
        f'"time":"{time}"}}'
    )
    return base64.urlsafe_b64encode(text.encode()).decode()


async def test_cursor_text_for_id_order(client: AnyClient, conn: psycopg.Connection[Any]) -> None:
    insert_job(conn, kind="list_job", queue="q")
    last = insert_job(conn, kind="list_job", queue="q_2")
    page = await client.job_list()
    assert page.cursor == _expected_cursor(last, '"list_job"', "q_2", "id", ZERO_TIME)
    assert len(page.cursor) % 4 == 0  # padded
    assert list(decode(page.cursor)) == ["id", "kind", "queue", "sort_field", "time"]


@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (123456, "2024-01-02T03:04:05.123456Z"),
        (120000, "2024-01-02T03:04:05.12Z"),
        (1, "2024-01-02T03:04:05.000001Z"),
        (0, "2024-01-02T03:04:05Z"),
    ],
)
async def test_cursor_time_is_rfc3339_nano(
    client: AnyClient, conn: psycopg.Connection[Any], micro: int, text: str
) -> None:
    t = T0.replace(microsecond=micro)
    job_id = insert_job(conn, state="completed", scheduled_at=t, finalized_at=t)
    for order_by, states, sort_field in (
        ("scheduled_at", None, "scheduled_at"),
        ("finalized_at", ["completed"], "finalized_at"),
        # River (Go) writes the requested order ("time"), not the column it resolves to.
        ("time", ["completed"], "time"),
    ):
        page = await client.job_list(JobListParams(states=states, order_by=order_by))
        assert page.cursor == _expected_cursor(job_id, '"admin_job"', "default", sort_field, text)


def test_cursor_time_is_utc_whatever_the_session_time_zone(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    job_id = insert_job(conn, scheduled_at=T0)
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SET TIME ZONE 'Asia/Kolkata'")
        page = river.Client().job_list_tx(other, JobListParams(order_by="scheduled_at"))
    assert page.cursor == _expected_cursor(
        job_id, '"admin_job"', "default", "scheduled_at", "2024-01-02T03:04:05Z"
    )


async def test_cursor_kind_is_encoded_as_go_does(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    """Go's encoding/json escapes <, > and & and writes other non-ASCII text as UTF-8."""
    job_id = insert_job(conn, kind="a<b>·c&d")
    page = await client.job_list()
    assert page.cursor is not None
    assert base64.urlsafe_b64decode(page.cursor).decode() == (
        f'{{"id":{job_id},"kind":"a\\u003cb\\u003e·c\\u0026d","queue":"default",'
        f'"sort_field":"id","time":"{ZERO_TIME}"}}'
    )


def _cursor_in_alphabet(job_id: int, sort_field: str, time: str, *, url_safe: bool) -> str:
    """A padded cursor in one base64 alphabet, using characters the other alphabet lacks
    (URL-safe ``-``/``_``, standard ``+``/``/``), so that only a decoder knowing that alphabet
    reads it."""
    for n in range(10_000):
        text = json.dumps(
            {"id": job_id, "kind": f"k{n}?>", "queue": "q", "sort_field": sort_field, "time": time},
            separators=(",", ":"),
        ).encode()
        if url_safe:
            encoded = base64.urlsafe_b64encode(text).decode()
            if "-" in encoded or "_" in encoded:
                return encoded
        else:
            encoded = base64.b64encode(text).decode()
            if "+" in encoded or "/" in encoded:
                return encoded
    raise AssertionError("no candidate found")


@pytest.mark.parametrize("url_safe", [True, False], ids=["url-safe", "standard"])
@pytest.mark.parametrize("order_by", ["id", "scheduled_at"])
async def test_both_base64_alphabets_are_accepted(
    client: AnyClient, conn: psycopg.Connection[Any], order_by: Any, url_safe: bool
) -> None:
    pairs = [
        (T0 + timedelta(seconds=i), insert_job(conn, scheduled_at=T0 + timedelta(seconds=i)))
        for i in range(4)
    ]
    time = ZERO_TIME if order_by == "id" else "2024-01-02T03:04:06Z"  # the second row's
    cursor = _cursor_in_alphabet(pairs[1][1], order_by, time, url_safe=url_safe)
    page = await client.job_list(JobListParams(order_by=order_by, after=cursor))
    assert ids_of(page) == [pairs[2][1], pairs[3][1]]


async def test_go_style_cursor_with_offset_and_nanoseconds(
    client: AnyClient, conn: psycopg.Connection[Any]
) -> None:
    """A cursor whose time has a non-UTC offset and nine fraction digits (as Go may send)."""
    pairs = [
        (T0 + timedelta(seconds=i), insert_job(conn, scheduled_at=T0 + timedelta(seconds=i)))
        for i in range(3)
    ]
    text = json.dumps(
        {
            "id": pairs[0][1],
            "kind": "admin_job",
            "queue": "default",
            "sort_field": "time",
            "time": "2024-01-02T05:04:05.000000000+02:00",  # == T0
        },
        separators=(",", ":"),
    )
    cursor = base64.urlsafe_b64encode(text.encode()).decode()
    page = await client.job_list(JobListParams(order_by="time", after=cursor))
    assert ids_of(page) == [pairs[1][1], pairs[2][1]]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "%%%%",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"kind": "x"}').decode(),
        base64.urlsafe_b64encode(b'{"id": "1"}').decode(),
        base64.urlsafe_b64encode(b'{"id": 1, "time": "yesterday"}').decode(),
        base64.urlsafe_b64encode(b'{"id": 1, "time": 12}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"[" * 20000).decode(),  # deeper than the JSON parser goes
        base64.urlsafe_b64encode(b'{"id": 100000000000000000000000000000}').decode(),
        base64.urlsafe_b64encode(b'{"id": -1}').decode(),
    ],
)
async def test_invalid_cursor_names_after(client: AnyClient, cursor: str) -> None:
    with pytest.raises(ValidationError) as info:
        await client.job_list(JobListParams(order_by="scheduled_at", after=cursor))
    assert info.value.field == "after"
