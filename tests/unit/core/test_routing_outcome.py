"""core/routing_outcome.py: a record's routing outcome and how it ends, from its deliveries' results."""

from __future__ import annotations

import pytest

from clay_pipeline.core.deliveries import DELIVERED, DeliveryResult, Status
from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.policies import Delivered
from clay_pipeline.core.routing_outcome import (
    Outcome,
    build_outcome,
    delivered_entries,
    ending,
    held_changes,
)
from clay_pipeline.core.rules import Decision
from tests.integration.test_router import lead
from tests.unit.core.test_routing_plan import ALL, config, lease, planned, routed

pytestmark = pytest.mark.unit

FAILED = DeliveryResult(Status.RETRYABLE, "server_error_503")
REFUSED = DeliveryResult(Status.PERMANENT, "rejected_400", detail="sequence id missing")
UNKNOWN = DeliveryResult(Status.UNKNOWN, "read_timeout")
PAUSED = DeliveryResult(Status.PAUSED, "hubspot_daily_limit")


def outcome(**results: DeliveryResult) -> Outcome:
    return Outcome(routed(lead("l", 85)), Decision(tuple(results)), dict(results))


@pytest.mark.parametrize(
    ("results", "status"),
    [
        ({"outreach": DELIVERED, "zapier": DELIVERED}, "routed"),
        ({"outreach": DELIVERED, "nurture": DeliveryResult(Status.WITHHELD, "withheld")}, "routed"),
        ({"outreach": DELIVERED, "zapier": FAILED}, "partial"),
        ({"outreach": FAILED}, "failed"),
        ({"outreach": DELIVERED, "hubspot": PAUSED}, "paused"),
        ({"outreach": UNKNOWN, "hubspot": PAUSED}, "paused"),
        ({"outreach": UNKNOWN, "zapier": DELIVERED}, "unknown"),
    ],
)
def test_the_routing_status_says_what_is_left(results: dict[str, DeliveryResult], status: str) -> None:
    assert outcome(**results).routing_status == status


def test_a_retryable_failure_waits_in_the_queue_as_a_failure_until_the_last_receive() -> None:
    # GIVEN outreach failing after its retries WHEN the record ends on its 4th of 5 receives
    end = ending(outcome(outreach=FAILED, zapier=DELIVERED), 4, 5)
    # THEN it goes back to the queue, a failure (it counts toward the DLQ), with what failed
    assert isinstance(end, Wait) and end.failure
    assert end.reason == "retryable: outreach: server_error_503"
    assert end.delay_seconds == 0  # no delay set: back after RoutingQueue's visibility timeout
    # AND on its last receive it is dead-lettered with the reason instead of redriven without one
    last = ending(outcome(outreach=FAILED, zapier=DELIVERED), 5, 5)
    assert isinstance(last, DeadLetter)
    assert (last.reason, last.detail) == ("retries_exhausted", "outreach: server_error_503")


def test_a_permanent_failure_is_dead_lettered_at_once_with_the_destinations_words() -> None:
    end = ending(outcome(outreach=REFUSED, hubspot=DELIVERED), 1, 5)
    assert isinstance(end, DeadLetter)
    assert (end.reason, end.detail) == ("permanent_failure", "outreach: rejected_400 (sequence id missing)")


@pytest.mark.parametrize(
    ("results", "end"),
    [({"outreach": DELIVERED}, "routed"), ({"outreach": UNKNOWN}, "unknown"), ({"hubspot": PAUSED}, "paused")],
)
def test_routed_unknown_and_paused_records_end_without_a_retry(results: dict[str, DeliveryResult], end: str) -> None:
    assert ending(outcome(**results), 1, 5) == end


def test_a_lead_no_rule_chooses_is_skipped_with_the_reason() -> None:
    message = routed(lead("l", 10, email=None))
    choice = config().choose(message, ALL, frozenset())
    skipped = build_outcome(choice, {}, ALL)
    assert ending(skipped, 1, 5) == "skipped"
    record = skipped.record("2026-01-01T00:00:00+00:00")
    assert record["routing_status"] == "skipped" and record["routes"] == []
    assert record["skipped_reason"].startswith("no rule matched: slack needs icp_score >= 90;")


def test_the_outcome_names_each_chosen_destination_sent_held_or_owed_nothing() -> None:
    # GIVEN a hot lead whose HubSpot is paused and whose outreach was delivered before (once per lead)
    delivered = {"outreach": Delivered(1_799_999_000, "x", 95.0)}
    attempt, _ = planned(config(), routed(lead("l", 95)), lease(delivered), paused=frozenset({"hubspot"}))
    # WHEN Slack and Zapier are sent
    result = build_outcome(attempt, {"slack": DELIVERED, "zapier": DELIVERED}, ALL)
    # THEN HubSpot waits, outreach counts as delivered (already), the others as sent now
    assert result.destination_statuses() == {
        "slack": "delivered",
        "outreach": "delivered",
        "hubspot": "paused",
        "zapier": "delivered",
    }
    assert result.results["outreach"].reason == "already_delivered"
    assert result.routing_status == "paused"


def test_a_destination_that_is_off_is_recorded_off_and_a_lead_with_only_those_is_skipped() -> None:
    choice = config().choose(routed(lead("l", 30)), ALL - {"zapier"}, frozenset())
    result = build_outcome(choice, {}, ALL - {"zapier"})
    assert result.destination_statuses() == {"zapier": "off"}
    assert result.skipped_reason == "every chosen destination is off: zapier"


def test_the_ledger_gets_what_was_delivered_and_the_held_marks_move_with_the_pauses() -> None:
    # GIVEN a lead held for HubSpot by an earlier pause, now delivered, while Zapier says to stop
    attempt, _ = planned(config(), routed(lead("l", 85)), lease(held={"hubspot": "earlier"}))
    sent = {"hubspot": DELIVERED, "outreach": DELIVERED, "zapier": PAUSED}
    # THEN the deliveries are entries with the payload hash and score; HubSpot's mark is cleared, Zapier's set
    assert delivered_entries(attempt, sent, 7) == {
        "hubspot": Delivered(7, "hash-hubspot", 85.0),
        "outreach": Delivered(7, "hash-outreach", 85.0),
    }
    assert held_changes(attempt, sent) == {"zapier": "2026-01-01T00:00:00+00:00", "hubspot": None}
