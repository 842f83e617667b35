"""Durations: the one parser behind every duration the library reads.

Two layers, both pure (no I/O, nothing imported beyond the standard library):

- :func:`parse_go_duration`, Go's ``time.ParseDuration`` grammar (``300ms``, ``1.5h``,
  ``1m30s``), exact to the nanosecond. Cron's ``@every`` and the ``river`` CLI flags, which
  must read what River (Go) reads, use it directly.
- :func:`parse_duration`, seconds (a float) from a Python value: a number, a ``timedelta``, or a
  string in the syntax the call site accepts. ``Config``, ``QueueConfig``, ``UniqueOpts``,
  ``PeriodicInterval``, ``JobLogConfig``, the worker's TOML file and flags and ``river bench``
  all go through it.

Range rules (positive, at least 1 ms, -1 for none...) and the wording of errors belong to each
call site: :class:`DurationError` carries a ``problem`` code so that a caller can phrase its own
message without parsing twice.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final, Literal

__all__ = ["DurationError", "Problem", "TextSyntax", "parse_duration", "parse_go_duration"]

#: Why a value is not a duration: ``"bool"`` (True is not one second), ``"type"`` (neither a
#: number nor an accepted type), ``"syntax"`` (a string that does not parse).
Problem = Literal["bool", "type", "syntax"]

#: Strings :func:`parse_duration` accepts: ``"go"`` Go's syntax, ``"go_or_seconds"`` Go's syntax
#: or a plain number of seconds (``"2.5"``), ``"seconds"`` only a plain number of seconds.
TextSyntax = Literal["go", "go_or_seconds", "seconds"]


class DurationError(ValueError):
    """A value that is not a duration; ``problem`` says which rule it broke (see
    :data:`Problem`), ``str()`` says it in words."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem: Problem = problem


# --------------------------------------------------------------------------------------------
# Go's grammar
# --------------------------------------------------------------------------------------------

_UNITS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)", re.ASCII)
_INT64_MAX: Final = (1 << 63) - 1


def parse_go_duration(text: str) -> int:
    """Parse Go's ``time.ParseDuration`` syntax into nanoseconds, with Go's rounding.

    Accepted: an optional sign, then one or more ``<number><unit>`` parts, numbers with an
    optional fraction (``1.5h``, ``.5s``, ``1.s``), units ``ns us µs μs ms s m h``; a lone ``0``
    needs no unit. Fractions are converted the way Go does (float64, truncated to a nanosecond).
    Surrounding whitespace is not stripped (Go does not). Raises :class:`DurationError`
    (problem ``"syntax"``) with Go's wording on anything else or on int64 overflow.
    """
    rest = text
    negative = False
    if rest[:1] in ("+", "-") and rest:
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise DurationError("syntax", f"invalid duration {text!r}")
    total = 0
    position = 0
    while position < len(rest):
        match = _PART.match(rest, position)
        assert match is not None  # every group can match empty
        whole, fraction, unit = match.groups()
        position = match.end()
        if not whole and not fraction:
            raise DurationError("syntax", f"invalid duration {text!r}")
        if not unit:
            raise DurationError("syntax", f"missing unit in duration {text!r}")
        unit_ns = _UNITS.get(unit)
        if unit_ns is None:
            raise DurationError("syntax", f"unknown unit {unit!r} in duration {text!r}")
        value = int(whole) if whole else 0
        if value > (1 << 63) // unit_ns:
            raise DurationError("syntax", f"invalid duration {text!r}")
        value *= unit_ns
        if fraction:
            # Like Go: keep fraction digits while they fit in an int64, ignore the rest.
            digits = 0
            scaled = 0
            for char in fraction:
                candidate = scaled * 10 + int(char)
                if scaled > _INT64_MAX // 10 or candidate > 1 << 63:
                    break
                scaled = candidate
                digits += 1
            if scaled:
                value += int(float(scaled) * (float(unit_ns) / float(10**digits)))
        total += value
        if value > 1 << 63 or total > 1 << 63:
            raise DurationError("syntax", f"invalid duration {text!r}")
    if not negative and total > _INT64_MAX:
        raise DurationError("syntax", f"invalid duration {text!r}")
    return -total if negative else total


# --------------------------------------------------------------------------------------------
# Python values
# --------------------------------------------------------------------------------------------


def parse_duration(
    value: object, *, text: TextSyntax | None = None, timedeltas: bool = True
) -> float:
    """Seconds from ``value``.

    - a ``bool``: refused (problem ``"bool"``), although Python counts it as an int;
    - a ``timedelta``, when ``timedeltas``: its total seconds;
    - a ``str``, when ``text`` is set: stripped, then read as ``text`` says (:data:`TextSyntax`;
      problem ``"syntax"`` when it does not parse);
    - anything else ``float()`` takes (int, float, Decimal...): that many seconds; an integer
      too large for a float is infinite.

    Any other value is refused (problem ``"type"``). The result is not range-checked: it may be
    negative, infinite or NaN, which the caller judges by its own rule.
    """
    if type(value) is float:  # the common case, first
        return value
    if isinstance(value, bool):
        raise DurationError("bool", f"must be a duration, not a boolean: {value!r}")
    if isinstance(value, timedelta) and timedeltas:
        return value.total_seconds()
    if isinstance(value, str):
        if text is None:
            raise DurationError("type", f"must be a duration, got {value!r}")
        return _parse_text(value, text)
    try:
        return float(value)  # type: ignore[arg-type]  # float() says what it takes
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]
    except (TypeError, ValueError):
        raise DurationError("type", f"must be a duration, got {value!r}") from None


def _parse_text(value: str, syntax: TextSyntax) -> float:
    stripped = value.strip()
    if syntax != "seconds":
        try:
            return parse_go_duration(stripped) / 1e9
        except DurationError:
            if syntax == "go":
                raise
    try:
        return float(stripped)
    except ValueError:
        raise DurationError("syntax", f"invalid duration {value!r}") from None
