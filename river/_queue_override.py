"""Cluster-wide queue settings: an override stored in ``river_queue.metadata`` (pure, no I/O).

``river queue update NAME --max-workers 50`` (or :meth:`AsyncClient.queue_update` with a
setting) writes the override under the namespaced key :data:`METADATA_KEY` of the queue's row::

    {"river_py": {"settings": {"max_workers": 50, "fetch_cooldown": 0.1}}}

Durations are numbers of seconds. Every river-queue client that works the queue reads it with
its regular poll (and at once on the ``metadata_changed`` notification) and applies it over its
own configuration: a field set in the override wins over the client's ``QueueConfig`` and
``Config`` defaults; a field left out keeps the client's own value. Clearing a field (``None``
in the API, ``--clear`` on the command line) returns every client to its own value. River (Go)
clients never read the key, so they keep their own settings.

The override comes from the database, so it is untrusted: :func:`from_metadata` keeps the valid
fields and reports the others (a client logs them once and goes on with its own values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from river._errors import InvalidConfigError
from river._names import MAX_WORKERS_LIMIT
from river._ratelimit import RateLimit, rate_limit_from_json, rate_limit_to_json

__all__ = [
    "FIELDS",
    "METADATA_KEY",
    "QueueOverride",
    "from_metadata",
    "from_settings",
    "settings_patch",
    "validate_patch",
]

#: The key of ``river_queue.metadata`` that river-queue owns.
METADATA_KEY = "river_py"
#: The settings a cluster-wide override may set.
FIELDS = ("max_workers", "min_workers", "fetch_cooldown", "fetch_poll_interval", "rate_limit")
_WORKER_FIELDS = ("max_workers", "min_workers")

#: Bounds of the durations an override may set, in seconds (the same as QueueConfig's minimum;
#: at most a day, so a typo cannot park a queue for years).
_MIN_DURATION = 0.001
_MAX_DURATION = 86_400.0


@dataclass(frozen=True, slots=True)
class QueueOverride:
    """The cluster-wide settings of one queue; ``None`` = not overridden (the client's own)."""

    max_workers: int | None = None
    fetch_cooldown: float | None = None
    fetch_poll_interval: float | None = None
    #: With a value below the effective ``max_workers``: the queue is autoscaled.
    min_workers: int | None = None
    rate_limit: RateLimit | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, f) is not None for f in FIELDS)

    def as_dict(self) -> dict[str, Any]:
        """The set fields only (the stored shape: a rate limit as ``{"jobs", "per"}``)."""
        out: dict[str, Any] = {}
        for f in FIELDS:
            value = getattr(self, f)
            if value is not None:
                out[f] = rate_limit_to_json(value) if isinstance(value, RateLimit) else value
        return out

    def describe(self) -> str:
        """One line for logs and the CLI, e.g. ``max_workers=5, rate_limit=50/1s``."""
        parts = []
        for f in FIELDS:
            value = getattr(self, f)
            if value is not None:
                parts.append(f"{f}={value:g}" if isinstance(value, float) else f"{f}={value}")
        return ", ".join(parts) or "none"


def _check(field: str, value: Any) -> str | None:
    """Why ``value`` is not valid for ``field`` (None when it is)."""
    if field == "rate_limit":
        try:
            rate_limit_from_json(value)
        except InvalidConfigError as exc:
            part = exc.field.removeprefix("rate_limit").lstrip(".")
            return f"{part} {exc.rule}" if part else exc.rule
        return None
    if field in _WORKER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        if not 1 <= value <= MAX_WORKERS_LIMIT:
            return f"must be between 1 and {MAX_WORKERS_LIMIT}, got {value}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of seconds, got {value!r}"
    # No float() of an int: a 400-digit integer (which jsonb stores) would overflow; int and
    # float compare exactly.
    if (isinstance(value, float) and math.isnan(value)) or not (
        _MIN_DURATION <= value <= _MAX_DURATION
    ):
        return f"must be between {_MIN_DURATION} and {_MAX_DURATION:.0f} seconds, got {value!r}"
    return None


def _normalized(field: str, value: Any) -> Any:
    """A valid value in its stored form."""
    if field in _WORKER_FIELDS:
        return value
    if field == "rate_limit":
        return rate_limit_to_json(rate_limit_from_json(value))
    return float(value)


def validate_patch(patch: Mapping[str, Any]) -> dict[str, Any]:
    """Check a change to an override before any SQL: ``{field: value or None to clear}``.

    Raises ValueError naming the field and the rule (the caller wraps it in its own error
    type). A poll interval below the cooldown is refused when both are in the patch; a client
    whose own values would cross an override clamps instead (see :func:`apply_override`).
    """
    out: dict[str, Any] = {}
    for field, value in patch.items():
        if field not in FIELDS:
            raise ValueError(f"{field}: not a queue setting (one of {', '.join(FIELDS)})")
        if value is not None:
            if isinstance(value, RateLimit):
                value = rate_limit_to_json(value)
            reason = _check(field, value)
            if reason:
                raise ValueError(f"{field}: {reason}")
            value = _normalized(field, value)
        out[field] = value
    low, high = out.get("min_workers"), out.get("max_workers")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        raise ValueError(f"min_workers: must be at most max_workers ({high}), got {low}")
    cooldown, poll = out.get("fetch_cooldown"), out.get("fetch_poll_interval")
    if cooldown is not None and poll is not None and poll < cooldown:
        raise ValueError(
            f"fetch_poll_interval: must be at least fetch_cooldown ({cooldown}s), got {poll}s"
        )
    return out


def settings_patch(
    max_workers: int | None,
    fetch_cooldown: float | timedelta | None,
    fetch_poll_interval: float | timedelta | None,
    clear: Sequence[str] | str,
    min_workers: int | None = None,
    rate_limit: RateLimit | None = None,
) -> dict[str, Any]:
    """The patch of ``queue_update``'s keyword arguments: a given setting is set, a field named
    in ``clear`` is removed (ValueError for a setting both given and cleared, or an unknown
    field; checked again by :func:`validate_patch`)."""
    if isinstance(clear, str):
        clear = [clear]
    patch: dict[str, Any] = {}
    for field in clear:
        if field not in FIELDS:
            raise ValueError(
                f"clear: {field!r} is not a queue setting (one of {', '.join(FIELDS)})"
            )
        patch[field] = None
    given = {
        "max_workers": max_workers,
        "min_workers": min_workers,
        "fetch_cooldown": fetch_cooldown,
        "fetch_poll_interval": fetch_poll_interval,
        "rate_limit": rate_limit,
    }
    for field, value in given.items():
        if value is None:
            continue
        if field in patch:
            raise ValueError(f"{field}: given and cleared at once")
        patch[field] = value.total_seconds() if isinstance(value, timedelta) else value
    return patch


def from_metadata(metadata: Mapping[str, Any] | None) -> tuple[QueueOverride, list[str]]:
    """The override stored in a queue's metadata, and a description of each invalid field
    (ignored). Missing or malformed keys read as "no override"."""
    if not isinstance(metadata, Mapping):
        return QueueOverride(), []
    ours = metadata.get(METADATA_KEY)
    if ours is None:
        return QueueOverride(), []
    if not isinstance(ours, Mapping):
        return QueueOverride(), [f"{METADATA_KEY}: not an object"]
    return from_settings(ours.get("settings"))


def from_settings(settings: Any) -> tuple[QueueOverride, list[str]]:
    """The override of a stored ``settings`` object (``metadata #> '{river_py,settings}'``, as
    the poller reads it), and a description of each invalid field (ignored)."""
    if settings is None:
        return QueueOverride(), []
    if not isinstance(settings, Mapping):
        return QueueOverride(), [f"{METADATA_KEY}.settings: not an object"]
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in FIELDS:
        value = settings.get(field)
        if value is None:
            continue
        try:
            reason = _check(field, value)
        except Exception as exc:  # a rule that trips on a value nobody foresaw: invalid too
            reason = f"unreadable ({type(exc).__name__})"
        if reason:
            problems.append(_clipped(f"{field}: {reason}"))
        elif field == "rate_limit":
            values[field] = rate_limit_from_json(value)
        else:
            values[field] = _normalized(field, value)
    return QueueOverride(**values), problems


def _clipped(problem: str) -> str:
    """A problem's description, shortened for the log: a stored value may be a number of
    thousands of digits."""
    return problem if len(problem) <= 200 else f"{problem[:160]}... ({len(problem)} characters)"
