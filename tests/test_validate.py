"""Values Postgres or River (Go) cannot store are refused before any SQL, on every write path.

Rules (river/_validate.py): NUL characters and lone surrogates in strings and keys, NaN and
infinities, integers outside int64, an encoded size over ``Config.max_encoded_size``. Each
refusal is a ValidationError naming the JSON path and the rule, and nothing is written: a
batch with one bad job among good ones writes no row.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pydantic
import pytest
from helpers import fast_config, make_workers, open_db, started_client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import river
import river._admin
import river._executor
from river._maintenance import PeriodicJobEnqueuer
from river._validate import MAX_OUTPUT_BYTES, jsonb_dumps, jsonb_safe

pytestmark = pytest.mark.anyio

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
#: The largest integer accepted: Go reads it into a uint64 field (PROTOCOL.md 5.3).
UINT64_MAX = 2**64 - 1
SMALL_CAP = 1024


class Item(pydantic.BaseModel):
    name: str
    qty: int = 0


class Order(river.JobArgs):
    """Typed fields only: encoded by pydantic's serializer (the fast path)."""

    kind: ClassVar[str] = "validate_order"
    items: list[Item] = pydantic.Field(default_factory=list)
    note: str = ""
    ratio: float = 0.0
    count: int = 0


class Blob(river.JobArgs):
    """An ``Any`` field: encoded by the exact path."""

    kind: ClassVar[str] = "validate_blob"
    value: Any = None


NUL = "NUL character (U+0000)"
SURROGATE = "lone surrogate"
RANGE = "outside [-2**63, 2**64 - 1]"
SIZE = "encoded size"

THREE_ITEMS = [Item(name="a"), Item(name="b"), Item(name="c")]

# (description, args, opts, path, rule): path is relative to the job (no "jobs[i]." prefix).
BAD_JOBS: list[tuple[str, river.JobArgs, river.InsertOpts | None, str, str]] = [
    ("NUL in a string", Order(items=[*THREE_ITEMS, Item(name="x\x00")]), None,
     "args.items[3].name", NUL),
    ("NUL in a key", Blob(value={"ok": 1, "k\x00": 1}), None,
     'args.value["k\\u0000"]', f"key contains a {NUL}"),
    ("NUL in metadata", Order(), river.InsertOpts(metadata={"k": "a\x00"}),
     'metadata["k"]', NUL),
    ("NUL in a metadata key", Order(), river.InsertOpts(metadata={"a\x00": 1}),
     'metadata["a\\u0000"]', f"key contains a {NUL}"),
    ("lone surrogate, typed", Order(note="x\ud800"), None, "args.note", SURROGATE),
    ("lone surrogate, Any", Blob(value=["ok", {"s": "\udfff"}]), None,
     'args.value[1]["s"]', SURROGATE),
    ("lone surrogate in metadata", Order(), river.InsertOpts(metadata={"s": "\udc00"}),
     'metadata["s"]', SURROGATE),
    ("NaN in Any", Blob(value={"x": [1.0, math.nan]}), None, 'args.value["x"][1]', "is NaN"),
    ("NaN, typed", Order(ratio=math.nan), None, "args.ratio", "is NaN"),
    ("+Infinity, typed", Order(ratio=math.inf), None, "args.ratio", "is +Infinity"),
    ("-Infinity in Any", Blob(value=-math.inf), None, "args.value", "is -Infinity"),
    ("-Infinity in metadata", Order(), river.InsertOpts(metadata={"m": -math.inf}),
     'metadata["m"]', "is -Infinity"),
    ("2**64, typed", Order(count=UINT64_MAX + 1), None, "args.count", RANGE),
    ("-2**63-1, nested", Order(items=[Item(name="a", qty=INT64_MIN - 1)]), None,
     "args.items[0].qty", RANGE),
    ("10**30 in Any", Blob(value={"n": 10**30}), None, 'args.value["n"]', RANGE),
    ("2**64 in metadata", Order(), river.InsertOpts(metadata={"n": [2**64]}),
     'metadata["n"][0]', RANGE),
    ("args over the cap", Blob(value="x" * SMALL_CAP), None, "args", SIZE),
    ("metadata over the cap", Order(), river.InsertOpts(metadata={"s": "é" * (SMALL_CAP // 2)}),
     "metadata", SIZE),
]  # fmt: skip

GOOD: list[river.InsertManyItem] = [Order(note="fine"), (Blob(value={"a": [1, 2.5]}), None)]

ASYNC_FLAVOURS = [
    "insert",
    "insert_tx",
    "insert_many",
    "insert_many_tx",
    "insert_many_fast",
    "insert_many_fast_tx",
]


def _config() -> river.Config:
    return river.Config(max_encoded_size=SMALL_CAP)


def _expect(info: pytest.ExceptionInfo[river.ValidationError], path: str, rule: str) -> None:
    error = info.value
    assert type(error) is river.ValidationError
    assert error.field == path, str(error)
    assert rule in error.rule, str(error)
    assert str(error).startswith(f"{path}: ")


async def _insert_async(
    client: river.AsyncClient,
    conn: psycopg.AsyncConnection[Any],
    flavour: str,
    args: river.JobArgs,
    opts: river.InsertOpts | None,
) -> object:
    batch: list[river.InsertManyItem] = [*GOOD, (args, opts)]
    if flavour == "insert":
        return await client.insert(args, opts)
    if flavour == "insert_tx":
        return await client.insert_tx(conn, args, opts)
    if flavour == "insert_many":
        return await client.insert_many(batch)
    if flavour == "insert_many_tx":
        return await client.insert_many_tx(conn, batch)
    if flavour == "insert_many_fast":
        return await client.insert_many_fast(batch)
    return await client.insert_many_fast_tx(conn, batch)


def _insert_sync(
    client: river.Client,
    conn: psycopg.Connection[Any],
    flavour: str,
    args: river.JobArgs,
    opts: river.InsertOpts | None,
) -> object:
    batch: list[river.InsertManyItem] = [*GOOD, (args, opts)]
    if flavour == "insert":
        return client.insert(args, opts)
    if flavour == "insert_tx":
        return client.insert_tx(conn, args, opts)
    if flavour == "insert_many":
        return client.insert_many(batch)
    if flavour == "insert_many_tx":
        return client.insert_many_tx(conn, batch)
    if flavour == "insert_many_fast":
        return client.insert_many_fast(batch)
    return client.insert_many_fast_tx(conn, batch)


async def test_async_client_refuses_bad_values_on_every_insert_path(db_url: str) -> None:
    async with (
        river.AsyncClient(db_url, _config()) as client,
        await psycopg.AsyncConnection.connect(db_url) as conn,
    ):
        for flavour in ASYNC_FLAVOURS:
            for desc, args, opts, path, rule in BAD_JOBS:
                with pytest.raises(river.ValidationError) as info:
                    await _insert_async(client, conn, flavour, args, opts)
                single = flavour in ("insert", "insert_tx")
                _expect(info, path if single else f"jobs[2].{path}", rule)
                assert not conn.info.transaction_status, (flavour, desc)  # no SQL was sent
    async with open_db(db_url) as db:
        assert await db.count() == 0


def test_sync_client_refuses_bad_values_on_every_insert_path(db_url: str) -> None:
    with river.Client(db_url, _config()) as client, psycopg.connect(db_url) as conn:
        for flavour in ASYNC_FLAVOURS:
            for desc, args, opts, path, rule in BAD_JOBS:
                with pytest.raises(river.ValidationError) as info:
                    _insert_sync(client, conn, flavour, args, opts)
                single = flavour in ("insert", "insert_tx")
                _expect(info, path if single else f"jobs[2].{path}", rule)
                assert not conn.info.transaction_status, (flavour, desc)
        assert conn.execute("SELECT count(*) FROM river_job").fetchone() == (0,)


async def test_bad_job_first_in_a_batch_and_jobs_with_options(db_url: str) -> None:
    """Fast-path jobs (no options) and full-path jobs name their batch index alike."""
    async with river.AsyncClient(db_url, _config()) as client:
        with pytest.raises(river.ValidationError) as info:
            await client.insert_many([Order(count=2**64), *GOOD])
        _expect(info, "jobs[0].args.count", RANGE)
        with pytest.raises(river.ValidationError) as info:
            await client.insert_many(
                [*GOOD, (Order(note="\x00"), river.InsertOpts(queue="other", priority=2))]
            )
        _expect(info, "jobs[2].args.note", NUL)
        assert await client.insert_many_fast([*GOOD, *GOOD]) == 4
    async with open_db(db_url) as db:
        assert await db.count() == 4


async def test_default_cap_is_16_mib(db_url: str) -> None:
    cap = 16 * 1024 * 1024
    assert river.Config().max_encoded_size == cap
    async with river.AsyncClient(db_url) as client:
        # {"value":"..."}: 12 characters around the string.
        with pytest.raises(river.ValidationError) as info:
            await client.insert(Blob(value="x" * (cap - 11)))
        _expect(info, "args", SIZE)
        assert f"encoded size {cap + 1} bytes is over the limit of {cap} bytes" in str(info.value)
        # Counted in UTF-8 bytes, not characters.
        with pytest.raises(river.ValidationError) as info:
            await client.insert(Blob(value="é" * (cap // 2)))
        _expect(info, "args", SIZE)
    async with open_db(db_url) as db:
        assert await db.count() == 0


async def test_values_at_the_limits_are_stored_exactly(db_url: str) -> None:
    """No false refusals: the largest valid values, a real U+FFFD, text that only looks like
    an escape, digits in strings, big floats written in plain digits, a value exactly at the
    cap."""
    value = {
        "max": INT64_MAX,
        "unsigned_max": UINT64_MAX,  # a Go uint64 field's largest value
        "min": INT64_MIN,
        "replacement": "\ufffd",
        "looks_escaped": "\\u0000 and \\ufffd and \\\\u0000",
        "digits": "12345678901234567890123456789",
        "big_float": 1e20,
        "emoji": "😀",
        "html": "<&>\u2028",
    }
    order = Order(items=[Item(name="\\u0000", qty=INT64_MIN)], note="\ufffd", count=INT64_MAX)
    exact = Blob(value="x" * (SMALL_CAP - 12))
    async with river.AsyncClient(db_url, _config()) as client:
        results = await client.insert_many(
            [Blob(value=value), order, exact, (Order(), river.InsertOpts(metadata=value))]
        )
        assert await client.insert_many_fast([Blob(value=value), order, exact]) == 3
    async with open_db(db_url) as db:
        rows = {r["id"]: r for r in await db.jobs()}
        assert len(rows) == 7
        assert rows[results[0].job.id]["args"] == {"value": value}
        assert rows[results[1].job.id]["args"] == order.model_dump()
        assert rows[results[2].job.id]["args"] == {"value": "x" * (SMALL_CAP - 12)}
        assert rows[results[3].job.id]["metadata"] == value


def test_config_max_encoded_size_is_validated() -> None:
    for bad in (0, 1, True, 1.5, 255 * 1024 * 1024 + 1, "16MB"):
        with pytest.raises(river.InvalidConfigError, match="max_encoded_size"):
            river.Config(max_encoded_size=bad)  # type: ignore[arg-type]
    assert river.Config(max_encoded_size=255 * 1024 * 1024).max_encoded_size == 255 * 1024**2


# --- writes other than inserts ------------------------------------------------------------------

# (value, path below the field, rule)
BAD_VALUES: list[tuple[Any, str, str]] = [
    ({"k": "a\x00"}, '["k"]', NUL),
    ({"k\x00": 1}, '["k\\u0000"]', f"key contains a {NUL}"),
    (["\ud83d"], "[0]", SURROGATE),
    ({"x": math.nan}, '["x"]', "is NaN"),
    ([1, math.inf], "[1]", "is +Infinity"),
    ({"n": UINT64_MAX + 1}, '["n"]', RANGE),
]


class Staging(river.JobArgs):
    kind: ClassVar[str] = "validate_staging"


class StagingWorker(river.Worker[Staging]):
    def __init__(self) -> None:
        self.refused: list[river.ValidationError] = []

    def _refused(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except river.ValidationError as exc:
            self.refused.append(exc)

    async def work(self, job: river.Job[Staging]) -> None:
        for value, _, _ in BAD_VALUES:
            self._refused(river.record_output, value)
            self._refused(river.set_metadata, "result", value)
            self._refused(river.set_metadata, "bad\x00key", 1)
        river.set_metadata("kept", "fine")


async def test_record_output_and_set_metadata_refuse_at_the_call(db_url: str) -> None:
    worker = StagingWorker()
    async with started_client(db_url, fast_config(make_workers(worker))) as client:
        job = (await client.insert(Staging())).job
        async with open_db(db_url) as db:
            row = await db.wait_state(job.id, "completed")
    assert row["metadata"] == {"kept": "fine"}  # nothing refused was staged
    assert len(worker.refused) == 3 * len(BAD_VALUES)
    for i, (_, path, rule) in enumerate(BAD_VALUES):
        output, metadata, key = worker.refused[3 * i : 3 * i + 3]
        assert output.field == f"output{path}", str(output)
        assert rule in output.rule, str(output)
        assert metadata.field == f'metadata["result"]{path}', str(metadata)
        assert rule in metadata.rule, str(metadata)
        assert key.field == 'metadata["bad\\u0000key"]', str(key)
        assert NUL in key.rule, str(key)


async def test_job_update_job_complete_tx_and_queue_update_refuse(db_url: str) -> None:
    async with river.AsyncClient(db_url) as client:
        job = (await client.insert(Staging())).job
        await client.insert(Staging(), river.InsertOpts(queue="reports"))
        for value, path, rule in BAD_VALUES:
            with pytest.raises(river.ValidationError) as info:
                await client.job_update(job.id, output=value)
            _expect(info, f"output{path}", rule)
            async with await psycopg.AsyncConnection.connect(db_url) as conn:
                # Refused before the (fenced) update: the job is not even running.
                with pytest.raises(river.ValidationError) as info:
                    await river.job_complete_tx(conn, job, metadata={"m": value})
                _expect(info, f'metadata["m"]{path}', rule)
            with pytest.raises(river.ValidationError) as info:
                await client.queue_update("no_such_queue", metadata={"m": value})
            _expect(info, f'metadata["m"]{path}', rule)
        assert (await client.job_get(job.id)).metadata == {}
    async with open_db(db_url) as db:
        assert await db.count("state = 'available'") == 2


def test_sync_job_update_refuses(db_url: str) -> None:
    with river.Client(db_url) as client:
        job = client.insert(Staging()).job
        with pytest.raises(river.ValidationError) as info:
            client.job_update(job.id, output={"rows": [{"n": 1}, {"n": -(2**70)}]})
        _expect(info, 'output["rows"][1]["n"]', RANGE)
        assert client.job_get(job.id).metadata == {}


# --- periodic jobs --------------------------------------------------------------------------------


async def test_periodic_job_with_bad_values_is_skipped_alone(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = river.Config(
        max_encoded_size=SMALL_CAP,
        periodic_jobs=[
            river.PeriodicJob(
                river.PeriodicInterval(60), lambda: Blob(value=[math.nan]), run_on_start=True
            ),
            river.PeriodicJob(
                river.PeriodicInterval(60),
                lambda: (Order(), river.InsertOpts(metadata={"k": "\x00"})),
                run_on_start=True,
                id="bad_meta",
            ),
            river.PeriodicJob(
                river.PeriodicInterval(60),
                lambda: Blob(value="x" * SMALL_CAP),  # over this client's cap
                run_on_start=True,
                id="too_big",
            ),
            river.PeriodicJob(
                river.PeriodicInterval(60), lambda: Order(note="good"), run_on_start=True
            ),
        ],
    )
    async with river.AsyncClient(db_url, config) as client:
        enqueuer = client._periodic
        with caplog.at_level(logging.ERROR, logger="river.maintenance"):
            assert await enqueuer.run_once(on_start=True) == 1
        assert "args.value[0]: is NaN" in caplog.text
        assert 'bad_meta: constructed job not inserted: metadata["k"]: contains a NUL' in (
            caplog.text
        )
        assert "too_big: constructed job not inserted: args: encoded size" in caplog.text
        # A standalone enqueuer defaults to the default cap.
        alone = PeriodicJobEnqueuer(
            [river.PeriodicJob(river.PeriodicInterval(60), lambda: Blob(value=2**64))],
            client._insert_periodic,
            clock=lambda: datetime(2024, 1, 1, tzinfo=UTC),
        )
        alone._next[id(alone.jobs[0])] = datetime(2024, 1, 1, tzinfo=UTC)
        assert await alone.run_once() == 0
    async with open_db(db_url) as db:
        rows = await db.jobs()
        assert [r["args"] for r in rows] == [{"items": [], "note": "good", "ratio": 0, "count": 0}]


# --- property: refused, or stored and read back equal ------------------------------------------

_BAD_TEXT = st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\udbff\udbff"])
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats()  # NaN and infinities included
    | st.text(max_size=8)
    | _BAD_TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=4) | _BAD_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def _breaks_a_rule(value: Any) -> bool:
    """An oracle independent of river/_validate.py."""
    if isinstance(value, str):
        return any(c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return not INT64_MIN <= value <= UINT64_MAX
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_breaks_a_rule(v) for v in value)
    return any(_breaks_a_rule(k) or _breaks_a_rule(v) for k, v in value.items())


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or want is None:
        return got is want
    if isinstance(want, float):
        # jsonb keeps numbers as numeric: 1e300 reads back as an integer of 301 digits.
        return type(got) in (int, float) and float(got) == want
    if isinstance(want, int):
        return type(got) is int and got == want
    if isinstance(want, str):
        return got == want
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same, got, want))
    return (
        isinstance(got, dict)
        and got.keys() == want.keys()
        and all(_same(got[k], want[k]) for k in want)
    )


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=_JSON, in_metadata=st.booleans())
def test_any_value_is_refused_or_round_trips(
    conn: psycopg.Connection[Any], value: Any, in_metadata: bool
) -> None:
    client = river.Client()
    if in_metadata:
        item: tuple[river.JobArgs, river.InsertOpts | None] = (
            Order(),
            river.InsertOpts(metadata={"v": value}),
        )
    else:
        item = (Blob(value=value), None)
    if _breaks_a_rule(value):
        event("refused")
        with pytest.raises(river.ValidationError) as info:
            client.insert_tx(conn, *item)
        assert info.value.field.startswith("metadata" if in_metadata else "args")
        return
    event("stored")
    result = client.insert_tx(conn, *item)
    row = conn.execute(
        "SELECT args::text, metadata::text FROM river_job WHERE id = %s", (result.job.id,)
    ).fetchone()
    assert row is not None
    stored = json.loads(row[1])["v"] if in_metadata else json.loads(row[0])["value"]
    assert _same(stored, value), (stored, value)


class SyncStaging(river.JobArgs):
    kind: ClassVar[str] = "validate_sync_staging"


class SyncStagingWorker(river.Worker[SyncStaging]):
    def __init__(self) -> None:
        self.refused: list[str] = []

    def work(self, job: river.Job[SyncStaging]) -> None:
        try:
            river.record_output({"rows": [1, 2**64]})
        except river.ValidationError as exc:
            self.refused.append(str(exc))


async def test_sync_worker_gets_the_error_too(db_url: str) -> None:
    """record_output from a sync (threaded) worker raises in the worker's thread."""
    worker = SyncStagingWorker()
    async with started_client(db_url, fast_config(make_workers(worker))) as client:
        job = (await client.insert(SyncStaging())).job
        async with open_db(db_url) as db:
            row = await db.wait_state(job.id, "completed")
    assert row["metadata"] == {}
    assert len(worker.refused) == 1
    assert worker.refused[0].startswith('output["rows"][1]: integer 18446744073709551616 is ')


# --------------------------------------------------------------------------------------------
# Text the runtime writes itself (error texts, tracebacks): replaced, never refused
# --------------------------------------------------------------------------------------------


def test_jsonb_safe_replaces_what_jsonb_cannot_hold() -> None:
    value = {"k\x00": ["a\ud800", ("b\x00c", 1)], "ok": 2.5, "n": None}
    assert jsonb_safe(value) == {"k\ufffd": ["a\ufffd", ["b\ufffdc", 1]], "ok": 2.5, "n": None}
    assert jsonb_safe("plain \U0001f600") == "plain \U0001f600"  # a pair is not lone


def test_jsonb_dumps_sanitises_only_when_needed() -> None:
    clean = {"error": "ValueError: boom", "trace": "line\n\ufffd"}
    assert jsonb_dumps(clean) == json.dumps(clean)
    text = jsonb_dumps({"error": "a\x00b", "trace": "\udfff"})
    assert json.loads(text) == {"error": "a\ufffdb", "trace": "\ufffd"}
    assert "\\u0000" not in text
    assert "\\udfff" not in text


def test_one_sanitiser_and_one_output_cap() -> None:
    """The sanitiser's pattern and the 32 MiB output cap are defined once (river/_validate.py)
    and imported where they are used."""
    assert MAX_OUTPUT_BYTES == 32 * 1024 * 1024
    assert river._executor.MAX_OUTPUT_BYTES is MAX_OUTPUT_BYTES
    assert river._admin._MAX_OUTPUT_BYTES is MAX_OUTPUT_BYTES
    offenders = []
    for path in sorted(Path(river.__file__).parent.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "_validate.py" and (
            "32 * 1024 * 1024" in text or '"[\\x00\\ud800-\\udfff]"' in text
        ):
            offenders.append(path.name)
    assert not offenders
