"""Job arguments (pydantic models), workers and the worker registry."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Iterator
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import pydantic

from river._errors import ValidationError
from river._types import InsertOpts, Job

__all__ = ["JobArgs", "Worker", "Workers", "validate_kind"]

# Go's \w is ASCII-only, hence re.ASCII (a kind valid here is valid for River (Go)).
_KIND_RE = re.compile(r"[\w][\w\-\[\]<>\/.·:+]+", re.ASCII)
MAX_KIND_LENGTH = 127


def validate_kind(kind: object, field: str = "kind") -> str:
    """Return ``kind`` if it is a valid job kind (PROTOCOL.md 4.3), else raise ValidationError."""
    if not isinstance(kind, str):
        raise ValidationError(field, f"must be a string, not {type(kind).__name__}")
    if len(kind) > MAX_KIND_LENGTH:
        raise ValidationError(field, f"must be at most {MAX_KIND_LENGTH} characters")
    if not _KIND_RE.fullmatch(kind):
        raise ValidationError(
            field,
            f"{kind!r} must be at least 2 characters: a letter, digit or underscore, then "
            "letters, digits or any of _ - [ ] < > / . · : +",
        )
    return kind


class JobArgs(pydantic.BaseModel):
    """Base class of job arguments: a pydantic v2 model with a ``kind``.

    Subclasses set ``kind`` as a ``ClassVar[str]`` (the job kind stored in ``river_job.kind``, and
    what workers are registered by). Fields are encoded to JSON as River (Go) would encode them,
    so that unique keys agree across languages. Override :meth:`insert_opts` to give every job
    of this kind default insert options (a per-insert ``InsertOpts`` still wins field by field).

    Extra fields in stored args (e.g. written by a newer version of a Go service) are ignored
    when decoding. ``bytes`` fields are standard base64 in JSON, as Go writes a ``[]byte``
    (pydantic's default, UTF-8 text, could not hold arbitrary bytes); a subclass may choose
    otherwise in its own ``model_config``. For a Go ``time.Duration``, see
    :data:`river.GoDuration`.

    A subclass without ``kind`` is refused when it is defined (ValidationError), unless it is
    declared a base of other args classes: ``class TenantArgs(river.JobArgs, abstract=True)``.
    A kind set on a base is inherited.
    """

    model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    kind: ClassVar[str]
    #: Declared with ``abstract=True``: a base of other args classes, without a kind.
    __river_abstract__: ClassVar[bool] = True

    def insert_opts(self) -> InsertOpts | None:
        """Default insert options for this job (None: none)."""
        return None

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        # ``class Base(river.JobArgs, abstract=True)``: a base of other args classes, with
        # fields or insert_opts of their own, that has no kind and is never inserted.
        cls.__river_abstract__ = abstract
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        kwargs.pop("abstract", None)
        super().__pydantic_init_subclass__(**kwargs)
        kind = getattr(cls, "kind", None)
        if kind is None:
            if not cls.__dict__.get("__river_abstract__", False):
                raise ValidationError(
                    f"{cls.__qualname__}.kind",
                    "a JobArgs subclass must set kind (kind: ClassVar[str] = 'my_kind'), or "
                    f"be declared a base of others: class {cls.__name__}(river.JobArgs, "
                    "abstract=True)",
                )
        elif "kind" in cls.__dict__:
            validate_kind(kind, f"{cls.__qualname__}.kind")


A = TypeVar("A", bound=JobArgs)


class Worker(Generic[A]):
    """Works jobs of one kind. Subclass with the args type as parameter::

        class SendEmailWorker(river.Worker[SendEmail]):
            async def work(self, job: river.Job[SendEmail]) -> None: ...

    ``work`` may be ``async def`` (runs on the event loop) or a plain ``def`` (runs in a thread
    from the client's thread limiter, so it may block). Returning normally completes the job;
    raising :class:`river.JobCancel` cancels it, :class:`river.JobSnooze` snoozes it, and any
    other exception fails the attempt (retried until ``max_attempts``).

    The args type is taken from the generic parameter; set ``args_type`` explicitly when that is
    not possible (e.g. a worker generic over several kinds).
    """

    args_type: ClassVar[type[JobArgs]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "args_type" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Worker:
                (arg,) = typing.get_args(base)
                if isinstance(arg, type) and issubclass(arg, JobArgs):
                    cls.args_type = arg
                    return

    def work(self, job: Job[A]) -> Awaitable[None] | None:
        """Do the job. Override this (``async def`` or ``def``)."""
        raise NotImplementedError(f"{type(self).__qualname__}.work is not implemented")

    def timeout(self, job: Job[A]) -> float | None:
        """Seconds this attempt may run; None inherits the client's ``job_timeout``; -1: none."""
        return None

    def next_retry(self, job: Job[A]) -> datetime | None:
        """When to retry after a failure; None (or a past time) uses the client's retry policy."""
        return None


class Workers:
    """Registry of workers by job kind, handed to :class:`river.Config`."""

    def __init__(self) -> None:
        self._by_kind: dict[str, _Registered] = {}

    def add(self, worker: Worker[Any]) -> None:
        """Register ``worker`` for the kind of its args type.

        Raises ValidationError when the worker has no args type, the kind is invalid, or another
        worker already handles that kind.
        """
        args_type = getattr(type(worker), "args_type", None)
        if args_type is None or not (
            isinstance(args_type, type) and issubclass(args_type, JobArgs)
        ):
            raise ValidationError(
                "worker",
                f"{type(worker).__qualname__} has no args type: subclass river.Worker[YourArgs] "
                "or set args_type",
            )
        kind = getattr(args_type, "kind", None)
        validate_kind(kind, f"{args_type.__qualname__}.kind")
        assert isinstance(kind, str)
        if kind in self._by_kind:
            raise ValidationError("worker", f"a worker for kind {kind!r} is already registered")
        self._by_kind[kind] = _Registered(worker, args_type)

    def get(self, kind: str) -> _Registered | None:
        """The registration for ``kind``, or None."""
        return self._by_kind.get(kind)

    def kinds(self) -> list[str]:
        """Registered kinds, sorted."""
        return sorted(self._by_kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_kind))

    def __len__(self) -> int:
        return len(self._by_kind)


def works_async(worker: Worker[Any]) -> bool:
    """Whether ``worker.work`` is a coroutine function, also behind decorators
    (``functools.wraps`` sets ``__wrapped__``): a sync wrapper around an async ``work()``
    returns its coroutine, which must be awaited, not run in a thread."""
    work = worker.work
    return inspect.iscoroutinefunction(work) or inspect.iscoroutinefunction(inspect.unwrap(work))


class _Registered:
    """A worker with facts computed once at registration (not per job)."""

    __slots__ = ("args_type", "is_async", "worker")

    def __init__(self, worker: Worker[Any], args_type: type[JobArgs]) -> None:
        self.worker = worker
        self.args_type = args_type
        self.is_async = works_async(worker)
