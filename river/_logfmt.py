"""Log line formats of ``river worker`` (``--log-format text|json``) and the structured fields
that the library's log records carry.

Records about a job carry ``job_id``, ``job_kind``, ``queue`` and ``attempt`` as attributes
(passed with ``extra=``, see :func:`job_fields`); records about a queue carry ``queue``. The
two formatters put those attributes, and any other ``extra`` a record has, in the line:

- :class:`TextFormatter`: ``2026-01-02T03:04:05.678Z WARNING river.job: message key=value ...``
  (UTC, milliseconds; with ``process_index``: ``river.job[INDEX:PID]``);
- :class:`JsonFormatter`: one JSON object per line (``time``, ``level``, ``logger``,
  ``message``, ``process``, the fields, ``exc_info``/``stack_info`` as strings), ASCII only.

Both are plain :class:`logging.Formatter` subclasses without I/O of their own. They are
internal (the worker installs them); the record attributes are the documented interface
(docs/observability.md).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import re
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import PurePath
from typing import Any

from river._types import JobRow

__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "job_fields",
    "parse_log_level",
    "queue_fields",
    "record_fields",
]

#: The values of ``--log-format``.
LOG_FORMATS = ("text", "json")

#: Attributes every LogRecord has: anything else on a record came from ``extra=`` (or a
#: filter) and is a structured field. Computed, so that attributes a newer Python adds
#: (``taskName`` in 3.12) are not mistaken for fields.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

#: Keys of a JSON line that fields may not take (a field with such a name is written with
#: an ``extra_`` prefix rather than dropped or overwriting the line's own key).
_JSON_KEYS = frozenset(
    {"time", "level", "logger", "message", "process", "process_index", "exc_info", "stack_info"}
)

#: A text value written without quotes: no blank, quote, ``=``, backslash or control char.
_BARE = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")


def job_fields(row: JobRow) -> dict[str, Any]:
    """The ``extra`` of a log record about one attempt of ``row``."""
    return {"job_id": row.id, "job_kind": row.kind, "queue": row.queue, "attempt": row.attempt}


def queue_fields(queue: str) -> dict[str, Any]:
    """The ``extra`` of a log record about a queue."""
    return {"queue": queue}


def parse_log_level(value: object) -> int:
    """A logging level from a name (``debug``, ``INFO``, ... case-insensitive) or a number
    >= 1 (``20``, ``"20"``). Raises ValueError naming the rule."""
    # NOTSET (0) is refused: on the river logger it would mean "the root logger's level".
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"must be a logging level >= 1, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) >= 1:
            return int(text)
        number = logging.getLevelNamesMapping().get(text.upper())
        if number is not None and text.upper() != "NOTSET":
            return number
    raise ValueError(
        f"must be a logging level (debug, info, warning, error, critical, or a number), "
        f"got {value!r}"
    )


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of ``record``: its attributes that are not LogRecord's own."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


def format_time(created: float, msecs: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-01-02T03:04:05.678Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


def _plain(value: Any) -> Any:
    """``value`` as something json can encode (the JSON encoder's ``default``)."""
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _json(value: Any) -> str:
    """One JSON value, never raising: what json refuses (NaN, keys that are not strings,
    cycles) is written as the value's ``str``."""
    try:
        return json.dumps(value, default=_plain, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(_safe_str(value), ensure_ascii=True)


def _safe_str(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _text_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    text = value if isinstance(value, str) else _safe_str(_plain(value))
    if _BARE.fullmatch(text):
        return text
    # Quoted and escaped like a JSON string (non-ASCII kept readable): a value never spans
    # lines or hides the next key.
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE key=value ...``, then the traceback (if any) on the lines
    that follow. Line breaks inside the message are written as ``\\n`` (one line per record).

    ``TIME`` is UTC with milliseconds (``2026-01-02T03:04:05.678Z``). ``process_index`` (the
    ``--processes`` child's index) adds ``[INDEX:PID]`` after the logger name. Field values are
    written bare when they have no blanks, quotes or ``=``, else quoted as JSON strings.
    """

    def __init__(self, *, process_index: int | None = None) -> None:
        super().__init__()
        self.process_index = process_index

    def format(self, record: logging.LogRecord) -> str:
        where = record.name
        if self.process_index is not None:
            where += f"[{self.process_index}:{record.process}]"
        message = record.getMessage()
        if "\n" in message or "\r" in message:
            # One line per record: a driver's multi-line error (psycopg's "...\nDETAIL: ...")
            # in the message would put its end and the fields after it on lines of their own.
            message = message.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
        parts = [
            f"{format_time(record.created, record.msecs)} {record.levelname} {where}: {message}"
        ]
        parts.extend(f"{k}={_text_value(v)}" for k, v in record_fields(record).items())
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the message, the fields or the
    traceback are escaped), ASCII only (other characters as ``\\uXXXX``)::

        {"time": "2026-01-02T03:04:05.678Z", "level": "WARNING", "logger": "river.job",
         "message": "job 5 failed, ...", "process": 4242, "job_id": 5, "job_kind": "email",
         "queue": "default", "attempt": 1, ..., "exc_info": "Traceback (most recent ..."}

    ``process`` is the pid; ``process_index`` (the ``--processes`` child's index) is added when
    given. Field values that JSON has no type for are written as strings (datetimes in ISO
    8601, timedeltas as seconds, enums as their value, anything else as ``str()``).
    """

    def __init__(self, *, process_index: int | None = None) -> None:
        super().__init__()
        self.process_index = process_index

    def format(self, record: logging.LogRecord) -> str:
        items = [
            ("time", format_time(record.created, record.msecs)),
            ("level", record.levelname),
            ("logger", record.name),
            ("message", record.getMessage()),
            ("process", record.process),
        ]
        if self.process_index is not None:
            items.append(("process_index", self.process_index))
        for key, value in record_fields(record).items():
            items.append((f"extra_{key}" if key in _JSON_KEYS else key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            items.append(("exc_info", record.exc_text))
        if record.stack_info:
            items.append(("stack_info", self.formatStack(record.stack_info)))
        body = ", ".join(f"{json.dumps(key, ensure_ascii=True)}: {_json(v)}" for key, v in items)
        return "{" + body + "}"
