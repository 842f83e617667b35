"""Cron and interval schedules: River's conformance fixtures, properties, error messages."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from river import _schedule
from river._errors import ValidationError
from river._schedule import NEVER, Cron, PeriodicInterval, Schedule

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO_ROOT / "tests" / "data" / "river-conformance"
FIXTURE_FILES = {
    "base": CONFORMANCE / "fixtures" / "maintenance_values.json",
    "alt": CONFORMANCE / "alt" / "fixtures" / "maintenance_values.json",
}
KNOWN_KEYS = {
    "$schema",
    "cron_cases",
    "cron_invalid",
    "cron_named_zone_cases",
    "protocol_revision",
    "snooze_counters",
}


def _load_fixtures() -> dict[str, dict[str, Any]]:
    return {
        label: json.loads(path.read_text(encoding="utf-8"))
        for label, path in FIXTURE_FILES.items()
        if path.is_file()
    }


FIXTURES = _load_fixtures()


def _cases(key: str) -> list[Any]:
    return [
        pytest.param(case, id=f"{label}-{case['name']}")
        for label, data in FIXTURES.items()
        for case in data.get(key, [])
    ]


def _invalid() -> list[Any]:
    return [
        pytest.param(expression, id=f"{label}-{index}-{expression!r}")
        for label, data in FIXTURES.items()
        for index, expression in enumerate(data["cron_invalid"])
    ]


def test_fixture_files_present() -> None:
    missing = [str(path) for path in FIXTURE_FILES.values() if not path.is_file()]
    assert not missing, f"conformance fixtures missing: {missing}"
    for data in FIXTURES.values():
        # A new section in a future fixture revision must get a test here.
        assert set(data) <= KNOWN_KEYS, set(data) - KNOWN_KEYS
    assert FIXTURES["alt"]["cron_named_zone_cases"]


def _run_case(case: dict[str, Any]) -> None:
    cron = Cron(case["expression"])
    start = datetime.fromisoformat(case["from"])
    expected = [datetime.fromisoformat(text) for text in case["next"]]
    got: list[datetime] = []
    current = start
    for _ in range(max(len(expected), 3)):
        result = cron.next(current)
        assert result.tzinfo is UTC
        if result == NEVER:
            break
        assert result > current
        got.append(result)
        # Like River (Go)'s cron (which returns times in the caller's location), chain in the
        # zone of the reference time: without a CRON_TZ prefix that zone is the one evaluated.
        current = result.astimezone(start.tzinfo)
    assert got[: len(expected)] == expected
    if not expected:
        assert got == []


@pytest.mark.parametrize("case", _cases("cron_cases"))
def test_cron_fixture_cases(case: dict[str, Any]) -> None:
    _run_case(case)


@pytest.mark.parametrize("case", _cases("cron_named_zone_cases"))
def test_cron_named_zone_fixture_cases(case: dict[str, Any]) -> None:
    _run_case(case)


@pytest.mark.parametrize("expression", _invalid())
def test_cron_fixture_invalid(expression: str) -> None:
    with pytest.raises(ValidationError) as info:
        Cron(expression)
    assert info.value.field == "cron"
    assert str(info.value).startswith("cron: ")


# --------------------------------------------------------------------------------------------
# Error messages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "rule"),
    [
        ("", "expression is empty"),
        ("   ", "expression is empty"),
        ("* * * *", "expected exactly 5 fields"),
        ("0 * * * * *", "found 6 (a seconds field is not supported)"),
        ("60 * * * *", "minute field: 60 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("* * * 13 *", "month field: 13 is out of range 1-12"),
        ("0 9 * * 7", "day-of-week field: 7 is out of range 0-6"),
        ("0 9 * * 1-7", "day-of-week field: 7 is out of range 0-6"),
        ("5-1 * * * *", "minute field: range 5-1 starts after it ends"),
        ("* * * dec-jan *", "month field: range dec-jan starts after it ends"),
        ("-1 * * * *", "minute field: '-1' is missing a number"),
        ("1, * * * *", "minute field: '' is missing a number"),
        ("1-2-3 * * * *", "minute field: '1-2-3' has more than one '-'"),
        ("1/2/3 * * * *", "minute field: '1/2/3' has more than one '/'"),
        ("*/0 * * * *", "minute field: step in '*/0' must be a positive integer"),
        ("* */x * * *", "hour field: step in '*/x' must be a positive integer"),
        ("*/-1 * * * *", "step in '*/-1' must be a positive integer"),
        ("0 9 * * funday", "day-of-week field: 'funday' is not a number or a day name (sun-sat)"),
        ("0 9 * january *", "month field: 'january' is not a number or a month name (jan-dec)"),
        ("0 9 mon * *", "day-of-month field: 'mon' is not a number"),
        ("*-5 * * * *", "minute field: '*' is not a number"),
        ("L * * * *", "minute field: 'L' is not a number"),
        ("@every", "@every needs a duration"),
        ("@every ", "@every needs a duration"),
        ("@every 5x", "@every: unknown unit 'x' in duration '5x'"),
        ("@every 5", "@every: missing unit in duration '5'"),
        ("@every -5m", "@every: duration '-5m' is negative"),
        ("@every  1h", "@every: invalid duration ' 1h'"),
        ("@reboot", "@reboot is not supported"),
        ("@DAILY", "unknown descriptor '@DAILY'"),
        ("@daily ", "unknown descriptor '@daily '"),
        ("CRON_TZ=Nowhere/Invalid 0 9 * * *", "unknown time zone 'Nowhere/Invalid'"),
        ("CRON_TZ=America 0 9 * * *", "unknown time zone 'America'"),
        ("TZ=../../etc/passwd 0 9 * * *", "unknown time zone '../../etc/passwd'"),
        ("CRON_TZ=Local 0 9 * * *", "unknown time zone 'Local'"),
        ("CRON_TZ= 0 9 * * *", "time zone prefix names no zone"),
        ("TZ=UTC", "must be followed by a space and a schedule"),
        ("TZ=UTC  ", "no schedule after the time zone prefix"),
        ("TZ=UTC 0 9 * *", "expected exactly 5 fields"),
    ],
)
def test_cron_error_messages(expression: str, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        Cron(expression)
    assert info.value.field == "cron"
    assert rule in info.value.rule
    assert str(info.value) == f"cron: {info.value.rule}"


def test_cron_rejects_non_string() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        Cron(5)  # type: ignore[arg-type]


def test_missing_time_zone_database_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_schedule, "_tz_database_available", lambda: False)
    with pytest.raises(ValidationError, match="no time zone database found"):
        Cron("CRON_TZ=Nowhere/Else 0 9 * * *")
    # UTC is built in, as in Go.
    assert Cron("CRON_TZ=UTC 0 9 * * *").zone is UTC


@pytest.mark.parametrize(
    "expression",
    [
        "0 9 * * MON-FRI",
        "0 9 * * Sun,sat",
        "0 0 1 JAN-mar,Dec *",
        "+5 * * * *",
        "05 * * * *",
        "? ? ? ? ?",
        "*/1 */1 */1 */1 */1",
        "59/60 23/100 31 12 6",
        "0-59 0-23 1-31 1-12 0-6",
        "\t0\n9 * * 1",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@every 1h30m",
        "@every 0",
        "@every .5s",
        "@every 1.s",
        "@every +2m",
        "@every 1µs",
        "@every 1μs",
        "CRON_TZ=Asia/Tokyo @daily",
        "TZ=Europe/Paris   */10 * * * *",
    ],
)
def test_cron_accepts(expression: str) -> None:
    cron = Cron(expression)
    assert str(cron) == expression
    assert repr(cron) == f"Cron({expression!r})"
    assert cron.expression == expression
    assert cron == Cron(expression)
    assert hash(cron) == hash(Cron(expression))
    assert isinstance(cron, Schedule)
    after = datetime(2026, 5, 17, 12, 34, 56, 789, tzinfo=UTC)
    assert cron.next(after) > after


# --------------------------------------------------------------------------------------------
# Behaviour details
# --------------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 2, 3, 4, 5, 678_900, tzinfo=UTC)


def _take(cron: Cron, after: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    for _ in range(count):
        after = cron.next(after)
        out.append(after)
    return out


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("0", 0),
        ("-0", 0),
        ("1h30m", 5_400_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("90s", 90_000_000_000),
        ("500ms", 500_000_000),
        ("1500ms", 1_500_000_000),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("1h1m1s1ms1us1ns", 3_661_001_001_001),
        ("0.1h", 360_000_000_000),
        ("2562047h47m16.854775807s", (1 << 63) - 1),
        ("-2562047h47m16.854775808s", -(1 << 63)),
    ],
)
def test_go_duration(text: str, nanoseconds: int) -> None:
    assert _schedule.parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize(
    "text", ["", "+", "-", ".", "1", "1x", "s", ".s", "1h.", "2562047h47m16.854775808s", "1 h"]
)
def test_go_duration_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        _schedule.parse_go_duration(text)


@pytest.mark.parametrize(
    ("expression", "delay"),
    [
        ("@every 1h", timedelta(hours=1)),
        ("@every 0", timedelta(seconds=1)),
        ("@every 999ms", timedelta(seconds=1)),
        ("@every 2999ms", timedelta(seconds=2)),
        ("@every 36h", timedelta(hours=36)),
    ],
)
def test_every_truncates_after_and_adds_delay(expression: str, delay: timedelta) -> None:
    cron = Cron(expression)
    assert cron.next(T0) == T0.replace(microsecond=0) + delay
    # The zone prefix and the zone of `after` make no difference.
    tokyo = T0.astimezone(ZoneInfo("Asia/Tokyo"))
    assert Cron(f"CRON_TZ=America/New_York {expression}").next(tokyo) == cron.next(T0)


def test_result_is_utc_and_strictly_after() -> None:
    cron = Cron("* * * * *")
    exact = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert cron.next(exact) == datetime(2026, 1, 2, 3, 5, tzinfo=UTC)
    assert cron.next(exact - timedelta(microseconds=1)) == exact
    assert cron.next(exact.astimezone(timezone(timedelta(hours=3)))).tzinfo is UTC


def test_without_prefix_evaluates_in_the_zone_of_after() -> None:
    new_york = ZoneInfo("America/New_York")
    plain = Cron("30 2 * * *")
    prefixed = Cron("CRON_TZ=America/New_York 30 2 * * *")
    after = datetime(2026, 3, 6, 12, tzinfo=UTC)
    current_plain = after.astimezone(new_york)
    current_prefixed = after
    for _ in range(6):
        next_plain = plain.next(current_plain)
        next_prefixed = prefixed.next(current_prefixed)
        assert next_plain == next_prefixed
        current_plain = next_plain.astimezone(new_york)
        current_prefixed = next_prefixed
    # In UTC, the same expression means 02:30 UTC (River (Go)'s enqueuer passes UTC times).
    assert plain.next(after) == datetime(2026, 3, 7, 2, 30, tzinfo=UTC)


def test_repeated_hour_every_minute_walks_both_occurrences() -> None:
    cron = Cron("CRON_TZ=America/New_York */20 * * * *")
    results = _take(cron, datetime(2026, 11, 1, 5, 15, tzinfo=UTC), 7)
    assert results == [
        datetime(2026, 11, 1, 5, 20, tzinfo=UTC),  # 01:20 EDT
        datetime(2026, 11, 1, 5, 40, tzinfo=UTC),  # 01:40 EDT
        datetime(2026, 11, 1, 6, 0, tzinfo=UTC),  # 01:00 EST
        datetime(2026, 11, 1, 6, 20, tzinfo=UTC),
        datetime(2026, 11, 1, 6, 40, tzinfo=UTC),
        datetime(2026, 11, 1, 7, 0, tzinfo=UTC),  # 02:00 EST
        datetime(2026, 11, 1, 7, 20, tzinfo=UTC),
    ]


def test_repeated_time_before_after_in_wall_order() -> None:
    # 01:50 EDT: the next 01:10 is the repeated one (EST), 20 minutes later.
    cron = Cron("CRON_TZ=America/New_York 10 1 * * *")
    assert cron.next(datetime(2026, 11, 1, 5, 50, tzinfo=UTC)) == datetime(
        2026, 11, 1, 6, 10, tzinfo=UTC
    )
    # From inside the second occurrence, the next one is the next day.
    assert cron.next(datetime(2026, 11, 1, 6, 30, tzinfo=UTC)) == datetime(
        2026, 11, 2, 6, 10, tzinfo=UTC
    )


def test_skipped_midnight_on_first_of_month_and_east_of_utc() -> None:
    # Cairo moves 00:00 -> 01:00 on 2026-04-24 (UTC+2 -> UTC+3): the day still runs at noon.
    cron = Cron("CRON_TZ=Africa/Cairo 0 12 24 4 *")
    assert cron.next(datetime(2026, 4, 20, tzinfo=UTC)) == datetime(2026, 4, 24, 9, tzinfo=UTC)
    midnight = Cron("CRON_TZ=Africa/Cairo 0 0 * * *")
    assert _take(midnight, datetime(2026, 4, 22, 12, tzinfo=UTC), 3) == [
        datetime(2026, 4, 22, 22, tzinfo=UTC),  # 00:00 on the 23rd (UTC+2)
        datetime(2026, 4, 24, 21, tzinfo=UTC),  # the 24th has no midnight; 00:00 on the 25th
        datetime(2026, 4, 25, 21, tzinfo=UTC),
    ]


def test_impossible_dates_and_five_year_limit() -> None:
    assert Cron("0 0 30 2 *").next(T0) == NEVER
    assert Cron("0 0 31 4,6,9,11 *").next(T0) == NEVER
    leap = Cron("0 0 29 2 *")
    assert leap.next(datetime(2095, 3, 1, tzinfo=UTC)) == datetime(2096, 2, 29, tzinfo=UTC)
    # 2100 is not a leap year: 2104 is more than five years after 2096 (robfig/cron gives up).
    assert leap.next(datetime(2096, 3, 1, tzinfo=UTC)) == NEVER
    # The limit is the end of the fifth year after the start year.
    assert Cron("0 0 1 1 *").next(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert Cron("0 0 31 12 *").next(datetime(2031, 1, 1, tzinfo=UTC)) == datetime(
        2031, 12, 31, tzinfo=UTC
    )


def test_never_and_range_edges() -> None:
    for cron in (Cron("* * * * *"), Cron("CRON_TZ=Asia/Tokyo 0 0 * * *"), Cron("@every 1h")):
        assert cron.next(NEVER) == NEVER
    assert Cron("0 0 * * *").next(datetime(9998, 12, 31, 12, tzinfo=UTC)) == NEVER
    assert Cron("* * * * *").next(datetime(1, 1, 1, tzinfo=UTC)) == datetime(
        1, 1, 1, 0, 1, tzinfo=UTC
    )


def test_naive_after_is_rejected() -> None:
    for schedule in (Cron("* * * * *"), Cron("@every 1m"), PeriodicInterval(5)):
        with pytest.raises(ValidationError) as info:
            schedule.next(datetime(2026, 1, 1))
        assert info.value.field == "after"
        assert "timezone-aware" in info.value.rule


# --------------------------------------------------------------------------------------------
# PeriodicInterval
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "interval"),
    [
        (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(minutes=15), timedelta(minutes=15)),
        (timedelta(microseconds=1), timedelta(microseconds=1)),
    ],
)
def test_periodic_interval(value: float | timedelta, interval: timedelta) -> None:
    schedule = PeriodicInterval(value)
    assert schedule.interval == interval
    assert isinstance(schedule, Schedule)
    after = datetime(2026, 1, 2, 3, 4, 5, 678_900, tzinfo=timezone(timedelta(hours=-5)))
    result = schedule.next(after)
    assert result == after + interval
    assert result.tzinfo is UTC
    assert schedule == PeriodicInterval(interval)
    assert hash(schedule) == hash(PeriodicInterval(interval))
    assert repr(schedule) == f"PeriodicInterval({interval!r})"
    assert schedule.next(NEVER) == NEVER


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (0, "must be positive"),
        (-1, "must be positive"),
        (timedelta(0), "must be positive"),
        (timedelta(seconds=-5), "must be positive"),
        (1e-9, "must be positive"),
        (float("nan"), "must be finite"),
        (float("inf"), "must be finite"),
        (1e300, "too large"),
        (True, "must be a number of seconds or a timedelta"),
        ("5", "must be a number of seconds or a timedelta"),
    ],
)
def test_periodic_interval_invalid(value: Any, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        PeriodicInterval(value)
    assert info.value.field == "interval"
    assert rule in info.value.rule


# --------------------------------------------------------------------------------------------
# Properties against a brute-force reference
# --------------------------------------------------------------------------------------------

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
BOUNDS: list[tuple[int, int, dict[str, int]]] = [
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {name: index + 1 for index, name in enumerate(MONTHS)}),
    (0, 6, {name: index for index, name in enumerate(DAYS)}),
]


def _reference_field(
    text: str, low: int, high: int, names: dict[str, int]
) -> tuple[set[int], bool]:
    """Independent expansion of one field: the values and whether it is an unstepped wildcard."""

    def value(token: str) -> int:
        return names[token.lower()] if token.lower() in names else int(token)

    values: set[int] = set()
    wildcard = False
    for part in text.split(","):
        if "/" in part:
            base, step_text = part.split("/")
            step = int(step_text)
        else:
            base, step = part, 1
        if base in ("*", "?"):
            first, last = low, high
            wildcard = wildcard or step == 1
        elif "-" in base:
            first, last = (value(token) for token in base.split("-"))
        else:
            first = value(base)
            last = high if "/" in part else first
        values.update(range(first, last + 1, step))
    return values, wildcard


def _reference_matcher(fields: list[str]) -> Callable[[datetime], bool]:
    expanded = [
        _reference_field(text, *bounds) for text, bounds in zip(fields, BOUNDS, strict=True)
    ]
    (minutes, _), (hours, _), (doms, dom_any), (months, _), (dows, dow_any) = expanded

    def matches(wall: datetime) -> bool:
        if wall.minute not in minutes or wall.hour not in hours or wall.month not in months:
            return False
        dom_ok = wall.day in doms
        dow_ok = (wall.weekday() + 1) % 7 in dows
        return (dom_ok and dow_ok) if (dom_any or dow_any) else (dom_ok or dow_ok)

    return matches


@st.composite
def _token(draw: st.DrawFn, high: int, names: dict[str, int], at_least: int) -> str:
    """A value of a field: a number, or its name in any case (months and days)."""
    number = draw(st.integers(at_least, high))
    spelled = [name for name, index in names.items() if index == number]
    use_name = draw(st.booleans())
    if spelled and use_name:
        return draw(st.sampled_from([spelled[0], spelled[0].upper(), spelled[0].title()]))
    return str(number)


@st.composite
def _field(draw: st.DrawFn, index: int, wildcard_weight: int = 1) -> str:
    low, high, names = BOUNDS[index]
    kinds = ["*"] * wildcard_weight + ["?", "n", "a-b", "*/s", "a-b/s", "a/s"]
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds))
        step = str(draw(st.integers(1, high - low + 2)))
        if kind in ("*", "?"):
            parts.append(kind)
        elif kind == "*/s":
            parts.append(f"*/{step}")
        else:
            first_text = draw(_token(high, names, low))
            first = names.get(first_text.lower(), None)
            first_value = first if first is not None else int(first_text)
            if kind == "n":
                parts.append(first_text)
            elif kind == "a/s":
                parts.append(f"{first_text}/{step}")
            else:
                last_text = draw(_token(high, names, first_value))
                parts.append(f"{first_text}-{last_text}" + (f"/{step}" if kind == "a-b/s" else ""))
    return ",".join(parts)


@st.composite
def _fields(draw: st.DrawFn, day_wildcard_weight: int = 3) -> list[str]:
    return [
        draw(_field(0)),
        draw(_field(1)),
        draw(_field(2, day_wildcard_weight)),
        draw(_field(3, day_wildcard_weight * 2)),
        draw(_field(4, day_wildcard_weight)),
    ]


_instants = st.datetimes(
    min_value=datetime(1999, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
)
WINDOW_MINUTES = 3 * 24 * 60


def _brute_force(
    after: datetime, zone: Any, matches: Callable[[datetime], bool]
) -> datetime | None:
    """First whole UTC minute after `after` whose wall time in `zone` matches, within the window."""
    instant = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(WINDOW_MINUTES):
        if matches(instant.astimezone(zone).replace(tzinfo=None)):
            return instant
        instant += timedelta(minutes=1)
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=_fields(), after=_instants)
def test_property_matches_brute_force_in_utc(fields: list[str], after: datetime) -> None:
    cron = Cron(" ".join(fields))
    matches = _reference_matcher(fields)
    expected = _brute_force(after, UTC, matches)
    got = cron.next(after)
    if expected is not None:
        assert got == expected
    else:
        assert got > after + timedelta(minutes=WINDOW_MINUTES)
    # Successive runs increase strictly and each matches the fields.
    current = after
    for _ in range(5):
        following = cron.next(current)
        if following == NEVER:
            break
        assert following > current
        assert following.second == 0
        assert following.microsecond == 0
        assert matches(following.replace(tzinfo=None))
        current = following


@settings(max_examples=60, deadline=None)
@given(fields=_fields(day_wildcard_weight=1), after=_instants)
def test_property_fixed_offset_zone(fields: list[str], after: datetime) -> None:
    zone = timezone(timedelta(hours=5, minutes=30))
    cron = Cron(" ".join(fields))
    expected = _brute_force(after, zone, _reference_matcher(fields))
    got = cron.next(after.astimezone(zone))
    if expected is not None:
        assert got == expected
    else:
        assert got > after + timedelta(minutes=WINDOW_MINUTES)


DST_ZONES = [
    "America/New_York",
    "Europe/London",
    "Europe/Dublin",  # "negative" DST in the tz database
    "America/Santiago",  # DST changes at local midnight
    "America/Havana",  # idem
    "Africa/Cairo",  # midnight, east of UTC
    "Asia/Tehran",  # midnight, east of UTC (until 2022)
    "America/Sao_Paulo",  # midnight (until 2019)
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Apia",  # skipped a whole day in 2011
    "America/St_Johns",  # -03:30 / -02:30
]


@functools.cache
def _transitions(zone_name: str) -> tuple[datetime, ...]:
    """UTC instants (to the minute) where the zone's offset changes, 2009-2027."""
    zone = ZoneInfo(zone_name)
    found = []
    day = datetime(2009, 1, 1, tzinfo=UTC)
    previous = day.astimezone(zone).utcoffset()
    while day.year < 2028:
        following = day + timedelta(days=1)
        offset = following.astimezone(zone).utcoffset()
        if offset != previous:
            low, high = day, following
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == previous:
                    low = middle
                else:
                    high = middle
            found.append(high.replace(second=0, microsecond=0))
            previous = offset
        day = following
    return tuple(found)


@st.composite
def _near_transition(draw: st.DrawFn) -> tuple[str, datetime, list[str]]:
    """A zone, a time shortly before or after one of its offset changes, and cron fields that
    are likely to hit the skipped or repeated wall times of that change."""
    zone_name = draw(st.sampled_from(DST_ZONES))
    transitions = _transitions(zone_name)
    assume(transitions)
    transition = draw(st.sampled_from(transitions))
    zone = ZoneInfo(zone_name)
    minutes = draw(
        st.one_of(
            st.integers(-90, 30),  # inside a repeated hour, first occurrence
            st.integers(-180, 180),
            st.integers(-2 * 24 * 60, 24 * 60),
        )
    )
    microseconds = draw(st.sampled_from([0, 1, 59_999_999]) | st.integers(0, 59_999_999))
    after = transition + timedelta(minutes=minutes, microseconds=microseconds)
    # Local hours on both sides of the change, e.g. 1 and 2 for New York.
    before_wall = (transition - timedelta(minutes=1)).astimezone(zone)
    after_wall = transition.astimezone(zone)
    near_hours = sorted({before_wall.hour, after_wall.hour, (after_wall.hour + 23) % 24})
    near_minutes = sorted({before_wall.minute, after_wall.minute, 0, 30, 59})
    minute = draw(
        st.one_of(
            st.sampled_from(["*", "*/15", "0,30", *map(str, near_minutes)]),
            _field(0),
        )
    )
    hour = draw(
        st.one_of(
            st.sampled_from(["*", *map(str, near_hours), ",".join(map(str, near_hours))]),
            _field(1),
        )
    )
    dow = draw(st.sampled_from(["*", "*", "*", "0", "1-5", "6"]))
    return zone_name, after, [minute, hour, "*", "*", dow]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=_near_transition())
def test_property_named_zones_across_transitions(where: tuple[str, datetime, list[str]]) -> None:
    """Run times are exactly the UTC minutes whose wall time in the zone matches: skipped wall
    times do not run, repeated ones run at each occurrence."""
    zone_name, after, fields = where
    zone = ZoneInfo(zone_name)
    matches = _reference_matcher(fields)
    cron = Cron(f"CRON_TZ={zone_name} {' '.join(fields)}")
    expected = _brute_force(after, zone, matches)
    got = cron.next(after)
    if expected is not None:
        assert got == expected
    else:
        assert got > after + timedelta(minutes=WINDOW_MINUTES)
    # The same expression without prefix, given `after` in that zone, gives the same time.
    assert Cron(" ".join(fields)).next(after.astimezone(zone)) == got
