"""Insert validation (before any SQL) and insert semantics (PROTOCOL section 4)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import anyio
import psycopg
import pydantic
import pytest
from helpers import JOB_SELECT, fast_config, make_workers, open_db, started_client, utcnow, wait_for
from psycopg.rows import dict_row

import river

pytestmark = pytest.mark.anyio


class Email(river.JobArgs):
    kind: ClassVar[str] = "email"
    to: str = "a@example.com"
    n: int = 0


class Other(river.JobArgs):
    kind: ClassVar[str] = "other_kind"


class WithOpts(river.JobArgs):
    kind: ClassVar[str] = "with_opts"

    def insert_opts(self) -> river.InsertOpts | None:
        return river.InsertOpts(
            queue="from_args",
            priority=3,
            max_attempts=9,
            tags=["args_tag"],
            metadata={"source": "args"},
        )


class UniqueByArgs(river.JobArgs):
    kind: ClassVar[str] = "unique_email"
    to: str

    def insert_opts(self) -> river.InsertOpts | None:
        return river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))


class EmailWorker(river.Worker[Email]):
    async def work(self, job: river.Job[Email]) -> None:
        return None


class NoKind(river.JobArgs, abstract=True):
    pass


@dataclass
class RiverqueueStyleArgs:
    kind: str = "email"

    def to_json(self) -> str:
        return "{}"


NAIVE = datetime(2030, 1, 1, 12, 0, 0)


# (description, item, expected exception type, expected field of a single insert)
BAD_ITEMS: list[tuple[str, Any, type[Exception], str]] = [
    ("queue upper case", (Email(), river.InsertOpts(queue="Bad")), river.ValidationError, "queue"),
    ("queue with space", (Email(), river.InsertOpts(queue="a b")), river.ValidationError, "queue"),
    ("queue empty", (Email(), river.InsertOpts(queue="")), river.ValidationError, "queue"),
    ("queue too long", (Email(), river.InsertOpts(queue="q" * 65)), river.ValidationError, "queue"),
    ("queue leading sep", (Email(), river.InsertOpts(queue="_q")), river.ValidationError, "queue"),
    ("queue double sep", (Email(), river.InsertOpts(queue="a__b")), river.ValidationError, "queue"),
    ("queue trailing sep", (Email(), river.InsertOpts(queue="a-")), river.ValidationError, "queue"),
    ("priority 0", (Email(), river.InsertOpts(priority=0)), river.ValidationError, "priority"),
    ("priority 5", (Email(), river.InsertOpts(priority=5)), river.ValidationError, "priority"),
    ("priority -1", (Email(), river.InsertOpts(priority=-1)), river.ValidationError, "priority"),
    (
        "priority bool",
        (Email(), river.InsertOpts(priority=True)),
        river.ValidationError,
        "priority",
    ),
    (
        "max_attempts 0",
        (Email(), river.InsertOpts(max_attempts=0)),
        river.ValidationError,
        "max_attempts",
    ),
    (
        "max_attempts negative",
        (Email(), river.InsertOpts(max_attempts=-3)),
        river.ValidationError,
        "max_attempts",
    ),
    (
        "max_attempts beyond smallint",
        (Email(), river.InsertOpts(max_attempts=32768)),
        river.ValidationError,
        "max_attempts",
    ),
    ("tag with comma", (Email(), river.InsertOpts(tags=["a,bc"])), river.ValidationError, "tags"),
    ("tag too short", (Email(), river.InsertOpts(tags=["ab"])), river.ValidationError, "tags"),
    ("tag too long", (Email(), river.InsertOpts(tags=["t" * 256])), river.ValidationError, "tags"),
    ("tag with space", (Email(), river.InsertOpts(tags=["a bc"])), river.ValidationError, "tags"),
    ("tag not a str", (Email(), river.InsertOpts(tags=[123])), river.ValidationError, "tags"),  # type: ignore[list-item]
    ("tags a str", (Email(), river.InsertOpts(tags="abc")), river.ValidationError, "tags"),
    (
        "metadata a list",
        (Email(), river.InsertOpts(metadata=[1, 2])),  # type: ignore[arg-type]
        river.ValidationError,
        "metadata",
    ),
    (
        "metadata a str",
        (Email(), river.InsertOpts(metadata="{}")),  # type: ignore[arg-type]
        river.ValidationError,
        "metadata",
    ),
    (
        "metadata river: key",
        (Email(), river.InsertOpts(metadata={"river:log": []})),
        river.ValidationError,
        "metadata",
    ),
    (
        "metadata non-str key",
        (Email(), river.InsertOpts(metadata={1: "x"})),  # type: ignore[dict-item]
        river.ValidationError,
        "metadata",
    ),
    (
        "metadata not JSON",
        (Email(), river.InsertOpts(metadata={"x": object()})),
        river.ValidationError,
        "metadata",
    ),
    (
        "naive scheduled_at",
        (Email(), river.InsertOpts(scheduled_at=NAIVE)),
        river.ValidationError,
        "scheduled_at",
    ),
    ("a dict as args", ({"kind": "email"}, None), river.ValidationError, "args"),
    ("riverqueue-style args", (RiverqueueStyleArgs(), None), river.ValidationError, "args"),
    ("args without kind", (NoKind(), None), river.ValidationError, "kind"),
    ("opts not InsertOpts", (Email(), {"queue": "x"}), river.ValidationError, "opts"),
    (
        "unique_opts not UniqueOpts",
        (Email(), river.InsertOpts(unique_opts={"by_args": True})),  # type: ignore[arg-type]
        river.ValidationError,
        "unique_opts",
    ),
    ("unknown kind", (Other(), None), river.UnknownJobKindError, "kind"),
]


def _workers() -> river.Workers:
    return make_workers(EmailWorker())


FLAVOURS = [
    "async.insert",
    "async.insert_tx",
    "async.insert_many",
    "async.insert_many_tx",
    "async.insert_many_fast",
    "async.insert_many_fast_tx",
    "sync.insert",
    "sync.insert_tx",
    "sync.insert_many",
    "sync.insert_many_tx",
    "sync.insert_many_fast",
    "sync.insert_many_fast_tx",
]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_validation_errors_before_any_sql(db_url: str, flavour: str) -> None:
    side, method = flavour.split(".")
    many = method.startswith("insert_many")
    good = [Email(n=1), (Email(n=2), river.InsertOpts(queue="fine"))]
    # A closed connection: any SQL sent on it would fail with a psycopg error, not a
    # ValidationError, so a ValidationError proves nothing was sent.
    if side == "async":
        aclient = river.AsyncClient(db_url, river.Config(workers=_workers()))
        closed_a = await psycopg.AsyncConnection.connect(db_url)
        await closed_a.close()

        async def call(item: Any) -> Any:
            args, opts = item
            if method == "insert":
                return await aclient.insert(args, opts)
            if method == "insert_tx":
                return await aclient.insert_tx(closed_a, args, opts)
            batch = [*good, item]
            if method == "insert_many":
                return await aclient.insert_many(batch)
            if method == "insert_many_tx":
                return await aclient.insert_many_tx(closed_a, batch)
            if method == "insert_many_fast":
                return await aclient.insert_many_fast(batch)
            return await aclient.insert_many_fast_tx(closed_a, batch)

        try:
            for desc, item, exc_type, field in BAD_ITEMS:
                with pytest.raises(exc_type) as info:
                    await call(item)
                expected = f"jobs[2].{field}" if many else field
                assert info.value.field == expected, (desc, info.value)  # type: ignore[attr-defined]
                assert str(info.value).startswith(f"{expected}: "), desc
        finally:
            await aclient.close()
    else:
        sclient = river.Client(db_url, river.Config(workers=_workers()))
        closed_s = psycopg.connect(db_url)
        closed_s.close()

        def scall(item: Any) -> Any:
            args, opts = item
            if method == "insert":
                return sclient.insert(args, opts)
            if method == "insert_tx":
                return sclient.insert_tx(closed_s, args, opts)
            batch = [*good, item]
            if method == "insert_many":
                return sclient.insert_many(batch)
            if method == "insert_many_tx":
                return sclient.insert_many_tx(closed_s, batch)
            if method == "insert_many_fast":
                return sclient.insert_many_fast(batch)
            return sclient.insert_many_fast_tx(closed_s, batch)

        def run_all() -> None:
            for desc, item, exc_type, field in BAD_ITEMS:
                with pytest.raises(exc_type) as info:
                    scall(item)
                expected = f"jobs[2].{field}" if many else field
                assert info.value.field == expected, (desc, info.value)  # type: ignore[attr-defined]

        try:
            await anyio.to_thread.run_sync(run_all)
        finally:
            sclient.close()
    async with open_db(db_url) as db:
        assert await db.count() == 0


async def test_duplicate_unique_key_in_one_batch(db_url: str) -> None:
    async with river.AsyncClient(db_url) as client:
        batch: list[river.InsertManyItem] = [
            UniqueByArgs(to="x"),
            Email(),
            UniqueByArgs(to="y"),
            UniqueByArgs(to="x"),
        ]
        with pytest.raises(river.DuplicateUniqueKeyInBatchError) as info:
            await client.insert_many(batch)
        assert info.value.field == "jobs[3].unique_opts"
        assert "job 0" in info.value.rule
        with pytest.raises(river.DuplicateUniqueKeyInBatchError):
            await client.insert_many_fast(batch)
        # Same key through InsertOpts rather than the args' own options.
        uniq = river.InsertOpts(unique_opts=river.UniqueOpts(by_queue=True))
        with pytest.raises(river.DuplicateUniqueKeyInBatchError) as info:
            await client.insert_many([(Email(n=1), uniq), (Email(n=2), uniq)])
        assert info.value.field == "jobs[1].unique_opts"
        # Different queues: different keys, fine.
        ok = await client.insert_many(
            [
                (
                    Email(n=1),
                    river.InsertOpts(queue="q1", unique_opts=river.UniqueOpts(by_queue=True)),
                ),
                (
                    Email(n=2),
                    river.InsertOpts(queue="q2", unique_opts=river.UniqueOpts(by_queue=True)),
                ),
            ]
        )
        assert len(ok) == 2
    with river.Client(db_url) as sync_client, pytest.raises(river.DuplicateUniqueKeyInBatchError):
        sync_client.insert_many([UniqueByArgs(to="z"), UniqueByArgs(to="z")])
    async with open_db(db_url) as db:
        assert await db.count() == 2


def test_unique_opts_and_snooze_validation() -> None:
    with pytest.raises(river.ValidationError):
        river.UniqueOpts(by_period=0.5)
    with pytest.raises(river.ValidationError):
        river.UniqueOpts(by_state=["available", "running"])  # missing pending, scheduled
    with pytest.raises(river.ValidationError):
        river.UniqueOpts(by_state=["available", "pending", "running", "scheduled", "bogus"])
    with pytest.raises(river.ValidationError):
        river.UniqueOpts(by_args="to")
    with pytest.raises(river.ValidationError):
        river.JobSnooze(-1)
    assert river.UniqueOpts(exclude_kind=True).enabled is False
    assert river.UniqueOpts(by_args=True).states_mask == 0b11110101


async def test_unknown_kind_allowed_without_workers_or_when_skipped(db_url: str) -> None:
    async with river.AsyncClient(db_url) as plain:
        await plain.insert(Other())
    config = river.Config(workers=_workers(), skip_unknown_job_check=True)
    async with river.AsyncClient(db_url, config) as skipping:
        await skipping.insert(Other())
    with river.Client(db_url, config) as sync_skipping:
        sync_skipping.insert(Other())
    async with open_db(db_url) as db:
        assert [r["kind"] for r in await db.jobs()] == ["other_kind"] * 3


# --- semantics ------------------------------------------------------------------------------


async def _tx_job(conn: psycopg.AsyncConnection[Any], job_id: int) -> dict[str, Any]:
    """A job's row as stored, read raw on the test's own (rolled-back) transaction."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(JOB_SELECT + " WHERE id = %(id)s", {"id": job_id})
        row = await cur.fetchone()
    assert row is not None
    return row


async def test_defaults_written(atx: psycopg.AsyncConnection[Any]) -> None:
    before = utcnow()
    res = await river.AsyncClient(config=river.Config()).insert_tx(atx, Email(to="x@y.z", n=5))
    after = utcnow()
    row = await _tx_job(atx, res.job.id)
    assert row["state"] == "available"
    assert row["max_attempts"] == 25
    assert row["priority"] == 1
    assert row["queue"] == "default"
    assert row["tags"] == []
    assert row["metadata"] == {}
    assert row["attempt"] == 0
    assert row["attempted_at"] is None
    assert row["attempted_by"] is None
    assert row["errors"] is None
    assert row["finalized_at"] is None
    assert row["unique_key"] is None
    assert row["unique_states"] is None
    assert row["kind"] == "email"
    assert row["args"] == {"to": "x@y.z", "n": 5}
    assert before - timedelta(seconds=1) <= row["created_at"] <= after + timedelta(seconds=1)
    assert before - timedelta(seconds=1) <= row["scheduled_at"] <= after + timedelta(seconds=1)
    # The returned row is the persisted one.
    job = res.job
    assert (job.state, job.max_attempts, job.priority, job.queue, job.tags, job.metadata) == (
        river.JobState.AVAILABLE,
        25,
        1,
        "default",
        [],
        {},
    )
    assert job.created_at == row["created_at"]
    assert job.scheduled_at == row["scheduled_at"]


async def test_client_default_max_attempts(
    atx: psycopg.AsyncConnection[Any], tx: psycopg.Connection[Any]
) -> None:
    client = river.AsyncClient(config=river.Config(max_attempts=7))
    a = await client.insert_tx(atx, Email())
    b = await client.insert_tx(atx, Email(), river.InsertOpts(max_attempts=2))
    c = await client.insert_tx(atx, WithOpts())
    d = river.Client(config=river.Config(max_attempts=4)).insert_tx(tx, Email())
    assert [r.job.max_attempts for r in (a, b, c, d)] == [7, 2, 9, 4]


async def test_state_rules(atx: psycopg.AsyncConnection[Any]) -> None:
    past = utcnow() - timedelta(hours=1)
    future = utcnow() + timedelta(hours=1)
    results = await river.AsyncClient(config=river.Config()).insert_many_tx(
        atx,
        [
            (Email(n=0), None),
            (Email(n=1), river.InsertOpts(scheduled_at=past)),
            (Email(n=2), river.InsertOpts(scheduled_at=future)),
            (Email(n=3), river.InsertOpts(pending=True)),
            (Email(n=4), river.InsertOpts(pending=True, scheduled_at=future)),
        ],
    )
    rows = {r["args"]["n"]: r for r in [await _tx_job(atx, x.job.id) for x in results]}
    assert [r.job.state.value for r in results] == [
        "available",
        "scheduled",
        "scheduled",
        "pending",
        "pending",
    ]
    assert [rows[i]["state"] for i in range(5)] == [r.job.state.value for r in results]
    assert rows[1]["scheduled_at"] == past
    assert rows[2]["scheduled_at"] == future
    assert rows[4]["scheduled_at"] == future


async def test_fast_path_writes_the_same_values(db_url: str) -> None:
    future = utcnow() + timedelta(hours=1)
    async with river.AsyncClient(db_url) as client:
        n = await client.insert_many_fast(
            [
                (Email(n=0), None),
                (Email(n=1), river.InsertOpts(scheduled_at=future, tags=["t_1", "t-2", "null"])),
                (Email(n=2), river.InsertOpts(pending=True, metadata={"m": [1, {"x": None}]})),
                (
                    Email(n=3),
                    river.InsertOpts(
                        queue="q",
                        priority=4,
                        max_attempts=3,
                        unique_opts=river.UniqueOpts(by_args=True),
                    ),
                ),
            ]
        )
        assert n == 4
        # A live duplicate aborts the whole COPY: nothing inserted.
        with pytest.raises(psycopg.errors.UniqueViolation):
            await client.insert_many_fast(
                [
                    (Email(n=10), None),
                    (
                        Email(n=3),
                        river.InsertOpts(
                            queue="q",
                            priority=4,
                            max_attempts=3,
                            unique_opts=river.UniqueOpts(by_args=True),
                        ),
                    ),
                ]
            )
    async with open_db(db_url) as db:
        rows = {r["args"]["n"]: r for r in await db.jobs()}
    assert sorted(rows) == [0, 1, 2, 3]
    assert rows[0]["state"] == "available"
    assert rows[0]["tags"] == []
    assert rows[0]["metadata"] == {}
    assert rows[0]["max_attempts"] == 25
    assert rows[0]["priority"] == 1
    assert rows[0]["scheduled_at"] == rows[0]["created_at"]
    assert rows[1]["state"] == "scheduled"
    assert rows[1]["scheduled_at"] == future
    # Tags travel as a quoted array literal: "null" stays a string.
    assert rows[1]["tags"] == ["t_1", "t-2", "null"]
    assert rows[2]["state"] == "pending"
    assert rows[2]["metadata"] == {"m": [1, {"x": None}]}
    r3 = rows[3]
    assert (r3["queue"], r3["priority"], r3["max_attempts"]) == ("q", 4, 3)
    assert r3["unique_key"] is not None
    assert len(r3["unique_key"]) == 32
    assert r3["unique_states"] == "11110101"


async def test_precedence_insert_opts_over_args_over_client(
    atx: psycopg.AsyncConnection[Any],
) -> None:
    client = river.AsyncClient(config=river.Config(max_attempts=5))
    from_args = await client.insert_tx(atx, WithOpts())
    overridden = await client.insert_tx(
        atx,
        WithOpts(),
        river.InsertOpts(priority=2, tags=[], metadata={"source": "insert"}),
    )
    tags_only = await client.insert_tx(atx, WithOpts(), river.InsertOpts(tags=["mine"]))
    a = from_args.job
    assert (a.queue, a.priority, a.max_attempts, a.tags, a.metadata) == (
        "from_args",
        3,
        9,
        ["args_tag"],
        {"source": "args"},
    )
    b = overridden.job
    # Per field: insert opts win where set, the args' options fill the rest; tags not merged,
    # so an empty list given at insert wins.
    assert (b.queue, b.priority, b.max_attempts, b.tags, b.metadata) == (
        "from_args",
        2,
        9,
        [],
        {"source": "insert"},
    )
    assert tags_only.job.tags == ["mine"]
    row = await _tx_job(atx, b.id)
    assert row["tags"] == []
    assert row["priority"] == 2
    assert row["metadata"] == {"source": "insert"}


async def test_insert_many_results_in_input_order(db_url: str) -> None:
    async with river.AsyncClient(db_url) as client:
        existing = await client.insert(UniqueByArgs(to="dup"))
        items: list[river.InsertManyItem] = []
        for i in range(60):
            if i == 17:
                items.append(UniqueByArgs(to="dup"))
            else:
                items.append((Email(n=i), river.InsertOpts(priority=4 - i % 4, queue=f"q{i % 3}")))
        results = await client.insert_many(items)
    assert len(results) == 60
    for i, res in enumerate(results):
        if i == 17:
            assert res.unique_skipped_as_duplicate is True
            assert res.job.id == existing.job.id
        else:
            assert res.unique_skipped_as_duplicate is False
            assert res.job.args == {"to": "a@example.com", "n": i}
            assert res.job.priority == 4 - i % 4
            assert res.job.queue == f"q{i % 3}"
    new_ids = [r.job.id for i, r in enumerate(results) if i != 17]
    assert new_ids == sorted(new_ids)


def _varied_items() -> list[tuple[river.JobArgs, river.InsertOpts | None]]:
    tz = timezone(timedelta(hours=-7, minutes=-30))
    return [
        (Email(n=1), None),
        (WithOpts(), None),
        (
            Email(to="é<>&\u2028", n=2),
            river.InsertOpts(
                queue="q-2",
                priority=4,
                max_attempts=1,
                tags=["alpha", "beta_2"],
                metadata={"n": 1.0, "big": 2**63 - 1, "s": "é<>&", "nested": {"b": 1, "a": [None]}},
            ),
        ),
        (Email(n=3), river.InsertOpts(scheduled_at=datetime(2031, 5, 6, 7, 8, 9, 123456, tz))),
        (Email(n=4), river.InsertOpts(pending=True, tags=[])),
        (Email(n=5), river.InsertOpts(scheduled_at=utcnow() - timedelta(hours=1))),
    ]


@pytest.mark.parametrize("path", ["insert", "insert_many", "insert_tx", "sync"])
async def test_returned_rows_equal_the_rows_persisted(db_url: str, path: str) -> None:
    """Jobs without unique keys read back only what the server fills; the rows returned must
    still equal what job_get reads, field by field."""
    items = _varied_items()
    async with river.AsyncClient(db_url) as client:
        results: list[river.InsertResult] = []
        if path == "insert":
            for args, opts in items:
                results.append(await client.insert(args, opts))
        elif path == "insert_many":
            results = await client.insert_many(items)
            results += await client.insert_many(items[2:3])
        elif path == "insert_tx":
            async with await psycopg.AsyncConnection.connect(db_url) as conn:
                for args, opts in items:
                    results.append(await client.insert_tx(conn, args, opts))
                results += await client.insert_many_tx(conn, items)
        else:
            with river.Client(db_url) as sync_client:
                for args, opts in items:
                    results.append(await anyio.to_thread.run_sync(sync_client.insert, args, opts))
                results += await anyio.to_thread.run_sync(sync_client.insert_many, items)
        assert len(results) >= len(items)
        for res in results:
            assert res.unique_skipped_as_duplicate is False
            assert res.job == await client.job_get(res.job.id)


class OddText(river.JobArgs):
    kind: ClassVar[str] = "odd.kind:v1+[x]<y>/z·w"
    s: str
    items: list[str] = pydantic.Field(default_factory=list)


#: Strings an array literal must quote or escape (river/_pgarray.py).
ODD = [
    'say "hi"',
    "C:\\dir\\",
    "{a,b}",
    " lead",
    "trail ",
    "",
    "NULL",
    "tab\tnew\nline",
    "é😀\u2028",
]


def _mixed_items() -> list[tuple[river.JobArgs, river.InsertOpts | None]]:
    tz = timezone(timedelta(hours=5, minutes=30))
    return [
        (Email(to=ODD[0], n=1), None),
        (OddText(s=ODD[1], items=ODD), None),
        (
            Email(to=ODD[2], n=2),
            river.InsertOpts(
                queue="q-2|x_y",
                tags=["NULL", "null", "a-b_c"],
                metadata={"q": ODD[0], "b": ODD[1], "e": "", "n": None, "nested": {"{": ","}},
            ),
        ),
        (Email(n=3), river.InsertOpts(scheduled_at=datetime(2031, 5, 6, 7, 8, 9, 123457, tz))),
        (Email(n=4), river.InsertOpts(scheduled_at=utcnow() - timedelta(hours=1, microseconds=7))),
        (Email(to=ODD[6], n=5), river.InsertOpts(pending=True, tags=[])),
        (Email(n=6), river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))),
        (
            Email(n=7),
            river.InsertOpts(
                unique_opts=river.UniqueOpts(
                    by_args=True, by_state=["available", "pending", "running", "scheduled"]
                )
            ),
        ),
        (Email(to=ODD[7], n=8), river.InsertOpts(priority=4, max_attempts=1, metadata={})),
        (OddText(s=ODD[8]), river.InsertOpts(tags=["only"], metadata={"k": ODD[3] + ODD[4]})),
    ]


def _plain_items() -> list[tuple[river.JobArgs, river.InsertOpts | None]]:
    # Every job with the defaults: scheduled_at, unique_key, unique_states and metadata travel
    # as one NULL each (river/_sql/job.sql).
    return [(Email(n=i), None) for i in range(5)] + [(OddText(s=ODD[i]), None) for i in range(3)]


_RAW = (
    "SELECT args::text, kind, queue, state::text, priority, max_attempts, attempt, tags,"
    " metadata::text, unique_key, unique_states::text, errors, attempted_at, attempted_by,"
    " finalized_at, scheduled_at, created_at FROM river_job WHERE id = ANY(%(ids)s) ORDER BY id"
)


async def _raw_rows(conn: psycopg.AsyncConnection[Any], ids: list[int]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_RAW, {"ids": ids})
        rows = await cur.fetchall()
    assert len(rows) == len(ids)
    for row in rows:
        # The creation time differs between the two inserts; a job not scheduled for later is
        # due at its creation.
        created = row.pop("created_at")
        if row["scheduled_at"] == created:
            row["scheduled_at"] = "created_at"
    return rows


@pytest.mark.parametrize("items", [_mixed_items, _plain_items])
async def test_insert_many_stores_what_single_inserts_store(
    atx: psycopg.AsyncConnection[Any],
    items: Any,
) -> None:
    """insert_many's array parameters (text literals, NULL for a column of None throughout)
    store byte for byte what one insert per job stores with plain parameters."""
    client = river.AsyncClient(config=river.Config())
    batch = items()
    singles = [await client.insert_tx(atx, args, opts) for args, opts in batch]
    expected = await _raw_rows(atx, [r.job.id for r in singles])
    await atx.rollback()
    many = await client.insert_many_tx(atx, batch)
    got = await _raw_rows(atx, [r.job.id for r in many])
    assert got == expected
    # The rows returned are the rows stored, with or without unique keys.
    for single, res in zip(singles, many, strict=True):
        assert res.unique_skipped_as_duplicate is False
        assert res.job.id != single.job.id
        assert res.job == await client.job_get_tx(atx, res.job.id)
    again = await client.insert_many_tx(atx, batch)
    for first, dup, (_, opts) in zip(many, again, batch, strict=True):
        if opts is not None and opts.unique_opts is not None:
            assert dup.unique_skipped_as_duplicate is True
            assert dup.job == first.job


async def test_unique_insert_returns_existing_row(db_url: str) -> None:
    async with river.AsyncClient(db_url) as client:
        first = await client.insert(UniqueByArgs(to="u@x"))
        second = await client.insert(UniqueByArgs(to="u@x"))
        many = await client.insert_many([UniqueByArgs(to="u@x"), UniqueByArgs(to="v@x")])
    assert first.unique_skipped_as_duplicate is False
    assert second.unique_skipped_as_duplicate is True
    assert second.job.id == first.job.id
    assert second.job.state is river.JobState.AVAILABLE
    assert [r.unique_skipped_as_duplicate for r in many] == [True, False]
    assert many[0].job.id == first.job.id
    with river.Client(db_url) as sync_client:
        again = sync_client.insert(UniqueByArgs(to="u@x"))
        assert again.unique_skipped_as_duplicate is True
        assert again.job.id == first.job.id
    async with open_db(db_url) as db:
        assert await db.count() == 2
        row = await db.job(first.job.id)
    assert row["unique_key"] is not None
    assert len(row["unique_key"]) == 32
    assert bytes(row["unique_key"]) == first.job.unique_key
    assert row["unique_states"] == "11110101"
    assert first.job.unique_states == 245


class FailOnce(river.JobArgs):
    kind: ClassVar[str] = "fail_unique"
    key: str

    def insert_opts(self) -> river.InsertOpts | None:
        return river.InsertOpts(max_attempts=1, unique_opts=river.UniqueOpts(by_args=True))


class FailWorker(river.Worker[FailOnce]):
    async def work(self, job: river.Job[FailOnce]) -> None:
        raise RuntimeError("always")


async def test_unique_key_freed_after_discard_but_not_after_completion(db_url: str) -> None:
    async with open_db(db_url) as db:
        config = fast_config(make_workers(FailWorker(), EmailWorker()))
        async with started_client(db_url, config) as client:
            first = await client.insert(FailOnce(key="k"))
            await db.wait_state(first.job.id, "discarded")
            # Discarded is not among the default unique states: a new job may be inserted.
            second = await client.insert(FailOnce(key="k"))
            assert second.unique_skipped_as_duplicate is False
            assert second.job.id != first.job.id
            await db.wait_state(second.job.id, "discarded")
        async with river.AsyncClient(db_url) as insert_only:
            uniq = river.InsertOpts(unique_opts=river.UniqueOpts(by_args=True))
            done = await insert_only.insert(Email(n=99), uniq)
            await db.execute(
                "UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = %(id)s",
                {"id": done.job.id},
            )
            # Completed still blocks by default...
            dup = await insert_only.insert(Email(n=99), uniq)
            assert dup.unique_skipped_as_duplicate
            assert dup.job.id == done.job.id
            # ...and a cancelled one does not.
            await db.execute(
                "UPDATE river_job SET state = 'cancelled' WHERE id = %(id)s", {"id": done.job.id}
            )
            fresh = await insert_only.insert(Email(n=99), uniq)
            assert not fresh.unique_skipped_as_duplicate
            assert fresh.job.id != done.job.id


async def test_attempted_by_trimmed_to_100_on_fetch(db_url: str) -> None:
    async with open_db(db_url) as db:
        async with river.AsyncClient(db_url) as c:
            hundred = (await c.insert(Email(n=1))).job.id
            many = (await c.insert(Email(n=2))).job.id
            few = (await c.insert(Email(n=3))).job.id
        await db.execute(
            "UPDATE river_job SET attempted_by ="
            " ARRAY(SELECT 'old_' || g FROM generate_series(1, 100) g) WHERE id = %(id)s",
            {"id": hundred},
        )
        await db.execute(
            "UPDATE river_job SET attempted_by ="
            " ARRAY(SELECT 'old_' || g FROM generate_series(1, 150) g) WHERE id = %(id)s",
            {"id": many},
        )
        await db.execute(
            "UPDATE river_job SET attempted_by = ARRAY['old_1', 'old_2'] WHERE id = %(id)s",
            {"id": few},
        )
        config = fast_config(make_workers(EmailWorker()), id="trim-client")
        async with started_client(db_url, config):
            await db.wait_count(3, "state = 'completed'")
        r100 = (await db.job(hundred))["attempted_by"]
        r150 = (await db.job(many))["attempted_by"]
        r2 = (await db.job(few))["attempted_by"]
    assert len(r100) == 100
    assert r100 == [f"old_{i}" for i in range(2, 101)] + ["trim-client"]
    assert len(r150) == 100
    assert r150 == [f"old_{i}" for i in range(52, 151)] + ["trim-client"]
    assert r2 == ["old_1", "old_2", "trim-client"]


async def test_metadata_tags_and_args_persisted_exactly(db_url: str) -> None:
    class Rich(river.JobArgs):
        kind: ClassVar[str] = "rich"
        text: str
        ratio: float
        items: list[int]

    meta = {"nested": {"a": [1, 2, {"b": None}]}, "unicode": "é<>&", "n": 1.5}
    async with river.AsyncClient(db_url) as client:
        res = await client.insert(
            Rich(text="<b>&é", ratio=1.0, items=[3, 2, 1]),
            river.InsertOpts(tags=["alpha", "beta_2", "gam-ma"], metadata=meta),
        )
    async with open_db(db_url) as db:
        row = await db.job(res.job.id)
        raw = await db.scalar(
            "SELECT args::text FROM river_job WHERE id = %(id)s", {"id": res.job.id}
        )
    assert row["args"] == {"text": "<b>&é", "ratio": 1.0, "items": [3, 2, 1]}
    assert row["tags"] == ["alpha", "beta_2", "gam-ma"]
    assert row["metadata"] == meta
    # jsonb's own key order; 1.0 was encoded as Go does ("1"), not "1.0".
    assert raw == '{"text": "<b>&é", "items": [3, 2, 1], "ratio": 1}'
    assert res.job.tags == ["alpha", "beta_2", "gam-ma"]


async def test_inserted_pending_and_scheduled_jobs_are_not_worked(db_url: str) -> None:
    ran: list[int] = []

    class Recorder(river.Worker[Email]):
        async def work(self, job: river.Job[Email]) -> None:
            ran.append(job.args.n)

    async with open_db(db_url) as db:
        config = fast_config(make_workers(Recorder()))
        async with started_client(db_url, config) as client:
            await client.insert(Email(n=1), river.InsertOpts(pending=True))
            await client.insert(
                Email(n=2), river.InsertOpts(scheduled_at=utcnow() + timedelta(hours=1))
            )
            await client.insert(Email(n=3))
            await wait_for(lambda: ran == [3], message="available job to run")
            # Fetch takes available rows only.
            await db.wait_count(1, "state = 'completed'")
            assert await db.count("state IN ('pending', 'scheduled')") == 2
        assert ran == [3]


async def test_large_batches_and_offset_timezones(db_url: str) -> None:
    tz = timezone(timedelta(hours=5, minutes=30))
    when = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=tz)
    async with river.AsyncClient(db_url) as client:
        results = await client.insert_many(
            [(Email(n=i), river.InsertOpts(priority=1 + i % 4)) for i in range(5000)]
        )
        assert [r.job.args["n"] for r in results] == list(range(5000))
        assert [r.job.priority for r in results] == [1 + i % 4 for i in range(5000)]
        assert len({r.job.id for r in results}) == 5000
        fast = await client.insert_many_fast([Email(n=i) for i in range(20_000)])
        assert fast == 20_000
        offset = await client.insert(Email(n=-1), river.InsertOpts(scheduled_at=when))
    assert offset.job.scheduled_at == when  # the same instant
    assert offset.job.state is river.JobState.SCHEDULED
    async with open_db(db_url) as db:
        assert await db.count() == 25_001
        row = await db.job(offset.job.id)
    assert row["scheduled_at"] == when
    assert row["scheduled_at"].utcoffset() is not None


async def test_single_inserts_reuse_a_cursor_only_on_the_clients_own_connections(
    db_url: str,
) -> None:
    """The single-insert statement runs on a cursor kept with each pool connection (cursor
    setup cost as much as a sixth of an insert); a caller's connection never gets one, since
    the caller may use it from other tasks at the same time."""
    async with river.AsyncClient(db_url) as client:
        ids = [(await client.insert(Email(n=i))).job.id for i in range(20)]
        assert len(set(ids)) == 20
        async with client._pool.connection() as conn:
            kept = getattr(conn, "_river_kept_cursor", None)
            assert kept is not None
            assert not kept.closed
            # Other statements on the same connection get cursors of their own.
            cur = await conn.execute("SELECT 1 AS one")
            assert await cur.fetchone() == (1,)
        async with await psycopg.AsyncConnection.connect(db_url) as mine:
            res = await client.insert_tx(mine, Email(n=99))
            await mine.commit()
            assert not hasattr(mine, "_river_kept_cursor")
        assert (await client.job_get(res.job.id)).args["n"] == 99
    with river.Client(db_url) as sync_client:
        assert sync_client.insert(Email(n=100)).job.args["n"] == 100
        assert sync_client.insert(Email(n=101)).job.args["n"] == 101


async def test_a_client_without_database_works_only_in_the_callers_transaction(
    atx: psycopg.AsyncConnection[Any], tx: psycopg.Connection[Any]
) -> None:
    """``AsyncClient()`` like ``Client()``: the ``*_tx`` methods work on the caller's
    connection; anything needing the client's own pool says what is missing."""
    for client in (river.AsyncClient(), river.AsyncClient(config=river.Config())):
        result = await client.insert_tx(atx, Email(n=1))
        assert (await _tx_job(atx, result.job.id))["args"] == {"to": "a@example.com", "n": 1}
        with pytest.raises(river.RiverError, match=r"has no database: pass a URL or pool"):
            await client.insert(Email())
        with pytest.raises(river.RiverError, match=r"has no database"):
            await client.job_get(result.job.id)
        await client.close()  # nothing to close; no error
    sync_result = river.Client().insert_tx(tx, Email(n=2))
    assert sync_result.job.args == {"to": "a@example.com", "n": 2}
    with pytest.raises(river.RiverError, match=r"has no database"):
        river.Client().insert(Email())


def test_args_class_without_kind_is_refused_when_defined() -> None:
    with pytest.raises(river.ValidationError) as info:

        class Forgot(river.JobArgs):
            n: int = 0

    assert info.value.field.endswith(".Forgot.kind")
    assert "abstract=True" in info.value.rule

    class TenantArgs(river.JobArgs, abstract=True):
        tenant: int = 0

    class Invoice(TenantArgs):
        kind: ClassVar[str] = "invoice"

    class Reminder(Invoice):  # inherits its base's kind
        days: int = 3

    assert Invoice(tenant=4).tenant == 4
    assert Reminder.kind == "invoice"
    with pytest.raises(river.ValidationError, match="kind"):

        class BadKind(TenantArgs):
            kind: ClassVar[str] = "no spaces allowed"


class Blob(river.JobArgs):
    kind: ClassVar[str] = "blob_go_types"
    data: bytes
    wait: river.GoDuration


async def test_bytes_and_go_durations_round_trip_as_go_writes_them(db_url: str) -> None:
    seen: list[Blob] = []

    class BlobWorker(river.Worker[Blob]):
        async def work(self, job: river.Job[Blob]) -> None:
            seen.append(job.args)

    ours = Blob(data=bytes(range(256)), wait=timedelta(milliseconds=1500))
    config = fast_config(make_workers(BlobWorker()))
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        single = await client.insert(ours)
        [many] = await client.insert_many([ours])
        await client.insert_many_fast([ours])
        # Inserted by a Go service: encoding/json writes []byte as standard base64 and a
        # time.Duration as integer nanoseconds.
        go_id = await db.scalar(
            "INSERT INTO river_job (args, kind, max_attempts, queue, state)"
            ' VALUES (\'{"data": "+//+", "wait": 2000000001}\', \'blob_go_types\', 25,'
            " 'default', 'available') RETURNING id"
        )
        for job_id in (single.job.id, many.job.id, go_id):
            await db.wait_state(job_id, "completed")
        await wait_for(lambda: len(seen) == 4, message="the four jobs worked")
        stored = await db.all("SELECT args FROM river_job WHERE id <> %(id)s", {"id": go_id})
    assert [row["args"] for row in stored] == [
        {"data": base64.b64encode(bytes(range(256))).decode(), "wait": 1_500_000_000}
    ] * 3
    assert seen.count(ours) == 3
    assert Blob(data=b"\xfb\xff\xfe", wait=timedelta(seconds=2)) in seen


class Noted(river.Worker[Email]):
    def __init__(self) -> None:
        self.done: list[int] = []

    async def work(self, job: river.Job[Email]) -> None:
        self.done.append(job.id)


async def test_a_pool_with_a_client_side_cursor_factory(db_url: str) -> None:
    """An application's pool made with ``cursor_factory=AsyncClientCursor`` (as some
    PgBouncer setups use): statements ran on that factory's cursors, which cannot fetch the
    binary results the fetch and insert_many ask for, so no job was ever fetched."""
    from psycopg_pool import AsyncConnectionPool

    worker = Noted()
    pool = AsyncConnectionPool(
        db_url, kwargs={"autocommit": True, "cursor_factory": psycopg.AsyncClientCursor},
        open=False,
    )  # fmt: skip
    async with pool, started_client(pool, fast_config(make_workers(worker))) as client:
        results = await client.insert_many([Email(to="a@example.com"), Email(to="b@example.com")])
        ids = [r.job.id for r in results]
        await wait_for(lambda: sorted(worker.done) == sorted(ids), message="both worked")
