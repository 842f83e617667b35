"""Log lines for jobs that did not complete: failed attempts, discards, cancellations.

The executor calls :class:`JobLogger` once per attempt that did not complete, where it maps the
outcome (so it knows whether the job is retried or discarded); a completed attempt never gets
here, so succeeding jobs cost nothing. Lines go to the ``river.job`` logger with the job's
fields also in ``extra`` (``job_id``, ``job_kind``, ``queue``, ``attempt``, ...). A rate limit
per (kind, queue, outcome) keeps a flood of failures to ``max_lines`` lines per ``interval``,
followed by one summary line with the count left out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from river._duration import DurationError, parse_duration
from river._errors import InvalidConfigError
from river._logfmt import job_fields
from river._types import JobRow

__all__ = ["JobLogConfig", "JobLogger", "check_level"]

logger = logging.getLogger("river.job")

Level = int | str | None
Tracebacks = Literal["discard", "always", "never"]

#: Why an attempt failed, as far as the log is concerned (the traceback is worth printing only
#: for errors raised by the worker's own code).
Cause = Literal["worker", "unknown_kind", "invalid_args", "timeout", "internal"]


def _level(value: object, field_name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidConfigError(field_name, "must be a logging level or 'off', not a bool")
    if isinstance(value, int):
        if value < 0:
            raise InvalidConfigError(field_name, f"must be a logging level >= 0, got {value}")
        return value
    if isinstance(value, str):
        name = value.strip().upper()
        if name == "OFF":
            return None
        number = logging.getLevelNamesMapping().get(name)
        if number is not None:
            return number
    raise InvalidConfigError(
        field_name,
        f"must be a logging level (debug, info, warning, error, critical, a number) or 'off', "
        f"got {value!r}",
    )


def check_level(value: object) -> None:
    """Raise :class:`river.InvalidConfigError` unless ``value`` is a level JobLogConfig takes."""
    _level(value, "level")


@dataclass(frozen=True, slots=True)
class JobLogConfig:
    """How a client logs the jobs it works that did not complete (logger ``river.job``).

    ``Config(job_log=None)`` logs none of it. Each level is a ``logging`` level (number or
    name such as ``"warning"``), or ``None`` / ``"off"`` to leave that line out:

    - ``failure_level`` (WARNING): an attempt failed and the job will be retried.
    - ``discard_level`` (ERROR): an attempt failed and the job was discarded (no attempts left).
    - ``cancel_level`` (INFO): the worker raised :class:`river.JobCancel`, or the job was
      cancelled (``job_cancel``) while it ran here.

    Unknown kinds, args that do not validate and timeouts are failures like any other.
    Snoozes and interruptions by a stopping client are logged at DEBUG only.

    - ``tracebacks``: ``"discard"`` (default) appends the traceback of an error the worker
      raised to the discard line only; ``"always"`` to retried failures too; ``"never"``.
    - ``max_lines`` (10) lines per ``interval`` (60 s) for each kind, queue and outcome
      (retried, discarded, cancelled); the rest are counted and reported in one line
      ``suppressed K similar ...`` at the end of the interval. ``None``: no limit.
    """

    failure_level: Level = logging.WARNING
    discard_level: Level = logging.ERROR
    cancel_level: Level = logging.INFO
    tracebacks: Tracebacks = "discard"
    max_lines: int | None = 10
    interval: float | timedelta = 60.0

    def __post_init__(self) -> None:
        for name in ("failure_level", "discard_level", "cancel_level"):
            _level(getattr(self, name), f"job_log.{name}")
        if self.tracebacks not in ("discard", "always", "never"):
            raise InvalidConfigError(
                "job_log.tracebacks",
                f"must be 'discard', 'always' or 'never', got {self.tracebacks!r}",
            )
        if self.max_lines is not None and (
            isinstance(self.max_lines, bool)
            or not isinstance(self.max_lines, int)
            or self.max_lines < 1
        ):
            raise InvalidConfigError(
                "job_log.max_lines", f"must be an integer >= 1, or None, got {self.max_lines!r}"
            )
        seconds = self.interval_seconds
        if math.isnan(seconds) or math.isinf(seconds) or seconds <= 0:
            raise InvalidConfigError("job_log.interval", f"must be positive, got {self.interval!r}")

    @property
    def interval_seconds(self) -> float:
        """``interval`` in seconds."""
        value = self.interval
        try:
            return parse_duration(value, text="seconds")
        except DurationError as exc:
            if exc.problem == "bool":
                raise InvalidConfigError(
                    "job_log.interval", "must be seconds, not a bool"
                ) from None
            raise InvalidConfigError(
                "job_log.interval", f"must be seconds or a timedelta, got {value!r}"
            ) from None


class _Window:
    __slots__ = ("logged", "start", "suppressed", "timer")

    def __init__(self, start: float) -> None:
        self.start = start
        self.logged = 0
        self.suppressed = 0
        self.timer: asyncio.TimerHandle | None = None


#: Outcome -> what the summary line calls the lines it stands for.
_SIMILAR = {
    "retried": "failures (retried)",
    "discarded": "failures (discarded)",
    "cancelled": "cancellations",
    "superseded": "attempts that no longer owned their job (superseded)",
    "completed_then_raised": "errors raised after job_complete_tx committed",
}


class JobLogger:
    """Writes the ``river.job`` lines of one client (see the module doc). Used from the event
    loop's thread only."""

    def __init__(self, config: JobLogConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_level = _level(config.failure_level, "failure_level")
        self.discard_level = _level(config.discard_level, "discard_level")
        self.cancel_level = _level(config.cancel_level, "cancel_level")
        self.tracebacks = config.tracebacks
        self.max_lines = config.max_lines
        self.interval = config.interval_seconds
        self._clock = clock
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._prune_at = _MAX_WINDOWS

    def failed(
        self,
        row: JobRow,
        error: BaseException,
        message: str,
        cause: Cause,
        *,
        retry_at: datetime | None,
        now: datetime,
    ) -> None:
        """An attempt failed: the job is retried at ``retry_at``, or discarded when None."""
        discarded = retry_at is None
        level = self.discard_level if discarded else self.failure_level
        if level is None or not logger.isEnabledFor(level):
            return
        outcome = "discarded" if discarded else "retried"
        if not self._allow(row, outcome):
            return
        if cause == "invalid_args":
            message = _args_problem(error, message)
        trace = (
            cause == "worker"
            and error.__traceback__ is not None
            and (self.tracebacks == "always" or (self.tracebacks == "discard" and discarded))
        )
        extra = _extra(row, outcome, error, message, retry_at=retry_at)
        # Templates with arguments (not preformatted text), so that handlers that group records
        # by message template (Sentry and the like) see a few distinct lines.
        if retry_at is None:
            logger.log(
                level,
                "job %d failed and was discarded, no attempts left (kind %s, queue %s, "
                "attempt %d/%d): %s",
                row.id,
                row.kind,
                row.queue,
                row.attempt,
                row.max_attempts,
                message,
                exc_info=error if trace else None,
                extra=extra,
            )
        else:
            logger.log(
                level,
                "job %d failed, retrying in %s (kind %s, queue %s, attempt %d/%d): %s",
                row.id,
                _duration((retry_at - now).total_seconds()),
                row.kind,
                row.queue,
                row.attempt,
                row.max_attempts,
                message,
                exc_info=error if trace else None,
                extra=extra,
            )

    def cancelled(
        self, row: JobRow, error: BaseException, message: str | None, *, remote: bool
    ) -> None:
        """The worker raised JobCancel (``message``: its reason), or the job was cancelled
        remotely while it ran (``message``: the error its attempt ended with, if any)."""
        level = self.cancel_level
        if level is None or not logger.isEnabledFor(level):
            return
        if not self._allow(row, "cancelled"):
            return
        extra = _extra(row, "cancelled", error, message)
        fields = (row.id, row.kind, row.queue, row.attempt, row.max_attempts)
        if not remote:
            template = "job %d cancelled by its worker (kind %s, queue %s, attempt %d/%d): %s"
            logger.log(level, template, *fields, message, extra=extra)
        elif message:
            template = (
                "job %d cancelled remotely while it ran (kind %s, queue %s, attempt %d/%d); "
                "the attempt ended with: %s"
            )
            logger.log(level, template, *fields, message, extra=extra)
        else:
            template = "job %d cancelled remotely while it ran (kind %s, queue %s, attempt %d/%d)"
            logger.log(level, template, *fields, extra=extra)

    def superseded(self, row: JobRow, error: BaseException) -> None:
        """The worker's ``job_complete_tx`` found that this attempt no longer owns the job
        (:class:`river.JobNotRunningError`): its transaction rolled back, and the completer
        will not apply this attempt's outcome either. Not a failure of the job: logged at
        ``failure_level``, without a traceback, and never as a retry or a discard."""
        level = self._level_for(row, "superseded")
        if level is None:
            return
        logger.log(
            level,
            "job %d: attempt %d no longer owns the job (rescued and run again, cancelled, "
            "deleted or already completed): its job_complete_tx refused and rolled back its "
            "transaction, and nothing of this attempt is recorded (kind %s, queue %s)",
            row.id,
            row.attempt,
            row.kind,
            row.queue,
            extra=_extra(row, "superseded", error, str(error)),
        )

    def raised_after_completion(self, row: JobRow, error: BaseException, message: str) -> None:
        """The worker raised after its ``job_complete_tx`` had completed the job, and that
        transaction committed: the job stays completed and the error is not recorded (not a
        failure of the job: ``failure_level``, no traceback, never a retry)."""
        level = self._level_for(row, "completed_then_raised")
        if level is None:
            return
        logger.log(
            level,
            "job %d raised after job_complete_tx had completed it in the worker's transaction, "
            "which committed: the job stays completed and the error is not recorded (kind %s, "
            "queue %s, attempt %d/%d): %s",
            row.id,
            row.kind,
            row.queue,
            row.attempt,
            row.max_attempts,
            message,
            extra=_extra(row, "completed_then_raised", error, message),
        )

    def _level_of(self, outcome: str) -> int | None:
        """The level of the lines of ``outcome`` (None: off); the lines that are not
        failures of the job (superseded, completed_then_raised) share ``failure_level``."""
        if outcome == "discarded":
            return self.discard_level
        if outcome == "cancelled":
            return self.cancel_level
        return self.failure_level

    def _level_for(self, row: JobRow, outcome: str) -> int | None:
        """The level of a line of ``outcome`` for ``row`` when it is to be written now (the
        level is on, and the rate limit lets it through), else None."""
        level = self._level_of(outcome)
        if level is None or not logger.isEnabledFor(level) or not self._allow(row, outcome):
            return None
        return level

    def snoozed(self, row: JobRow, seconds: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %d snoozed for %s (kind %s, queue %s)",
                row.id,
                _duration(seconds),
                row.kind,
                row.queue,
                extra=_extra(row, "snoozed"),
            )

    def interrupted(self, row: JobRow) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %d interrupted by the client stopping, back to available (kind %s, queue %s)",
                row.id,
                row.kind,
                row.queue,
                extra=_extra(row, "interrupted"),
            )

    def flush(self) -> None:
        """Write the summary of every window that suppressed lines now (the client stops)."""
        for key, window in list(self._windows.items()):
            self._summarize(key, window)
        self._windows.clear()

    def _allow(self, row: JobRow, outcome: str) -> bool:
        if self.max_lines is None:
            return True
        key = (row.kind, row.queue, outcome)
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.start >= self.interval:
            if window is not None:
                self._summarize(key, window)  # its timer has not run (no loop, or late)
            elif len(self._windows) >= self._prune_at:
                self._prune(now)
            window = self._windows[key] = _Window(now)
        if window.logged < self.max_lines:
            window.logged += 1
            return True
        window.suppressed += 1
        if window.timer is None:
            # The summary is due at the end of the window even when no failure follows it.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass  # written by the next line of this key, or by flush()
            else:
                window.timer = loop.call_later(
                    max(window.start + self.interval - now, 0.0), self._window_ended, key, window
                )
        return False

    def _window_ended(self, key: tuple[str, str, str], window: _Window) -> None:
        window.timer = None
        if self._windows.get(key) is window:
            del self._windows[key]
            self._summarize(key, window)

    def _summarize(self, key: tuple[str, str, str], window: _Window) -> None:
        if window.timer is not None:
            window.timer.cancel()
            window.timer = None
        if not window.suppressed:
            return
        kind, queue, outcome = key
        level = self._level_of(outcome)
        if level is None:
            return
        elapsed = max(self._clock() - window.start, 0.0)
        suppressed, window.suppressed = window.suppressed, 0
        logger.log(
            level,
            "suppressed %d similar %s of kind %s in queue %s in the last %s",
            suppressed,
            _SIMILAR[outcome],
            kind,
            queue,
            _duration(elapsed),
            extra={"job_kind": kind, "queue": queue, "outcome": outcome, "suppressed": suppressed},
        )

    def _prune(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            if now - window.start >= self.interval:
                del self._windows[key]
                self._summarize(key, window)
        # Amortized: a flood of distinct keys all within the interval is not swept every time.
        self._prune_at = max(_MAX_WINDOWS, 2 * len(self._windows))


#: Rate-limit windows kept before expired ones are swept (kinds x queues x outcomes).
_MAX_WINDOWS = 1000


def _extra(
    row: JobRow,
    outcome: str,
    error: BaseException | None = None,
    message: str | None = None,
    *,
    retry_at: datetime | None = None,
) -> dict[str, Any]:
    extra: dict[str, Any] = {
        **job_fields(row),
        "max_attempts": row.max_attempts,
        "outcome": outcome,
    }
    if error is not None:
        extra["error_type"] = type(error).__name__.lstrip("_")
        extra["error"] = message
    if retry_at is not None:
        extra["retry_at"] = retry_at
    return extra


def _args_problem(error: BaseException, message: str) -> str:
    """Args that do not validate, on one line (pydantic's own text spans several)."""
    errors = getattr(error, "errors", None)
    title = getattr(error, "title", None)
    if not callable(errors):
        return f"args do not validate: {message}"
    try:
        problems = [
            f"{'.'.join(str(part) for part in e.get('loc', ())) or '(args)'}: {e.get('msg')}"
            for e in errors()
        ]
    except Exception:  # not pydantic's after all
        return f"args do not validate: {message}"
    shown = "; ".join(problems[:5]) + (f"; {len(problems) - 5} more" if len(problems) > 5 else "")
    return (
        f"args do not validate against {title}: {shown}"
        if title
        else f"args do not validate: {shown}"
    )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 0.0):.3g}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86_400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86_400)}d{int(seconds % 86_400 // 3600):02d}h"
