"""The notifier: one dedicated LISTEN connection per client (PROTOCOL.md 7.4).

It listens on ``<schema>.river_insert``, ``<schema>.river_control`` and
``<schema>.river_leadership`` and hands each parsed payload to the client's dispatcher.
Notifications are hints: polling always runs too, so a lost notification only adds latency.
A liveness probe (a round trip with its own deadline) runs whenever the connection has been
quiet for ``probe_interval``; a dead connection is replaced with capped exponential backoff,
and after every reconnect ``on_reconnect`` runs (the client then wakes every producer, since
notifications may have been missed meanwhile).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from typing import Any

import anyio
import psycopg
from anyio.abc import TaskStatus
from psycopg import sql

__all__ = ["TOPICS", "Notifier"]

logger = logging.getLogger("river.notifier")

TOPICS = ("river_insert", "river_control", "river_leadership")


class Notifier:
    """See module doc. ``dispatch(topic, payload)`` is called for every valid JSON object."""

    def __init__(
        self,
        conninfo: str,
        schema: str | None,
        dispatch: Callable[[str, dict[str, Any]], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        probe_interval: float = 5.0,
        probe_timeout: float = 5.0,
        backoff_max: float = 5.0,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._dispatch = dispatch
        self._on_reconnect = on_reconnect
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.backoff_max = backoff_max
        self._connect_kwargs = connect_kwargs or {}
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
                delay = min(self.backoff_max, 0.25 * 2**failures) * random.uniform(0.9, 1.0)
                logger.warning("notifier: connect failed (try %d): %s", failures, exc)
                if not started:
                    task_status.started()
                    started = True
                await anyio.sleep(delay)
                continue
            try:
                async with conn:
                    await self._listen(conn)
                    self._conn = conn
                    self.connections += 1
                    self._connected.set()
                    if self.connections > 1 and self._on_reconnect is not None:
                        self._on_reconnect()
                    if not started:
                        task_status.started()
                        started = True
                    failures = 0
                    await self._loop(conn)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                failures += 1
                delay = min(self.backoff_max, 0.25 * 2**failures) * random.uniform(0.9, 1.0)
                logger.warning("notifier: connection lost, reconnecting in %.2fs: %s", delay, exc)
                self._conn = None
                self._connected = anyio.Event()
                if not started:
                    task_status.started()
                    started = True
                await anyio.sleep(delay)
            finally:
                self._conn = None

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        schema = self._schema
        if schema is None:
            row = await (await conn.execute("SELECT current_schema()")).fetchone()
            schema = str(row[0]) if row else "public"
        self.channel_schema = schema
        for topic in TOPICS:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"{schema}.{topic}")))

    async def _loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        prefix_len = len(self.channel_schema or "") + 1
        while True:
            async for notify in conn.notifies(timeout=self.probe_interval):
                self._handle(notify.channel[prefix_len:], notify.payload)
            # Quiet for probe_interval: prove the connection is alive with a round trip.
            with anyio.fail_after(self.probe_timeout):
                await conn.execute("SELECT 1")

    def _handle(self, topic: str, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            logger.debug("notifier: ignoring non-JSON payload on %s: %r", topic, payload)
            return
        if not isinstance(data, dict):
            return
        try:
            self._dispatch(topic, data)
        except Exception:
            logger.exception("notifier: dispatch of %s failed", topic)
