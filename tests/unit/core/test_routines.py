"""Routine poll messages and the backoff schedule of a run's polls (core/routines.py): round trips, what is
not a poll message, delays that double and stop at the cap."""

from __future__ import annotations

import json

import pytest

from clay_pipeline.core.routines import PollMessage, poll_delay

pytestmark = pytest.mark.unit


def test_poll_message_round_trip() -> None:
    message = PollMessage("run_1", "webhook", 3)
    assert PollMessage.parse(json.dumps(message.to_message())) == message


def test_poll_message_defaults_to_a_first_poll() -> None:
    assert PollMessage.parse('{"routine_run_id": "run_1"}') == PollMessage("run_1", "poll", 0)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"run": "x"}',
        '{"routine_run_id": 7}',
        '{"routine_run_id": "r", "trigger": "cron"}',
        '{"routine_run_id": ""}',
        '{"routine_run_id": "\\ud800"}',
        '{"routine_run_id": "run\\u0007"}',
    ],
)
def test_anything_else_is_not_a_poll_message(body: str) -> None:
    with pytest.raises(ValueError):
        PollMessage.parse(body)


def test_poll_delays_double_from_the_first_and_stop_at_the_cap() -> None:
    # WHEN the delays of successive polls are drawn many times (they carry 20% jitter)
    for attempt, centre in [(0, 30), (1, 60), (2, 120), (3, 240), (4, 300), (12, 300)]:
        delays = {poll_delay(attempt, first_seconds=30, max_seconds=300) for _ in range(50)}
        # THEN each stays within 20% of the doubled delay, never above the cap
        assert all(0.8 * centre - 1 <= delay <= min(300, 1.2 * centre + 1) for delay in delays), (attempt, delays)


def test_poll_delay_is_at_least_a_second() -> None:
    assert poll_delay(0, first_seconds=1, max_seconds=1) == 1
