"""Rate limits of queues (pure data; enforced by the fetch statement ``job_fetch_limited``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from river._duration import DurationError, parse_duration
from river._errors import InvalidConfigError

__all__ = [
    "MAX_RATE_JOBS",
    "MAX_RATE_PERIOD",
    "RATE_BURST_SECONDS",
    "RateLimit",
    "parse_rate_limit",
    "rate_limit_from_json",
    "rate_limit_to_json",
]

#: The most jobs a rate limit may allow per period, and the longest period (a day).
MAX_RATE_JOBS = 1_000_000
MAX_RATE_PERIOD = 86_400.0
#: A rate limit's default burst: at most this many seconds' worth of jobs start at once.
RATE_BURST_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class RateLimit:
    """How many jobs of a queue may *start* per period, across every river-queue client
    sharing the database (docs/queues.md, "Rate limits").

    - ``jobs``: jobs per ``per`` (1 to 1,000,000);
    - ``per``: the period, seconds or a timedelta (1 ms to one day);
    - ``burst``: how many may start at once after a quiet spell (default: a quarter second's
      worth, at least 1 and at most ``jobs``), so that the rate holds over short windows too.

    Enforced in Postgres with a token bucket kept in the queue's ``river_queue`` row and taken
    in the fetch statement itself: jobs over the limit stay ``available`` (no attempt used,
    not snoozed). River (Go) clients working the same queue are not limited by it.
    """

    jobs: int
    per: float | timedelta = 1.0
    burst: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int):
            raise InvalidConfigError("rate_limit.jobs", f"must be an integer, got {self.jobs!r}")
        if not 1 <= self.jobs <= MAX_RATE_JOBS:
            raise InvalidConfigError(
                "rate_limit.jobs", f"must be between 1 and {MAX_RATE_JOBS:,}, got {self.jobs}"
            )
        per = _period(self.per)
        if per > MAX_RATE_PERIOD:
            raise InvalidConfigError(
                "rate_limit.per", f"must be at most one day, got {_shown(self.per)}"
            )
        # Seconds, so that RateLimit(5, per=1) == RateLimit(5, per=timedelta(seconds=1)).
        object.__setattr__(self, "per", per)
        if self.burst is not None and (
            isinstance(self.burst, bool)
            or not isinstance(self.burst, int)
            or not 1 <= self.burst <= MAX_RATE_JOBS
        ):
            raise InvalidConfigError(
                "rate_limit.burst",
                f"must be an integer from 1 to {MAX_RATE_JOBS:,}, got {self.burst!r}",
            )

    @property
    def period(self) -> float:
        """``per`` in seconds."""
        return _period(self.per)

    @property
    def rate(self) -> float:
        """Jobs per second."""
        return self.jobs / self.period

    @property
    def capacity(self) -> int:
        """The bucket's size: ``burst``, or a quarter second's worth (1 to ``jobs``)."""
        if self.burst is not None:
            return self.burst
        return max(1, min(self.jobs, math.ceil(self.rate * RATE_BURST_SECONDS)))

    def __str__(self) -> str:
        return f"{self.jobs}/{self.period:g}s"


def _period(value: float | timedelta) -> float:
    try:
        seconds = parse_duration(value, text="seconds")
    except DurationError:
        raise InvalidConfigError(
            "rate_limit.per", f"must be a duration in seconds or a timedelta, got {value!r}"
        ) from None
    if math.isnan(seconds) or seconds < 0.001:
        raise InvalidConfigError("rate_limit.per", f"must be at least 0.001s, got {_shown(value)}")
    return seconds


def _shown(value: object) -> str:
    """``repr(value)``, shortened: a stored value may be a number of thousands of digits."""
    text = f"{value}s" if isinstance(value, float) and math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def rate_limit_from_json(value: Any) -> RateLimit:
    """A rate limit from its stored form ``{"jobs": n, "per": seconds, "burst"?: n}`` (raises
    InvalidConfigError naming the field)."""
    if not isinstance(value, dict):
        raise InvalidConfigError("rate_limit", "must be an object with jobs and per")
    unknown = set(value) - {"jobs", "per", "burst"}
    if unknown:
        raise InvalidConfigError("rate_limit", f"unknown keys {sorted(unknown)}")
    per = value.get("per", 1.0)
    if isinstance(per, bool) or not isinstance(per, int | float):
        raise InvalidConfigError("rate_limit.per", f"must be a number of seconds, got {per!r}")
    # No float() here: an integer too large for a float (jsonb stores a 400-digit one) would
    # raise OverflowError; RateLimit reads it as infinite, which its range check refuses.
    return RateLimit(jobs=value.get("jobs"), per=per, burst=value.get("burst"))  # type: ignore[arg-type]


def rate_limit_to_json(limit: RateLimit) -> dict[str, Any]:
    """The stored form of ``limit``."""
    out: dict[str, Any] = {"jobs": limit.jobs, "per": limit.period}
    if limit.burst is not None:
        out["burst"] = limit.burst
    return out


def parse_rate_limit(text: str, field: str = "rate_limit") -> RateLimit:
    """``JOBS/PERIOD[,burst=N]`` (``50/1s``, ``50/s``, ``1000/1h``, ``10/1m,burst=3``) as a
    RateLimit; the period in Go's duration syntax or plain seconds. Raises InvalidConfigError
    naming ``field``."""
    rule = "must be JOBS/PERIOD[,burst=N], e.g. 50/1s, 50/s or 1000/1h"
    head, _, tail = text.strip().partition(",")
    jobs_text, slash, period_text = head.partition("/")
    if not slash:
        raise InvalidConfigError(field, f"{rule}, got {text!r}")
    burst: int | None = None
    if tail:
        key, eq, value = tail.partition("=")
        if key.strip() != "burst" or not eq:
            raise InvalidConfigError(field, f"{rule}, got {text!r}")
        burst = _int(value, f"{field} burst")
    jobs = _int(jobs_text, f"{field} jobs")
    period_text = period_text.strip()
    if period_text and period_text[0].isalpha():
        period_text = "1" + period_text  # 50/s
    try:
        per = parse_duration(period_text, text="go_or_seconds")
    except DurationError:
        raise InvalidConfigError(
            f"{field} period", f"invalid duration {period_text!r} (e.g. 1s, 500ms, 1m, 1h)"
        ) from None
    try:
        return RateLimit(jobs=jobs, per=per, burst=burst)
    except InvalidConfigError as exc:
        raise InvalidConfigError(field, exc.rule) from None


def _int(text: str, field: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidConfigError(field, f"must be an integer, got {text.strip()!r}") from None
