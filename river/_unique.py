"""Unique keys: the key string of PROTOCOL.md 5.2-5.4, its sha256 and the states mask.

The args part is built from the *raw value tokens* of the encoded args (the exact text
:mod:`river._gojson` produced), never from re-encoded Python values, so that the key matches
River (Go)'s for the same stored args. A small scanner below walks the encoded JSON text and
returns an object's members as (decoded key, raw value text) pairs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from river._errors import ValidationError
from river._gojson import quote
from river._types import DEFAULT_UNIQUE_STATES, JobState, UniqueOpts

__all__ = [
    "object_members",
    "unique_key",
    "unique_key_and_states",
    "unique_key_string",
]

# --- scanning raw JSON text -------------------------------------------------------------------

# Strict token patterns (RFC 8259): a string (no raw control characters, valid escapes only),
# a number, and any scalar.
_WS = r"[ \t\n\r]*"
_STRING = r'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_SCALAR = rf"{_STRING}|{_NUMBER}|true|false|null"
# One object member: key, colon, then either a scalar and the following delimiter, or (at a
# nested container's start) nothing more: the container is skipped separately.
_MEMBER_RE = re.compile(rf"{_WS}({_STRING}){_WS}:{_WS}(?:({_SCALAR}){_WS}([,}}])|(?=[\[{{]))")
_OPEN_RE = re.compile(rf"{_WS}\{{{_WS}(\}})?")
_DELIMITER_RE = re.compile(rf"{_WS}([,}}])")
_WS_RE = re.compile(_WS)
# Inside a container only brackets and strings matter for finding its end.
_CONTAINER_STEP_RE = re.compile(r'[^"\[\]{}]*([\[\]{}"])')
_STRING_REST_RE = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    # The stdlib accepts NaN/Infinity; JSON (and Go) do not.
    raise ValueError(f"invalid JSON constant {name}")


def _decode_string(token: str) -> str:
    """The text of a (valid) string token."""
    if "\\" not in token:
        return token[1:-1]
    text: str = json.loads(token)
    # Go decodes an unpaired surrogate escape to U+FFFD; Python keeps the surrogate.
    return _SURROGATE_RE.sub("\ufffd", text)


def _container_end(text: str, pos: int) -> int:
    """The end of the array or object starting at ``text[pos]``, validated."""
    depth = 0
    step = _CONTAINER_STEP_RE.match
    rest = _STRING_REST_RE.match
    end = pos
    while True:
        m = step(text, end)
        if m is None:
            raise ValueError("unterminated JSON array or object")
        char = m.group(1)
        end = m.end()
        if char == '"':
            string_end = rest(text, end)
            if string_end is None:
                raise ValueError("unterminated JSON string")
            end = string_end.end()
        elif char in "{[":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                break
    # Nested values are copied as they are; the C parser checks they are well-formed.
    json.loads(text[pos:end], parse_constant=_reject_constant)
    return end


def _members(text: str, pos: int) -> tuple[list[tuple[str, str]], int]:
    """Members of the object at ``pos`` (whitespace allowed before it) as (decoded key, raw
    value text) in wire order, and the position after the object. ValueError if invalid."""
    opened = _OPEN_RE.match(text, pos)
    if opened is None:
        raise ValueError("expected a JSON object")
    members: list[tuple[str, str]] = []
    if opened.group(1) is not None:
        return members, opened.end()
    pos = opened.end()
    member = _MEMBER_RE.match
    while True:
        m = member(text, pos)
        if m is None:
            raise ValueError(f"invalid JSON object member at offset {pos}")
        key, value, delimiter = m.group(1, 2, 3)
        key = key[1:-1] if "\\" not in key else _decode_string(key)
        if value is not None:
            members.append((key, value))
            pos = m.end()
        else:
            start = m.end()
            end = _container_end(text, start)
            members.append((key, text[start:end]))
            after = _DELIMITER_RE.match(text, end)
            if after is None:
                raise ValueError(f"expected , or }} at offset {end}")
            delimiter = after.group(1)
            pos = after.end()
        if delimiter == "}":
            return members, pos


def object_members(text: str) -> list[tuple[str, str]] | None:
    """The top-level members of a JSON object as (decoded key, raw value text), in wire order.

    Raw values are the exact text of each value token (nested containers included, whitespace
    inside them kept). Duplicate keys are all returned. Returns None when ``text`` is valid
    JSON but not an object; raises ValueError when it is not valid JSON.
    """
    start = _WS_RE.match(text).end()  # type: ignore[union-attr]
    if text[start : start + 1] != "{":
        json.loads(text, parse_constant=_reject_constant)  # raises unless valid
        return None
    members, end = _members(text, start)
    if _WS_RE.match(text, end).end() != len(text):  # type: ignore[union-attr]
        raise ValueError(f"extra data after the JSON object at offset {end}")
    return members


def _args_members(encoded_args: str) -> list[tuple[str, str]]:
    """Members of the encoded args for the key; ValidationError unless they are an object.

    An empty array counts as an empty object, as in River (Go), whose member walk simply finds
    nothing in it (an adapter fixture hashes ``[]`` like ``{}``).
    """
    try:
        members = object_members(encoded_args)
        if members is None and json.loads(encoded_args) == []:
            members = []
    except (ValueError, RecursionError):
        members = None
    if members is None:
        raise ValidationError("args", "must be a JSON object to be unique by args")
    return members


def _first_wins(members: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, raw in members:
        if key not in found:  # River (Go) keeps the first of duplicate keys
            found[key] = raw
    return found


# --- the key string ---------------------------------------------------------------------------


# Keys needing escapes: a control character, a quote, a backslash or any non-ASCII character.
_SPECIAL_KEY_RE = re.compile(r'[\x00-\x1f"\\\x80-\U0010ffff]')


def _quote_key(key: str) -> str:
    """Re-encode an object key for the key string (PROTOCOL.md 5.3, as the fixtures decide).

    A key with a control character, ``"``, ``\\`` or any non-ASCII character is written as a
    full Go JSON string, HTML escapes included (``"é&"`` becomes ``"é\\u0026"``, fixture
    ``typed_escaping``); any other key is written verbatim between quotes (``"a<b"`` stays).
    """
    quoted = _QUOTED_KEYS.get(key)
    if quoted is None:
        quoted = '"' + key + '"' if _SPECIAL_KEY_RE.search(key) is None else quote(key)
        if len(_QUOTED_KEYS) >= 4096:
            _QUOTED_KEYS.clear()  # a crude bound: the same few keys recur insert after insert
        _QUOTED_KEYS[key] = quoted
    return quoted


_QUOTED_KEYS: dict[str, str] = {}


def _all_args(members: list[tuple[str, str]]) -> str:
    found = _first_wins(members)
    # Python orders str by code point, which is the UTF-8 byte order Go sorts by.
    return "{" + ",".join(_quote_key(k) + ":" + found[k] for k in sorted(found)) + "}"


# A tree of selected values: a raw value token, or an object built from selected paths.
_Tree = dict[str, "str | _Tree"]


def _render(tree: _Tree) -> str:
    return (
        "{"
        + ",".join(
            _quote_key(k) + ":" + (v if isinstance(v, str) else _render(v)) for k, v in tree.items()
        )
        + "}"
    )


def _split_path(path: str) -> list[str]:
    """Split a dotted field path; ``\\.`` is a literal dot inside a field name."""
    if "\\" not in path:
        return path.split(".")
    segments: list[str] = []
    current: list[str] = []
    chars = iter(path)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ".":
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    segments.append("".join(current))
    return segments


def _selected_args(top: dict[str, str], paths: Iterable[str]) -> str:
    """The args part for selected fields: present values in sorted path order, nested objects
    created on first use, ``""`` when none is present."""
    tree: _Tree = {}
    parsed: dict[str, dict[str, str]] = {}  # nested objects already scanned, by raw text
    for path in sorted(set(paths)):
        segments = _split_path(path)
        # Look the path up in the args; a missing member or a non-object on the way skips it.
        members: dict[str, str] = top
        raw: str | None = None
        for i, segment in enumerate(segments):
            raw = members.get(segment)
            if raw is None or i + 1 == len(segments):
                break
            if not raw.startswith("{"):
                raw = None
                break
            nested = parsed.get(raw)
            if nested is None:
                nested = parsed[raw] = _first_wins(_members(raw, 0)[0])
            members = nested
        if raw is None:
            continue
        # Insert into the output, creating nested objects on first use (sorted path order).
        node = tree
        for segment in segments[:-1]:
            child = node.get(segment)
            if child is None:
                child = node[segment] = {}
            elif isinstance(child, str):
                break  # an enclosing path already took the whole object
            node = child
        else:
            node.setdefault(segments[-1], raw)
    return _render(tree) if tree else ""


def _period_micros(opts: UniqueOpts) -> int:
    period = opts.by_period
    if isinstance(period, timedelta):
        return period // timedelta(microseconds=1)
    return round(float(period or 0) * 1_000_000)


# Go's zero time; buckets are counted from it (for periods dividing a day, same as the epoch).
_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def _period_bucket(base: datetime, period_us: int) -> str:
    if base.tzinfo is None:
        base = base.replace(tzinfo=UTC)  # naive times are taken as UTC
    elapsed = (base - _ZERO_TIME) // timedelta(microseconds=1)
    bucket = _ZERO_TIME + timedelta(microseconds=elapsed - elapsed % period_us)
    return (
        f"{bucket.year:04d}-{bucket.month:02d}-{bucket.day:02d}"
        f"T{bucket.hour:02d}:{bucket.minute:02d}:{bucket.second:02d}Z"
    )


def unique_key_string(
    kind: str,
    queue: str,
    encoded_args: str,
    opts: UniqueOpts,
    now: datetime,
    scheduled_at: datetime | None,
) -> str:
    """The unique key string of PROTOCOL.md 5.2 (before hashing).

    ``encoded_args`` is the args text as stored (from :func:`river._gojson.encode_args` or
    :func:`~river._gojson.encode_value`); its raw value tokens go into the key unchanged.
    ``opts.by_args`` True uses all top-level members sorted by key; a list of dotted paths
    (``"account.id"``; ``\\.`` for a dot inside a field name) uses only those fields. The period
    bucket is taken from ``scheduled_at`` when given, else ``now`` (naive times are UTC).
    Raises ValidationError when args are part of the key but are not a JSON object (an empty
    array counts as ``{}``, as in River (Go)).
    """
    parts: list[str] = []
    if not opts.exclude_kind:
        parts.append("&kind=" + kind)
    if opts.args_enabled:
        members = _args_members(encoded_args)
        if opts.by_args is True:
            parts.append("&args=" + _all_args(members))
        else:
            assert not isinstance(opts.by_args, bool)
            parts.append("&args=" + _selected_args(_first_wins(members), opts.by_args))
    period_us = _period_micros(opts)
    if period_us > 0:
        base = scheduled_at if scheduled_at is not None else now
        parts.append("&period=" + _period_bucket(base, period_us))
    if opts.by_queue:
        parts.append("&queue=" + queue)
    return "".join(parts)


def unique_key(
    kind: str,
    queue: str,
    encoded_args: str,
    opts: UniqueOpts,
    now: datetime,
    scheduled_at: datetime | None,
) -> bytes:
    """The 32-byte sha256 of :func:`unique_key_string` (the ``river_job.unique_key`` value)."""
    key = unique_key_string(kind, queue, encoded_args, opts, now, scheduled_at)
    return hashlib.sha256(key.encode("utf-8")).digest()


# Each state's bit, computed once (JobState.unique_bit searches the enum on every call). Keys
# are JobState members, which also match their plain string values.
_STATE_BITS: dict[str, int] = {state: state.unique_bit for state in JobState}
_DEFAULT_MASK = sum(_STATE_BITS[state] for state in DEFAULT_UNIQUE_STATES)


def _states_mask(opts: UniqueOpts) -> int:
    """``opts.states_mask``, faster (by_state entries were validated by UniqueOpts)."""
    if not opts.by_state:
        return _DEFAULT_MASK
    mask = 0
    for state in opts.by_state:
        mask |= _STATE_BITS[state]
    return mask


def unique_key_and_states(
    kind: str,
    queue: str,
    encoded_args: str,
    opts: UniqueOpts | None,
    now: datetime,
    scheduled_at: datetime | None,
) -> tuple[bytes | None, int | None]:
    """The ``(unique_key, unique_states)`` column values of one insert.

    Both are None when ``opts`` is None or does not enable uniqueness (PROTOCOL.md 5.1).
    """
    if opts is None or not opts.enabled:
        return None, None
    return unique_key(kind, queue, encoded_args, opts, now, scheduled_at), _states_mask(opts)
