"""Leader election on ``river_leader`` with River (Go)'s term semantics (PROTOCOL.md 8).

One leader among every client on the database, Go ones included. A follower tries to elect
itself every ``elect_interval`` plus a random jitter (up to 1 s as in River (Go), or a fifth of
the interval when that is less, so that a short interval stays well within a short TTL), and at
once (after 0-50 ms) when the leader announces its resignation. The leader extends its term on
the same rhythm and trusts it only until ``attempt start + ttl - 1 s``: failed renewals back
off 1 s, 2 s, 4 s... within the time left, and if the term cannot be renewed in time,
leadership is given up locally *before* the database lease ends, so two clients never run
maintenance at once. On stop, and on a ``request_resign`` notification, the leader resigns
(deleting its row and announcing it).

``on_change(is_leader)`` is called on every transition; the client starts the maintenance
services when it becomes true and cancels them when it becomes false.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import psycopg
from anyio.abc import TaskStatus
from psycopg_pool import AsyncConnectionPool

from river._driver import Queries
from river._errors import describe
from river._notifier import LeadershipNotice
from river._pool import pooled
from river._sansio import Op, Query, run_async

__all__ = ["Elector", "check_leader_timing", "election_jitter", "trust_margin"]

logger = logging.getLogger("river.elector")


def election_jitter(elect_interval: float) -> float:
    """The random extra wait of every election interval: a fifth of it, at most 1 s."""
    return min(1.0, elect_interval / 5)


def trust_margin(ttl: float) -> float:
    """How long before a term's end its leader stops acting (clocks and a slow statement): 1 s,
    or a fifth of a shorter TTL (a fixed second left a TTL under it never trusted)."""
    return min(1.0, ttl / 5)


def check_leader_timing(elect_interval: float, ttl: float) -> str | None:
    """Why ``ttl`` cannot work with ``elect_interval`` (None: it can): a term must still be
    trusted when the next renewal comes, one interval plus its jitter later."""
    trusted = ttl - trust_margin(ttl)
    renewal = elect_interval + election_jitter(elect_interval)
    if trusted <= renewal:
        return (
            f"must leave the leader a trusted term longer than leader_elect_interval plus its "
            f"jitter ({renewal:g}s): {ttl:g}s less its {trust_margin(ttl):g}s safety margin is "
            f"{trusted:g}s (River uses leader_elect_interval + 10 s)"
        )
    return None


class Elector:
    """See module doc."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        client_id: str,
        *,
        on_change: Callable[[bool], None],
        elect_interval: float = 5.0,
        ttl: float = 15.0,
        db_timeout: float = 5.0,
    ) -> None:
        self._pool = pool
        self._q = queries
        self.client_id = client_id
        self._on_change = on_change
        self.elect_interval = elect_interval
        self.ttl = ttl
        self.db_timeout = db_timeout
        #: Random extra wait added to every interval (River (Go): 1 s with its 5 s interval).
        self.jitter = election_jitter(elect_interval)
        #: How long before its term's end a leader stops trusting it (see :meth:`trusted`).
        self.margin = trust_margin(ttl)
        self.is_leader = False
        self._term: datetime | None = None
        self._trusted_until = 0.0
        self._wake = anyio.Event()
        self._resign_requested = False
        #: Terms won over this elector's life (tests and metrics).
        self.terms = 0

    def trusted(self) -> bool:
        """Whether this client may still act as leader now: it holds a term and is within the
        time it may trust it (the term's TTL less :func:`trust_margin`, from the last
        renewal). A process or event loop that stalled past it (SIGSTOP, a worker blocking
        the loop) may have been replaced by another leader before its elector wakes up to
        notice: its maintenance must not act meanwhile (river/_maintenance.py checks this
        before every statement)."""
        return self.is_leader and time.monotonic() < self._trusted_until

    def leadership_notification(self, notice: LeadershipNotice) -> None:
        """Handle a ``river_leadership`` notice (from the notifier, which checked its shape)."""
        if notice.action == "resigned" and notice.leader_id != self.client_id:
            if not self.is_leader:
                self._wake.set()
        elif notice.action == "request_resign" and self.is_leader:
            self._resign_requested = True
            self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Elect and re-elect until cancelled; resign (best effort) when cancelled."""
        task_status.started()
        try:
            while True:
                if self.is_leader:
                    await self._lead_once()
                else:
                    await self._follow_once()
        finally:
            if self.is_leader:
                with anyio.CancelScope(shield=True):
                    await self._resign(tries=3)
                self._set_leader(False, "stopping", resigned=True)

    def _set_leader(self, value: bool, why: str = "", *, resigned: bool = False) -> None:
        if value != self.is_leader:
            self.is_leader = value
            if value:
                self.terms += 1
                change = "gained leadership"
            else:
                change = f"resigned leadership ({why})" if resigned else f"lost leadership: {why}"
            logger.info(
                "client %s %s",
                self.client_id,
                change,
                extra={"client_id": self.client_id, "leader": value},
            )
            self._on_change(value)

    async def _sleep(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def _follow_once(self) -> None:
        try:
            elected = await self._attempt_elect()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            logger.warning("leader election attempt failed: %s", describe(exc))
            elected = False
        if elected:
            self._set_leader(True)
            return
        woken = self._wake.is_set()
        await self._sleep(self.elect_interval + random.uniform(0, self.jitter))
        if woken or self._wake.is_set():
            # The leader resigned: try soon, with a little jitter so followers spread out.
            await anyio.sleep(random.uniform(0, 0.05))

    async def _attempt_elect(self) -> bool:
        started = time.monotonic()
        with anyio.fail_after(self.db_timeout):
            async with pooled(self._pool) as conn, conn.transaction():
                row = await run_async(conn, _elect_op(self._q, self.client_id, self.ttl))
        if row is None:
            return False
        self._term = row[0]
        self._trusted_until = started + self.ttl - self.margin
        return True

    async def _lead_once(self) -> None:
        await self._sleep(self.elect_interval + random.uniform(0, self.jitter))
        if self._resign_requested:
            self._resign_requested = False
            await self._resign(tries=1)
            self._set_leader(False, "request_resign received", resigned=True)
            return
        backoff = 1.0
        while True:
            started = time.monotonic()
            try:
                if await self._attempt_reelect():
                    self._trusted_until = started + self.ttl - self.margin
                    return
                # The term is gone (expired, or deleted by someone): follower again.
                self._set_leader(False, "its term expired or was taken over")
                return
            except (psycopg.Error, OSError, TimeoutError) as exc:
                remaining = self._trusted_until - time.monotonic()
                logger.warning(
                    "leader re-election failed (%.1fs of term left): %s", remaining, describe(exc)
                )
                if remaining <= backoff:
                    self._set_leader(False, "could not renew its term in time")
                    return
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 4.0)

    async def _attempt_reelect(self) -> bool:
        with anyio.fail_after(
            min(self.db_timeout, max(self._trusted_until - time.monotonic(), 0.1))
        ):
            async with pooled(self._pool) as conn:
                return await run_async(
                    conn, _reelect_op(self._q, self.client_id, self._term, self.ttl)
                )

    async def _resign(self, tries: int) -> None:
        for attempt in range(1, tries + 1):
            try:
                with anyio.fail_after(float(attempt)):
                    async with pooled(self._pool) as conn:
                        await run_async(conn, _resign_op(self._q, self.client_id, self._term))
                return
            except (psycopg.Error, OSError, TimeoutError) as exc:
                logger.warning("leader resignation attempt %d failed: %s", attempt, describe(exc))


def _elect_op(q: Queries, leader_id: str, ttl: float) -> Op[tuple[Any, ...] | None]:
    """Clear an expired term, then take the seat if it is free: the new term's (elected_at,
    expires_at), or None when another client holds it. Run in one transaction."""
    yield Query(q.leader_delete_expired, fetch="none")
    row: tuple[Any, ...] | None = yield Query(
        q.leader_insert, {"leader_id": leader_id, "ttl": ttl}, fetch="one"
    )
    return row


def _reelect_op(q: Queries, leader_id: str, term: datetime | None, ttl: float) -> Op[bool]:
    """Extend this exact term if it has not expired; whether it was."""
    row = yield Query(
        q.leader_reelect, {"leader_id": leader_id, "elected_at": term, "ttl": ttl}, fetch="one"
    )
    return row is not None


def _resign_op(q: Queries, leader_id: str, term: datetime | None) -> Op[None]:
    """Delete this exact term and announce it (nothing when it is not current)."""
    yield Query(
        q.leader_resign,
        {"leader_id": leader_id, "elected_at": term, "schema": q.schema},
        fetch="none",
    )


def request_resign_payload() -> str:
    """The ``request_resign`` payload as River (Go) sends it."""
    return json.dumps({"action": "request_resign", "leader_id": ""}, separators=(",", ":"))
