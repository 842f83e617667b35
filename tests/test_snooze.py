"""The snooze counter rule (PROTOCOL 3.8) against River's conformance fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from river._snooze import SNOOZES_KEY, next_snooze_count

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO_ROOT / "tests" / "data" / "river-conformance"
FIXTURE_FILES = {
    "base": CONFORMANCE / "fixtures" / "maintenance_values.json",
    "alt": CONFORMANCE / "alt" / "fixtures" / "maintenance_values.json",
}

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

# How the metadata can reach us: psycopg decodes jsonb with plain json.loads (int / float);
# Decimal variants keep the literal exactly.
LOADERS: dict[str, Callable[[str], Any]] = {
    "json": json.loads,
    "decimal_floats": lambda text: json.loads(text, parse_float=Decimal),
    "decimal_all": lambda text: json.loads(text, parse_float=Decimal, parse_int=Decimal),
}


def _cases() -> list[Any]:
    params = []
    for label, path in FIXTURE_FILES.items():
        if not path.is_file():
            continue
        raw = path.read_text(encoding="utf-8")
        for loader_name, loader in LOADERS.items():
            for case in loader(raw)["snooze_counters"]:
                params.append(pytest.param(case, id=f"{label}-{loader_name}-{case['name']}"))
    return params


def test_fixture_files_present() -> None:
    missing = [str(path) for path in FIXTURE_FILES.values() if not path.is_file()]
    assert not missing, f"conformance fixtures missing: {missing}"


@pytest.mark.parametrize("case", _cases())
def test_fixture_snooze_counters(case: dict[str, Any]) -> None:
    result = next_snooze_count(case["metadata"])
    assert type(result) is int
    assert result == case["expected_snoozes"]


def test_fixture_exactness_survives_plain_json_loads() -> None:
    # The reason for the care: a float would turn 9007199254740993 into ...992.
    assert next_snooze_count(json.loads('{"snoozes": 9007199254740993}')) == 9007199254740994
    assert next_snooze_count(json.loads('{"snoozes": 9007199254740993.0}')) == 9007199254740993


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 1),
        (0, 1),
        (-1, 0),
        (5.0, 6),
        (-0.9, 1),
        (0.9999, 1),
        (1e3, 1001),
        (1e20, INT64_MIN + 1),  # Go's int64(float) on amd64
        (-1e20, INT64_MIN + 1),
        (float("inf"), INT64_MIN + 1),
        (float("nan"), 1),
        (2.0**62, 2**62 + 1),
        (INT64_MAX, INT64_MIN),  # int64 wrap-around, as Go
        (INT64_MAX + 1, INT64_MIN + 1),
        (2**64 + 7, 8),
        (str(INT64_MAX), INT64_MIN),
        (str(2**64 + 7), 8),
        ("-" + str(2**64 + 7), -6),
        ("-0", 1),
        ("007", 8),
        ("", 1),
        ("-", 1),
        ("+5", 1),
        ("5 ", 1),
        ("5\n", 1),
        ("1e3", 1),
        ("٣", 1),  # non-ASCII digit
        ([], 1),
        ({}, 1),
        ((3,), 1),
        (Decimal("2.9"), 3),
        (Decimal("-2.5"), -1),
        (Decimal("1E+3"), 1001),
        (Decimal("9007199254740993"), 9007199254740994),
        (Decimal("9007199254740993.0"), 9007199254740993),
        (Decimal("NaN"), 1),
        (Decimal("Infinity"), INT64_MIN + 1),
    ],
)
def test_lenient_reading(value: Any, expected: int) -> None:
    assert next_snooze_count({SNOOZES_KEY: value}) == expected


def test_digit_string_longer_than_python_int_limit() -> None:
    # int() refuses strings over 4300 digits by default; Go's int64 parsing just wraps.
    wrapped = 0
    for _ in range(5000):
        wrapped = (wrapped * 10 + 1) % (1 << 64)
    if wrapped > INT64_MAX:
        wrapped -= 1 << 64
    assert next_snooze_count({SNOOZES_KEY: "1" * 5000}) == wrapped + 1
    assert next_snooze_count({SNOOZES_KEY: "-" + "1" * 5000}) == -wrapped + 1


def test_missing_metadata_counts_as_empty() -> None:
    assert next_snooze_count({}) == 1
    assert next_snooze_count(None) == 1
    assert next_snooze_count({"other": 9}) == 1


@given(st.integers(INT64_MIN, INT64_MAX - 1))
def test_integers_and_their_strings_count_up(previous: int) -> None:
    assert next_snooze_count({SNOOZES_KEY: previous}) == previous + 1
    assert next_snooze_count({SNOOZES_KEY: str(previous)}) == previous + 1
    assert next_snooze_count(json.loads(json.dumps({SNOOZES_KEY: previous}))) == previous + 1


@given(st.floats(min_value=-(2.0**53), max_value=2.0**53, allow_nan=False))
def test_floats_truncate_toward_zero(previous: float) -> None:
    assert next_snooze_count({SNOOZES_KEY: previous}) == int(previous) + 1
