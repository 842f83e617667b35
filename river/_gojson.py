"""JSON text byte-identical to what River (Go)'s ``encoding/json`` writes (PROTOCOL.md 5.3).

Unique keys hash the *raw value tokens* of the encoded args, so two producers agree on a key
only if they encode the same logical args to the same bytes. Go's encoder differs from both
:mod:`json` and pydantic in a few ways this module corrects:

- strings: ``<``, ``>``, ``&`` become ``\\u003c``, ``\\u003e``, ``\\u0026`` and U+2028/U+2029
  become ``\\u2028``/``\\u2029`` (other non-ASCII stays raw);
- floats: shortest round-trip digits, plain decimal for 1e-6 <= |x| < 1e21 (``1`` not ``1.0``,
  ``100000000000000000000`` not ``1e+20``), exponent outside it (``1e-7``, ``1e+21``), ``-0``;
- times: RFC 3339 with the fraction trimmed of trailing zeros and ``Z`` for a zero offset;
- bytes: standard base64 with padding (Go's ``[]byte``), where pydantic's base64 mode uses the
  URL-safe alphabet;
- objects: struct (model) fields in declaration order, map (dict) keys sorted by UTF-8 bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime
from enum import Enum
from typing import Any

import annotated_types
import pydantic
import pydantic_core
from pydantic.fields import FieldInfo

from river._errors import ValidationError

__all__ = [
    "compact",
    "encode_args",
    "encode_value",
    "format_float",
    "format_time",
    "quote",
]

# The C-accelerated string encoder of the standard library (ensure_ascii=False flavour). Its
# escapes already match Go's (short forms for \b \f \n \r \t, lowercase \u00XX for the other
# control characters, DEL and non-ASCII raw), so only the characters below need a second pass.
_encode_basestring: Callable[[str], str] = json.encoder.encode_basestring

# Characters Go escapes that the stdlib and pydantic leave raw. Lone surrogates cannot be written
# as UTF-8 at all; Go writes invalid text as the escape \ufffd, so do the same.
_HTML_RE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")
_NO_HTML_RE = re.compile("[\u2028\u2029\ud800-\udfff]")
_FIXUPS = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _fixup(match: re.Match[str]) -> str:
    return _FIXUPS.get(match.group(), "\\ufffd")


def quote(text: str, *, html: bool = True) -> str:
    """``text`` as a JSON string literal, escaped like Go's ``encoding/json``.

    ``html=False`` skips the ``<``/``>``/``&`` escapes (Go's ``SetEscapeHTML(false)``);
    U+2028/U+2029 are escaped either way.
    """
    out = _encode_basestring(text)
    if out.isascii():
        # Substring searches cost less than a regex search; ASCII text has no U+2028/U+2029
        # or surrogates to escape.
        if not html or ("<" not in out and ">" not in out and "&" not in out):
            return out
        return _HTML_RE.sub(_fixup, out)
    pattern = _HTML_RE if html else _NO_HTML_RE
    if pattern.search(out) is None:
        return out
    return pattern.sub(_fixup, out)


def format_float(value: float) -> str:
    """A float64 as Go's ``encoding/json`` writes it.

    Both Python's ``repr`` and Go's ``strconv`` print the shortest digits that round-trip, so
    only the layout differs: Go uses plain decimal for 1e-6 <= |x| < 1e21 (``repr`` switches to
    an exponent outside 1e-4 <= |x| < 1e16) and drops ``.0``. Raises ValueError for NaN and
    infinities, which Go refuses to encode.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} cannot be encoded as JSON")
    text = float.__repr__(value)
    if "e" not in text:
        # repr gives a plain decimal here: 1e-4 <= |x| < 1e16, or zero (including "-0.0").
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text)
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        # Go's exponent form is repr's without zero padding: 1e-07 -> 1e-7, 1e+21 stays.
        return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent)}"
    # Plain decimal in Go, exponent in repr: move the point by hand (no rounding involved).
    sign = ""
    if mantissa.startswith("-"):
        sign, mantissa = "-", mantissa[1:]
    digits = mantissa.replace(".", "")
    point = exponent + 1  # digits before the decimal point
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def format_time(value: datetime) -> str:
    """A datetime as Go's ``time.Time`` JSON (RFC 3339, fraction trimmed, ``Z`` for UTC).

    Any zero offset is written ``Z``, as Go does; an offset is written to the minute. A naive
    datetime has no Go equivalent; it is written without an offset (pydantic reads it back as
    naive).
    """
    # isoformat() is C code: "YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM[:SS[.ffffff]]]".
    text = value.isoformat()
    head = text[:19]
    rest = text[19:]
    if rest[:1] == ".":
        fraction = rest[1:7].rstrip("0")
        rest = rest[7:]
        if fraction:
            head = head + "." + fraction
    if not rest:
        return head
    if rest == "+00:00":
        return head + "Z"
    return head + rest[:6]


def _sort_key(item: tuple[str, str]) -> str:
    # Code-point order of str equals the UTF-8 byte order Go sorts map keys by.
    return item[0]


def _map_key(key: object) -> str:
    # Go map keys are strings or integers (written as decimal strings).
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return int.__repr__(key)
    raise TypeError(f"object keys must be str or int, not {type(key).__name__}")


def _encode_plain(value: object) -> str:
    """Encode a plain value: dicts are maps (sorted keys), models keep declaration order."""
    cls = type(value)
    if cls is str:
        return quote(value)  # type: ignore[arg-type]
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if cls is int:
        return int.__repr__(value)
    if cls is float:
        return format_float(value)  # type: ignore[arg-type]
    if cls is dict or isinstance(value, Mapping):
        items = sorted(
            ((_map_key(k), _encode_plain(v)) for k, v in value.items()),  # type: ignore[attr-defined]
            key=_sort_key,
        )
        return "{" + ",".join(quote(k) + ":" + v for k, v in items) + "}"
    if cls is list or cls is tuple or isinstance(value, list | tuple):
        return "[" + ",".join(_encode_plain(v) for v in value) + "]"  # type: ignore[attr-defined]
    # Subclasses (str/int enums and the like) encode as their base value.
    if isinstance(value, str):
        return quote(str.__str__(value))
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, datetime):
        return '"' + format_time(value) + '"'
    if isinstance(value, pydantic.BaseModel):
        return _encode_model_exact(value)
    raise TypeError(f"{type(value).__name__} is not JSON-encodable here")


def encode_value(value: object) -> str:
    """Encode a plain JSON-able value exactly as Go's ``encoding/json`` would.

    Accepts dict (keys str or int, written sorted by UTF-8 bytes like a Go map), list, tuple,
    str, int, float, bool, None and datetime (and pydantic models, as :func:`encode_args`).
    Output is compact. Raises TypeError for other types and ValueError for NaN/infinity.
    Used for metadata and for args given as a plain dict.
    """
    if type(value) is dict and not value:
        return "{}"  # the common metadata value
    return _encode_plain(value)


# --- pydantic models --------------------------------------------------------------------------

# Marker for "no Python value known behind this dumped value" (custom serializer output).
_NO_HINT: Any = object()

# How much of a model's pydantic JSON (``model_dump_json``) can be used as it is:
_EXACT = 0  # none: dump in JSON mode and re-encode, guided by the model (dicts, datetimes...)
_FAST = 1  # all of it, once <, >, &, U+2028/U+2029 are escaped (str, int, bool, None, enums...)
_FAST_FLOATS = 2  # as _FAST, and float tokens re-formatted the Go way


@dataclasses.dataclass(frozen=True, slots=True)
class _ModelInfo:
    #: dumped key -> (key as a JSON string, attribute holding the value; None when a serializer
    #: rewrote the field, so the dumped value cannot be matched to a Python value).
    keys: dict[str, tuple[str, str | None]]
    #: A model serializer decides the whole output: nothing below can be mapped back.
    opaque: bool
    #: A RootModel: the dump is the dump of ``.root``.
    root: bool
    #: _EXACT, _FAST or _FAST_FLOATS.
    fast: int


_MODEL_INFO: dict[type[pydantic.BaseModel], _ModelInfo] = {}


def _has_serializer(metadata: Collection[object]) -> bool:
    return any(isinstance(m, pydantic.PlainSerializer | pydantic.WrapSerializer) for m in metadata)


def _plain_metadata(metadata: Collection[object]) -> bool:
    # Constraints (max_length, ge, strict...) do not change the output; anything else might.
    return all(
        isinstance(m, annotated_types.BaseMetadata | annotated_types.GroupedMetadata)
        for m in metadata
    )


_SEQUENCE_NAMES = frozenset({"Sequence", "MutableSequence"})


def _fast_level(tp: Any, seen: set[type]) -> int:
    """How pydantic's JSON for values of type ``tp`` relates to Go's (_EXACT, _FAST...).

    Strings, integers, booleans, null, str/int enums and literals, lists/tuples/sets of those
    and nested models made of those match Go's output but for the HTML escapes; floats also
    need their tokens re-formatted. Dicts (Go sorts map keys), datetimes (Go trims the
    fraction), ``Any`` and custom types take the exact path.
    """
    if tp is str or tp is int or tp is bool or tp is None or tp is type(None):
        return _FAST
    if tp is float:
        return _FAST_FLOATS
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            ok = all(
                isinstance(m.value, str | int) and not isinstance(m.value, bool | float) for m in tp
            )
            return _FAST if ok else _EXACT
        if issubclass(tp, pydantic.BaseModel):
            return _model_info(tp, seen).fast
        return _EXACT
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return _FAST if all(isinstance(a, str | int | bool | None) for a in args) else _EXACT
    if origin is typing.Annotated:
        return _fast_level(args[0], seen) if _plain_metadata(args[1:]) else _EXACT
    if origin in (typing.Union, types.UnionType):
        return _combine(_fast_level(a, seen) for a in args)
    if origin in (set, frozenset) or tp in (set, frozenset):
        # pydantic writes a set in its iteration order, which depends on hash randomisation:
        # the exact path writes the elements sorted (a unique key must not change between
        # processes).
        return _EXACT
    if origin in (list, tuple) or (
        origin is not None
        and getattr(origin, "__module__", "") == "collections.abc"
        and getattr(origin, "__name__", "") in _SEQUENCE_NAMES
    ):
        if not args:
            return _EXACT  # unparameterized: items of any type
        return _combine(_fast_level(a, seen) for a in args if a is not Ellipsis)
    return _EXACT


def _combine(levels: Iterable[int]) -> int:
    result = _FAST
    for level in levels:
        if level == _EXACT:
            return _EXACT
        result = max(result, level)
    return result


def _model_info(cls: type[pydantic.BaseModel], seen: set[type] | None = None) -> _ModelInfo:
    info = _MODEL_INFO.get(cls)
    if info is not None:
        return info
    seen = set() if seen is None else seen
    if cls in seen:
        # A recursive model: provisionally fast while its own fields are being checked; the
        # outermost check decides for the class as a whole.
        return _ModelInfo({}, opaque=False, root=False, fast=_FAST)
    seen.add(cls)
    decorators = cls.__pydantic_decorators__
    config = cls.model_config
    serialized: set[str] = set()
    for dec in decorators.field_serializers.values():
        serialized.update(dec.info.fields)
    fields: dict[str, FieldInfo] = cls.model_fields
    keys: dict[str, tuple[str, str | None]] = {}
    levels = []
    fast_possible = not (
        decorators.model_serializers
        or cls.model_computed_fields
        or config.get("extra") == "allow"
        or config.get("json_encoders")
        or config.get("ser_json_inf_nan", "null") != "null"
        or "*" in serialized
    )
    for name, field in fields.items():
        key = field.serialization_alias or field.alias or name
        custom = name in serialized or "*" in serialized or _has_serializer(field.metadata)
        keys[key] = (quote(key), None if custom else name)
        if fast_possible:
            levels.append(
                _EXACT
                if custom or not _plain_metadata(field.metadata)
                else _fast_level(field.annotation, seen)
            )
    info = _ModelInfo(
        keys,
        opaque=bool(decorators.model_serializers),
        root=issubclass(cls, pydantic.RootModel),
        fast=_combine(levels) if fast_possible else _EXACT,
    )
    seen.discard(cls)
    if not seen:  # only cache answers that do not rest on a provisional recursive guess
        _MODEL_INFO[cls] = info
    return info


def _encode_dumped(value: Any, hint: Any) -> str:
    """Encode ``model_dump(mode="json")`` output, using the Python value it came from (``hint``)
    to tell Go structs (declaration order) from maps (sorted) and to re-format datetimes."""
    cls = type(value)
    if cls is str:
        if isinstance(hint, datetime):
            return '"' + format_time(hint) + '"'
        if isinstance(hint, bytes | bytearray):
            return _encode_dumped_bytes(value, hint)
        return quote(value)
    if cls is int:
        return int.__repr__(value)
    if cls is float:
        return format_float(value)
    if value is None:
        if isinstance(hint, float) and not math.isfinite(hint):
            # pydantic dumps a NaN or infinity it does not type as float (e.g. in an Any
            # field) as None; Go refuses to encode it, and so do we.
            raise ValueError(f"{hint!r} cannot be encoded as JSON")
        return "null"
    if cls is bool:
        return "true" if value else "false"
    if isinstance(hint, pydantic.BaseModel):
        info = _MODEL_INFO.get(type(hint)) or _model_info(type(hint))
        if info.opaque:
            hint = _NO_HINT
        elif info.root:
            return _encode_dumped(value, getattr(hint, "root", _NO_HINT))
        elif cls is dict:
            return _encode_model_dict(value, hint, info)
    if cls is dict:
        if type(hint) is dict or isinstance(hint, Mapping):
            if len(hint) == len(value):
                # pydantic keeps the mapping's iteration order, so pair entries by position
                # (keys may have been converted, e.g. int -> str).
                pairs = zip(value.items(), hint.values(), strict=True)
                items = [(k, _encode_dumped(v, h)) for (k, v), h in pairs]
            else:
                items = [(k, _encode_dumped(v, _NO_HINT)) for k, v in value.items()]
            items.sort(key=_sort_key)
            return "{" + ",".join([quote(k) + ":" + v for k, v in items]) + "}"
        if dataclasses.is_dataclass(hint) and not isinstance(hint, type):
            # A dataclass is a struct: field order, as dumped.
            return (
                "{"
                + ",".join(
                    [
                        quote(k) + ":" + _encode_dumped(v, getattr(hint, k, _NO_HINT))
                        for k, v in value.items()
                    ]
                )
                + "}"
            )
        # Written by a custom serializer: keep the order it chose, as Go keeps a MarshalJSON's.
        return (
            "{"
            + ",".join([quote(k) + ":" + _encode_dumped(v, _NO_HINT) for k, v in value.items()])
            + "}"
        )
    if cls is list:
        if (
            isinstance(hint, Collection)
            and not isinstance(hint, str | bytes | Mapping)
            and len(hint) == len(value)
        ):
            elements = [_encode_dumped(v, h) for v, h in zip(value, hint, strict=True)]
        else:
            elements = [_encode_dumped(v, _NO_HINT) for v in value]
        if isinstance(hint, AbstractSet):
            # A set has no order; its iteration order changes between processes (hash
            # randomisation): written sorted, so that its encoding (and a unique key over it)
            # is the same everywhere.
            elements.sort()
        return "[" + ",".join(elements) + "]"
    return _encode_plain(value)


def _encode_dumped_bytes(value: str, hint: bytes | bytearray) -> str:
    """A bytes field as pydantic dumped it: written in Go's alphabet (standard base64) when the
    model dumps bytes as base64 (JobArgs does; pydantic's alphabet is the URL-safe one), as
    dumped otherwise (a model configured for UTF-8 or hex keeps its choice)."""
    if value == base64.urlsafe_b64encode(hint).decode("ascii"):
        return '"' + base64.b64encode(hint).decode("ascii") + '"'
    return quote(value)


def _encode_model_dict(value: dict[str, Any], model: pydantic.BaseModel, info: _ModelInfo) -> str:
    keys = info.keys
    extra = model.__pydantic_extra__
    parts = []
    for key, item in value.items():
        known = keys.get(key)
        if known is not None:
            quoted, attr = known
            hint = _NO_HINT if attr is None else getattr(model, attr, _NO_HINT)
        else:
            # An extra field (extra="allow") or a computed field.
            quoted = quote(key)
            hint = _NO_HINT if extra is None else extra.get(key, _NO_HINT)
        parts.append(quoted + ":" + _encode_dumped(item, hint))
    return "{" + ",".join(parts) + "}"


def _encode_model_exact(model: pydantic.BaseModel) -> str:
    """The exact (slower) path: walk pydantic's JSON-mode dump alongside the model."""
    return _encode_dumped(model.model_dump(mode="json", by_alias=True), model)


# Inside a float token of pydantic's JSON that Go writes differently, the first character of
# what differs: the ".0" of an integral float ("1.0", Go "1"), the "e" of any exponent
# (pydantic uses one from 1e16 and for small numbers, Go only from 1e21 and below 1e-6), or the
# "." of a plain decimal below 1e-6. Other float tokens are written identically by both
# (tests/test_gojson.py checks this against pydantic). Starting the pattern with a character
# class keeps the search fast.
_FLOAT_FIX_RE = re.compile(r"[.eE](?:(?<=[0-9]\.)0(?:(?![0-9eE])|0{5})|(?<=[0-9][eE])[+-]?[0-9])")
# Complete strings and anything but a quote: matched up to a position, it reaches that position
# only if the position is outside every string.
_OUTSIDE_STRINGS_RE = re.compile(r'(?:[^"]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+', re.DOTALL)
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NUMBER_TAIL_RE = re.compile(r"[0-9.eE+\-]*")


def _fix_floats(text: str) -> str:
    """Re-format, the Go way, the float tokens of pydantic's (compact) JSON ``text`` that need it.

    Candidates are found with one search; each is checked to lie outside strings (text that
    looks like a number inside a string is left alone).
    """
    match = _FLOAT_FIX_RE.search(text)
    if match is None:
        return text
    out: list[str] = []
    copied = 0  # text[:copied] is in out
    outside = 0  # a position outside strings, at or before the next candidate
    while match is not None:
        at = match.start()
        reached = _OUTSIDE_STRINGS_RE.match(text, outside, at).end()  # type: ignore[union-attr]
        if reached == at:
            # Outside strings, a number token follows one of : , [ in compact JSON.
            start = max(text.rfind(":", 0, at), text.rfind(",", 0, at), text.rfind("[", 0, at))
            start += 1
            end = _NUMBER_TAIL_RE.match(text, at).end()  # type: ignore[union-attr]
            out.append(text[copied:start])
            out.append(format_float(float(text[start:end])))
            copied = outside = end
        else:
            # Inside the string that opens at `reached`: resume after it.
            outside = _STRING_RE.match(text, reached).end()  # type: ignore[union-attr]
        match = _FLOAT_FIX_RE.search(text, outside)
    out.append(text[copied:])
    return "".join(out)


def encode_args(model: pydantic.BaseModel) -> str:
    """Encode job args (a pydantic model) to compact JSON, byte-identical to Go's ``json.Marshal``
    of the equivalent struct: fields in declaration order under their serialization aliases,
    dicts as maps with sorted keys, Go float and time formats, HTML-safe strings.

    Models whose fields are strings, integers, floats, booleans, enums, literals, optionals,
    lists or nested models of those take a fast path (pydantic's Rust serializer plus token
    fix-ups); the others are dumped in JSON mode and re-encoded. Raises ValidationError (field
    ``args``) for values Go cannot encode, such as NaN or infinite floats.
    """
    info = _MODEL_INFO.get(type(model)) or _model_info(type(model))
    try:
        if info.fast:
            try:
                out = model.model_dump_json(by_alias=True)
            except pydantic_core.PydanticSerializationError:
                # e.g. a lone surrogate, which pydantic refuses and Go writes as \ufffd.
                return _encode_model_exact(model)
            if info.fast == _FAST_FLOATS:
                # pydantic writes NaN and infinities as null, which Go refuses to encode: let
                # the exact path decide whenever a null shows up.
                if "null" in out:
                    return _encode_model_exact(model)
                out = _fix_floats(out)
            # Three substring searches cost less than the regex search for ASCII text (the
            # common case; pydantic's output never holds a lone surrogate).
            if out.isascii():
                if "<" not in out and ">" not in out and "&" not in out:
                    return out
            elif _HTML_RE.search(out) is None:
                return out
            return _HTML_RE.sub(_fixup, out)
        return _encode_model_exact(model)
    except (ValueError, TypeError) as exc:
        raise ValidationError("args", f"cannot be encoded as JSON: {exc}") from exc


# --- raw JSON text ----------------------------------------------------------------------------

_COMPACT_RE = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|[ \t\n\r]+')


def _compact_token(match: re.Match[str]) -> str:
    string = match.group(1)
    if string is None:
        return ""  # insignificant whitespace
    if _HTML_RE.search(string) is None:
        return string
    return _HTML_RE.sub(_fixup, string)


def compact(text: str) -> str:
    """Compact JSON text as Go's ``json.Marshal`` does to a ``MarshalJSON``/``RawMessage`` result:
    whitespace between tokens removed, ``<``/``>``/``&``/U+2028/U+2029 inside strings escaped,
    every token otherwise unchanged. Raises ValueError if ``text`` is not valid JSON.
    """
    json.loads(text, parse_constant=_reject_constant)
    return _COMPACT_RE.sub(_compact_token, text)


def _reject_constant(name: str) -> Any:
    # The stdlib accepts NaN/Infinity; JSON (and Go) do not.
    raise ValueError(f"invalid JSON constant {name}")
