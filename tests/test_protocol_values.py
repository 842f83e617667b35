"""River's protocol_values.json goldens: states and bits, the AttemptError golden, reserved
metadata keys, notification topics and payload key sets, retry delays."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import river
from river._admin import _control_payload
from river._elector import request_resign_payload
from river._insert import insert_payload
from river._notifier import TOPICS
from river._retry import MAX_DELAY_NANOS, default_retry_delay_nanos, next_retry_at
from river._types import AttemptError, parse_time
from tests.conftest import CONFORMANCE

VALUES: dict[str, Any] = json.loads(
    (CONFORMANCE / "fixtures" / "protocol_values.json").read_text(encoding="utf-8")
)


def test_job_states_and_unique_bits() -> None:
    assert [s.value for s in river.JobState] == [c["state"] for c in VALUES["job_states"]]
    for case in VALUES["job_states"]:
        assert river.JobState(case["state"]).unique_bit == case["unique_bit"]


def test_attempt_error_golden_round_trips() -> None:
    golden = VALUES["attempt_error"]
    error = AttemptError.from_json(golden)
    assert error.attempt == golden["attempt"]
    assert error.error == golden["error"]
    assert error.trace == golden["trace"]
    assert error.at == parse_time(golden["at"])
    # Encoded back: the same keys and values (the time with its fraction, UTC as Z).
    assert error.to_json() == golden


def test_reserved_metadata_keys_are_the_ones_the_runtime_writes() -> None:
    keys = VALUES["metadata_keys"]
    assert keys["output"] == "output"
    assert keys["periodic_job_id"] == "river:periodic_job_id"
    assert keys["rescue_count"] == "river:rescue_count"
    # User code may not set river: keys (the runtime's own writers may).
    for reserved in (v for v in keys.values() if v.startswith("river:")):
        with pytest.raises(river.ValidationError, match="reserved"):
            _insert_validates({reserved: 1})


def _insert_validates(metadata: dict[str, Any]) -> None:
    from river._insert import InsertDefaults, build_batch

    class Probe(river.JobArgs):
        kind = "protocol_probe"  # type: ignore[misc]

    build_batch([(Probe(), river.InsertOpts(metadata=metadata))], InsertDefaults(), None)


def test_topics() -> None:
    assert set(VALUES["topics"].values()) == set(TOPICS)


def _payloads_built_here() -> dict[str, dict[str, Any]]:
    # Payloads built in Python; cancel and resigned are built by Postgres (their exact texts
    # are asserted against the database in tests/test_admin.py and tests/test_leader.py).
    return {
        "insert": json.loads(insert_payload("priority")),
        "pause": json.loads(_control_payload("pause", "priority")),
        "resume": json.loads(_control_payload("resume", "priority")),
        "request_resign": json.loads(request_resign_payload()),
    }


def test_notification_payloads_match_the_fixture() -> None:
    built = _payloads_built_here()
    by_name = {n["name"]: n for n in VALUES["notifications"]}
    for name, payload in built.items():
        assert payload == by_name[name]["payload"], name
    # Texts as River (Go) sends them (receivers must not depend on them, senders should).
    assert insert_payload("default") == '{"queue": "default"}'
    assert _control_payload("pause", "default") == '{"action":"pause","queue":"default"}'
    assert request_resign_payload() == '{"action":"request_resign","leader_id":""}'


@pytest.mark.parametrize("case", VALUES["retry_cases"], ids=lambda c: f"errors={c['error_count']}")
def test_retry_delays_within_ten_percent(case: dict[str, Any]) -> None:
    n = case["error_count"]
    base = n**4 * 1_000_000_000
    rng = random.Random(case["seed"])
    for _ in range(200):
        delay = default_retry_delay_nanos(n, rng)
        if base >= MAX_DELAY_NANOS:
            # The capped case is exact: the largest Go duration, no jitter.
            assert delay == case["expected_delay_ns"] == MAX_DELAY_NANOS
        else:
            assert base * 0.9 <= delay <= base * 1.1
    if base < MAX_DELAY_NANOS:
        # River (Go)'s own draw lies in the same window.
        assert base * 0.9 <= case["expected_delay_ns"] <= base * 1.1


def test_next_retry_at_uses_the_cap() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert timedelta(seconds=0.9) <= next_retry_at(1, now) - now <= timedelta(seconds=1.1)
    capped = next_retry_at(310, now) - now  # about 292 years, the largest Go duration
    assert abs(capped - timedelta(microseconds=MAX_DELAY_NANOS // 1000)) < timedelta(seconds=1)
    # Near datetime's own limit the result saturates instead of overflowing.
    late = datetime(9990, 1, 1, tzinfo=UTC)
    assert next_retry_at(310, late) == datetime.max.replace(tzinfo=UTC)


def test_backoff_is_capped_for_any_number_of_tries() -> None:
    """Reconnects, outcome writes and service restarts back off with ``backoff``: after ~1,000
    failed tries (an hour or so of outage at a 5 s cap), ``2 ** tries`` as a float overflowed
    and raised where the retry was to happen (the notifier and the completer died)."""
    from river._retry import backoff

    assert backoff(0, 0.25, 5.0, jitter=0) == 0.25
    assert backoff(3, 0.25, 5.0, jitter=0) == 2.0
    for tries in (10, 1024, 1100, 10**9):
        assert backoff(tries, 0.25, 5.0, jitter=0) == 5.0
        assert 4.5 <= backoff(tries, 0.25, 5.0) <= 5.0
    assert backoff(-1, 0.25, 5.0, jitter=0) == 0.25
