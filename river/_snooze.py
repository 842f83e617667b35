"""The snooze counter kept in a job's metadata (PROTOCOL 3.8).

Each snooze writes ``metadata["snoozes"] = previous + 1``. River (Go) reads the previous value
leniently (with gjson's ``Int()``), and this module reproduces that reading exactly so both
implementations count the same on shared rows; the ``snooze_counters`` conformance fixture is
the oracle.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

__all__ = ["SNOOZES_KEY", "next_snooze_count"]

SNOOZES_KEY: Final = "snoozes"
"""The metadata key of the snooze counter."""

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_UINT64: Final = 1 << 64
# Largest magnitude a float64 holds exactly as an integer, minus one (gjson's "safe" range).
_FLOAT_SAFE: Final = (1 << 53) - 1
_INTEGER_STRING: Final = re.compile(r"-?[0-9]+", re.ASCII)
# Python refuses int() on very long digit strings (sys.set_int_max_str_digits); go by chunks.
_CHUNK: Final = 1000


def _wrap_int64(value: int) -> int:
    """``value`` reduced to a signed 64-bit integer with two's-complement wrap-around (as Go)."""
    return (value - _INT64_MIN) % _UINT64 + _INT64_MIN


def _parse_integer_string(text: str) -> int:
    """An ``-?[0-9]+`` string as Go's int64 arithmetic reads it (wrapping on overflow)."""
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    value = 0
    for start in range(0, len(digits), _CHUNK):
        chunk = digits[start : start + _CHUNK]
        value = (value * 10 ** len(chunk) + int(chunk)) % _UINT64
    return _wrap_int64(-value if negative else value)


def _from_float(number: float) -> int:
    """A JSON number that was not an integer literal: truncated toward zero like Go.

    Values outside int64 (and infinities) convert the way Go's ``int64(f)`` does on amd64, to
    the minimum int64; NaN (not valid JSON) counts as 0.
    """
    if math.isnan(number):
        return 0
    if math.isinf(number) or not _INT64_MIN <= number < -_INT64_MIN:
        return _INT64_MIN
    return int(number)


def _previous_count(value: object) -> int:
    """The lenient integer reading of a ``snoozes`` metadata value (gjson ``Result.Int()``)."""
    if value is True:
        return 1
    if value is None or value is False:
        return 0
    if isinstance(value, int):
        # An integer literal: exact up to int64 (gjson re-parses the raw text), then wraps.
        return _wrap_int64(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return _from_float(float(value))
        if value.as_tuple().exponent == 0:
            # json.loads(..., parse_int=Decimal): an integer literal.
            return _wrap_int64(int(value))
        # json.loads(..., parse_float=Decimal): a fraction or exponent literal.
        return _from_float(float(value))
    if isinstance(value, float):
        if abs(value) <= _FLOAT_SAFE:
            return int(value)
        return _from_float(value)
    if isinstance(value, str) and _INTEGER_STRING.fullmatch(value):
        return _parse_integer_string(value)
    # Other strings (fractions, padding, signs other than a leading "-", words), arrays,
    # objects and anything else.
    return 0


def next_snooze_count(metadata: Mapping[str, Any] | None) -> int:
    """Return the value to store in ``metadata["snoozes"]`` when a job snoozes: previous + 1.

    The previous value is read leniently, as River (Go) does:

    - absent, ``None`` (JSON null), ``False``, lists, dicts, and strings that are not plain
      integers (``"4.5"``, ``" 5"``, ``"+5"``, ``"abc"``, ``""``) count as 0; ``True`` counts as 1;
    - numbers are truncated toward zero (``2.9`` -> 2, ``-2.5`` -> -2, ``1e3`` -> 1000);
    - integers and integer strings (``"-7"``) are exact, also beyond float precision
      (``9007199254740993`` -> 9007199254740994).

    Inputs are the Python values ``json.loads`` produces (what psycopg hands over for jsonb:
    ``int`` for integer literals, ``float`` for the others); :class:`~decimal.Decimal` values
    from ``parse_float=Decimal`` / ``parse_int=Decimal`` are read the same way. Arithmetic is
    Go's int64: values beyond it wrap around, non-integer numbers beyond it become -2**63 (as Go
    on amd64), and previous = 2**63 - 1 gives -2**63. A missing or ``None`` metadata counts as
    empty.
    """
    previous = 0 if metadata is None else _previous_count(metadata.get(SNOOZES_KEY))
    return _wrap_int64(previous + 1)
