"""The default retry policy (PROTOCOL.md section 6)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

__all__ = [
    "MAX_DELAY_NANOS",
    "MAX_DELAY_SECONDS",
    "RetryPolicy",
    "backoff",
    "default_retry_delay",
    "default_retry_delay_nanos",
    "next_retry_at",
]

#: The cap: the largest Go duration, 2**63 - 1 ns (about 292 years). No jitter at the cap.
MAX_DELAY_NANOS = 2**63 - 1
MAX_DELAY_SECONDS = MAX_DELAY_NANOS / 1e9

#: A retry policy maps (number of errors including this one, now) to the next run time.
RetryPolicy = Callable[[int, datetime], datetime]


def backoff(tries: int, first: float, cap: float, *, jitter: float = 0.1) -> float:
    """Seconds to wait before try ``tries + 1`` of something that keeps failing (a reconnect, a
    write, a restart): ``first`` doubled per try, at most ``cap``, less up to ``jitter`` of it
    at random. The exponent is bounded: ``2 ** tries`` as a float overflowed after ~1,000
    tries (an outage of an hour or so at a 5 s cap), raising where the retry was to happen."""
    delay = min(cap, first * 2.0 ** min(max(tries, 0), 64))
    return delay * random.uniform(1.0 - jitter, 1.0) if jitter else delay


def default_retry_delay_nanos(error_count: int, rng: random.Random | None = None) -> int:
    """Nanoseconds to wait after the ``error_count``-th failure: ``error_count ** 4`` seconds
    with +-10% jitter, capped at the largest Go duration (2**63 - 1 ns, no jitter at the cap).

    ``error_count`` counts errors already recorded plus the one being handled (so snoozes do not
    shift the schedule). 1 -> ~1 s, 2 -> ~16 s, 3 -> ~81 s, ... 24 -> ~3.8 days.
    """
    n = max(error_count, 1)
    base_nanos = n**4 * 1_000_000_000
    if base_nanos >= MAX_DELAY_NANOS:
        return MAX_DELAY_NANOS
    jitter = (rng or random).uniform(-0.1, 0.1)
    return min(int(base_nanos * (1 + jitter)), MAX_DELAY_NANOS)


def default_retry_delay(error_count: int, rng: random.Random | None = None) -> float:
    """:func:`default_retry_delay_nanos` in seconds."""
    return default_retry_delay_nanos(error_count, rng) / 1e9


def next_retry_at(error_count: int, now: datetime) -> datetime:
    """The default policy as a :data:`RetryPolicy`. Saturates at ``datetime.max``."""
    delay = default_retry_delay(error_count)
    try:
        return now + timedelta(seconds=delay)
    except OverflowError:
        return datetime.max.replace(tzinfo=now.tzinfo)
