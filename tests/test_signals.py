"""Named test signals (river/_testsignal.py, ``river.testing.signals``): no-ops unless enabled,
buffered from the moment they are, and emitted by the producer's fetch, the poller, leadership
changes, maintenance terms, the completer and settings changes of a running client."""

from __future__ import annotations

from typing import ClassVar

import anyio
import anyio.lowlevel
import pytest
from helpers import fast_config, make_workers, open_db, started_client

import river
from river._config import QueueSettings
from river._testsignal import TestSignal, TestSignals
from river.testing import signals

pytestmark = pytest.mark.anyio


class Ping(river.JobArgs):
    kind: ClassVar[str] = "signals_ping"


class PingWorker(river.Worker[Ping]):
    async def work(self, job: river.Job[Ping]) -> None:
        return None


async def test_a_disabled_signal_records_nothing_and_cannot_be_awaited() -> None:
    signal: TestSignal[int] = TestSignal("s")
    signal.emit(1)
    assert not signal.enabled
    assert signal.drain() == []
    with pytest.raises(RuntimeError, match="'s' is not enabled"):
        await signal.wait(0.1)


async def test_an_enabled_signal_buffers_in_order_and_times_out_by_name() -> None:
    signal: TestSignal[int] = TestSignal("s")
    signal.enable()
    signal.emit(1)
    signal.emit(2)
    assert await signal.wait() == 1
    async with anyio.create_task_group() as tg:
        # A waiter woken by a later emit.
        tg.start_soon(lambda: _emit_later(signal, 3))
        assert await signal.wait() == 2
        assert await signal.wait() == 3
    with pytest.raises(TimeoutError, match=r"test signal .s.: nothing emitted within 0\.05s"):
        await signal.wait(0.05)
    signal.emit(4)
    signal.emit(5)
    await signal.wait_for(5)
    assert signal.drain() == []


async def test_a_waiter_that_times_out_leaves_another_waiting() -> None:
    """Two waiters on one signal: the first to time out cleared the shared wake-up, so the
    next emit woke nobody and the other waiter timed out with the value buffered."""
    signal: TestSignal[int] = TestSignal("s")
    signal.enable()
    got: list[int] = []

    async def patient() -> None:
        got.append(await signal.wait(5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(patient)
        with anyio.fail_after(5):
            while signal._waiters == 0:  # the patient waiter waits first
                await anyio.lowlevel.checkpoint()
        with pytest.raises(TimeoutError):
            await signal.wait(0.05)
        signal.emit(42)
    assert got == [42]


async def _emit_later(signal: TestSignal[int], value: int) -> None:
    await anyio.sleep(0.01)
    signal.emit(value)


def test_signals_requires_a_client() -> None:
    with pytest.raises(TypeError, match=r"needs a river\.AsyncClient"):
        signals(object())
    assert all(s.enabled for s in TestSignals().enable().all())


async def test_a_running_client_emits_each_signal(db_url: str) -> None:
    config = fast_config(
        make_workers(PingWorker()),
        queues={"default": river.QueueConfig(max_workers=4)},
        leader_elect_interval=0.2,
        leader_ttl=1.0,
    )
    async with open_db(db_url) as db, started_client(db_url, config) as client:
        s = signals(client)
        assert await s.leadership.wait() is True
        assert await s.maintenance.wait() is True
        assert "default" in await s.polled.wait()
        s.fetched.drain()
        s.flushed.drain()
        result = await client.insert(Ping())
        # The fetch that got the job, then the batch its outcome was written in.
        while await s.fetched.wait() != ("default", 1):
            pass
        written, not_applied = await s.flushed.wait()
        assert (written, not_applied) == (1, 0)
        assert await db.state(result.job.id) == "completed"

        await client.queues.update("default", max_workers=2)
        assert await s.settings_applied.wait() == (
            "default",
            QueueSettings(max_workers=2, fetch_cooldown=0.005, fetch_poll_interval=0.05),
        )
        await client.queue_update("default", max_workers=3)
        name, settings = await s.settings_applied.wait()
        assert name == "default"
        assert isinstance(settings, QueueSettings)
        assert settings.max_workers == 3

        await client.request_resign()
        assert await s.leadership.wait() is False
        await s.maintenance.wait_for(False)
