"""The notifier: one dedicated LISTEN connection per client (PROTOCOL.md 7.4).

It listens on ``<schema>.river_insert``, ``<schema>.river_control`` and
``<schema>.river_leadership`` and hands each valid payload, parsed into a typed notice, to
the client's dispatcher. Notifications are hints: polling always runs too, so a lost
notification only adds latency, and any role on the database can send one, so a payload is
untrusted input. Anything that is not a valid notice (oversized, nested too deeply, not JSON,
not an object, wrong types, an unknown action) is dropped with one DEBUG line; the listener
never raises because of a payload. :func:`parse_notice` is the one place payloads are checked:
consumers trust the notice's types.
A liveness probe (a round trip with its own deadline) runs whenever the connection has been
quiet for ``probe_interval``; a dead connection is replaced with capped exponential backoff,
and after every reconnect ``on_reconnect`` runs (the client then re-reads every queue's row and
due jobs at once, since notifications may have been missed meanwhile: pauses, settings,
inserts); it runs too when psycopg cannot decode a payload, since the notifications that came
with it are lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import psycopg
from anyio.abc import TaskStatus
from psycopg import sql

from river._driver import Queries, queries_for
from river._errors import ListenUnavailableError, describe
from river._pool import owned
from river._retry import backoff
from river._sansio import Op, Query, run_async, single

__all__ = [
    "TOPICS",
    "CancelNotice",
    "InsertNotice",
    "LeadershipNotice",
    "Notice",
    "Notifier",
    "QueueMetadataNotice",
    "QueueStateNotice",
    "parse_notice",
]

logger = logging.getLogger("river.notifier")

TOPICS = ("river_insert", "river_control", "river_leadership")

#: Longest payload decoded. Postgres caps NOTIFY payloads at 8000 bytes (so at most 8000
#: characters); anything longer did not come from Postgres and is refused before decoding.
MAX_PAYLOAD_CHARS = 8000
#: Deepest nesting of arrays and objects decoded. River's payloads are flat objects (only
#: ``metadata_changed`` carries a queue's metadata, which is not read: the row is); the limit keeps
#: ``json.loads`` far from the interpreter's recursion limit.
MAX_DEPTH = 32
#: Largest job id (ids are ``bigserial``: 1 to 2**63 - 1).
MAX_JOB_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class InsertNotice:
    """``river_insert``: jobs may be available in ``queue``."""

    queue: str


@dataclass(frozen=True, slots=True)
class QueueStateNotice:
    """``river_control`` ``pause`` / ``resume`` of ``queue`` (``"*"``: every queue)."""

    queue: str
    paused: bool


@dataclass(frozen=True, slots=True)
class QueueMetadataNotice:
    """``river_control`` ``metadata_changed`` of ``queue``: its cluster-wide settings may have
    changed (the metadata it carries is not trusted; the poller re-reads the row)."""

    queue: str


@dataclass(frozen=True, slots=True)
class CancelNotice:
    """``river_control`` ``cancel``: job ``job_id`` (of ``queue``, when given) should stop."""

    job_id: int
    queue: str | None


@dataclass(frozen=True, slots=True)
class LeadershipNotice:
    """``river_leadership``: a leader ``resigned``, or a ``request_resign`` to the leader.
    ``leader_id`` is ``""`` when absent (as River (Go) decodes it)."""

    action: Literal["resigned", "request_resign"]
    leader_id: str


Notice = InsertNotice | QueueStateNotice | QueueMetadataNotice | CancelNotice | LeadershipNotice

# Backslash escapes (two characters, so an escaped quote is skipped) and the characters that
# matter to nesting; everything else is skipped by the regex engine, so the scan is linear.
_NESTING_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _nesting_within(text: str, limit: int) -> bool:
    """Whether arrays and objects in ``text`` nest at most ``limit`` deep (brackets inside
    strings do not count). For text that is not JSON the answer is an upper bound of the depth
    a decoder reaches before it fails, so the check is safe for any string."""
    if text.count("[") + text.count("{") <= limit:
        return True
    depth = 0
    in_string = False
    for match in _NESTING_TOKENS.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > limit:
                return False
        elif depth:
            depth -= 1
    return True


def _drop(topic: str, payload: str, reason: str) -> None:
    logger.debug("notifier: dropped %s payload (%s): %.200r", topic, reason, payload)


def _job_id(value: object) -> int | None:
    # type() rather than isinstance(): True is an int too (and 1.0 is no id).
    return value if type(value) is int and 1 <= value <= MAX_JOB_ID else None


def parse_notice(topic: str, payload: str) -> Notice | None:
    """The typed notice of a payload received on ``<schema>.<topic>``, or None (after a DEBUG
    line) when it is not a valid one. Never raises. Unknown fields are ignored (River (Go) may
    add some); a known field with the wrong type drops the payload.

    - ``river_insert``: ``{"queue": str}``;
    - ``river_control``: ``{"action": "pause" | "resume", "queue": str}`` or
      ``{"action": "cancel", "job_id": int, "queue"?: str}`` or
      ``{"action": "metadata_changed", "queue": str}`` (the metadata is not read);
    - ``river_leadership``: ``{"action": "resigned" | "request_resign", "leader_id"?: str}``.
    """
    if len(payload) > MAX_PAYLOAD_CHARS:
        _drop(topic, payload, "oversized")
        return None
    if not _nesting_within(payload, MAX_DEPTH):
        _drop(topic, payload, "nested too deeply")
        return None
    try:
        data = json.loads(payload)
    except Exception:  # ValueError for malformed JSON; anything else as a last resort
        _drop(topic, payload, "not JSON")
        return None
    if not isinstance(data, dict):
        _drop(topic, payload, "not an object")
        return None
    notice = _notice(topic, data)
    if notice is None:
        _drop(topic, payload, "unexpected shape")
    return notice


def _notice(topic: str, data: dict[str, Any]) -> Notice | None:
    action = data.get("action")
    if topic == "river_insert":
        queue = data.get("queue")
        return InsertNotice(queue) if isinstance(queue, str) else None
    if topic == "river_control":
        queue = data.get("queue")
        if queue is not None and not isinstance(queue, str):
            return None
        if action in ("pause", "resume") and queue is not None:
            return QueueStateNotice(queue, paused=action == "pause")
        if action == "metadata_changed" and queue is not None:
            return QueueMetadataNotice(queue)
        job_id = _job_id(data.get("job_id"))
        if action == "cancel" and job_id is not None:
            return CancelNotice(job_id, queue)
        return None
    if topic == "river_leadership":
        leader_id = data.get("leader_id")
        if leader_id is None:
            leader_id = ""
        elif not isinstance(leader_id, str):
            return None
        if action == "resigned":
            return LeadershipNotice("resigned", leader_id)
        if action == "request_resign":
            return LeadershipNotice("request_resign", leader_id)
    return None


class Notifier:
    """See module doc. ``dispatch(notice)`` is called for every valid notice; an exception
    from it is logged (once, with its traceback) and the listener carries on."""

    def __init__(
        self,
        conninfo: str,
        schema: str | None,
        dispatch: Callable[[Notice], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        probe_interval: float = 5.0,
        probe_timeout: float = 5.0,
        backoff_max: float = 5.0,
        connect_kwargs: dict[str, Any] | None = None,
        send_probe: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._q = queries_for(schema)
        self._dispatch = dispatch
        self._on_reconnect = on_reconnect
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.backoff_max = backoff_max
        self._connect_kwargs = connect_kwargs or {}
        self._send_probe = send_probe
        self._conn: psycopg.AsyncConnection[Any] | None = None
        #: Number of successful (re)connections; tests wait on it.
        self.connections = 0
        #: The resolved schema used in channel names once connected.
        self.channel_schema: str | None = None
        self._connected = anyio.Event()

    async def wait_connected(self) -> None:
        """Wait until the LISTEN connection is established (for tests and start-up)."""
        await self._connected.wait()

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the LISTEN connection (None when disconnected)."""
        return self._conn.info.backend_pid if self._conn is not None else None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, reconnecting as needed. ``started`` after the first
        connection attempt (successful or not), so a client start never blocks on it."""
        started = False
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **self._connect_kwargs
                )
            except (psycopg.Error, OSError) as exc:
                failures += 1
                delay = backoff(failures, 0.25, self.backoff_max)
                logger.warning("notifier: connect failed (try %d): %s", failures, exc)
                if not started:
                    task_status.started()
                    started = True
                await anyio.sleep(delay)
                continue
            try:
                async with owned(conn):
                    await self._listen(conn)
                    if self.connections == 0 and self._send_probe is not None:
                        # Once, on the first connection: when it comes after start() has
                        # returned (the database was down then), a failed check is a crash of
                        # this service, which the supervisor logs and, repeated, reports.
                        await self._check_delivery(conn, self._send_probe)
                    self._conn = conn
                    self.connections += 1
                    self._connected.set()
                    if (started or self.connections > 1) and self._on_reconnect is not None:
                        # Every connection after the client's start (a reconnect, a first one
                        # after the database was down, or this service's restart after a
                        # crash): notifications sent meanwhile were missed.
                        self._on_reconnect()
                    if not started:
                        task_status.started()
                        started = True
                    failures = 0
                    await self._loop(conn)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                failures += 1
                delay = backoff(failures, 0.25, self.backoff_max)
                reason = (
                    "no answer to the liveness probe"
                    if isinstance(exc, TimeoutError)
                    else describe(exc)
                )
                logger.warning(
                    "notifier: connection lost, reconnecting in %.2fs: %s", delay, reason
                )
                self._conn = None
                self._connected = anyio.Event()
                if not started:
                    task_status.started()
                    started = True
                await anyio.sleep(delay)
            finally:
                self._conn = None
                if self._connected.is_set():  # also after a crash the supervisor restarts
                    self._connected = anyio.Event()

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        schema = self._schema
        if schema is None:
            schema = await run_async(conn, _current_schema_op(self._q))
        self.channel_schema = schema
        await run_async(conn, _listen_op(self._q, [f"{schema}.{topic}" for topic in TOPICS]))

    async def _check_delivery(
        self, conn: psycopg.AsyncConnection[Any], send: Callable[[str], Awaitable[None]]
    ) -> None:
        """Prove, once at start, that a notification sent from another connection arrives
        here (``send``, given a topic, notifies ``<schema>.<topic>``); raise
        :class:`ListenUnavailableError` when it does not within ``probe_timeout`` (a
        transaction pooler between the client and Postgres). Notifications that arrive
        meanwhile are handled as usual."""
        # <schema>.river_probe_xxxx fits 63 bytes as <schema>.river_leadership does (both
        # topics are 16 characters); a clash with another client's probe is harmless.
        topic = f"river_probe_{secrets.token_hex(2)}"
        channel = f"{self.channel_schema}.{topic}"
        await run_async(conn, _listen_op(self._q, [channel]))
        await send(topic)
        prefix_len = len(self.channel_schema or "") + 1
        deadline = time.monotonic() + self.probe_timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                async for notify in conn.notifies(timeout=left):
                    if notify.channel == channel:
                        return
                    self._handle(notify.channel[prefix_len:], notify.payload)
            raise ListenUnavailableError(self.probe_timeout)
        finally:
            with contextlib.suppress(psycopg.Error):
                await run_async(conn, _listen_op(self._q, [channel], listen=False))

    async def _loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        prefix_len = len(self.channel_schema or "") + 1
        while True:
            try:
                async for notify in conn.notifies(timeout=self.probe_interval):
                    self._handle(notify.channel[prefix_len:], notify.payload)
            except UnicodeDecodeError as exc:
                # psycopg decodes payloads with the connection's encoding, and a payload that
                # is not valid in it (possible in a SQL_ASCII database) ends the iteration,
                # losing the notifications received with it: drop them, and as after a
                # reconnect, let the client wake every producer.
                logger.debug("notifier: dropped an undecodable payload: %s", exc)
                if self._on_reconnect is not None:
                    try:
                        self._on_reconnect()
                    except Exception:
                        logger.exception("notifier: on_reconnect failed")
                continue
            # Quiet for probe_interval: prove the connection is alive with a round trip.
            with anyio.fail_after(self.probe_timeout):
                await run_async(conn, single(Query(self._q.notifier_probe, fetch="none")))

    def _handle(self, topic: str, payload: str) -> None:
        """Parse and dispatch one payload. Never raises (a consumer's error is logged)."""
        notice = parse_notice(topic, payload)
        if notice is None:
            return
        try:
            self._dispatch(notice)
        except Exception:
            logger.exception("notifier: dispatch of %.200s failed", notice)


def _current_schema_op(q: Queries) -> Op[str]:
    """The schema unqualified names resolve to (channels are named after it)."""
    row = yield Query(q.notifier_current_schema, fetch="one")
    value = row[0] if row else "public"
    # bytes in a SQL_ASCII database, where psycopg does not decode text.
    return value.decode() if isinstance(value, bytes) else str(value)


def _listen_op(q: Queries, channels: list[str], *, listen: bool = True) -> Op[None]:
    """LISTEN (or UNLISTEN) on each channel. A channel name is one identifier, dot included:
    composed with ``sql.Identifier``, since LISTEN takes no parameter."""
    fragment = "notifier_listen" if listen else "notifier_unlisten"
    for channel in channels:
        yield Query(q.compose(fragment, channel=sql.Identifier(channel)), fetch="none")
