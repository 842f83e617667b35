"""Refusing JSON values that River (Go) or Postgres cannot hold, before any SQL runs.

Every path that writes user data into a jsonb column (inserted args and metadata, periodic
job args, ``record_output``, ``set_metadata``, ``job_update``, ``job_complete_tx`` metadata,
``queue_update`` metadata) goes through the functions here. A value is refused with
:class:`river.ValidationError`, naming its JSON path (``args.items[3].name``,
``metadata["k"]``) and the rule, when it holds:

- a NUL character (U+0000) in a string or an object key: Postgres text and jsonb cannot store
  it (``UntranslatableCharacter``);
- a lone surrogate (U+D800 to U+DFFF not part of a pair) in a string or key: not Unicode, UTF-8
  cannot encode it and jsonb refuses its escape. It is refused rather than silently replaced by
  U+FFFD, which would store different args than the ones given;
- NaN, +Infinity or -Infinity, anywhere (also in ``Any``-typed fields, where pydantic would
  write ``null``): JSON has no such numbers and River (Go) refuses to encode them;
- an integer outside [-2**63, 2**64 - 1]: River (Go) decodes integers into ``int64`` or
  ``uint64`` fields, so no Go worker could read it (and jsonb would store it, so the worker
  would fail on every attempt);
- an encoded size over the cap (``Config.max_encoded_size``, default 16 MiB per value).

The hot path (a normal small job) checks the encoded text, not the value: a substring search
for ``\\u`` (NUL and lone surrogates can only appear as the escapes ``\\u0000`` and ``\\ufffd``)
and a length comparison. Integers are range-checked from the fields declared to hold one for
models encoded by pydantic's serializer, and otherwise by a scan of the text for runs of 19
digits (``bytes.translate`` plus one ``find``; NaN never reaches the text: the encoder refuses
it). The value is walked only once a check has fired, to name the path in the error message.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any

import pydantic

from river._errors import ValidationError
from river._gojson import _MODEL_INFO, _model_info, encode_args, encode_value

__all__ = [
    "DEFAULT_MAX_ENCODED_SIZE",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_ENCODED_SIZE_LIMIT",
    "MAX_OUTPUT_BYTES",
    "UINT64_MAX",
    "check_json_value",
    "encode_job_args",
    "encode_json_value",
    "find_violation",
    "jsonb_dumps",
    "jsonb_safe",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The largest integer args may hold: Go decodes a JSON integer into an int64 or a uint64 field
#: (PROTOCOL.md 5.3: integers are exact over both ranges).
UINT64_MAX = 2**64 - 1

#: Default cap on one encoded value (a job's args, its metadata), in UTF-8 bytes. Postgres
#: refuses a jsonb value past ~255 MiB and a field past 1 GiB, far beyond what a job should
#: carry: args are read back by every fetch, kept in memory by every worker and copied into
#: WAL and backups. 16 MiB leaves room for any reasonable payload (large data belongs in
#: object storage, referenced by the job) while refusing runaway values with a clear error
#: instead of a ``ProgramLimitExceeded`` after the round trip.
DEFAULT_MAX_ENCODED_SIZE = 16 * 1024 * 1024
#: The largest cap allowed: below jsonb's hard limit of 268,435,455 bytes per value.
MAX_ENCODED_SIZE_LIMIT = 255 * 1024 * 1024
#: Largest encoded job output River accepts (metadata key "output": ``record_output``,
#: ``job_update(output=...)``), as River (Go) caps it.
MAX_OUTPUT_BYTES = 32 * 1024 * 1024

RULE_NUL = "contains a NUL character (U+0000), which Postgres text and jsonb cannot store"
RULE_SURROGATE = (
    "contains a lone surrogate (U+D800 to U+DFFF without its pair), which is not valid "
    "Unicode and cannot be stored (it is refused, not replaced with U+FFFD)"
)

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# An escape the Go encoder writes only for NUL or, as \ufffd, for a lone surrogate (a real
# U+FFFD is written raw). Preceded by an odd number of backslashes it is not an escape but an
# escaped backslash followed by text.
_BAD_ESCAPE_RE = re.compile(r"(?<!\\)(?:\\\\)*\\u(0000|fffd)")
# A number token of 19 digits or more may be outside int64 (a candidate only: the digits may
# also be inside a string, or a float written in full). Found by mapping every byte of the
# UTF-8 text to "0" (a digit) or "." and searching for a run of 19 zeros: a fraction of the
# cost of a regular expression search, which tries a match at every position.
_DIGIT_MAP = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_LONG_RUN = b"0" * 19


def _has_long_digit_run(text: str) -> bool:
    return text.encode("utf-8", "surrogatepass").translate(_DIGIT_MAP).find(_LONG_RUN) >= 0


def _float_rule(value: float) -> str:
    name = "NaN" if value != value else ("+Infinity" if value > 0 else "-Infinity")
    return (
        f"is {name}, which JSON cannot represent (River (Go) refuses to encode it and jsonb "
        "cannot store it)"
    )


def _int_rule(value: int) -> str:
    shown = str(value) if value.bit_length() <= 128 else f"of {value.bit_length()} bits"
    return (
        f"integer {shown} is outside [-2**63, 2**64 - 1], the integers River (Go) can decode "
        "(into int64 or uint64)"
    )


def _size_rule(size: int, cap: int) -> str:
    return (
        f"encoded size {size} bytes is over the limit of {cap} bytes "
        "(Config.max_encoded_size; jsonb cannot store values past ~255 MB)"
    )


def _string_rule(text: str) -> str | None:
    if "\x00" in text:
        return RULE_NUL
    if not text.isascii() and _SURROGATE_RE.search(text) is not None:
        return RULE_SURROGATE
    return None


def _member(name: str) -> str:
    """A struct member (model field) in a path: ``.name``, or ``["odd name"]``."""
    return f".{name}" if name.isidentifier() and name.isascii() else f"[{json.dumps(name)}]"


def _key(key: object) -> str:
    """A map key in a path: ``["key"]`` (ASCII-escaped, so NULs and surrogates show)."""
    return f"[{json.dumps(key if isinstance(key, str) else str(key))}]"


def _in_mapping(
    value: Mapping[Any, Any], path: str, member: bool = False
) -> tuple[str, str] | None:
    for key, item in value.items():
        where = path + (_member(key) if member and isinstance(key, str) else _key(key))
        if isinstance(key, str):
            rule = _string_rule(key)
            if rule is not None:
                return where, f"key {rule}"
        found = find_violation(item, where)
        if found is not None:
            return found
    return None


def _in_model(model: pydantic.BaseModel, path: str) -> tuple[str, str] | None:
    if isinstance(model, pydantic.RootModel):
        return find_violation(model.root, path)
    for name, field in type(model).model_fields.items():
        if field.exclude:
            continue
        key = field.serialization_alias or field.alias or name
        found = find_violation(getattr(model, name, None), path + _member(key))
        if found is not None:
            return found
    extra = model.__pydantic_extra__
    return _in_mapping(extra, path, member=True) if extra else None


def find_violation(value: object, path: str) -> tuple[str, str] | None:
    """The first value in ``value`` (depth first) that breaks a rule of this module, as
    ``(JSON path, rule)``, or None. ``path`` names ``value`` itself (e.g. ``"args"``).

    Walks what encodes to JSON: str, int, float, bool, None, mappings, lists, tuples, sets,
    enums, dataclasses and pydantic models (fields under their serialization aliases); other
    values are skipped (the encoder decides about them).
    """
    cls = type(value)
    if cls is str:
        rule = _string_rule(value)  # type: ignore[arg-type]
        return None if rule is None else (path, rule)
    if value is None or cls is bool:
        return None
    if cls is int:
        if INT64_MIN <= value <= UINT64_MAX:  # type: ignore[operator]
            return None
        return path, _int_rule(value)  # type: ignore[arg-type]
    if cls is float:
        return None if math.isfinite(value) else (path, _float_rule(value))  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return _in_mapping(value, path)
    if isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = find_violation(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if isinstance(value, pydantic.BaseModel):
        return _in_model(value, path)
    if isinstance(value, Enum):
        return find_violation(value.value, path)
    if isinstance(value, str):
        return find_violation(str.__str__(value), path)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return find_violation(int(value), path)
    if isinstance(value, float):
        return find_violation(float(value), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            found = find_violation(getattr(value, f.name, None), path + _member(f.name))
            if found is not None:
                return found
    return None


# --- checks of encoded text --------------------------------------------------------------------


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _int_out_of_range(text: str) -> bool:
    """Whether the JSON ``text`` holds an integer token outside int64 (exact: strings and
    floats are told apart by the parser)."""
    found = False

    def parse_int(token: str) -> int:
        nonlocal found
        # At most 20 characters ("-9223372036854775808") can be in range; longer tokens are
        # out of it (and int() would refuse past 4,300 digits).
        if len(token) >= 19 and (len(token) > 20 or not INT64_MIN <= int(token) <= UINT64_MAX):
            found = True
        return 0

    json.loads(text, parse_int=parse_int)
    return found


def _restore_surrogates(match: re.Match[str]) -> str:
    text = match.group()
    return text if match.group(1) == "0000" else text[:-4] + "d800"


def _refuse(value: object, text: str | None, field: str, rule: str) -> ValidationError:
    """The error for a value known to break ``rule``: located by walking ``value`` (paths with
    model field names), else the decoded ``text`` (values written by custom serializers), else
    reported on the whole field."""
    found = find_violation(value, field)
    if found is None and text is not None:
        try:
            decoded = json.loads(_BAD_ESCAPE_RE.sub(_restore_surrogates, text))
        except ValueError:
            decoded = None
        found = find_violation(decoded, field)
    return ValidationError(*(found or (field, rule)))


def _check_text(text: str, value: object, field: str, max_size: int, scan_ints: bool) -> None:
    """The exact checks behind the cheap ones: raise ValidationError if ``text`` (the Go
    encoding of ``value``) breaks a rule."""
    if len(text) > max_size >> 2:
        size = _utf8_size(text)
        if size > max_size:
            raise ValidationError(field, _size_rule(size, max_size))
    match = _BAD_ESCAPE_RE.search(text)
    if match is not None:
        rule = RULE_NUL if match.group(1) == "0000" else RULE_SURROGATE
        raise _refuse(value, text, field, rule)
    if scan_ints and _has_long_digit_run(text) and _int_out_of_range(text):
        # Go writes floats below 1e21 in plain digits too (1e20 is 100000000000000000000): only
        # the value itself tells an integer from a float.
        found = find_violation(value, field)
        if found is not None:
            raise ValidationError(*found)


# --- integer fields of fast-path models ----------------------------------------------------------

# Models whose JSON comes from pydantic's serializer (the fast path of river._gojson) are made
# of declared types only: their integers can be range-checked from the fields that may hold one,
# which costs far less than scanning the text for long digit runs.


def _may_hold_int(tp: Any, seen: set[type]) -> bool:
    if tp is int:
        return True
    if tp is str or tp is bool or tp is float or tp is None or tp is type(None):
        return False
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            # Members are fixed: only an out-of-range integer member needs a check at run time.
            return any(
                isinstance(m.value, int)
                and not isinstance(m.value, bool)
                and not INT64_MIN <= m.value <= UINT64_MAX
                for m in tp
            )
        if issubclass(tp, pydantic.BaseModel):
            if tp in seen:
                return False  # recursion: its other fields decide
            seen.add(tp)
            return any(
                _may_hold_int(f.annotation, seen) for f in tp.model_fields.values() if not f.exclude
            )
        return not issubclass(tp, str | float | bool)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return any(
            isinstance(a, int) and not isinstance(a, bool) and not INT64_MIN <= a <= UINT64_MAX
            for a in args
        )
    if origin is typing.Annotated:
        return _may_hold_int(args[0], seen)
    if origin is typing.Union or origin is types.UnionType or args:
        return any(_may_hold_int(a, seen) for a in args if a is not Ellipsis)
    return True  # unknown or unparameterized: assume it may


#: Per model class: (whether to scan the encoded text for integers, the fields to range-check).
_PLANS: dict[type, tuple[bool, tuple[str, ...]]] = {}


def _plan(cls: type[pydantic.BaseModel]) -> tuple[bool, tuple[str, ...]]:
    info = _MODEL_INFO.get(cls) or _model_info(cls)
    if info.fast:
        fields = cls.model_fields
        attrs = tuple(
            name
            for name, f in fields.items()
            if not f.exclude and _may_hold_int(f.annotation, {cls})
        )
        plan = (False, attrs)
    else:
        plan = (True, ())
    _PLANS[cls] = plan
    return plan


def _ints_ok(value: object) -> bool:
    cls = type(value)
    if cls is int:
        return INT64_MIN <= value <= UINT64_MAX  # type: ignore[operator]
    if value is None or cls is str or cls is float or cls is bool:
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return all(map(_ints_ok, value))
    if isinstance(value, pydantic.BaseModel):
        scan, attrs = _PLANS.get(type(value)) or _plan(type(value))
        if scan:
            return find_violation(value, "") is None
        return _model_ints_ok(value, attrs)
    if isinstance(value, Enum):
        return _ints_ok(value.value)
    if isinstance(value, int) and not isinstance(value, bool):
        return INT64_MIN <= value <= UINT64_MAX
    if isinstance(value, Mapping):
        return all(map(_ints_ok, value.values()))
    return True


def _model_ints_ok(model: pydantic.BaseModel, attrs: tuple[str, ...]) -> bool:
    for name in attrs:
        value = getattr(model, name, None)
        if type(value) is int:
            if value > UINT64_MAX or value < INT64_MIN:
                return False
        elif value is not None and not _ints_ok(value):
            return False
    return True


# --- entry points ---------------------------------------------------------------------------------


def encode_job_args(args: pydantic.BaseModel, max_size: int, where: str = "") -> str:
    """``encode_args(args)`` (River (Go)'s exact encoding), refused with ValidationError when
    it breaks a rule of this module (the encoded size is capped at ``max_size`` UTF-8 bytes);
    error fields start with ``where + "args"``."""
    try:
        text = encode_args(args)
    except ValidationError as exc:
        raise _refuse(args, None, where + "args", exc.rule) from exc.__cause__
    scan_ints, attrs = _PLANS.get(type(args)) or _plan(type(args))
    # The cheap checks (the hot path); _check_text makes the exact ones. NUL and lone
    # surrogates can only show up as \u escapes, and no text of under a quarter of the cap
    # can be over it in UTF-8 bytes.
    if (
        ("\\u" in text and ("\\u0000" in text or "\\ufffd" in text))
        or len(text) > max_size >> 2
        or (scan_ints and _has_long_digit_run(text))
    ):
        _check_text(text, args, where + "args", max_size, scan_ints)
    for name in attrs:
        value = getattr(args, name, None)
        if type(value) is int:
            if INT64_MIN <= value <= UINT64_MAX:
                continue
        elif value is None or _ints_ok(value):
            continue
        check_json_value(args, where + "args")
    return text


def encode_json_value(value: object, max_size: int, field: str) -> str:
    """``encode_value(value)`` (River (Go)'s exact encoding of a plain value, e.g. metadata),
    refused with ValidationError (on ``field``) when it breaks a rule of this module or cannot
    be encoded at all; the encoded size is capped at ``max_size`` UTF-8 bytes."""
    try:
        text = encode_value(value)
    except (TypeError, ValueError) as exc:
        found = find_violation(value, field)
        if found is not None:
            raise ValidationError(*found) from None
        raise ValidationError(field, f"must be JSON-encodable: {exc}") from None
    if (
        ("\\u" in text and ("\\u0000" in text or "\\ufffd" in text))
        or len(text) > max_size >> 2
        or _has_long_digit_run(text)
    ):
        _check_text(text, value, field, max_size, True)
    return text


def check_json_value(value: object, field: str) -> None:
    """Raise ValidationError if ``value`` holds anything this module refuses (no size check:
    for values encoded by other means, such as the staged metadata of a running job)."""
    found = find_violation(value, field)
    if found is not None:
        raise ValidationError(*found)


# --------------------------------------------------------------------------------------------
# Text the runtime writes itself: replaced, not refused
# --------------------------------------------------------------------------------------------

# Error messages and tracebacks come from arbitrary exceptions, and jsonb rejects "\u0000" and
# lone surrogate escapes: one such character would make the completer's batch write fail on
# every retry, holding back every outcome batched with it and blocking stop() forever. They
# are written as U+FFFD instead, as Go writes invalid text. (User data is refused, above:
# storing different args than the ones given would be worse than an error.)
_UNSAFE_CHAR = re.compile("[\x00\ud800-\udfff]")
_UNSAFE_ESCAPE = re.compile(r"\\u0000|\\ud[89a-f]", re.IGNORECASE)


def jsonb_safe(value: Any) -> Any:
    """``value`` with every NUL and lone surrogate in its strings (keys included, through
    dicts, lists and tuples) replaced by U+FFFD; anything else is returned as is."""
    if isinstance(value, str):
        return _UNSAFE_CHAR.sub("\ufffd", value)
    if isinstance(value, dict):
        return {jsonb_safe(k): jsonb_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonb_safe(v) for v in value]
    return value


def jsonb_dumps(value: Any) -> str:
    """``json.dumps(value)``, sanitised by :func:`jsonb_safe` when the text holds an escape
    jsonb would refuse (the common case costs one search of the encoded text)."""
    text = json.dumps(value)
    if _UNSAFE_ESCAPE.search(text):
        text = json.dumps(jsonb_safe(value))
    return text
