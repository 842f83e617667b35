"""Field types whose JSON is what River (Go)'s ``encoding/json`` writes for the same Go type.

``bytes`` needs none: :class:`river.JobArgs` encodes it as standard base64, as Go writes a
``[]byte``. A Go ``time.Duration`` is an integer of nanoseconds in JSON, which no pydantic
setting produces: :data:`GoDuration` does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import pydantic

__all__ = ["GoDuration"]

_MAX_NS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
_OUT_OF_RANGE = (
    "is out of the range of Go's time.Duration (an int64 of nanoseconds, about 292 years "
    "either way)"
)


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not -_MAX_NS - 1 <= value <= _MAX_NS:
            raise ValueError(f"{value} ns {_OUT_OF_RANGE}")
        # Truncated toward zero to whole microseconds, timedelta's resolution.
        micros = abs(value) // 1000
        return timedelta(microseconds=micros if value >= 0 else -micros)
    raise ValueError(
        "a GoDuration is a timedelta, or an integer of nanoseconds (as River (Go) writes a "
        f"time.Duration), not {type(value).__name__}"
    )


def _nanoseconds(value: timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 10**9 + value.microseconds * 1000


def _in_range(value: timedelta) -> timedelta:
    ns = _nanoseconds(value)
    if not -_MAX_NS - 1 <= ns <= _MAX_NS:
        raise ValueError(f"{value} {_OUT_OF_RANGE}")
    return value


GoDuration = Annotated[
    timedelta,
    pydantic.BeforeValidator(_to_timedelta),
    pydantic.AfterValidator(_in_range),
    pydantic.PlainSerializer(_nanoseconds, return_type=int, when_used="json"),
]
GoDuration.__doc__ = """A ``timedelta`` field written to JSON as Go writes a ``time.Duration``:
an integer of nanoseconds (``timedelta(seconds=1)`` -> ``1000000000``). For args shared with
River (Go) workers or inserters (a Go struct field of type ``time.Duration``), where pydantic's own
``timedelta`` JSON (ISO 8601, ``"PT1S"``) cannot be read by Go and a Go-written integer would
be read as seconds.

Validation takes a ``timedelta`` or an ``int`` of nanoseconds (in Python too:
``Args(wait=1_000_000_000)`` is one second); nanoseconds below a microsecond are dropped
(truncated toward zero: ``timedelta`` holds microseconds). Anything else (floats, strings,
booleans) and durations beyond Go's range (an int64 of nanoseconds, about 292 years either way)
are refused with a pydantic ``ValidationError`` naming the field. ``model_dump()`` in Python
mode keeps the ``timedelta``.

Usage: ``class Remind(river.JobArgs): kind = "remind"; wait: river.GoDuration``.
"""
