"""The signal receiver of ``river worker``'s processes (the supervisor and each worker).

Unlike anyio's receiver, it never leaves SIGHUP at its default action, which is a kill.
``river worker`` ignores SIGHUP outside its run, so that a reload request can never end it;
closing a receiver made of event-loop signal handlers (asyncio's ``remove_signal_handler``)
sets ``SIG_DFL`` before anything can give the previous handler back, and a reload request that
lands in that gap (a supervisor forwarding one while its children wind down after a stop did,
in about half of the tries) ended the process by the signal instead of its exit status.
SIGHUP is therefore caught with a plain Python handler that hands it to the event loop, and
put back to the handler found (``SIG_IGN`` for ``river worker``) in one step. The other
signals use the event loop's handlers and get their previous handlers back too (a process that
embeds the worker keeps its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from collections.abc import Iterator
from types import FrameType

__all__ = ["SignalReceiver", "signal_receiver"]


class SignalReceiver:
    """The signals received, in order, as an async iterator."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: deque[signal.Signals] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def deliver(self, signum: signal.Signals) -> None:
        """Queue ``signum`` (from the event loop's thread)."""
        self._queue.append(signum)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> SignalReceiver:
        return self

    async def __anext__(self) -> signal.Signals:
        while not self._queue:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()


@contextlib.contextmanager
def signal_receiver(*signums: signal.Signals) -> Iterator[SignalReceiver]:
    """Receive ``signums`` while the block runs (in the main thread, on the running asyncio
    loop); afterwards each signal has the handler it had before (see the module doc)."""
    loop = asyncio.get_running_loop()
    receiver = SignalReceiver(loop)
    before = {signum: signal.getsignal(signum) for signum in signums}
    looped: list[signal.Signals] = []

    def on_hup(signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes: hand over to the loop (gone if the
        # handler outlived it, when there was no Python handler to give back).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(receiver.deliver, signal.SIGHUP)

    try:
        for signum in signums:
            if signum == signal.SIGHUP:
                signal.signal(signum, on_hup)
            else:
                # The loop's handler also keeps a wakeup fd set, which wakes the loop for
                # SIGHUP too when another thread took the signal.
                loop.add_signal_handler(signum, receiver.deliver, signum)
                looped.append(signum)
        yield receiver
    finally:
        # SIGHUP first, in one step: never through SIG_DFL.
        hup = before.get(signal.SIGHUP)
        if hup is not None:
            signal.signal(signal.SIGHUP, hup)
        for signum in looped:
            loop.remove_signal_handler(signum)
            handler = before[signum]
            if handler is not None:  # None: installed outside Python, nothing to give back
                signal.signal(signum, handler)
