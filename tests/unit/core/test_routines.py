"""Routine poll messages and the polls of a run (core/routines.py): round trips, what is not a poll message,
delays that double and stop at the cap, and what follows a read that found no results yet."""

from __future__ import annotations

import json

import pytest

from clay_pipeline.core.routines import GiveUp, NextPoll, PollMessage, after_no_results, poll_delay

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


def test_the_next_poll_never_waits_past_the_give_up_time() -> None:
    # GIVEN a run started now with a give-up time of 3 s and a first poll delay of 600 s
    run_id, now = "run_1", 1_000_000.0
    # WHEN its fourth poll finds no results
    step = after_no_results(PollMessage(run_id, "poll", 4), now, now, 3, 600, 900, "0 of 1 items finished")
    # THEN the next poll of the chain is due within the give-up time, not 600 s later
    assert isinstance(step, NextPoll)
    assert [step.message] == [PollMessage(run_id, "poll", 5)]
    assert 1 <= step.delay_seconds <= 3


def test_a_webhooks_read_of_a_run_in_progress_starts_no_poll() -> None:
    assert after_no_results(PollMessage("run_1", "webhook"), 0.0, 10.0, 3600, 5, 300, "") is None
    poll = after_no_results(PollMessage("run_1", "poll", 0), 0.0, 10.0, 3600, 5, 300, "")
    assert isinstance(poll, NextPoll) and poll.message == PollMessage("run_1", "poll", 1)


def test_a_run_past_its_give_up_time_is_given_up_with_its_progress() -> None:
    step = after_no_results(PollMessage("run_1", "poll", 5), 0.0, 3601.0, 3600, 5, 300, "3 of 7 items finished")
    assert step == GiveUp("routine_run_gave_up", "no results within 3600 s (3 of 7 items finished)")
