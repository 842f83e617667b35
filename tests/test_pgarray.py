"""Array parameters as text literals (river._pgarray), checked against Postgres itself.

Each literal is parsed by the server (``%s::text[]`` and friends) and must read back as the
list it was built from, element for element: NULL stays NULL and every string stays itself,
whatever it holds (quotes, backslashes, braces, commas, whitespace, the word NULL, nothing at
all, the marks the encoder uses internally). A NULL array given to a multi-argument unnest is
padded with NULLs, which is what lets a column of None travel as one NULL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from river._pgarray import all_null, bytea_array, int_array, text_array

#: Strings that need quoting or escaping in an array literal, or that the encoder treats
#: specially (its separator is NUL, which Postgres text cannot hold; its NULL mark is \x01).
ODD_STRINGS = [
    "",
    " ",
    "NULL",
    "null",
    "NuLl",
    '"',
    '""',
    "\\",
    "\\\\",
    '\\"',
    '"\\',
    "{",
    "}",
    "{}",
    "{a,b}",
    ",",
    "a,b",
    " leading",
    "trailing ",
    "in side",
    "tab\there",
    "new\nline",
    "\r\n",
    "\x01",
    "a\x01b",
    '"\x01"',
    "é",
    "\u2028",
    "😀",
    "<b>&amp;</b>",
    'x"y\\z{,}',
]


@pytest.fixture(scope="module")
def pg(server_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection for SELECTs of literals (no database of its own needed)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        yield conn


def _read(conn: psycopg.Connection[Any], cast: str, literal: str | None) -> Any:
    row = conn.execute(f"SELECT %s::{cast}", (literal,)).fetchone()
    assert row is not None
    return row[0]


# --- exact literals ---------------------------------------------------------------------------


def test_int_array_literals() -> None:
    assert int_array([]) == "{}"
    assert int_array([7]) == "{7}"
    assert int_array([1, 2, -3]) == "{1,2,-3}"
    assert int_array([25, 25, 25]) == "{25,25,25}"
    assert int_array([1, None, 3]) == "{1,NULL,3}"
    assert int_array([None, 1]) == "{NULL,1}"
    assert int_array([None, None]) == "{NULL,NULL}"
    assert int_array([2**63 - 1, -(2**63)]) == "{9223372036854775807,-9223372036854775808}"


def test_int_array_writes_the_digits_of_int_subclasses() -> None:
    class Level(IntEnum):
        LOW = 1
        HIGH = 4

    assert int_array([Level.LOW, Level.HIGH]) == "{1,4}"
    assert int_array([Level.HIGH, Level.HIGH]) == "{4,4}"
    assert int_array([True, 2]) == "{1,2}"


@pytest.mark.parametrize("values", [["1"], [1, "2"], [1.5], [None, "x"]])
def test_int_array_refuses_other_types(values: list[Any]) -> None:
    with pytest.raises(TypeError):
        int_array(values)


def test_text_array_literals() -> None:
    assert text_array([]) == "{}"
    assert text_array(["a"]) == '{"a"}'
    assert text_array(["a", "b c"]) == '{"a","b c"}'
    assert text_array([""]) == '{""}'
    assert text_array(["NULL", None]) == '{"NULL",NULL}'
    assert text_array([None]) == "{NULL}"
    assert text_array([None, None]) == "{NULL,NULL}"
    assert text_array(['say "hi"', "C:\\x"]) == '{"say \\"hi\\"","C:\\\\x"}'
    assert text_array(["\x01", None]) == '{"\x01",NULL}'


@pytest.mark.parametrize("values", [[1], ["a", 2], [b"x"], [None, 1]])
def test_text_array_refuses_other_types(values: list[Any]) -> None:
    with pytest.raises(TypeError):
        text_array(values)


def test_bytea_array_literals() -> None:
    assert bytea_array([]) == "{}"
    assert bytea_array([b"\x00\xff", None, b""]) == '{"\\\\x00ff",NULL,"\\\\x"}'


def test_all_null() -> None:
    assert all_null([])
    assert all_null([None])
    assert all_null([None, None])
    assert not all_null([None, 0])
    assert not all_null([""])
    assert not all_null([False, None])


# --- read back by Postgres --------------------------------------------------------------------


@pytest.mark.parametrize("odd", ODD_STRINGS)
def test_each_odd_string_reads_back_as_itself(pg: psycopg.Connection[Any], odd: str) -> None:
    for values in ([odd], [odd, odd], [None, odd, "plain"], ["plain", odd, None, ""]):
        assert _read(pg, "text[]", text_array(values)) == values


def test_all_odd_strings_together_read_back(pg: psycopg.Connection[Any]) -> None:
    values: list[str | None] = [*ODD_STRINGS, None, *reversed(ODD_STRINGS), None]
    assert _read(pg, "text[]", text_array(values)) == values
    assert _read(pg, "text[]", text_array(ODD_STRINGS)) == ODD_STRINGS
    assert _read(pg, "text[]", text_array([None] * 3)) == [None] * 3


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(
                alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
            ),
            st.sampled_from(ODD_STRINGS),
        ),
        max_size=12,
    )
)
def test_any_strings_read_back(pg: psycopg.Connection[Any], values: list[str | None]) -> None:
    assert _read(pg, "text[]", text_array(values)) == values


@pytest.mark.parametrize("values", [["a\x00b"], ['x"', "a\x00b"], ["a\x00b", None]])
def test_a_nul_character_is_refused_as_before(
    pg: psycopg.Connection[Any], values: list[str | None]
) -> None:
    # Postgres text cannot hold NUL: refused (a DataError, as the binary form was), never
    # written as something else.
    with pytest.raises(psycopg.DataError):
        _read(pg, "text[]", text_array(values))
    with pytest.raises(psycopg.DataError):
        pg.execute("SELECT %b::text[]", (values,))


@pytest.mark.parametrize(
    ("cast", "values"),
    [
        ("bigint[]", [1, 2**63 - 1, -(2**63), 0, None]),
        ("integer[]", [2**31 - 1, -(2**31), None, 5]),
        ("smallint[]", [1, 25, 32767, -32768]),
        ("smallint[]", [25] * 50),
        ("smallint[]", [None, None]),
        ("bigint[]", []),
    ],
)
def test_int_arrays_read_back(
    pg: psycopg.Connection[Any], cast: str, values: list[int | None]
) -> None:
    assert _read(pg, cast, int_array(values)) == values


def test_bytea_arrays_read_back(pg: psycopg.Connection[Any]) -> None:
    values = [b"\x00\x01\xfe\xff", None, b"", bytes(range(256)), b'"\\{},']
    assert _read(pg, "bytea[]", bytea_array(values)) == values


def test_json_texts_cast_to_jsonb_like_the_binary_form(pg: psycopg.Connection[Any]) -> None:
    # Metadata and errors travel as text literals cast to jsonb[]: the same values as the
    # binary jsonb[] psycopg would send.
    texts: list[str | None] = [
        json.dumps({"q": 'say "hi"', "b": "C:\\dir\\", "u": "é\u2028😀", "n": None}),
        None,
        "{}",
        json.dumps({"nested": {"a": [1, 2.5, {"b": "}{,"}]}, "NULL": "NULL"}),
        json.dumps("\\u0041 is not an escape here"),
    ]
    row = pg.execute(
        "SELECT %s::jsonb[]::text = %b::jsonb[]::text, %s::jsonb[]",
        (text_array(texts), texts, text_array(texts)),
    ).fetchone()
    assert row is not None
    assert row[0] is True
    assert row[1] == [None if t is None else json.loads(t) for t in texts]


# --- a NULL column in a multi-argument unnest ---------------------------------------------------


def test_unnest_pads_a_null_array_like_an_array_of_nulls(pg: psycopg.Connection[Any]) -> None:
    ids, states = [3, 1, 2], ["completed", "retryable", "available"]
    query = (
        "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::jsonb[], %b::timestamptz[])"
        " WITH ORDINALITY"
    )
    padded = pg.execute(query, (int_array(ids), text_array(states), None, None)).fetchall()
    nulls = pg.execute(
        query, (int_array(ids), text_array(states), text_array([None] * 3), [None] * 3)
    ).fetchall()
    expected = [
        (3, "completed", None, None, 1),
        (1, "retryable", None, None, 2),
        (2, "available", None, None, 3),
    ]
    assert padded == nulls == expected
