"""The notifier's recovery and the polling safety net (PROTOCOL.md 7.4, 7.5).

Notifications are hints: a LISTEN connection killed with ``pg_terminate_backend`` is replaced
(with backoff) and every producer fetches after the reconnect, since notifications may have
been lost meanwhile; a job inserted with no NOTIFY at all is found by polling; ``poll_only``
opens no LISTEN connection and still works jobs. A silently dead link (no bytes, no error) is
found by the liveness probe.

Notifications are untrusted input too (any role can NOTIFY): a payload that is not a valid
notice (deeply nested, oversized, not JSON, wrong types, forged ids) is dropped with a DEBUG
line, never reaches a consumer with the wrong types, and never stops the listener.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
import psycopg
import pytest
from conftest import _drop_database, _uri_with_db
from helpers import (
    DB,
    assert_stays,
    fast_config,
    make_workers,
    open_db,
    started_client,
    wait_for,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from netproxy import CuttableProxy, server_address
from psycopg import sql

import river
from river._elector import request_resign_payload
from river._insert import NotifyLimiter
from river._notifier import (
    MAX_DEPTH,
    MAX_PAYLOAD_CHARS,
    TOPICS,
    CancelNotice,
    InsertNotice,
    LeadershipNotice,
    Notice,
    Notifier,
    QueueMetadataNotice,
    QueueStateNotice,
    _nesting_within,
    parse_notice,
)

pytestmark = pytest.mark.anyio


class Ping(river.JobArgs):
    kind: ClassVar[str] = "notifier_ping"
    n: int = 0


class PingWorker(river.Worker[Ping]):
    def __init__(self) -> None:
        self.done: list[int] = []

    async def work(self, job: river.Job[Ping]) -> None:
        self.done.append(job.args.n)


async def listen_backends(db: DB) -> list[int]:
    """Backends of this database whose last statement was a LISTEN, or the UNLISTEN that ends
    the start-up check of notification delivery (notifier connections)."""
    rows = await db.all(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND query ~* '^(UN)?LISTEN ' AND pid <> pg_backend_pid()"
    )
    return [r["pid"] for r in rows]


def notify_every_insert(client: river.AsyncClient) -> None:
    """Let every insert of ``client`` send its notification. The client's limiter (PROTOCOL 7.3)
    suppresses one that follows the last within the fetch cooldown; the producer's trailing
    fetch finds such a job only if its insert committed in time, and a loaded machine can
    commit it later: then only the poll, 60 s away in these tests, would start it."""
    client._limiter = NotifyLimiter(0.0)


async def test_notifier_reconnects_after_its_backend_is_terminated(db_url: str) -> None:
    # A poll interval far longer than the test: only notifications and the reconnect wake-up
    # can get a job started.
    config = fast_config(
        make_workers(PingWorker()), fetch_poll_interval=60.0, leader_election=False
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        notifier = client._runtime.notifier
        assert notifier is not None
        await notifier.wait_connected()
        first_pid = notifier.backend_pid
        assert first_pid is not None
        assert notifier.connections == 1
        assert await listen_backends(db) == [first_pid]

        # Works through notifications before the kill.
        before = await client.insert(Ping(n=1))
        await db.wait_state(before.job.id, "completed", timeout=3)

        killed = await db.scalar("SELECT pg_terminate_backend(%(pid)s) AS ok", {"pid": first_pid})
        assert killed
        # Inserted while the notifier is down (or about to notice): its notification is lost.
        lost = await client.insert(Ping(n=2))
        started = time.monotonic()
        await db.wait_state(lost.job.id, "completed", timeout=10)
        # Found after the reconnect (backoff <= 0.5 s at the first failure), long before the
        # poll, 60 s away (the bound leaves room for a busy machine).
        assert time.monotonic() - started < 20
        await wait_for(
            lambda: notifier.connections >= 2, timeout=10, message="the notifier reconnected"
        )
        assert notifier.backend_pid not in (None, first_pid)
        assert client._runtime.notifier is notifier

        # Notifications flow again on the new connection.
        after = await client.insert(Ping(n=3))
        started = time.monotonic()
        await db.wait_state(after.job.id, "completed", timeout=15)
        assert time.monotonic() - started < 10  # the poll is 60 s away
        assert await listen_backends(db) == [notifier.backend_pid]


async def _state_is(db: DB, job_id: int, state: str) -> bool:
    return bool(await db.state(job_id) == state)


async def test_a_pause_missed_while_the_listener_was_away_is_obeyed_after_the_reconnect(
    db_url: str,
) -> None:
    """After a reconnect the client re-reads every queue's row before any fetch: it woke every
    producer instead, and a queue paused while the listener was away fetched (its pause known
    only at its next poll, a minute away here)."""
    config = fast_config(
        make_workers(PingWorker()), fetch_poll_interval=60.0, leader_election=False
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        notifier = client._runtime.notifier
        assert notifier is not None
        await notifier.wait_connected()
        producer = client.queues.producers["default"]
        await wait_for(lambda: producer.polled >= 1, message="the first poll")
        assert not client.queues.get("default").paused
        # Paused, and a job inserted, with no notification of either (as if sent while the
        # listener was away).
        await db.execute("UPDATE river_queue SET paused_at = now() WHERE name = 'default'")
        job_id = await db.scalar(
            "INSERT INTO river_job (kind, args, queue) VALUES ('ping', '{\"n\": 1}', 'default')"
            " RETURNING id"
        )
        await db.scalar("SELECT pg_terminate_backend(%(pid)s) AS ok", {"pid": notifier.backend_pid})
        await wait_for(lambda: notifier.connections >= 2, message="the notifier reconnected")
        print("PAUSED-AT-RECONNECT", client.queues.get("default").paused, await db.state(job_id))
        await wait_for(lambda: client.queues.get("default").paused, timeout=5, message="paused")
        await assert_stays(lambda: _state_is(db, job_id, "available"), 0.5, message="never fetched")


async def test_stop_closes_the_listen_connection_even_when_psycopg_yields(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg's waits may yield to the event loop with nothing to wait for (after ~5 ms
    without one); under the stop's cancellation that yield raised again inside psycopg's
    ``async with conn`` exit, before its close: the LISTEN session stayed open until the
    object was collected (a ResourceWarning, seen as a rare unraisable-warning failure)."""
    import psycopg.waiting

    monkeypatch.setattr(psycopg.waiting, "MAX_BUSY_TIME", 0.0)  # yield in every such wait
    for _ in range(3):
        config = fast_config(make_workers(), leader_election=False)
        async with started_client(db_url, config) as client:
            runtime = client._runtime
            assert runtime is not None
            assert runtime.notifier is not None
            await runtime.notifier.wait_connected()
            conn = runtime.notifier._conn
            assert conn is not None
            await client.stop()
        assert conn.closed


async def test_job_inserted_without_notification_is_found_by_polling(db_url: str) -> None:
    config = fast_config(make_workers(PingWorker()), fetch_poll_interval=0.3)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        # The poll at start-up and the next tick are over: the start-up fetch is long done,
        # and only a poll can find the job inserted next.
        producer = client.queues.producers["default"]
        await wait_for(lambda: producer.polled >= 2, timeout=5, message="the first poll tick")
        job_id = await db.scalar(
            "INSERT INTO river_job (kind, args) VALUES ('notifier_ping', '{\"n\": 7}') RETURNING id"
        )
        started = time.monotonic()
        await db.wait_state(job_id, "completed", timeout=10)
        # A poll tick (0.3 s, jittered) and a fetch; room for a busy machine. Nothing else
        # would find it: the client does not listen.
        assert time.monotonic() - started < 0.3 * 1.1 + 3.0


async def test_poll_only_opens_no_listen_connection_and_still_works_jobs(db_url: str) -> None:
    worker = PingWorker()
    config = fast_config(
        make_workers(worker),
        poll_only=True,
        fetch_poll_interval=0.2,
        leader_elect_interval=0.2,
        leader_ttl=1.5,
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        assert client._runtime.notifier is None
        assert await listen_backends(db) == []
        results = await client.insert_many([Ping(n=i) for i in range(5)])
        for r in results:
            await db.wait_state(r.job.id, "completed", timeout=5)
        assert sorted(worker.done) == list(range(5))
        # The elector works by polling alone.
        await wait_for(lambda: client.is_leader, timeout=5, message="poll-only client leads")
        assert await listen_backends(db) == []
    # The default mode does listen (the check above is not vacuous).
    config = fast_config(make_workers(PingWorker()), leader_election=False)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        assert client._runtime.notifier is not None
        await client._runtime.notifier.wait_connected()
        assert await listen_backends(db) == [client._runtime.notifier.backend_pid]


async def test_probe_detects_a_silently_dead_connection(db_url: str) -> None:
    received: list[Notice] = []
    reconnects: list[float] = []
    async with CuttableProxy(*server_address(db_url)) as proxy, open_db(db_url) as db:
        notifier = Notifier(
            proxy.url(db_url, "rq-notifier"),
            None,
            received.append,
            on_reconnect=lambda: reconnects.append(time.monotonic()),
            probe_interval=0.3,
            probe_timeout=0.3,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(notifier.run)
            await notifier.wait_connected()
            assert notifier.channel_schema == "public"
            await db.execute("SELECT pg_notify('public.river_insert', '{\"queue\": \"q\"}')")
            await wait_for(lambda: received, timeout=5, message="a notification")
            assert received == [InsertNotice("q")]

            # The link goes silent: no error, no bytes. Only the probe can tell.
            proxy.freeze()
            frozen_at = time.monotonic()
            await wait_for(
                lambda: notifier.connections >= 2, timeout=10, message="reconnect after probe"
            )
            # Quiet for probe_interval, then a probe_timeout deadline, then backoff (<= 0.5 s),
            # and a new connection; the defaults (5 s + 5 s) would take over 10 s.
            assert time.monotonic() - frozen_at < 0.3 + 0.3 + 0.5 + 5.0
            assert len(reconnects) == 1

            # Non-JSON and non-object payloads are ignored; valid ones still arrive.
            for payload in ("not json", "[1, 2]", '{"queue": "r"}'):
                await db.execute("SELECT pg_notify('public.river_insert', %(p)s)", {"p": payload})
            await wait_for(lambda: len(received) >= 2, timeout=5, message="second notification")
            assert received[1:] == [InsertNotice("r")]
            tg.cancel_scope.cancel()
        assert notifier.backend_pid is None


class EventWorker(river.Worker[Ping]):
    """Sets an event per job number, so a test can wait for one job with a deadline."""

    def __init__(self) -> None:
        self.events: dict[int, anyio.Event] = {}

    def event(self, n: int) -> anyio.Event:
        return self.events.setdefault(n, anyio.Event())

    async def work(self, job: river.Job[Ping]) -> None:
        self.event(job.args.n).set()


def river_records_above_debug(caplog: pytest.LogCaptureFixture, since: int) -> list[str]:
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records[since:]
        if r.name.startswith("river") and r.levelno > logging.DEBUG
    ]


async def test_deeply_nested_payload_on_every_channel_is_dropped(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # 3,000 nested arrays: json.loads would raise RecursionError. A poll interval far longer
    # than the test: only a live listener can get the last job started in time.
    caplog.set_level(logging.DEBUG, logger="river")
    worker = EventWorker()
    config = fast_config(make_workers(worker), fetch_poll_interval=60.0)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        notifier = client._runtime.notifier
        assert notifier is not None
        await notifier.wait_connected()
        await wait_for(lambda: client.is_leader, timeout=10, message="the client leads")
        notify_every_insert(client)
        await client.insert(Ping(n=1))
        with anyio.fail_after(5):
            await worker.event(1).wait()

        since = len(caplog.records)
        await db.execute(
            "SELECT pg_notify('public.' || topic,"
            " '{\"queue\":' || repeat('[', 3000) || '1' || repeat(']', 3000) || '}')"
            " FROM unnest(ARRAY['river_insert', 'river_control', 'river_leadership']) AS topic"
        )
        await client.insert(Ping(n=2))
        with anyio.fail_after(5):
            await worker.event(2).wait()

        assert notifier.connections == 1
        assert client._runtime.notifier is notifier
        assert client.is_leader
        dropped = [
            r
            for r in caplog.records[since:]
            if r.name == "river.notifier" and "dropped" in r.getMessage()
        ]
        assert len(dropped) == 3, [r.getMessage()[:200] for r in caplog.records[since:]]
        assert river_records_above_debug(caplog, since) == []


# ---------------------------------------------------------------------------------------------
# Payloads are untrusted: the corpus.

#: Text Postgres accepts in a NOTIFY payload (no NUL, no lone surrogates).
_pg_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=60
)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | _pg_text
    | st.text(max_size=10)  # lone surrogates survive, \u-escaped, into the decoded value
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_pg_text, inner, max_size=4),
    max_leaves=12,
)
# Values for the known fields: right types, wrong types, and the confusable ones (True is an
# int to isinstance, 5.0 is no id), forged and out-of-range ids.
_forged_ids = st.sampled_from([0, -1, 2**63 - 1, 2**63, -(2**63), 1.0, 7.5, True, False, "7"])
_field_values = (
    _json_values
    | _forged_ids
    | st.integers(-(2**64), 2**64)
    | st.sampled_from(["default", "*", "", "pause", "cancel"])
)
_actions = st.sampled_from(
    ["pause", "resume", "cancel", "metadata_changed", "resigned", "request_resign", "PAUSE"]
)
_shaped = st.fixed_dictionaries(
    {},
    optional={
        "action": _actions | _field_values,
        "queue": _field_values,
        "job_id": _field_values,
        "leader_id": _field_values,
        "extra": _json_values,
    },
).map(json.dumps)


def _nested(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return '{"queue":' + opener * depth + "1" + closer * depth + "}"


# Around the limit, and deep enough that json.loads alone would raise RecursionError (about
# 1,000 levels), with brackets and escaped quotes inside the strings along the way.
_deep = (
    st.builds(
        _nested, st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2) | st.integers(900, 3000), st.just("[")
    )
    | st.builds(_nested, st.integers(900, 1500), st.just('{"a":'))
    | st.builds(lambda n: "[" * n + '"\\"]}"' + "]" * n, st.integers(900, 3000))
)
# Brackets inside strings (with escaped quotes) do not count; unbalanced ones do not break the
# scan.
_tricky_nesting = st.builds(
    lambda n, pre: pre + '"' + '\\"[{' * n + '"' + "]" * n + "[" * n,
    st.integers(0, 1300),
    st.sampled_from(["", "[", '{"queue":', "]]]"]),
)
_huge_numbers = st.builds(
    lambda digits, key, sign: f'{{"action":"cancel","{key}":{sign}{"9" * digits}}}',
    st.integers(1, 7900),
    st.sampled_from(["job_id", "queue"]),
    st.sampled_from(["", "-", "0.", "1e"]),
)


def _fill(n: int, ch: str) -> str:
    # An insert-shaped payload of n UTF-8 bytes at most (Postgres: under 8000 bytes).
    room = (n - len('{"queue":""}')) // len(ch.encode())
    return '{"queue":"' + ch * room + '"}'


_oversized = st.builds(_fill, st.integers(6000, 7999), st.sampled_from(["x", "é", "€", "😀"]))
#: Everything that may arrive on a channel, as Postgres accepts it (under 8000 bytes).
db_payloads = (
    _pg_text
    | _json_values.map(json.dumps)
    | _shaped
    | _deep
    | _tricky_nesting
    | _huge_numbers
    | _oversized
).filter(lambda payload: len(payload.encode()) < 8000)
#: Beyond what Postgres delivers: any str at all (surrogates, NUL, over the size bound).
any_payloads = db_payloads | st.text() | st.builds(lambda n: "[" * n, st.integers(7990, 9000))


def check_notice(notice: Notice) -> None:
    """A notice's fields have exactly their declared types (bool is no int)."""
    if isinstance(notice, InsertNotice):
        assert type(notice.queue) is str
    elif isinstance(notice, QueueStateNotice):
        assert type(notice.queue) is str
        assert type(notice.paused) is bool
    elif isinstance(notice, QueueMetadataNotice):
        assert type(notice.queue) is str
    elif isinstance(notice, CancelNotice):
        assert type(notice.job_id) is int
        assert 1 <= notice.job_id < 2**63
        assert notice.queue is None or type(notice.queue) is str
    else:
        assert isinstance(notice, LeadershipNotice)
        assert notice.action in ("resigned", "request_resign")
        assert type(notice.leader_id) is str


# ---------------------------------------------------------------------------------------------
# Unit level: parse_notice and Notifier._handle, no database.


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        # As River (Go) and this library send them (json_build_object puts spaces around ':').
        ("river_insert", '{"queue":"default"}', InsertNotice("default")),
        ("river_insert", '{"queue": "q", "future_field": [1, {"x": 2}]}', InsertNotice("q")),
        ("river_control", '{"action":"pause","queue":"*"}', QueueStateNotice("*", paused=True)),
        ("river_control", '{"action":"resume","queue":"a"}', QueueStateNotice("a", paused=False)),
        (
            "river_control",
            '{"action" : "cancel", "job_id" : 42, "queue" : "default"}',
            CancelNotice(42, "default"),
        ),
        (
            "river_control",
            '{"action":"cancel","job_id":9223372036854775807}',
            CancelNotice(2**63 - 1, None),
        ),
        (
            "river_leadership",
            '{"leader_id" : "c1", "action" : "resigned"}',
            LeadershipNotice("resigned", "c1"),
        ),
        ("river_leadership", request_resign_payload(), LeadershipNotice("request_resign", "")),
        ("river_leadership", '{"action":"resigned"}', LeadershipNotice("resigned", "")),
        # Dropped: wrong types, forged ids, unknown actions, wrong topic.
        ("river_insert", '{"queue": 1}', None),
        ("river_insert", '{"queue": ["default"]}', None),
        ("river_insert", '{"queue": null}', None),
        ("river_insert", '["default"]', None),
        ("river_insert", '"default"', None),
        ("river_control", '{"action":"cancel","job_id":true}', None),
        ("river_control", '{"action":"cancel","job_id":42.0}', None),
        ("river_control", '{"action":"cancel","job_id":"42"}', None),
        ("river_control", '{"action":"cancel","job_id":0}', None),
        ("river_control", '{"action":"cancel","job_id":-5}', None),
        ("river_control", '{"action":"cancel","job_id":9223372036854775808}', None),
        ("river_control", '{"action":"cancel","job_id":42,"queue":7}', None),
        ("river_control", '{"action":"cancel"}', None),
        ("river_control", '{"action":"pause"}', None),
        ("river_control", '{"action":"pause","queue":false}', None),
        (
            "river_control",
            '{"action":"metadata_changed","metadata":{},"queue":"a"}',
            QueueMetadataNotice("a"),
        ),
        ("river_control", '{"action":"metadata_changed","metadata":{}}', None),
        ("river_control", '{"action":["pause"],"queue":"a"}', None),
        ("river_leadership", '{"action":"resigned","leader_id":1}', None),
        ("river_leadership", '{"action":"abdicate","leader_id":"c1"}', None),
        ("river_other", '{"queue":"default"}', None),
        ("river_insert", "", None),
        ("river_insert", "NaN", None),
        ("river_insert", '{"queue":"' + "x" * MAX_PAYLOAD_CHARS + '"}', None),
        ("river_insert", _nested(MAX_DEPTH, "["), None),
        ("river_insert", _nested(3000, "["), None),
        ("river_insert", '{"queue":' + "9" * 5000 + "}", None),
    ],
)
def test_parse_notice(topic: str, payload: str, expected: Notice | None) -> None:
    assert parse_notice(topic, payload) == expected


def test_nesting_limit_is_exact_for_json() -> None:
    # MAX_DEPTH levels pass ("x" nests MAX_DEPTH - 1 deep in the object), one more is
    # dropped; brackets in strings (even after escaped quotes) do not count.
    at_limit = '{"action":"cancel","job_id":3,"x":' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert parse_notice("river_control", at_limit + "}") == CancelNotice(3, None)
    over = '{"action":"cancel","job_id":3,"x":' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}"
    assert parse_notice("river_control", over) is None
    in_string = '{"queue":"' + '\\"[{' * 1900 + '"}'
    assert parse_notice("river_insert", in_string) == InsertNotice('"[{' * 1900)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300)
@given(_json_values, st.integers(0, 6))
def test_nesting_scan_matches_the_json_depth(value: Any, limit: int) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert _nesting_within(text, limit) == (_depth(value) <= limit)


@settings(max_examples=400)
@given(st.sampled_from([*TOPICS, "river_other", ""]) | st.text(max_size=20), any_payloads)
def test_handle_never_raises_and_dispatches_only_typed_notices(topic: str, payload: str) -> None:
    received: list[Notice] = []
    notifier = Notifier("", None, received.append)
    notifier._handle(topic, payload)  # must not raise, whatever the payload
    assert len(received) <= 1
    for notice in received:
        check_notice(notice)
    assert received == [n for n in [parse_notice(topic, payload)] if n is not None]


@given(_pg_text)
def test_every_queue_name_goes_through(queue: str) -> None:
    payload = json.dumps({"queue": queue})
    assert parse_notice("river_insert", payload) == InsertNotice(queue)


def test_a_failing_consumer_is_logged_once_and_the_listener_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[Notice] = []

    def dispatch(notice: Notice) -> None:
        calls.append(notice)
        if len(calls) == 1:
            raise RuntimeError("consumer bug")

    notifier = Notifier("", None, dispatch)
    caplog.set_level(logging.DEBUG, logger="river")
    notifier._handle("river_insert", '{"queue":"a"}')
    notifier._handle("river_insert", '{"queue":"b"}')
    assert calls == [InsertNotice("a"), InsertNotice("b")]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert errors[0].exc_info is not None
    assert "consumer bug" in str(errors[0].exc_info[1])


# ---------------------------------------------------------------------------------------------
# Real NOTIFY, real client.


@dataclass
class Corpus:
    client: river.AsyncClient
    db: DB
    worker: EventWorker
    notifier: Notifier
    received: list[Notice] = field(default_factory=list, repr=False)
    jobs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    payloads: int = 0


@pytest.fixture
async def corpus(db_url: str, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Corpus]:
    """A running client whose producers wake only by notification (60 s poll interval), with
    every notice that reaches its dispatcher recorded."""
    caplog.set_level(logging.DEBUG, logger="river")
    worker = EventWorker()
    config = fast_config(make_workers(worker), fetch_poll_interval=60.0)
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        notifier = client._runtime.notifier
        assert notifier is not None
        await notifier.wait_connected()
        notify_every_insert(client)
        state = Corpus(client, db, worker, notifier)
        dispatch = notifier._dispatch

        def recording(notice: Notice) -> None:
            state.received.append(notice)
            dispatch(notice)

        notifier._dispatch = recording
        yield state
        for notice in state.received:
            check_notice(notice)
        assert notifier.connections == 1
        problems = [
            f"{r.levelname} {r.name}: {r.getMessage()}"
            for r in caplog.records
            if r.name.startswith("river") and r.levelno >= logging.WARNING
        ]
        assert problems == []


# One client serves every example: once broken it fails every later one, so shrinking could
# not isolate anything. The first failing batch is the culprit and is reported as is (its
# payloads run to 8000 bytes, hence the repr warning silenced).
@pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
@settings(
    max_examples=100,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.sampled_from(TOPICS), db_payloads), min_size=1, max_size=20))
async def test_corpus_sent_by_notify_never_stops_the_client(
    corpus: Corpus, batch: list[tuple[str, str]]
) -> None:
    # The whole batch in one statement, then a job that only the listener can get started.
    await corpus.db.execute(
        "SELECT count(pg_notify('public.' || t, p))"
        " FROM unnest(%(topics)s::text[], %(payloads)s::text[]) AS x(t, p)",
        {"topics": [t for t, _ in batch], "payloads": [p for _, p in batch]},
    )
    corpus.payloads += len(batch)
    n = next(corpus.jobs)
    await corpus.client.insert(Ping(n=n))
    with anyio.fail_after(3):
        await corpus.worker.event(n).wait()
    # Still the first connection: the listener never failed (even if something restarted it).
    assert corpus.notifier.connections == 1


@pytest.fixture
def sql_ascii_db_url(server_url: str) -> Iterator[str]:
    """An empty SQL_ASCII database: there, a payload may hold bytes that are not UTF-8."""
    name = f"rq_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'SQL_ASCII'"
                " LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    try:
        yield _uri_with_db(server_url, name)
    finally:
        _drop_database(server_url, name)


async def test_undecodable_payload_is_dropped_and_the_listener_carries_on(
    sql_ascii_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="river")
    received: list[Notice] = []
    woken: list[float] = []
    notifier = Notifier(
        sql_ascii_db_url,
        None,
        received.append,
        on_reconnect=lambda: woken.append(time.monotonic()),
    )

    def undecodable() -> bool:
        return any("undecodable" in r.getMessage() for r in caplog.records)

    async with open_db(sql_ascii_db_url) as db, anyio.create_task_group() as tg:
        await tg.start(notifier.run)
        await notifier.wait_connected()
        # psycopg decodes the payload as ASCII and fails on the byte 0xff: the payload (and
        # any notification read with it) is lost, so the client is told to wake its producers.
        await db.execute("SELECT pg_notify('public.river_insert', E'{\"queue\":\"\\xff\"}')")
        await wait_for(undecodable, timeout=5, message="the undecodable payload dropped")
        assert len(woken) == 1
        await db.execute("SELECT pg_notify('public.river_insert', '{\"queue\":\"after\"}')")
        await wait_for(lambda: received, timeout=5, message="the notification after")
        assert received == [InsertNotice("after")]
        assert notifier.connections == 1
        tg.cancel_scope.cancel()
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []
