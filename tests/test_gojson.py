"""Go ``encoding/json``-compatible encoding of args and metadata (river._gojson)."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

import pydantic
import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from river import GoDuration, JobArgs
from river._errors import ValidationError
from river._gojson import (
    _EXACT,
    _FAST,
    _FAST_FLOATS,
    _encode_model_exact,
    _fix_floats,
    _model_info,
    compact,
    encode_args,
    encode_value,
    format_float,
    format_time,
    quote,
)

# --- floats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (-0.0, "-0"),
        (1.0, "1"),
        (-1.0, "-1"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1.25, "1.25"),
        (100.0, "100"),
        (123456789.0, "123456789"),
        (12345.678, "12345.678"),
        (1e15, "1000000000000000"),
        (1e16, "10000000000000000"),
        (1.5e17, "150000000000000000"),
        (1e20, "100000000000000000000"),
        (math.nextafter(1e21, 0), "999999999999999900000"),
        (1e21, "1e+21"),
        (-1e21, "-1e+21"),
        (1.5e22, "1.5e+22"),
        (1e100, "1e+100"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (1e-4, "0.0001"),
        (1e-5, "0.00001"),
        (1.5e-5, "0.000015"),
        (1e-6, "0.000001"),
        (-1e-6, "-0.000001"),
        (math.nextafter(1e-6, 0), "9.999999999999997e-7"),
        (1e-7, "1e-7"),
        (2.5e-7, "2.5e-7"),
        (-1.5e-9, "-1.5e-9"),
        (1e-10, "1e-10"),
        (5e-324, "5e-324"),
        (2.2250738585072014e-308, "2.2250738585072014e-308"),
    ],
)
def test_format_float(value: float, expected: str) -> None:
    assert format_float(value) == expected
    assert encode_value(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_format_float_rejects_non_finite(value: float) -> None:
    with pytest.raises(ValueError, match="cannot be encoded"):
        format_float(value)
    with pytest.raises(ValueError, match="cannot be encoded"):
        encode_value({"x": [value]})


_PLAIN_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
_EXP_RE = re.compile(r"-?[1-9](\.[0-9]*[1-9])?e[+-][1-9][0-9]*")


def _significant_digits(text: str) -> str:
    mantissa = text.lstrip("-").split("e")[0].replace(".", "")
    return mantissa.strip("0")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_float_round_trips_in_go_layout(value: float) -> None:
    text = format_float(value)
    assert float(text) == value
    assert math.copysign(1, float(text)) == math.copysign(1, value)
    magnitude = abs(value)
    if magnitude == 0 or 1e-6 <= magnitude < 1e21:
        assert _PLAIN_RE.fullmatch(text), text
    else:
        assert _EXP_RE.fullmatch(text), text
    # Shortest digits: exactly those of repr (which is shortest round-trip).
    assert _significant_digits(text) == _significant_digits(repr(value))


# --- integers, strings, times -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [0, -1, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 10**30, -(10**30)]
)
def test_integers_are_exact(value: int) -> None:
    assert encode_value(value) == str(value)
    assert encode_value({"n": value}) == f'{{"n":{value}}}'


def test_bools_and_null() -> None:
    assert encode_value([True, False, None]) == "[true,false,null]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", '"plain"'),
        ("<a href='x'>&amp;</a>", "\"\\u003ca href='x'\\u003e\\u0026amp;\\u003c/a\\u003e\""),
        ("line\u2028para\u2029end", '"line\\u2028para\\u2029end"'),
        ('quote " backslash \\', '"quote \\" backslash \\\\"'),
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ("\x7f", '"\x7f"'),  # DEL is not escaped by Go
        ("é😀/", '"é😀/"'),  # non-ASCII raw, slash not escaped
        ("bad \ud800 surrogate", '"bad \\ufffd surrogate"'),
    ],
)
def test_string_escaping(text: str, expected: str) -> None:
    assert quote(text) == expected
    assert encode_value(text) == expected


def test_quote_without_html() -> None:
    assert quote("<a>&\u2028", html=False) == '"<a>&\\u2028"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC), "2026-01-02T03:04:05.5Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), "2026-01-02T03:04:05.12Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "2026-01-02T03:04:05.123456Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC), "2026-01-02T03:04:05.000001Z"),
        (
            datetime(2026, 1, 2, 10, 51, 5, 678900, tzinfo=timezone(timedelta(hours=5.5))),
            "2026-01-02T10:51:05.6789+05:30",
        ),
        (
            datetime(2026, 1, 1, 22, 4, 5, tzinfo=timezone(-timedelta(hours=5))),
            "2026-01-01T22:04:05-05:00",
        ),
        # Any zero offset is "Z" in Go, whatever the zone's name.
        (
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(0), "GMT")),
            "2026-01-02T03:04:05Z",
        ),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
        # Naive: no Go equivalent; written without an offset.
        (datetime(2026, 1, 2, 3, 4, 5, 250000), "2026-01-02T03:04:05.25"),
    ],
)
def test_format_time(value: datetime, expected: str) -> None:
    assert format_time(value) == expected
    assert encode_value({"t": value}) == f'{{"t":"{expected}"}}'


# --- maps and arrays --------------------------------------------------------------------------


def test_map_keys_sorted_by_utf8_bytes() -> None:
    value = {"b": 1, "a": 2, "é": 3, "😀": 4, "\uffff": 5, "10": 6, "2": 7, "": 8, "B": 9}
    # Byte order: "" < "10" < "2" < "B" < "a" < "b" < "é" (C3 A9) < U+FFFF (EF BF BF) < 😀 (F0..)
    # (UTF-16 order would put the emoji before U+FFFF.)
    assert encode_value(value) == ('{"":8,"10":6,"2":7,"B":9,"a":2,"b":1,"é":3,"\uffff":5,"😀":4}')


def test_map_keys_html_escaped_and_int_keys() -> None:
    assert encode_value({"a&b": 1, "<k>": 2}) == '{"\\u003ck\\u003e":2,"a\\u0026b":1}'
    assert encode_value({10: "ten", 2: "two"}) == '{"10":"ten","2":"two"}'


def test_nested_containers() -> None:
    value = {"z": [{"b": 1, "a": [1.0, None]}, [], {}], "a": (1, "x")}
    assert encode_value(value) == '{"a":[1,"x"],"z":[{"a":[1,null],"b":1},[],{}]}'


def test_empty_dict_fast_path() -> None:
    assert encode_value({}) == "{}"


def test_subclasses_encode_as_base_values() -> None:
    class Color(enum.StrEnum):
        RED = "<red>"

    class Level(enum.IntEnum):
        HIGH = 3

    assert encode_value([Color.RED, Level.HIGH]) == '["\\u003cred\\u003e",3]'


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), {(1, 2): 3}, {True: 1}])
def test_unsupported_types(value: object) -> None:
    with pytest.raises(TypeError):
        encode_value(value)


# --- property tests for plain values ----------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
_STRING_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"')


def _same(decoded: Any, original: Any) -> bool:
    """Equality after a JSON round trip (a float may come back as an int: 1.0 -> 1)."""
    if isinstance(original, float):
        return isinstance(decoded, int | float) and float(decoded) == original
    if isinstance(original, list):
        return (
            isinstance(decoded, list)
            and len(decoded) == len(original)
            and all(_same(d, o) for d, o in zip(decoded, original, strict=True))
        )
    if isinstance(original, dict):
        return decoded.keys() == original.keys() and all(
            _same(decoded[k], v) for k, v in original.items()
        )
    return bool(type(decoded) is type(original) and decoded == original)


@given(_json_values)
def test_encode_value_round_trips(value: Any) -> None:
    text = encode_value(value)
    assert _same(json.loads(text), value)


@given(_json_values)
def test_encode_value_is_compact_and_html_safe(value: Any) -> None:
    text = encode_value(value)
    for char in "<>&\u2028\u2029":
        assert char not in text
    outside_strings = _STRING_TOKEN_RE.sub("", text)
    assert not any(c in outside_strings for c in " \t\n\r")
    text.encode("utf-8")  # always valid UTF-8


_json_values_without_floats = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json_values_without_floats)
def test_encode_value_matches_stdlib_plus_compact(value: Any) -> None:
    # Without floats, Go's output is the stdlib's sorted output, compacted and HTML-escaped.
    expected = compact(json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1))
    assert encode_value(value) == expected


# --- compact ----------------------------------------------------------------------------------


def test_compact() -> None:
    text = '{ "a" : [ 1 , 2 ],\n  "b\\"<" : "x <y> & \u2028 z",\t"c": -0 , "d": 1.0E+2 }'
    assert compact(text) == (
        '{"a":[1,2],"b\\"\\u003c":"x \\u003cy\\u003e \\u0026 \\u2028 z","c":-0,"d":1.0E+2}'
    )


@pytest.mark.parametrize("text", ["", "{", '{"a":}', "NaN", '{"a": Infinity}', "[1,]"])
def test_compact_rejects_invalid_json(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (json's own error type)
        compact(text)


# --- pydantic models --------------------------------------------------------------------------


class Simple(pydantic.BaseModel):
    name: str
    count: int
    flag: bool = False
    note: str | None = None


class Inner(pydantic.BaseModel):
    # Deliberately non-alphabetical: declaration order is kept.
    z: int
    a: str


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class SimpleNested(pydantic.BaseModel):
    title: str = pydantic.Field(alias="Title<>")
    inner: Inner
    items: list[Inner] = []
    tags: list[str] = []
    mode: Mode = Mode.FAST
    kind: Literal["a", "b"] = "a"
    nums: tuple[int, ...] = ()
    maybe: Inner | None = None


class Floats(pydantic.BaseModel):
    name: str = pydantic.Field(alias="n1.0")
    ratio: float
    values: list[float] = []
    maybe: float | None = None
    count: int = 10
    inner: Inner | None = None


class Complex(pydantic.BaseModel):
    # Deliberately non-alphabetical to show declaration order survives.
    when: datetime
    ratio: float
    labels: dict[str, int]
    inner: Inner
    by_id: dict[int, Inner] = {}
    anything: Any = None


def test_simple_models_take_the_fast_path() -> None:
    assert _model_info(Simple).fast == _FAST
    assert _model_info(SimpleNested).fast == _FAST
    assert _model_info(Inner).fast == _FAST
    assert _model_info(Floats).fast == _FAST_FLOATS
    assert _model_info(Complex).fast == _EXACT


def test_encode_simple_model() -> None:
    model = Simple(name="<b>&co\u2028", count=2**63 - 1, note=None)
    expected = (
        '{"name":"\\u003cb\\u003e\\u0026co\\u2028","count":9223372036854775807,'
        '"flag":false,"note":null}'
    )
    assert encode_args(model) == expected
    assert _encode_model_exact(model) == expected


def test_encode_nested_simple_model_uses_aliases_and_declaration_order() -> None:
    model = SimpleNested.model_validate(
        {"Title<>": "t", "inner": {"z": 1, "a": "x"}, "items": [{"z": 2, "a": "y"}], "mode": "slow"}
    )
    expected = (
        '{"Title\\u003c\\u003e":"t","inner":{"z":1,"a":"x"},"items":[{"z":2,"a":"y"}],'
        '"tags":[],"mode":"slow","kind":"a","nums":[],"maybe":null}'
    )
    assert encode_args(model) == expected
    assert _encode_model_exact(model) == expected


def test_encode_complex_model() -> None:
    model = Complex(
        when=datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC),
        ratio=1e21,
        labels={"zulu": 1, "alpha": 2, "10": 3, "2": 4},
        inner=Inner(z=1, a="<"),
        by_id={10: Inner(z=0, a="ten"), 2: Inner(z=0, a="two")},
        anything={"b": [1.0, {"y": 1, "x": datetime(2026, 1, 1, tzinfo=UTC)}], "a": 0.5},
    )
    assert encode_args(model) == (
        '{"when":"2026-01-02T03:04:05.5Z","ratio":1e+21,'
        '"labels":{"10":3,"2":4,"alpha":2,"zulu":1},'
        '"inner":{"z":1,"a":"\\u003c"},'
        '"by_id":{"10":{"z":0,"a":"ten"},"2":{"z":0,"a":"two"}},'
        '"anything":{"a":0.5,"b":[1,{"x":"2026-01-01T00:00:00Z","y":1}]}}'
    )


def test_encode_args_rejects_nan() -> None:
    class Floaty(pydantic.BaseModel):
        x: float

    with pytest.raises(ValidationError, match="args"):
        encode_args(Floaty(x=math.nan))


def test_encode_args_lone_surrogate_falls_back() -> None:
    assert encode_args(Simple(name="a\ud800", count=1)) == (
        '{"name":"a\\ufffd","count":1,"flag":false,"note":null}'
    )


def test_encode_args_job_args_subclass() -> None:
    from river._args import JobArgs

    class SendEmail(JobArgs):
        kind = "send_email"
        to: str
        attempts: int = 1

    assert encode_args(SendEmail(to="a@b.c")) == '{"to":"a@b.c","attempts":1}'


def test_field_serializer_output_is_kept_in_its_order() -> None:
    class WithSerializer(pydantic.BaseModel):
        blob: dict[str, int]
        when: datetime

        @pydantic.field_serializer("blob")
        def _blob(self, value: dict[str, int]) -> dict[str, int]:
            return dict(reversed(value.items()))

    assert _model_info(WithSerializer).fast == _EXACT
    model = WithSerializer(blob={"a": 1, "b": 2}, when=datetime(2026, 1, 1, tzinfo=UTC))
    # The serializer's dict keeps its order (like a Go MarshalJSON); the datetime is Go-formatted.
    assert encode_args(model) == '{"blob":{"b":2,"a":1},"when":"2026-01-01T00:00:00Z"}'


def test_model_serializer_output_is_opaque() -> None:
    class Custom(pydantic.BaseModel):
        x: int

        @pydantic.model_serializer
        def _ser(self) -> dict[str, Any]:
            return {"z": self.x, "a": 1.0}

    assert encode_args(Custom(x=3)) == '{"z":3,"a":1}'


def test_extra_fields_and_dataclasses() -> None:
    @dataclasses.dataclass
    class Point:
        y: float
        x: float

    class WithExtra(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        point: Point

    model = WithExtra.model_validate({"point": {"y": 2.0, "x": 1.5}, "more": {"b": 1, "a": 2}})
    assert encode_args(model) == '{"point":{"y":2,"x":1.5},"more":{"a":2,"b":1}}'


def test_root_model() -> None:
    class Root(pydantic.RootModel[dict[str, float]]):
        pass

    assert encode_args(Root({"b": 1.0, "a": 0.5})) == '{"a":0.5,"b":1}'


def test_recursive_model() -> None:
    class Node(pydantic.BaseModel):
        name: str
        children: list[Node] = []

    node = Node(name="root", children=[Node(name="<leaf>")])
    expected = '{"name":"root","children":[{"name":"\\u003cleaf\\u003e","children":[]}]}'
    assert _model_info(Node).fast == _FAST
    assert encode_args(node) == expected
    assert _encode_model_exact(node) == expected


_simple_text = st.text()
_finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300)
@given(
    name=_simple_text,
    ratio=_finite,
    values=st.lists(_finite, max_size=4),
    maybe=st.none() | _finite,
    count=st.integers(),
)
def test_float_fast_path_matches_exact_path(
    name: str, ratio: float, values: list[float], maybe: float | None, count: int
) -> None:
    model = Floats.model_validate(
        {"n1.0": name, "ratio": ratio, "values": values, "maybe": maybe, "count": count}
    )
    assert encode_args(model) == _encode_model_exact(model)


def test_float_fast_path() -> None:
    model = Floats.model_validate(
        {
            "n1.0": '1.0 "2.0" 1e+20 <x>',
            "ratio": 1e20,
            "values": [1.0, -0.0, 1e-7, 1e-6, 1e21, 1.5e-5, 0.1],
            "count": 100,
        }
    )
    assert encode_args(model) == (
        '{"n1.0":"1.0 \\"2.0\\" 1e+20 \\u003cx\\u003e","ratio":100000000000000000000,'
        '"values":[1,-0,1e-7,0.000001,1e+21,0.000015,0.1],"maybe":null,"count":100,"inner":null}'
    )


@settings(max_examples=3000)
@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70).map(float))
def test_float_fixer_turns_pydantic_tokens_into_go_tokens(value: float) -> None:
    # The float fast path trusts pydantic's float tokens except those _fix_floats rewrites.
    token = pydantic_core.to_json(value).decode()
    go = format_float(value)
    assert _fix_floats(f'{{"a":{token},"b":[{token},{token}]}}') == f'{{"a":{go},"b":[{go},{go}]}}'


def test_float_fixer_leaves_strings_alone() -> None:
    text = '{"1.0":"x 1.0, 2e5 \\" 3.0 \\\\","k":1.0,"s":"\\"1e+16","v":[1e-7,2.0,0.5,10]}'
    assert _fix_floats(text) == (
        '{"1.0":"x 1.0, 2e5 \\" 3.0 \\\\","k":1,"s":"\\"1e+16","v":[1e-7,2,0.5,10]}'
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_float_fast_path_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValidationError, match="args"):
        encode_args(Floats.model_validate({"n1.0": "x", "ratio": 1.0, "values": [bad]}))


@settings(max_examples=200)
@given(
    title=_simple_text,
    z=st.integers(min_value=-(2**64), max_value=2**64),
    a=_simple_text,
    tags=st.lists(_simple_text, max_size=3),
    mode=st.sampled_from(Mode),
    nums=st.lists(st.integers(), max_size=3),
    maybe=st.booleans(),
)
def test_fast_path_matches_exact_path(
    title: str, z: int, a: str, tags: list[str], mode: Mode, nums: list[int], maybe: bool
) -> None:
    inner = Inner(z=z, a=a)
    model = SimpleNested.model_validate(
        {
            "Title<>": title,
            "inner": inner,
            "items": [inner, inner],
            "tags": tags,
            "mode": mode,
            "nums": tuple(nums),
            "maybe": inner if maybe else None,
        }
    )
    fast = encode_args(model)
    assert fast == _encode_model_exact(model)
    assert json.loads(fast)["Title<>"] == title


@given(
    ratio=st.floats(allow_nan=False, allow_infinity=False),
    labels=st.dictionaries(st.text(), st.integers(), max_size=4),
    anything=_json_values,
)
def test_exact_path_matches_encode_value(
    ratio: float, labels: dict[str, int], anything: Any
) -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    model = Complex(
        when=when, ratio=ratio, labels=labels, inner=Inner(z=1, a="a"), anything=anything
    )
    expected = (
        f'{{"when":"2026-01-02T00:00:00Z","ratio":{encode_value(ratio)},'
        f'"labels":{encode_value(labels)},"inner":{{"z":1,"a":"a"}},"by_id":{{}},'
        f'"anything":{encode_value(anything)}}}'
    )
    assert encode_args(model) == expected


# --- bytes and durations as Go writes them ----------------------------------------------------


class _Blob(JobArgs):
    kind: ClassVar[str] = "gojson_blob"
    data: bytes
    parts: list[bytes] = pydantic.Field(default_factory=list)
    wait: GoDuration = timedelta(0)


def test_bytes_are_standard_base64_as_go_writes_a_byte_slice() -> None:
    # Go: json.Marshal(struct{Data []byte; Parts [][]byte; Wait time.Duration}{...}) with the
    # fields tagged data/parts/wait; 0xfb 0xff 0xfe is "+//+" (pydantic's own alphabet: "-__-").
    blob = _Blob(data=b"\xfb\xff\xfe", parts=[b"\xff", b""], wait=timedelta(seconds=1.5))
    assert encode_args(blob) == ('{"data":"+//+","parts":["/w==",""],"wait":1500000000}')
    assert _Blob.model_validate_json(encode_args(blob)) == blob


def test_bytes_that_are_not_utf8_are_encoded() -> None:
    # pydantic's default (UTF-8 text) could not encode them at all.
    blob = _Blob(data=bytes(range(256)))
    assert _Blob.model_validate_json(encode_args(blob)).data == bytes(range(256))


def test_a_model_that_chooses_its_bytes_encoding_keeps_it() -> None:
    class Text(JobArgs):
        model_config = pydantic.ConfigDict(ser_json_bytes="utf8", val_json_bytes="utf8")
        kind: ClassVar[str] = "gojson_text_bytes"
        data: bytes

    class Inner(pydantic.BaseModel):  # plain pydantic: UTF-8, its default
        data: bytes

    class Outer(JobArgs):
        kind: ClassVar[str] = "gojson_outer_bytes"
        inner: Inner
        data: bytes

    assert encode_args(Text(data=b"hi<")) == '{"data":"hi\\u003c"}'
    outer = Outer(inner=Inner(data=b"hi"), data=b"hi")
    assert encode_args(outer) == '{"inner":{"data":"hi"},"data":"aGk="}'
    assert Outer.model_validate_json(encode_args(outer)) == outer


@pytest.mark.parametrize(
    ("go_json", "expected"),
    [
        ("0", timedelta(0)),
        ("1000", timedelta(microseconds=1)),
        ("1999", timedelta(microseconds=1)),  # below a microsecond: dropped
        ("-1999", timedelta(microseconds=-1)),  # toward zero
        ("3600000000000", timedelta(hours=1)),
        (str(2**63 - 1), timedelta(microseconds=(2**63 - 1) // 1000)),
        (str(-(2**63)), -timedelta(microseconds=2**63 // 1000)),
    ],
)
def test_go_durations_are_read_as_nanoseconds(go_json: str, expected: timedelta) -> None:
    blob = _Blob.model_validate_json('{"data":"","wait":' + go_json + "}")
    assert blob.wait == expected


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        (timedelta(0), "0"),
        (timedelta(microseconds=1), "1000"),
        (timedelta(minutes=-90), "-5400000000000"),
        (timedelta(days=106_751), "9223286400000000000"),
    ],
)
def test_go_durations_are_written_as_nanoseconds(wait: timedelta, expected: str) -> None:
    assert (
        encode_args(_Blob(data=b"", wait=wait)) == '{"data":"","parts":[],"wait":' + expected + "}"
    )
    assert _Blob(data=b"", wait=wait).model_dump()["wait"] == wait  # Python mode keeps it


@pytest.mark.parametrize(
    ("wait", "message"),
    [
        (1.5, "not float"),
        ("PT1S", "not str"),
        (True, "not bool"),
        (2**63, "out of the range of Go's time.Duration"),
        (timedelta(days=106_752), "out of the range of Go's time.Duration"),
    ],
)
def test_go_durations_refuse_what_go_cannot_hold(wait: object, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message) as info:
        _Blob(data=b"", wait=wait)
    assert info.value.errors()[0]["loc"] == ("wait",)
