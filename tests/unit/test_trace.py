"""`clay-pipeline trace`'s story of a lead on the routine path (cli/operations/trace.py), from what the state
table keeps as plain data: the dedupe mark and the run the lead went in (run#, run-done#, run-leads#).
The records as the routine sender really writes them: tests/integration/test_cli_trace.py."""

from __future__ import annotations

from typing import Any

import pytest

from cli.operations.trace import RUN_STATES, LeadTrace

pytestmark = pytest.mark.unit

SENT_AT = 1_796_500_000  # 2026-12-05 19:46:40Z
MARK = {"status": "sent", "created_at": SENT_AT - 1, "sent_at": SENT_AT, "expires_at": SENT_AT + 86_400, "batch": "b1"}


def run(**facts: Any) -> dict[str, Any]:
    """The run as Tracer._routine_run finds it."""
    return {
        "routine_run_id": "run_7",
        "started_at": "2026-12-05T17:33:19.500000+00:00",
        "items": 100,
        "ending": "",
        "confirmed_by": "mark",
        "batch": "b1",
        **facts,
    }


def sent_to_clay(trace: LeadTrace) -> tuple[str, str]:
    [(at, _, text)] = [event for event in trace.timeline() if event[1] == "sent to Clay"]
    return at, text


@pytest.mark.parametrize("ending", sorted(RUN_STATES))
def test_each_state_of_the_run_is_said_in_words(ending: str) -> None:
    _, text = sent_to_clay(LeadTrace("ld_1", mark=MARK, run=run(ending=ending)))
    assert text.startswith("routine run run_7 (100 items), started 2026-12-05 17:33:19Z, ")
    assert f", {RUN_STATES[ending]}; " in text


def test_the_send_is_timed_by_the_runs_start_when_the_mark_is_still_sending() -> None:
    # GIVEN a mark the sender could not set sent: no sent_at on it, its run-leads# list names the run
    mark = {key: value for key, value in MARK.items() if key != "sent_at"} | {"status": "sending"}
    trace = LeadTrace("ld_1", mark=mark, run=run(confirmed_by="run_list"))
    # THEN the lead counts as sent, at the run's start, and trace says where that comes from
    at, text = sent_to_clay(trace)
    assert at == "2026-12-05T17:33:19.500000+00:00"
    assert trace.to_dict()["dedupe"]["status"] == "sent"
    assert text.endswith("the sender could not set the dedupe mark sent: its list run-leads#b1 names the run")


def test_a_run_whose_record_expired_is_still_named() -> None:
    _, text = sent_to_clay(LeadTrace("ld_1", mark=MARK, run=run(started_at="", items=None, ending="collected")))
    assert text.startswith("routine run run_7, its record has expired, collected; ")


def test_a_sending_mark_without_a_run_stays_sending() -> None:
    mark = {key: value for key, value in MARK.items() if key != "sent_at"} | {"status": "sending"}
    trace = LeadTrace("ld_1", mark=mark)
    assert trace.to_dict()["dedupe"]["status"] == "sending"
    assert trace.to_dict()["routine_run"] is None
    assert [event for event in trace.timeline() if event[1] == "sent to Clay"] == []
