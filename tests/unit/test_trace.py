"""`clay-pipeline trace`'s story of a lead on the routine path (cli/operations/trace.py), from what the state
table keeps as plain data: the dedupe mark and the run the lead went in (run#, run-done#, run-leads#); and a
lead whose callback claim is not routed yet.
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


def test_a_lead_whose_callback_claim_is_not_routed_says_so_not_an_outcome() -> None:
    # GIVEN the leads table item as the callback's claim leaves it (its version claimed, no routing outcome)
    item = {
        "lead_key": "ld_1",
        "callback_id": "ld_1#v2",
        "received_at": "2026-12-05T20:00:00+00:00",
        "routing_status": "received",
        "pending_v2": "2026-12-05T20:00:00+00:00",
        "callbacks": 1,
    }
    trace = LeadTrace("ld_1", mark=MARK, item=item)
    # THEN trace tells it is accepted and not routed yet, since the claim, and how it is recovered
    [(at, text)] = [(event[0], event[2]) for event in trace.timeline() if event[1] in ("routing", "outcome")]
    assert at == "2026-12-05T20:00:00+00:00"
    assert text.startswith("accepted, not routed yet") and "stale sweep queues it" in text
    assert trace.to_dict()["routing"]["claimed_at"] == at
    # AND once the router wrote for it (the claim gone, an outcome), the outcome is told as before
    routed = {key: value for key, value in item.items() if key != "pending_v2"} | {
        "routing_status": "routed",
        "routed_at": "2026-12-05T20:00:02+00:00",
        "destinations": {"zapier": "delivered"},
    }
    [(stage, text)] = [
        (e[1], e[2]) for e in LeadTrace("ld_1", item=routed).timeline() if e[1] in ("routing", "outcome")
    ]
    assert (stage, text) == ("outcome", "routed: zapier delivered")
