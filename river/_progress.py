"""A one-line progress counter for long CLI work (``\\r  1200/5000 jobs``), drawn on a terminal
only.

Commands print their results on stdout and, while long work runs, a counter on stderr. When
stderr is not a terminal (a pipe, a file, CI logs) :class:`Progress` writes nothing at all, so
scripted output is the same with or without it. Pure standard library: usable by any command.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]

#: Seconds between two redraws (the last count is always drawn).
REDRAW_INTERVAL = 0.1


class Progress:
    """A counter of ``total`` items named ``unit``, redrawn in place on ``stream``.

    Enabled only when ``stream`` (default: ``sys.stderr``) is a terminal and ``total`` is more
    than ``min_total``; disabled, every method is a no-op except :meth:`echo`, which still
    prints. Redraws are throttled to one per :data:`REDRAW_INTERVAL`, except the first and the
    last. :meth:`close` (or leaving the ``with`` block) erases the line, so what follows starts
    on a clean line. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        total: int,
        unit: str,
        *,
        stream: TextIO | None = None,
        min_total: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._drawn_at: float | None = None
        self._width = 0
        self._note = ""
        self.enabled = total > min_total and _isatty(self._stream)

    def advance(self, count: int = 1, *, note: str = "") -> None:
        """Count ``count`` more items done; ``note`` is shown after the counter."""
        self.done += count
        self._note = note
        if self.enabled:
            now = self._clock()
            last = self.done >= self.total
            if last or self._drawn_at is None or now - self._drawn_at >= REDRAW_INTERVAL:
                self._draw(now)

    def show(self, note: str) -> None:
        """Redraw now with ``note`` (say what starts next, before it starts)."""
        self._note = note
        if self.enabled:
            self._draw(self._clock())

    def echo(self, line: str, file: TextIO | None = None) -> None:
        """Print ``line`` (default: on stdout) without garbling the counter: when ``file`` is
        a terminal too, the counter line is erased first (and drawn again by a later
        :meth:`advance`, at most once per :data:`REDRAW_INTERVAL`)."""
        out = file if file is not None else sys.stdout
        if self.enabled and _isatty(out):
            self._erase()
            print(line, file=out, flush=True)
        else:
            print(line, file=out)

    def close(self) -> None:
        """Erase the counter line (nothing to do when disabled)."""
        self._erase()

    def _draw(self, now: float) -> None:
        text = f"  {self.done}/{self.total} {self.unit}"
        if self._note:
            text += f"  {self._note}"
        pad = " " * max(0, self._width - len(text))
        self._stream.write(f"\r{text}{pad}")
        self._stream.flush()
        self._width = len(text)
        self._drawn_at = now

    def _erase(self) -> None:
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
