"""Schedules of periodic jobs: cron expressions (River (Go)'s robfig/cron syntax) and intervals.

A schedule is anything with a ``next(after)`` method (:class:`Schedule`). Two are provided:

- :class:`Cron` parses the cron syntax River (Go) users pass to ``cron.ParseStandard`` and
  computes the same run times (PROTOCOL 9.6; the conformance fixtures ``cron_cases``,
  ``cron_named_zone_cases`` and ``cron_invalid`` are the oracle);
- :class:`PeriodicInterval` runs at a fixed interval, like River (Go)'s ``PeriodicInterval``.

A schedule that will never run again returns :data:`NEVER` (a far-future sentinel, so a loop that
sleeps until the earliest next run needs no special case).
"""

from __future__ import annotations

import bisect
import calendar
import importlib.util
import math
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final, Protocol, runtime_checkable

from river._duration import DurationError, parse_duration, parse_go_duration
from river._errors import ValidationError

__all__ = ["NEVER", "Cron", "PeriodicInterval", "Schedule"]

NEVER: Final[datetime] = datetime.max.replace(tzinfo=UTC)
"""Returned by :meth:`Schedule.next` when a schedule has no further run time.

It is ``datetime.max`` in UTC (9999-12-31T23:59:59.999999Z): comparisons and subtractions with
real times work, so a scheduler that sleeps until the earliest next run simply never picks it.
River (Go)'s cron library returns Go's zero time in this case (e.g. ``0 0 30 2 *``, or no match
within five years); compare against ``NEVER`` to detect it.
"""

_FIELD = "cron"
_ONE_MINUTE: Final = timedelta(minutes=1)
_ONE_SECOND: Final = timedelta(seconds=1)
# Wall times are searched up to this year, so that converting them to UTC cannot overflow.
_MAX_YEAR: Final = 9998
# robfig/cron gives up when nothing matches within this many years after the start year.
_YEAR_LIMIT: Final = 5


@runtime_checkable
class Schedule(Protocol):
    """When a periodic job runs: a function from a time to the next run time.

    Implementations take a timezone-aware ``after`` and return a timezone-aware time strictly
    later than it (:data:`NEVER` when there is none). The periodic enqueuer applies the schedule
    to the previous target time to get the next one (PROTOCOL 9.6).
    """

    def next(self, after: datetime) -> datetime:
        """Return the first run time strictly after ``after`` (timezone-aware, in UTC)."""
        ...


def _require_aware(after: datetime) -> datetime:
    """Return ``after`` in UTC, or raise if it is not a timezone-aware datetime."""
    if not isinstance(after, datetime):
        raise ValidationError("after", f"must be a datetime, got {type(after).__name__}")
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValidationError("after", "must be timezone-aware (naive datetimes are ambiguous)")
    return after.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Cron fields
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bounds:
    name: str
    low: int
    high: int
    names: Mapping[str, int]
    name_kind: str = ""
    hint: str = ""


_MONTH_NAMES: Final = tuple(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
)
_DAY_NAMES: Final = tuple(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])

_FIELDS: Final = (
    _Bounds("minute", 0, 59, {}),
    _Bounds("hour", 0, 23, {}),
    _Bounds("day-of-month", 1, 31, {}),
    _Bounds("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTH_NAMES)}, "month name (jan-dec)"),
    _Bounds(
        "day-of-week",
        0,
        6,
        {n: i for i, n in enumerate(_DAY_NAMES)},
        "day name (sun-sat)",
        " (Sunday is 0; 7 is not accepted)",
    ),
)

_DESCRIPTORS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY: Final = "@every "
_UNSIGNED: Final = re.compile(r"\+?[0-9]+", re.ASCII)


def _parse_number(text: str, bounds: _Bounds, part: str) -> int:
    """One value of a field: a number (optional ``+``, like Go's Atoi) or a name."""
    if not text:
        raise ValidationError(_FIELD, f"{bounds.name} field: {part!r} is missing a number")
    named = bounds.names.get(text.lower())
    if named is not None:
        return named
    if not _UNSIGNED.fullmatch(text):
        kind = f"a number or a {bounds.name_kind}" if bounds.name_kind else "a number"
        raise ValidationError(_FIELD, f"{bounds.name} field: {text!r} is not {kind}")
    value = int(text)
    if not bounds.low <= value <= bounds.high:
        raise ValidationError(
            _FIELD,
            f"{bounds.name} field: {value} is out of range {bounds.low}-{bounds.high}{bounds.hint}",
        )
    return value


def _parse_part(part: str, bounds: _Bounds) -> tuple[set[int], bool]:
    """One comma-separated element: ``*``, ``?``, ``n``, ``a-b``, each optionally ``/step``.

    Returns the values and whether the element counts as a wildcard for the day-of-month /
    day-of-week rule (``*`` or ``?``, unstepped or with step 1, like robfig/cron's star bit).
    """
    range_text, slash, step_text = part.partition("/")
    if "/" in step_text:
        raise ValidationError(_FIELD, f"{bounds.name} field: {part!r} has more than one '/'")
    star = False
    if range_text in ("*", "?"):
        low, high, star = bounds.low, bounds.high, True
    else:
        low_text, dash, high_text = range_text.partition("-")
        if "-" in high_text:
            raise ValidationError(_FIELD, f"{bounds.name} field: {part!r} has more than one '-'")
        low = _parse_number(low_text, bounds, part)
        # "n/step" means n through the maximum; a bare "n" is just n.
        high = bounds.high if slash else low
        if dash:
            high = _parse_number(high_text, bounds, part)
        if low > high:
            raise ValidationError(
                _FIELD, f"{bounds.name} field: range {range_text} starts after it ends"
            )
    step = 1
    if slash:
        if not _UNSIGNED.fullmatch(step_text) or int(step_text) == 0:
            raise ValidationError(
                _FIELD,
                f"{bounds.name} field: step in {part!r} must be a positive integer",
            )
        step = int(step_text)
        if step > 1:
            star = False
    return set(range(low, high + 1, step)), star


def _parse_field(text: str, bounds: _Bounds) -> tuple[tuple[int, ...], bool]:
    """A whole field (comma-separated list); returns sorted values and the wildcard flag."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        part_values, part_star = _parse_part(part, bounds)
        values |= part_values
        star = star or part_star
    return tuple(sorted(values)), star


# --------------------------------------------------------------------------------------------
# Time zones
# --------------------------------------------------------------------------------------------


def _tz_database_available() -> bool:
    """Whether zoneinfo can find any time zone data (system directories or ``tzdata``)."""
    if any(os.path.isdir(path) for path in zoneinfo.TZPATH):
        return True
    return importlib.util.find_spec("tzdata") is not None


def _load_zone(name: str) -> tzinfo:
    """The zone of a ``CRON_TZ=``/``TZ=`` prefix (IANA name; ``UTC`` needs no database)."""
    if name == "UTC":
        return UTC
    if not name:
        raise ValidationError(_FIELD, "time zone prefix names no zone (expected e.g. CRON_TZ=UTC)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        if not _tz_database_available():
            raise ValidationError(
                _FIELD,
                f"unknown time zone {name!r}: no time zone database found "
                "(install the system tzdata files or the 'tzdata' Python package)",
            ) from None
        raise ValidationError(_FIELD, f"unknown time zone {name!r}") from None


def _instants(wall: datetime, zone: tzinfo) -> list[datetime]:
    """The UTC instants whose wall-clock time in ``zone`` is ``wall`` (naive), in order.

    Empty when ``wall`` falls in a gap (clocks moved forward), two when it is repeated (clocks
    moved back), else one.
    """
    found: list[datetime] = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    found.sort()
    return found


# --------------------------------------------------------------------------------------------
# Cron
# --------------------------------------------------------------------------------------------


def _first_at_least(values: tuple[int, ...], value: int) -> int | None:
    index = bisect.bisect_left(values, value)
    return values[index] if index < len(values) else None


class Cron:
    """A cron schedule with River (Go)'s syntax (robfig/cron's standard parser).

    ``Cron("*/5 * * * *")`` parses at construction and raises :class:`~river.ValidationError`
    (field ``"cron"``, the rule naming the offending part) for any invalid expression.

    Syntax:

    - five fields ``minute hour day-of-month month day-of-week`` separated by whitespace;
      ranges 0-59, 0-23, 1-31, 1-12 and 0-6 (Sunday is 0; 7 is rejected); seconds fields
      (6-field forms) are rejected;
    - each field is a comma-separated list of ``*`` or ``?`` (any), ``n``, ``a-b``, each with an
      optional ``/step`` (``*/15``, ``0-30/10``; ``n/step`` means ``n-max/step``); month names
      ``jan``-``dec`` and day names ``sun``-``sat`` are accepted in any case;
    - day-of-month and day-of-week: when both are restricted, a day matching either runs
      (``0 12 1,15 * 5`` = the 1st, the 15th and every Friday); a field written ``*``, ``?``
      or with step 1 (``*/1``) is not a restriction, so the other field alone decides; a stepped
      wildcard such as ``*/2`` is a restriction;
    - descriptors ``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily`` ``@midnight``
      ``@hourly`` (lowercase, nothing after them) and ``@every <duration>`` with Go's duration
      syntax (``90s``, ``1h30m``, ``1.5h``): the duration is truncated to whole seconds and is at
      least 1 s; negative durations are rejected. ``@reboot`` is rejected;
    - an optional ``CRON_TZ=<zone> `` or ``TZ=<zone> `` prefix (IANA zone name) evaluates the
      fields in that zone; unknown zones are rejected (also when no time zone database is
      installed, except ``UTC``). Without a prefix, the fields are evaluated in the time zone of
      the ``after`` passed to :meth:`next`, as robfig/cron does; River (Go)'s periodic enqueuer
      passes UTC times.

    Run times (:meth:`next`): the first instant strictly after ``after``, at second 0, whose wall
    clock in the evaluation zone matches every field. Across daylight-saving changes this means
    a wall time that does not exist (clocks moved forward) is skipped on that day, and a wall
    time that occurs twice (clocks moved back) runs twice, once per occurrence. ``@every d``
    runs at ``after`` truncated to a whole second, plus ``d``, whatever the zone. Like
    robfig/cron, the search gives up after the end of the fifth year following ``after`` and
    returns :data:`NEVER` (also for impossible dates such as ``0 0 30 2 *``).

    Deliberate differences from robfig/cron: a few inputs Go accepts by accident are rejected
    (``*-5``, negative ``@every`` durations, ``CRON_TZ=`` with an empty zone or ``Local``); in
    rare DST transitions at local midnight on the first of a month or in zones east of UTC,
    robfig/cron can skip a day that still exists, whereas this class follows the rule above.

    ``str()`` gives the expression, ``repr()`` the constructor call; instances compare equal when
    their expressions are identical.
    """

    __slots__ = (
        "_dom",
        "_dom_star",
        "_dow",
        "_dow_star",
        "_every",
        "_expression",
        "_hours",
        "_minutes",
        "_months",
        "_zone",
    )

    def __init__(self, expression: str) -> None:
        if not isinstance(expression, str):
            raise ValidationError(
                _FIELD, f"expression must be a string, got {type(expression).__name__}"
            )
        self._expression = expression
        self._zone: tzinfo | None = None
        self._every: timedelta | None = None
        self._minutes: tuple[int, ...] = ()
        self._hours: tuple[int, ...] = ()
        self._dom: frozenset[int] = frozenset()
        self._months: tuple[int, ...] = ()
        self._dow: frozenset[int] = frozenset()
        self._dom_star = False
        self._dow_star = False

        spec = expression
        if not spec.strip():
            raise ValidationError(_FIELD, "expression is empty")
        if spec.startswith(("TZ=", "CRON_TZ=")):
            zone_text, space, remainder = spec.partition(" ")
            if not space:
                raise ValidationError(
                    _FIELD, f"time zone prefix {spec!r} must be followed by a space and a schedule"
                )
            self._zone = _load_zone(zone_text.partition("=")[2])
            spec = remainder.strip()
            if not spec:
                raise ValidationError(_FIELD, "no schedule after the time zone prefix")
        if spec.startswith("@"):
            spec = self._parse_descriptor(spec)
        self._parse_fields(spec)

    def _parse_descriptor(self, spec: str) -> str:
        """Resolve a descriptor to its 5-field form; ``@every`` is stored and returns ``""``."""
        fields = _DESCRIPTORS.get(spec)
        if fields is not None:
            return fields
        if spec.startswith(_EVERY) and spec != _EVERY:
            text = spec[len(_EVERY) :]
            try:
                nanoseconds = parse_go_duration(text)
            except ValueError as error:
                raise ValidationError(_FIELD, f"@every: {error}") from None
            if nanoseconds < 0:
                raise ValidationError(_FIELD, f"@every: duration {text!r} is negative")
            seconds = max(nanoseconds // 1_000_000_000, 1)
            self._every = timedelta(seconds=seconds)
            return ""
        if spec in ("@every", "@every "):
            raise ValidationError(_FIELD, "@every needs a duration, e.g. '@every 1h30m'")
        if spec == "@reboot":
            raise ValidationError(_FIELD, "@reboot is not supported (there is no reboot event)")
        raise ValidationError(
            _FIELD,
            f"unknown descriptor {spec!r} (expected @yearly, @annually, @monthly, @weekly, "
            "@daily, @midnight, @hourly or @every <duration>)",
        )

    def _parse_fields(self, spec: str) -> None:
        if self._every is not None:
            return
        fields = spec.split()
        if len(fields) != len(_FIELDS):
            hint = " (a seconds field is not supported)" if len(fields) == 6 else ""
            raise ValidationError(
                _FIELD,
                f"expected exactly 5 fields (minute hour day-of-month month day-of-week), "
                f"found {len(fields)}{hint}",
            )
        parsed = [_parse_field(text, bounds) for text, bounds in zip(fields, _FIELDS, strict=True)]
        self._minutes = parsed[0][0]
        self._hours = parsed[1][0]
        self._dom, self._dom_star = frozenset(parsed[2][0]), parsed[2][1]
        self._months = parsed[3][0]
        self._dow, self._dow_star = frozenset(parsed[4][0]), parsed[4][1]

    @property
    def expression(self) -> str:
        """The expression as given to the constructor."""
        return self._expression

    @property
    def zone(self) -> tzinfo | None:
        """The zone of a ``CRON_TZ=``/``TZ=`` prefix, or ``None`` (evaluate in ``after``'s zone)."""
        return self._zone

    def __str__(self) -> str:
        return self._expression

    def __repr__(self) -> str:
        return f"Cron({self._expression!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cron):
            return NotImplemented
        return self._expression == other._expression

    def __hash__(self) -> int:
        return hash((Cron, self._expression))

    def next(self, after: datetime) -> datetime:
        """Return the first run time strictly after ``after``, in UTC (see the class docstring).

        ``after`` must be timezone-aware (:class:`~river.ValidationError` otherwise). Returns
        :data:`NEVER` when nothing matches within the search limit, and for ``after`` so close to
        the end of ``datetime``'s range that the result cannot be represented.
        """
        after_utc = _require_aware(after)
        try:
            if self._every is not None:
                return after_utc.replace(microsecond=0) + self._every
            zone = self._zone if self._zone is not None else after.tzinfo
            assert zone is not None
            return self._next_in_zone(after_utc, zone)
        except OverflowError:
            return NEVER

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        dom_match = day in self._dom
        dow_match = (calendar.weekday(year, month, day) + 1) % 7 in self._dow
        if self._dom_star or self._dow_star:
            return dom_match and dow_match
        return dom_match or dow_match

    def _next_wall(self, start: datetime, last_year: int) -> datetime | None:
        """First matching wall time (naive, whole minute) at or after ``start``.

        ``start`` has zero seconds and microseconds. Returns ``None`` past ``last_year``.
        """
        year, month, day, hour, minute = (
            start.year,
            start.month,
            start.day,
            start.hour,
            start.minute,
        )
        while year <= last_year:
            if month not in self._months:
                next_month = _first_at_least(self._months, month)
                if next_month is None:
                    year, month = year + 1, self._months[0]
                else:
                    month = next_month
                day, hour, minute = 1, 0, 0
                continue
            days_in_month = calendar.monthrange(year, month)[1]
            matching_day = day
            while matching_day <= days_in_month and not self._day_matches(
                year, month, matching_day
            ):
                matching_day += 1
            if matching_day > days_in_month:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute = 1, 0, 0
                continue
            if matching_day != day:
                day, hour, minute = matching_day, 0, 0
            next_hour = _first_at_least(self._hours, hour)
            if next_hour is None:
                day, hour, minute = day + 1, 0, 0
                continue
            if next_hour != hour:
                hour, minute = next_hour, 0
            next_minute = _first_at_least(self._minutes, minute)
            if next_minute is None:
                hour, minute = hour + 1, 0
                if hour > 23:
                    day, hour = day + 1, 0
                continue
            return datetime(year, month, day, hour, next_minute)
        return None

    def _first_instant_from(
        self,
        wall: datetime | None,
        last_year: int,
        zone: tzinfo,
        after_utc: datetime,
        until: datetime | None,
    ) -> datetime | None:
        """Walk matching wall times from ``wall`` (up to ``until``, inclusive, if given) and
        return the earliest instant later than ``after_utc`` of the first one that has any."""
        while wall is not None and (until is None or wall <= until):
            later = [instant for instant in _instants(wall, zone) if instant > after_utc]
            if later:
                return later[0]
            wall = self._next_wall(wall + _ONE_MINUTE, last_year)
        return None

    def _next_in_zone(self, after_utc: datetime, zone: tzinfo) -> datetime:
        local = after_utc.astimezone(zone)
        wall = local.replace(tzinfo=None)
        last_year = min((wall.replace(microsecond=0) + _ONE_SECOND).year + _YEAR_LIMIT, _MAX_YEAR)
        start = wall.replace(second=0, microsecond=0) + _ONE_MINUTE

        # Instants ordered by time visit wall times in increasing order, except that when clocks
        # move back the repeated wall times are visited a second time. So the answer is the first
        # matching wall time after `wall` (its first occurrence; gaps are skipped), unless `wall`
        # is the first occurrence of a repeated time: then matching wall times at or before it
        # come round again, after the clocks move back, possibly earlier than that.
        best = self._first_instant_from(
            self._next_wall(start, last_year), last_year, zone, after_utc, None
        )
        occurrences = _instants(wall, zone)
        if len(occurrences) == 2 and occurrences[1] > after_utc:
            repeated = occurrences[1] - occurrences[0]
            lowest = wall - repeated
            if lowest.second or lowest.microsecond:
                lowest = lowest.replace(second=0, microsecond=0) + _ONE_MINUTE
            again = self._first_instant_from(
                self._next_wall(lowest, last_year), last_year, zone, after_utc, wall
            )
            if again is not None and (best is None or again < best):
                best = again
        return NEVER if best is None else best


# --------------------------------------------------------------------------------------------
# Interval
# --------------------------------------------------------------------------------------------


class PeriodicInterval:
    """A schedule that runs at a fixed interval: ``next(after) = after + interval``.

    ``seconds`` is a number of seconds (int or float) or a :class:`~datetime.timedelta`. It must
    be positive and finite, and at least one microsecond once converted to a ``timedelta``
    (Python's resolution); otherwise :class:`~river.ValidationError` (field ``"interval"``).
    River (Go)'s ``PeriodicInterval`` accepts any duration and advises at least one second (a
    periodic job's period should generally be a minute or more); zero or negative intervals are
    rejected here because they would make the enqueuer loop without waiting.

    The interval is not aligned to a clock boundary (unlike :class:`Cron`'s ``@every``, which
    truncates ``after`` to a whole second first). The result is in UTC; :data:`NEVER` if it would
    be past ``datetime``'s range.
    """

    __slots__ = ("_interval",)

    def __init__(self, seconds: float | timedelta) -> None:
        interval: timedelta
        if isinstance(seconds, timedelta):
            interval = seconds  # kept exact (a float of seconds would round long intervals)
        else:
            try:
                value = parse_duration(seconds, timedeltas=False)
            except DurationError:
                raise ValidationError(
                    "interval",
                    f"must be a number of seconds or a timedelta, got {type(seconds).__name__}",
                ) from None
            if not math.isfinite(value):
                raise ValidationError("interval", f"must be finite, got {seconds!r}")
            try:
                interval = timedelta(seconds=value)
            except OverflowError:
                raise ValidationError("interval", f"{seconds!r} seconds is too large") from None
        if interval <= timedelta(0):
            raise ValidationError(
                "interval", f"must be positive (at least 1 microsecond), got {seconds!r}"
            )
        self._interval = interval

    @property
    def interval(self) -> timedelta:
        """The interval between runs."""
        return self._interval

    def next(self, after: datetime) -> datetime:
        """Return ``after + interval`` in UTC (``after`` must be timezone-aware)."""
        after_utc = _require_aware(after)
        try:
            return after_utc + self._interval
        except OverflowError:
            return NEVER

    def __repr__(self) -> str:
        return f"PeriodicInterval({self._interval!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeriodicInterval):
            return NotImplemented
        return self._interval == other._interval

    def __hash__(self) -> int:
        return hash((PeriodicInterval, self._interval))
